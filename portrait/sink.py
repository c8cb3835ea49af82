"""Sinks: where finished frames go.

Every sink takes uint8 images: BGR ``(H, W, 3)``, BGRA ``(H, W, 4)`` or a grey matte ``(H, W)``,
converting to what its target stores. ``write(image)`` sends one, ``close()`` finalises (safe
twice), and each sink is a context manager:

- :class:`VirtualCameraSink`: pyvirtualcam in BGR; frames of another size are resized to the
  camera's; a device that stops accepting frames is reopened with a back-off, never blocking.
- :class:`PreviewSink`: an OpenCV window; ``quit_requested`` after ``q``/Esc or closing it.
- :class:`VideoFileSink`: ``.mp4`` (mp4v) or ``.avi`` (MJPG), opened on the first frame.
- :class:`PngFolderSink`: ``000000.png``, ``000001.png``, ... in a folder.
- :class:`ImageFileSink`, :class:`ImageFolderSink` and :func:`write_image`: single images,
  written atomically, never over an input file.

:func:`open_sink` picks the sink for ``--out`` in live and video mode, :func:`open_image_sink`
for ``--image`` mode.
"""

from __future__ import annotations

import logging
import os
import sys
import platform
import tempfile
import time
from pathlib import Path
from typing import Iterable, Optional, Union

import cv2
import numpy as np
import pyvirtualcam

from portrait.capture import quiet_opencv
from portrait.errors import DeviceError, InputError

log = logging.getLogger(__name__)

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
IMAGE_WRITE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
_NO_ALPHA_EXTENSIONS = (".jpg", ".jpeg", ".bmp")
_ENCODE_PARAMS = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95], ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, 95]}
V4L2LOOPBACK_HINT = (
    'sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="Portrait Cam"'
)

PathLike = Union[str, Path]


def virtual_camera_hint() -> str:
    """What to do when no virtual camera device exists, for this operating system."""
    if platform.system() == "Linux":
        return f"create one with: {V4L2LOOPBACK_HINT}"
    return "install OBS Studio and start its virtual camera once"


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"unexpected frame dtype: {dtype} != uint8")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(f"unexpected frame shape: {image.shape} != (H, W), (H, W, 3) or (H, W, 4)")


def to_bgr(image: np.ndarray, size: Optional[tuple[int, int]] = None,
           out: Optional[np.ndarray] = None) -> np.ndarray:
    """Convert a sink input to BGR uint8, resized to ``size`` (w, h) when it differs.

    Args:
        image: BGR, BGRA or grey uint8.
        size: target (width, height), or ``None`` to keep the image's.
        out: a buffer of the result's shape to reuse, or ``None``.

    Returns:
        ``image`` itself when nothing needs changing, else the converted (or ``out``) array.

    Raises:
        ValueError: an image that isn't uint8 grey/BGR/BGRA.
    """
    _check_image(image)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if size is None or (image.shape[1], image.shape[0]) == tuple(size):
        return image
    if out is None or out.shape != (size[1], size[0], 3):
        out = np.empty((size[1], size[0], 3), np.uint8)
    # INTER_AREA when shrinking keeps thin edges (hair) from aliasing.
    shrink = image.shape[1] > size[0] or image.shape[0] > size[1]
    return cv2.resize(image, tuple(size), dst=out,
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class Sink:
    """Base of all sinks: ``write(image)``, ``close()``, a context manager."""

    frames_written = 0

    def write(self, image: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finalise and release; safe to call twice."""

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- virtual camera ------------------------------------------------------------------------------


class VirtualCameraSink(Sink):
    """Frames to a virtual camera through pyvirtualcam (BGR format).

    The camera's size is fixed when it opens; frames of another size are resized to it. If the
    device stops accepting frames (a driver hiccup, a consumer reopening it), the camera is
    reopened on later writes with a back-off of 0.1 s doubling to 2 s; frames in between are
    dropped and ``write`` never blocks. Pacing is left to the caller.

    Args:
        width, height, fps: the camera's format.
        backend: a pyvirtualcam backend name (see ``pyvirtualcam.register_backend``); ``None``
            tries every registered backend.
        device: a device name (``/dev/video2``), or ``None`` for the first free one.

    Raises:
        DeviceError: no virtual camera device (the message says how to create one).
    """

    def __init__(self, width: int, height: int, fps: float, *,
                 backend: Optional[str] = None, device: Optional[str] = None) -> None:
        if width <= 0 or height <= 0 or not fps > 0:
            raise ValueError(f"unexpected virtual camera format: {width}x{height} at {fps} fps")
        if backend is not None and backend not in pyvirtualcam.camera.BACKENDS:
            known = ", ".join(sorted(pyvirtualcam.camera.BACKENDS)) or "none"
            raise DeviceError(
                f"virtual camera backend '{backend}' is not available (available: {known}); "
                "leave the backend unset"
            )
        self.size = (int(width), int(height))
        self.fps = float(fps)
        self._backend, self._device = backend, device
        self._buffer: Optional[np.ndarray] = None
        self._retry_s = 0.1
        self._next_try = 0.0
        self._closed = False
        self._camera: Optional[pyvirtualcam.Camera] = self._open()
        self.frames_written = 0
        self.frames_dropped = 0
        self.device = self._camera.device
        self._consumer, self._consumer_checked = True, -1.0
        log.info("virtual camera: %s (%s backend), %dx%d at %g fps",
                 self.device, self._camera.backend, *self.size, self.fps)

    def _open(self) -> pyvirtualcam.Camera:
        try:
            return pyvirtualcam.Camera(
                *self.size, self.fps, fmt=pyvirtualcam.PixelFormat.BGR,
                backend=self._backend, device=self._device,
            )
        except Exception as error:  # noqa: BLE001: backends raise RuntimeError or their own
            # pyvirtualcam joins one line per backend, each a few sentences: keep the first.
            text = str(error).strip() or repr(error)
            reason = text.splitlines()[0].split(". ")[0].rstrip(".")
            raise DeviceError(
                f"no virtual camera device could be opened ({reason}); "
                f"{virtual_camera_hint()}, or write to a file with --out out.mp4"
            ) from None

    def has_consumer(self) -> bool:
        """False only when we can tell that no application reads the device (checked ≤ 1/s)."""
        now = time.perf_counter()
        if now >= self._consumer_checked + 1.0:
            self._consumer_checked = now
            readers = device_readers(self.device) if self.device else None
            self._consumer = readers is None or readers > 0
        return self._consumer

    def write(self, image: np.ndarray) -> None:
        """Send one frame (resized to the camera's size if needed); drops it while reopening."""
        if self._closed:
            raise ValueError("write() after close()")
        frame = to_bgr(image, self.size, out=self._buffer)
        if frame is not image and frame.shape[:2] != image.shape[:2]:
            self._buffer = frame  # keep the resize buffer for the next frame
        if self._camera is None and not self._reopen():
            self.frames_dropped += 1
            return
        try:
            self._camera.send(frame)
        except (ValueError, TypeError):
            raise  # our bug, not the device's
        except Exception as error:  # noqa: BLE001: a native backend's write failure
            log.warning("virtual camera stopped accepting frames (%s); reopening it", error)
            self._drop_camera()
            self.frames_dropped += 1
            return
        self.frames_written += 1

    def _drop_camera(self) -> None:
        try:
            self._camera.close()
        except Exception as error:  # noqa: BLE001: it is already broken
            log.debug("virtual camera close failed: %s", error)
        self._camera = None
        self._retry_s = 0.1
        self._next_try = time.perf_counter() + self._retry_s

    def _reopen(self) -> bool:
        now = time.perf_counter()
        if now < self._next_try:
            return False
        try:
            self._camera = self._open()
        except DeviceError as error:
            self._retry_s = min(self._retry_s * 2.0, 2.0)
            self._next_try = now + self._retry_s
            log.debug("virtual camera still unavailable: %s", error)
            return False
        log.warning("virtual camera is back: %s", self._camera.device)
        return True

    def close(self) -> None:
        """Release the virtual camera; safe twice."""
        self._closed = True
        if self._camera is not None:
            self._camera.close()
            self._camera = None


def device_readers(device: str, own_pid: Optional[int] = None) -> Optional[int]:
    """How many other processes have ``device`` (e.g. ``/dev/video2``) open, or None if unknown.

    Linux only: it looks through ``/proc/*/fd``. Processes we may not inspect are not counted, so
    run as the same user as the video-call app (the usual case).
    """
    if not sys.platform.startswith("linux") or not str(device).startswith("/dev/"):
        return None
    own_pid = os.getpid() if own_pid is None else own_pid
    try:
        target = os.stat(device).st_rdev
    except OSError:
        return None
    readers = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == own_pid:
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            for fd in os.listdir(fd_dir):
                try:
                    if os.stat(f"{fd_dir}/{fd}").st_rdev == target:
                        readers += 1
                        break
                except OSError:
                    continue
        except OSError:
            continue
    return readers


def camera_lost_frame(width: int, height: int,
                      text: str = "camera lost - reconnecting") -> np.ndarray:
    """A dark BGR frame with ``text`` centred, to show while the camera is gone."""
    frame = np.full((height, width, 3), 32, np.uint8)
    scale = max(0.4, width / 1280.0)
    thickness = max(1, round(2 * scale))
    (text_w, text_h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    origin = ((width - text_w) // 2, (height + text_h) // 2)
    cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (220, 220, 220),
                thickness, cv2.LINE_AA)
    return frame


# --- preview window ------------------------------------------------------------------------------


def has_display() -> bool:
    """Whether a window can open: always on Windows/macOS, with DISPLAY or WAYLAND_DISPLAY else."""
    if platform.system() in ("Windows", "Darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class PreviewSink(Sink):
    """A preview window; ``quit_requested`` turns True on ``q``, Esc, or closing the window.

    Raises:
        DeviceError: no display to open a window on (checked first: Qt would abort the process).
    """

    def __init__(self, title: str = "portrait") -> None:
        if not has_display():
            raise DeviceError("cannot open a preview window: no display (DISPLAY is not set); "
                              "run without --preview")
        self.title = title
        self.quit_requested = False
        self.frames_written = 0
        self._shown = False

    def write(self, image: np.ndarray) -> None:
        """Show one frame and poll the keyboard and the window."""
        _check_image(image)
        try:
            if not self._shown:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
                self._shown = True
            elif cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                self.quit_requested = True  # the user closed the window
                return
            cv2.imshow(self.title, image)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as error:
            raise DeviceError(f"cannot show the preview window ({error.err}); "
                              "run without --preview") from None
        self.frames_written += 1
        if key in (ord("q"), ord("Q"), 27):
            self.quit_requested = True

    def close(self) -> None:
        """Close the window; safe twice."""
        if self._shown:
            self._shown = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)  # let the GUI process the close
            except cv2.error:
                pass


# --- files ---------------------------------------------------------------------------------------


def _file_ids(paths: Iterable[PathLike]) -> set[tuple[int, int]]:
    ids = set()
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        ids.add((stat.st_dev, stat.st_ino))
    return ids


def _is_protected(path: Path, protected_ids: set[tuple[int, int]]) -> bool:
    try:
        stat = os.stat(path)
    except OSError:
        return False  # doesn't exist yet, so it is no input
    return (stat.st_dev, stat.st_ino) in protected_ids


def _prepare_folder(folder: Path, what: str) -> None:
    """Create ``folder`` (and parents) and check it is writable; InputError otherwise."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"cannot write {what}: '{folder}' is a file, not a folder; "
                         "choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot write {what}: cannot create folder '{folder}' "
                         f"({error.strerror or error}); choose another --out") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {what}: folder '{folder}' is not writable; "
                         "choose another --out")


def _refuse_input(path: Path, protected_ids: set[tuple[int, int]]) -> None:
    if _is_protected(path, protected_ids):
        raise InputError(f"refusing to overwrite the input '{path}' with the output; "
                         "choose a different --out")


def write_image(path: PathLike, image: np.ndarray, *, protected: Iterable[PathLike] = ()) -> Path:
    """Write one image atomically (a temporary file in the same folder, then ``os.replace``).

    PNG, WebP and TIFF keep a BGRA image's alpha; JPEG and BMP drop it. A grey matte stays grey.

    Args:
        path: the output file; its extension picks the format.
        image: BGR, BGRA or grey uint8.
        protected: input files that must never be overwritten.

    Returns:
        ``path`` as a Path.

    Raises:
        InputError: an unsupported extension, an unwritable folder, or ``path`` is an input.
        ValueError: an image that isn't uint8 grey/BGR/BGRA.
    """
    path = Path(path)
    _check_image(image)
    ext = _image_extension(path)
    _refuse_input(path, _file_ids(protected))
    if path.is_dir():
        raise InputError(f"cannot write image '{path}': it is a folder; give a file name")
    _prepare_folder(path.parent, f"image '{path}'")
    if image.ndim == 3 and image.shape[2] == 4 and ext in _NO_ALPHA_EXTENSIONS:
        log.warning("'%s': %s keeps no transparency; alpha dropped (use .png)", path, ext)
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    _write_atomic(path, _encode(path, image, ext))
    return path


def _image_extension(path: Path) -> str:
    ext = path.suffix.lower()
    if ext not in IMAGE_WRITE_EXTENSIONS:
        raise InputError(f"cannot write image '{path}': unsupported type '{ext or 'none'}'; "
                         "use .png (or .jpg)")
    return ext


def _encode(path: Path, image: np.ndarray, ext: str) -> bytes:
    ok, encoded = cv2.imencode(ext, image, _ENCODE_PARAMS.get(ext, []))
    if not ok:
        raise InputError(f"cannot write image '{path}': OpenCV could not encode it as {ext}; "
                         "use .png")
    return encoded.tobytes()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
        os.replace(tmp_name, path)
    except OSError as error:
        Path(tmp_name).unlink(missing_ok=True)
        raise InputError(f"cannot write image '{path}': {error.strerror or error}; "
                         "choose another --out") from None


class ImageFileSink(Sink):
    """One output image file (each write replaces it); checks the path at construction.

    Args:
        path: the output file (``.png`` keeps transparency).
        protected: input files that must never be overwritten, e.g. the ``--image`` file.

    Raises:
        InputError: unsupported extension, unwritable folder, or the path is an input.
    """

    def __init__(self, path: PathLike, *, protected: Iterable[PathLike] = ()) -> None:
        self.path = Path(path)
        self._protected_ids = _file_ids(protected)
        _image_extension(self.path)
        _refuse_input(self.path, self._protected_ids)
        if self.path.is_dir():
            raise InputError(f"cannot write image '{self.path}': it is a folder; "
                             "give a file name")
        _prepare_folder(self.path.parent, f"image '{self.path}'")
        self.frames_written = 0

    def write(self, image: np.ndarray, name: Optional[str] = None) -> None:
        """Write ``image`` to the sink's path (``name`` is ignored: there is one file)."""
        write_image(self.path, image, protected=())  # the inputs were checked above
        self.frames_written += 1


class ImageFolderSink(Sink):
    """Batch output: ``write(image, name)`` writes ``folder/<name><ext>``.

    Refuses, per image, to overwrite an input file or an output already written in this run
    (two inputs with the same stem), so a batch can report the item and carry on.

    Args:
        folder: created if needed.
        protected: input files that must never be overwritten.
        ext: output extension, ``.png`` by default.

    Raises:
        InputError: the folder can't be created or written (construction); an input or a
            duplicate output name (``write``).
    """

    def __init__(self, folder: PathLike, *, protected: Iterable[PathLike] = (),
                 ext: str = ".png") -> None:
        self.folder = Path(folder)
        self.ext = _image_extension(Path("x" + ext))
        self._protected_ids = _file_ids(protected)
        self._written: set[str] = set()
        _prepare_folder(self.folder, f"images to '{self.folder}'")
        self.frames_written = 0

    def write(self, image: np.ndarray, name: Optional[str] = None) -> None:
        """Write ``image`` as ``<name><ext>`` (``name`` defaults to the frame number)."""
        name = name if name is not None else f"{self.frames_written:06d}"
        path = self.folder / f"{name}{self.ext}"
        if name in self._written:
            raise InputError(f"output '{path}' was already written for another input named "
                             f"'{name}'; rename one of them")
        _refuse_input(path, self._protected_ids)
        write_image(path, image)
        self._written.add(name)
        self.frames_written += 1


class PngFolderSink(Sink):
    """Numbered PNG frames: ``folder/000000.png``, ``000001.png``, ...

    Raises:
        InputError: the folder can't be created or written.
    """

    def __init__(self, folder: PathLike) -> None:
        self.folder = Path(folder)
        _prepare_folder(self.folder, f"frames to '{self.folder}'")
        if any(self.folder.glob("[0-9][0-9][0-9][0-9][0-9][0-9].png")):
            log.warning("'%s' already holds numbered frames; they will be overwritten",
                        self.folder)
        self.frames_written = 0
        self._closed = False

    def write(self, image: np.ndarray) -> None:
        """Write the next numbered frame (BGRA keeps alpha, grey stays grey)."""
        _check_image(image)
        path = self.folder / f"{self.frames_written:06d}.png"
        ok, encoded = cv2.imencode(".png", image)
        if not ok:
            raise ValueError(f"PNG encoding failed for a frame of shape {image.shape}")
        try:
            encoded.tofile(str(path))  # tofile: unlike imwrite, any path encoding works
        except OSError as error:
            raise InputError(f"cannot write frame '{path}': {error.strerror or error}; "
                             "choose another --out") from None
        self.frames_written += 1

    def close(self) -> None:
        """Nothing to release (each frame is complete when written); logs the count once."""
        if self.frames_written and not self._closed:
            log.info("wrote %d frames to '%s'", self.frames_written, self.folder)
        self._closed = True


class VideoFileSink(Sink):
    """A video file: ``.mp4`` (mp4v) or ``.avi`` (MJPG), written with ``cv2.VideoWriter``.

    The writer opens on the first frame, at ``size`` or else the first frame's size; later
    frames of another size are resized to it (a writer silently drops mismatched frames).
    ``close()`` releases the writer so the file is finalised and playable.

    Args:
        path: the output file; its folder is created.
        fps: frame rate stored in the file.
        size: (width, height), or ``None`` to take the first frame's.
        protected: input files that must never be overwritten (the source video).

    Raises:
        InputError: another extension, an unwritable folder, the path is an input, or OpenCV
            can't open a writer.
    """

    def __init__(self, path: PathLike, fps: float, size: Optional[tuple[int, int]] = None, *,
                 protected: Iterable[PathLike] = ()) -> None:
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in VIDEO_CODECS:
            raise InputError(f"cannot write video '{self.path}': unsupported type "
                             f"'{ext or 'none'}'; use .mp4 or .avi")
        if not (fps and 0 < fps <= 1000):
            log.warning("video '%s': frame rate %s is not usable; writing at 30 fps",
                        self.path, fps)
            fps = 30.0
        _refuse_input(self.path, _file_ids(protected))
        if self.path.is_dir():
            raise InputError(f"cannot write video '{self.path}': it is a folder; "
                             "give a file name")
        _prepare_folder(self.path.parent, f"video '{self.path}'")
        self.fps = float(fps)
        self.size = tuple(size) if size is not None else None
        self._codec = VIDEO_CODECS[ext]
        self._writer: Optional[cv2.VideoWriter] = None
        self._buffer: Optional[np.ndarray] = None
        self._closed = False
        self.frames_written = 0

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        with quiet_opencv():
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self._codec),
                                     self.fps, size, True)
        if not writer.isOpened():
            raise InputError(f"cannot write video '{self.path}': OpenCV could not open a "
                             f"{self._codec} writer; try .avi or another --out")
        log.info("writing video '%s' (%s, %dx%d at %g fps)", self.path, self._codec, *size,
                 self.fps)
        return writer

    def write(self, image: np.ndarray) -> None:
        """Append one frame (grey and BGRA are stored as BGR)."""
        if self._closed:
            raise ValueError("write() after close()")
        _check_image(image)
        if self._writer is None:
            self.size = self.size or (image.shape[1], image.shape[0])
            self._writer = self._open(self.size)
        frame = to_bgr(image, self.size, out=self._buffer)
        if frame.shape[:2] != image.shape[:2]:
            if self._buffer is None:
                log.warning("video '%s': frames of %dx%d resized to %dx%d", self.path,
                            image.shape[1], image.shape[0], *self.size)
            self._buffer = frame
        self._writer.write(np.ascontiguousarray(frame))
        self.frames_written += 1

    def close(self) -> None:
        """Finalise the file; safe twice."""
        self._closed = True
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            log.info("wrote %d frames to '%s'", self.frames_written, self.path)


# --- factories -----------------------------------------------------------------------------------


def open_sink(out: Optional[str], *, fps: float, size: Optional[tuple[int, int]] = None,
              backend: Optional[str] = None, protected: Iterable[PathLike] = ()) -> Sink:
    """The sink for live and video mode's ``--out``.

    Args:
        out: ``None`` for the virtual camera; a ``.mp4``/``.avi`` path for a video file; a path
            without extension (or an existing folder) for numbered PNG frames.
        fps: frame rate of the virtual camera or the video file.
        size: (width, height); required for the virtual camera, optional for a video file.
        backend: pyvirtualcam backend name for the virtual camera (``None``: any).
        protected: input files never to overwrite (the source video).

    Raises:
        DeviceError: no virtual camera device.
        InputError: an unusable ``out``.
    """
    if out is None:
        if size is None:
            raise ValueError("the virtual camera needs a size: size=None")
        return VirtualCameraSink(size[0], size[1], fps, backend=backend)
    path = Path(out)
    if path.suffix.lower() in VIDEO_CODECS:
        return VideoFileSink(path, fps, size, protected=protected)
    if path.is_dir() or not path.suffix:
        return PngFolderSink(path)
    raise InputError(f"cannot write '{out}': use a .mp4 or .avi file, or a folder for PNG frames")


def open_image_sink(out: PathLike, *, batch: bool,
                    protected: Iterable[PathLike] = ()) -> Union[ImageFileSink, ImageFolderSink]:
    """The sink for ``--image`` mode: a folder for a batch (or an existing folder), else a file.

    Both sinks take ``write(image, name)``; a folder sink writes ``<name>.png``.

    Raises:
        InputError: a batch ``out`` that is a file, or an unusable path (see the sinks).
    """
    path = Path(out)
    if batch or path.is_dir():
        if path.is_file():
            raise InputError(f"cannot write a batch to '{path}': it is a file; "
                             "give a folder for --out")
        return ImageFolderSink(path, protected=protected)
    return ImageFileSink(path, protected=protected)

"""Frame sources: a webcam, a video file, an image file or a folder of images.

Every source is a context manager and an iterator of :class:`Frame` (BGR uint8 ``(H, W, 3)``)::

    with open_source(CaptureOptions(source="clip.mp4")) as source:
        for frame in source:
            ...

- :class:`CameraSource` survives camera loss: ``read()`` returns ``None`` while the camera is
  gone (after waiting one back-off step, so a loop calling it never spins) and ``lost`` says so;
  iterating blocks through the loss and resumes by itself when the camera comes back.
- :class:`VideoFileSource` yields every frame, paced to the file's frame rate with ``realtime``.
- :class:`ImageSource` reads one image or a folder; :meth:`ImageSource.items` reports each bad
  file and carries on, and :func:`read_image` is the decoder on its own.

User-caused failures raise :class:`~portrait.errors.InputError` (files) or
:class:`~portrait.errors.DeviceError` (cameras) with a one-line message.
"""

from __future__ import annotations

import io
import logging
import os
import platform
import re
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Protocol, Union

import cv2
import numpy as np

from portrait.errors import DeviceError, InputError
from portrait.options import CaptureOptions

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# Larger images are refused before decoding: 64 MP covers 48/50 MP phone photos and 8K frames,
# while a 12000x9000 photo (108 MP) would need several GB through the full-resolution stages.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
# Containers estimate their frame count (Matroska from the duration): a frame or two short is
# normal, more than this is reported as truncation.
_FRAME_COUNT_SLACK = 2


@dataclass(frozen=True, eq=False)
class Frame:
    """One captured frame.

    Attributes:
        image: BGR uint8 ``(H, W, 3)``.
        index: position in the source (for a folder, the file's position in the sorted list).
        time_s: ``time.perf_counter()`` when the frame was read.
        name: file stem for images, else ``None``.
        path: the image file, else ``None``.
        lost: a marker, not a captured frame: the camera is lost and ``image`` is the last good
            frame (see :meth:`CameraSource.frames`); ``index`` is then -1.
        decode_ms: time spent reading and decoding this frame, where the source can tell it
            from waiting for the frame to be due (a paced video file); ``None`` otherwise.
    """

    image: np.ndarray
    index: int
    time_s: float
    name: Optional[str] = None
    path: Optional[Path] = None
    lost: bool = False
    decode_ms: Optional[float] = None


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` that :class:`CameraSource` uses (OpenCV's names)."""

    def isOpened(self) -> bool:
        ...

    def read(self) -> tuple[bool, Optional[np.ndarray]]:
        ...

    def set(self, prop: int, value: float) -> bool:
        ...

    def get(self, prop: int) -> float:
        ...

    def release(self) -> None:
        ...


# --- OpenCV's own console noise ----------------------------------------------------------------

_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved_level = 0


@contextmanager
def quiet_opencv():
    """Silence OpenCV's console log inside the block (nestable, thread-safe).

    OpenCV prints warnings of its own when a camera index or file can't be opened or an image
    is corrupt; we turn those failures into one-line errors, so its lines are only noise.
    FFmpeg's messages (``moov atom not found``) are silenced once per process through
    ``OPENCV_FFMPEG_LOGLEVEL`` unless the user set it.
    """
    global _quiet_depth, _quiet_saved_level
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when FFmpeg is first used
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved_level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                cv2.utils.logging.setLogLevel(_quiet_saved_level)


def to_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as BGR uint8 ``(H, W, 3)``, converting only when needed.

    Args:
        image: grey ``(H, W)`` or ``(H, W, 1)``, BGR, or BGRA; uint8 or uint16 (scaled by 1/257).

    Returns:
        The same array when it already is BGR uint8, else a converted copy.

    Raises:
        ValueError: for other shapes or dtypes.
    """
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=1.0 / 257.0)
    elif image.dtype != np.uint8:
        raise ValueError(f"unexpected image dtype: {image.dtype} != uint8")
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise ValueError(f"unexpected image shape: {image.shape} != (H, W, 3)")


class Source:
    """Base of all sources: an iterator of :class:`Frame` and a context manager."""

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    @property
    def fps(self) -> Optional[float]:
        """Frames per second the source delivers, or ``None`` (images)."""
        return None

    @property
    def lost(self) -> bool:
        """True while a live source has lost its device (see :class:`CameraSource`)."""
        return False

    def close(self) -> None:
        """Release the source; safe to call twice."""

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- camera --------------------------------------------------------------------------------------


def is_camera_index(source: str) -> bool:
    """True when ``source`` names a camera: ``"0"``, ``" 2 "``, or ``/dev/video2`` on Linux."""
    return camera_index(source) is not None


def camera_index(source: str) -> Optional[int]:
    """The camera index ``source`` names (see :func:`is_camera_index`), else ``None``."""
    text = source.strip()
    if text.isdigit() and len(text) <= 3:
        return int(text)
    match = re.fullmatch(r"/dev/video(\d{1,3})", text)
    return int(match.group(1)) if match else None


def _default_camera_api() -> int:
    """The capture API that opens a camera index quickly and without probing others."""
    system = platform.system()
    if system == "Linux":
        return cv2.CAP_V4L2
    if system == "Windows":
        return cv2.CAP_DSHOW  # opens in well under a second; MSMF can take several
    if system == "Darwin":
        return cv2.CAP_AVFOUNDATION
    return cv2.CAP_ANY


def _open_camera(index: int) -> Capture:
    return cv2.VideoCapture(index, _default_camera_api())


class CameraSource(Source):
    """A webcam by index that rides out camera loss.

    Opening asks for ``width`` x ``height`` at ``fps`` and logs what the camera gave. When reads
    fail mid-stream the camera is released and reopened with a back-off that doubles from
    ``retry_initial_s`` to ``retry_max_s``; ``lost`` is True meanwhile and each transition is
    logged once.

    ``read()`` returns the next frame, or ``None`` while the camera is lost, after waiting at most
    one back-off step: a single-threaded loop can keep a virtual camera fed (last frame or a
    "camera lost" frame) without spinning. Iterating yields frames only, blocking through a loss,
    until ``close()`` (which may be called from another thread); ``frames(lost_markers=True)``
    also yields a ``lost`` marker after each failed reconnection attempt.

    Args:
        index: camera index.
        width, height, fps: what to ask the camera for.
        opener: ``opener(index)`` returns a ``cv2.VideoCapture``-like object (tests pass a double
            of the device); the default opens the platform's native camera API.
        retry_initial_s, retry_max_s: the back-off between reopen attempts.

    Raises:
        DeviceError: the camera can't be opened, or gives no frame at all.
    """

    def __init__(
        self,
        index: int = 0,
        width: int = 1280,
        height: int = 720,
        fps: float = 30.0,
        *,
        opener: Optional[Callable[[int], Capture]] = None,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 2.0,
    ) -> None:
        if width <= 0 or height <= 0 or fps <= 0:
            raise ValueError(f"unexpected camera request: {width}x{height} at {fps} fps")
        if not 0 < retry_initial_s <= retry_max_s:
            raise ValueError(f"unexpected back-off: {retry_initial_s} s to {retry_max_s} s")
        self.index = index
        self._request = (int(width), int(height), float(fps))
        self._opener = opener or _open_camera
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._lock = threading.Lock()  # a capture must not be released while it reads
        self._closed = threading.Event()  # set by close(); also wakes back-off waits
        self._capture: Optional[Capture] = None
        self._pending: Optional[np.ndarray] = None  # the frame read while opening
        self._last_image: Optional[np.ndarray] = None
        self._next_index = 0
        self._lost_since: Optional[float] = None
        self._retry_s = retry_initial_s
        self._next_try = 0.0
        self._fps = float(fps)

        capture = self._try_open()
        if capture is None:
            hint = "try --source 0, or a video file" if index != 0 else (
                "check that a webcam is connected and free, or use --source VIDEO_FILE"
            )
            raise DeviceError(
                f"camera {index} could not be opened: no such camera or it is in use; {hint}"
            )
        image = self._read_from(capture)
        if image is None:
            capture.release()
            raise DeviceError(
                f"camera {index} opened but gave no frames: it may be in use by another app; "
                "close that app or try another --source"
            )
        self._capture, self._pending = capture, image
        got_fps = capture.get(cv2.CAP_PROP_FPS)
        if got_fps and 0 < got_fps <= 1000:
            self._fps = float(got_fps)
        log.info(
            "camera %d (%s): asked for %dx%d at %g fps, got %dx%d at %g fps",
            index, _backend_name(capture), *self._request,
            image.shape[1], image.shape[0], self._fps,
        )

    @property
    def fps(self) -> float:
        """The frame rate the camera reports (the requested one if it reports none)."""
        return self._fps

    @property
    def lost(self) -> bool:
        """True from the first failed read until a frame arrives again."""
        return self._lost_since is not None

    @property
    def lost_for_s(self) -> float:
        """Seconds since the camera was lost; 0 while it delivers."""
        return 0.0 if self._lost_since is None else time.perf_counter() - self._lost_since

    def _try_open(self) -> Optional[Capture]:
        """Open and configure the camera; ``None`` when it isn't there."""
        width, height, fps = self._request
        try:
            with quiet_opencv():
                capture = self._opener(self.index)
                if not capture.isOpened():
                    capture.release()
                    return None
                # MJPG first: most USB webcams deliver 720p/1080p at 30 fps only in MJPG.
                capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
                capture.set(cv2.CAP_PROP_FPS, fps)
                capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the freshest frame, not a backlog
        except cv2.error as error:
            log.debug("camera %d: open failed: %s", self.index, error)
            return None
        return capture

    @staticmethod
    def _read_from(capture: Capture) -> Optional[np.ndarray]:
        try:
            ok, image = capture.read()
        except cv2.error:
            return None
        if not ok or image is None or image.size == 0:
            return None
        return to_bgr_uint8(image)

    def read(self) -> Optional[Frame]:
        """The next frame, or ``None`` while the camera is lost (or after ``close()``).

        While lost, waits until the next reopen attempt is due (at most ``retry_max_s``), tries
        once, and returns ``None`` if the camera is still gone.
        """
        if self._closed.is_set():
            return None
        if self._lost_since is None:
            image = self._pending
            self._pending = None
            if image is None:
                with self._lock:
                    if self._capture is not None:
                        image = self._read_from(self._capture)
            if image is not None:
                return self._frame(image)
            if self._closed.is_set():
                return None
            self._mark_lost()
        return self._retry()

    def _frame(self, image: np.ndarray) -> Frame:
        frame = Frame(image=image, index=self._next_index, time_s=time.perf_counter())
        self._next_index += 1
        self._last_image = image
        return frame

    def _mark_lost(self) -> None:
        self._lost_since = time.perf_counter()
        self._retry_s = self._retry_initial_s
        self._next_try = self._lost_since + self._retry_s
        log.warning(
            "camera %d lost (no frame); reconnecting, trying every %g to %g s",
            self.index, self._retry_initial_s, self._retry_max_s,
        )
        with self._lock:
            if self._capture is not None:
                self._capture.release()
                self._capture = None

    def _retry(self) -> Optional[Frame]:
        wait_s = self._next_try - time.perf_counter()
        if wait_s > 0 and self._closed.wait(wait_s):
            return None
        with self._lock:
            if self._closed.is_set():
                return None
            capture = self._try_open()
            image = self._read_from(capture) if capture is not None else None
            if image is None:
                if capture is not None:
                    capture.release()
                self._retry_s = min(self._retry_s * 2.0, self._retry_max_s)
                self._next_try = time.perf_counter() + self._retry_s
                log.debug("camera %d still lost; next try in %g s", self.index, self._retry_s)
                return None
            self._capture = capture
        log.warning(
            "camera %d is back after %.1f s (%dx%d)",
            self.index, self.lost_for_s, image.shape[1], image.shape[0],
        )
        self._lost_since = None
        return self._frame(image)

    def frames(self, lost_markers: bool = False) -> Iterator[Frame]:
        """Frames until ``close()``; with ``lost_markers``, also a marker per failed retry.

        A marker is ``Frame(image=last good frame, index=-1, lost=True)``, at most one per
        back-off step (0.1 to 2 s apart): enough for a consumer to show "camera lost" or repeat
        the last frame while the camera is gone.
        """
        while not self._closed.is_set():
            frame = self.read()
            if frame is not None:
                yield frame
            elif lost_markers and self.lost and self._last_image is not None:
                yield Frame(self._last_image, -1, time.perf_counter(), lost=True)

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def close(self) -> None:
        """Stop iteration and release the camera; safe twice and from another thread."""
        self._closed.set()
        with self._lock:
            if self._capture is not None:
                self._capture.release()
                self._capture = None


def _backend_name(capture: Capture) -> str:
    try:
        return capture.getBackendName()  # type: ignore[attr-defined]
    except (AttributeError, cv2.error):
        return "unknown API"


# --- video file ----------------------------------------------------------------------------------


def _open_video(path: Path) -> cv2.VideoCapture:
    # FFmpeg by name: CAP_ANY would also try the image-sequence reader on names with '%'.
    api = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
    return cv2.VideoCapture(str(path), api)


class VideoFileSource(Source):
    """Every frame of a video file, in order.

    Args:
        path: the video file.
        realtime: pace delivery to the file's frame rate, as a camera would (frame ``i`` is due
            ``i / fps`` after the first); a slow consumer still gets every frame, in order.

    Raises:
        InputError: missing file, or not a video OpenCV can decode.
    """

    def __init__(self, path: Union[str, Path], realtime: bool = False) -> None:
        self.path = Path(path)
        self.realtime = realtime
        self._closed = threading.Event()
        self._capture: Optional[cv2.VideoCapture] = None
        if not self.path.exists():
            raise InputError(f"video '{self.path}' not found; check the path")
        if not self.path.is_file():
            raise InputError(f"video '{self.path}' is not a file; give a video file")
        with quiet_opencv():
            capture = _open_video(self.path)
            started = time.perf_counter()
            ok, image = capture.read() if capture.isOpened() else (False, None)
            self._first_decode_ms = (time.perf_counter() - started) * 1000
        if not ok or image is None:
            capture.release()
            raise InputError(
                f"cannot read video '{self.path}': not a video OpenCV can decode, or the file is "
                "truncated or corrupt; check the file or re-encode it"
            )
        self._capture = capture
        self._first: Optional[np.ndarray] = to_bgr_uint8(image)
        self._size = (self._first.shape[1], self._first.shape[0])
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self._frame_count = count if count > 0 else None
        fps = capture.get(cv2.CAP_PROP_FPS)
        if not (fps and 0 < fps <= 1000):
            log.warning("video '%s' reports no frame rate (%s); assuming 30 fps", self.path, fps)
            fps = 30.0
        self._fps = float(fps)
        log.info(
            "video '%s': %dx%d at %g fps, %s frames",
            self.path, *self._size, self._fps, self._frame_count or "unknown",
        )

    @property
    def fps(self) -> float:
        """The file's frame rate (30 when it reports none)."""
        return self._fps

    @property
    def frame_count(self) -> Optional[int]:
        """Frames the container claims (an estimate for some formats), or ``None``."""
        return self._frame_count

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the first frame."""
        return self._size

    def __iter__(self) -> Iterator[Frame]:
        if self._capture is None or self._first is None:
            raise ValueError("a VideoFileSource can be iterated once, before close()")
        capture, image = self._capture, self._first
        self._first = None
        index = 0
        start = time.perf_counter()
        decode_ms = self._first_decode_ms
        while not self._closed.is_set():
            converted = time.perf_counter()
            image = to_bgr_uint8(image)
            decode_ms += (time.perf_counter() - converted) * 1000
            if self.realtime:  # waiting for the frame to be due is not decoding
                due_s = start + index / self._fps - time.perf_counter()
                if due_s > 0 and self._closed.wait(due_s):
                    break
            yield Frame(image=image, index=index, time_s=time.perf_counter(), decode_ms=decode_ms)
            index += 1
            if self._closed.is_set():
                break
            started = time.perf_counter()
            with quiet_opencv():
                ok, image = capture.read()
            decode_ms = (time.perf_counter() - started) * 1000
            if not ok or image is None:
                self._warn_if_short(index)
                break
        self.close()

    def _warn_if_short(self, frames_read: int) -> None:
        if self._frame_count is not None and frames_read < self._frame_count - _FRAME_COUNT_SLACK:
            log.warning(
                "video '%s' ended after %d of the %d frames it claims: the file may be "
                "truncated", self.path, frames_read, self._frame_count,
            )

    def close(self) -> None:
        """Stop iteration and release the file; safe twice."""
        self._closed.set()
        if self._capture is not None:
            self._capture.release()
            self._capture = None


# --- images --------------------------------------------------------------------------------------


def _image_size_from_header(data: bytes) -> Optional[tuple[int, int]]:
    """(width, height) from the header, without decoding; ``None`` if PIL can't tell."""
    try:
        from PIL import Image
    except ImportError:  # Pillow is optional: cv2 then decodes first and checks after
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning: we apply our own limit
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.size
        except Image.DecompressionBombError:
            # Over twice PIL's limit (~179 MP): report at least that many pixels.
            limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) + 1
            return (limit, 1)
        except Exception:  # noqa: BLE001: any failure here only means "decode and see"
            return None


def read_image(path: Union[str, Path], max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read one image file as BGR uint8 ``(H, W, 3)``.

    EXIF orientation is applied; greyscale, RGBA (alpha dropped), palette, 16-bit (scaled to
    8 bits) and CMYK images all come back as BGR uint8. Images over ``max_pixels`` are refused
    from their header, before decoding.

    Args:
        path: the image file.
        max_pixels: the largest width x height accepted.

    Returns:
        The image.

    Raises:
        InputError: missing, empty, unreadable, truncated, corrupt, not an image, or too large.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"image '{path}' not found; check the path")
    if not path.is_file():
        raise InputError(f"image '{path}' is not a file; give an image file or use a folder")
    try:
        data = path.read_bytes()
    except PermissionError:
        raise InputError(
            f"cannot read image '{path}': permission denied; check its permissions"
        ) from None
    except OSError as error:
        raise InputError(
            f"cannot read image '{path}': {error.strerror or error}; check the file"
        ) from None
    if not data:
        raise InputError(f"cannot read image '{path}': the file is empty (0 bytes); check the file")

    size = _image_size_from_header(data)
    if size is not None:
        _check_pixels(path, size, max_pixels)
    # libpng prints its own complaint about a truncated PNG; spot the missing end chunk first.
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data.rfind(b"IEND") == -1:
        raise InputError(f"cannot read image '{path}': the PNG file is truncated; check the file")
    with quiet_opencv():
        try:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        except cv2.error:
            image = None
    if image is None or image.size == 0:
        raise InputError(
            f"cannot read image '{path}': not a supported image, or the file is truncated or "
            "corrupt; check the file"
        )
    _check_pixels(path, (image.shape[1], image.shape[0]), max_pixels)
    return to_bgr_uint8(image)


def _check_pixels(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise InputError(
            f"image '{path}' is {width}x{height} ({width * height / 1e6:.0f} MP), over the "
            f"{max_pixels / 1e6:.0f} MP limit; downscale it first"
        )


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; hidden files are skipped."""
    return sorted(
        entry
        for entry in folder.iterdir()
        if entry.suffix.lower() in IMAGE_EXTENSIONS
        and not entry.name.startswith(".")  # e.g. macOS "._x.jpg" resource forks
        and entry.is_file()
    )


@dataclass(frozen=True)
class ImageItem:
    """One file of an :class:`ImageSource`: its frame, or why it couldn't be read."""

    path: Path
    frame: Optional[Frame]
    error: Optional[InputError]


class ImageSource(Source):
    """An image file, or every image in a folder (sorted; extensions in ``IMAGE_EXTENSIONS``).

    Iterating yields a :class:`Frame` per readable image (``name`` is the file stem). A bad file
    of a single-file source raises its :class:`InputError`; in a folder it is logged, recorded
    in ``failures`` and skipped, so a batch carries on. :meth:`items` gives every file with its
    frame or error, for callers that report as they go.

    Args:
        path: an image file or a folder.
        max_pixels: larger images are refused (see :func:`read_image`).

    Raises:
        InputError: the path doesn't exist, or the folder has no images.
    """

    def __init__(self, path: Union[str, Path], max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
        self.path = Path(path)
        self.max_pixels = max_pixels
        self.failures: list[tuple[Path, InputError]] = []
        if not self.path.exists():
            raise InputError(f"image '{self.path}' not found; check the path")
        self.is_folder = self.path.is_dir()
        if self.is_folder:
            self.paths = list_images(self.path)
            if not self.paths:
                raise InputError(
                    f"folder '{self.path}' has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                    "check the path"
                )
            _warn_duplicate_stems(self.paths)
        else:
            self.paths = [self.path]

    def __len__(self) -> int:
        return len(self.paths)

    def items(self) -> Iterator[ImageItem]:
        """Every file in order, with its frame or its error; never raises for a bad file."""
        for index, path in enumerate(self.paths):
            try:
                image = read_image(path, self.max_pixels)
            except InputError as error:
                yield ImageItem(path, None, error)
                continue
            frame = Frame(image, index, time.perf_counter(), name=path.stem, path=path)
            yield ImageItem(path, frame, None)

    def __iter__(self) -> Iterator[Frame]:
        for item in self.items():
            if item.frame is not None:
                yield item.frame
            elif not self.is_folder:
                raise item.error
            else:
                log.warning("skipped: %s", item.error)
                self.failures.append((item.path, item.error))


def _warn_duplicate_stems(paths: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            log.warning(
                "'%s' and '%s' have the same name; their outputs would share '%s.png'",
                seen[path.stem].name, path.name, path.stem,
            )
        seen.setdefault(path.stem, path)


# --- factory -------------------------------------------------------------------------------------


def open_source(options: CaptureOptions) -> Source:
    """Open the camera or video file that ``options.source`` names.

    Args:
        options: a camera index such as ``"0"`` (or ``/dev/video0``) opens a
            :class:`CameraSource` with the requested size and rate; anything else a
            :class:`VideoFileSource` (``realtime`` applies).

    Raises:
        DeviceError: the camera can't be opened.
        InputError: the video file is missing or unreadable.
    """
    index = camera_index(options.source)
    if index is not None:
        return CameraSource(index, options.width, options.height, options.fps)
    return VideoFileSource(options.source, realtime=options.realtime)

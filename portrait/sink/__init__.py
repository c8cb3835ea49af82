"""Sinks: where finished frames go.

Every sink takes uint8 images: BGR ``(H, W, 3)``, BGRA ``(H, W, 4)`` or a grey matte ``(H, W)``,
converting to what its target stores. ``write(image)`` sends one, ``close()`` finalises (safe
twice), and each sink is a context manager:

- :class:`VirtualCameraSink`: pyvirtualcam in BGR; frames of another size are resized to the
  camera's; a device that stops accepting frames is reopened with a back-off, never blocking.
- :class:`PreviewSink`: an OpenCV window; ``quit_requested`` after ``q``/Esc or closing it;
  every key goes to ``on_key`` (the live controls).
- :class:`VideoFileSink`: ``.mp4`` (H.264) or ``.avi`` (MJPEG), opened on the first frame, with
  the source video's sound.
- :class:`PngFolderSink`: ``000000.png``, ``000001.png``, ... in a folder.
- :class:`ImageFileSink`, :class:`ImageFolderSink` and :func:`write_image`: single images,
  written atomically, never over an input file.

:func:`open_sink` picks the sink for ``--out`` in live and video mode, :func:`open_image_sink`
for ``--image`` mode.

Modules: ``base`` (the :class:`Sink` base, :func:`to_bgr`), ``virtual_camera``, ``preview``,
``images``, ``video``, and ``paths`` (output checks shared by the file sinks). Import from
``portrait.sink``; the names below are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Union

from portrait.capture.images import VIDEO_EXTENSIONS
from portrait.errors import InputError
from portrait.sink.base import Sink, to_bgr
from portrait.sink.images import (
    IMAGE_WRITE_EXTENSIONS,
    ImageFileSink,
    ImageFolderSink,
    PngFolderSink,
    write_image,
)
from portrait.sink.paths import PathLike, _file_ids, check_folder, names_folder
from portrait.sink.preview import PreviewSink, has_display
from portrait.sink.video import VIDEO_CODECS, VideoFileSink, check_video_out
from portrait.sink.virtual_camera import (
    V4L2LOOPBACK_HINT,
    VirtualCameraSink,
    camera_lost_frame,
    check_backend,
    device_readers,
    virtual_camera_hint,
)

__all__ = [
    "IMAGE_WRITE_EXTENSIONS",
    "ImageFileSink",
    "ImageFolderSink",
    "PathLike",
    "PngFolderSink",
    "PreviewSink",
    "Sink",
    "V4L2LOOPBACK_HINT",
    "VIDEO_CODECS",
    "VideoFileSink",
    "VirtualCameraSink",
    "camera_lost_frame",
    "check_backend",
    "check_stream_out",
    "device_readers",
    "has_display",
    "open_image_sink",
    "open_sink",
    "stream_out_kind",
    "to_bgr",
    "virtual_camera_hint",
    "write_image",
]


def open_sink(out: Optional[str], *, fps: float, size: Optional[tuple[int, int]] = None,
              backend: Optional[str] = None, device: Optional[str] = None,
              protected: Iterable[PathLike] = (), audio_from: Optional[PathLike] = None) -> Sink:
    """The sink for live and video mode's ``--out``.

    Args:
        out: ``None`` for the virtual camera; a ``.mp4``/``.avi`` path for a video file; a path
            without extension, an existing folder or a path ending in ``/`` for numbered PNG
            frames.
        fps: frame rate of the virtual camera or the video file.
        size: (width, height); required for the virtual camera, optional for a video file.
        backend: pyvirtualcam backend name for the virtual camera (``None``: any).
        device: the virtual camera device (``None``: the backend's first free one).
        protected: input files never to overwrite (the source video, the backgrounds).
        audio_from: a video file whose sound a video file ``out`` carries (its frames written
            at their times in it).

    Raises:
        DeviceError: no virtual camera device.
        InputError: an unusable ``out``, or no pyvirtualcam backend named ``backend``.
    """
    if out is None:
        if size is None:
            raise ValueError("the virtual camera needs a size: size=None")
        return VirtualCameraSink(size[0], size[1], fps, backend=backend, device=device)
    if stream_out_kind(out) == "frames":
        return PngFolderSink(Path(out), protected=protected)
    return VideoFileSink(Path(out), fps, size, protected=protected, audio_from=audio_from)


def stream_out_kind(out: str) -> str:
    """What a stream's ``--out`` names: ``"frames"`` (a folder: a path ending in ``/``, an
    existing folder, a name without extension) or ``"video"`` (``.mp4``, ``.avi``). Known from
    the path alone, so a run can refuse it before the model loads.

    Raises:
        InputError: any other extension.
    """
    path = Path(out)
    if names_folder(out) or path.is_dir() or not path.suffix:
        return "frames"
    if path.suffix.lower() in VIDEO_CODECS:
        return "video"
    raise InputError(f"cannot write '{out}': use a .mp4 or .avi file, or a folder for PNG frames")


def check_stream_out(out: str, protected: Iterable[PathLike] = ()) -> None:
    """Check a stream's ``--out`` as its sink will (:func:`open_sink`), before the run loads its
    model: a video file's folder writable or one that can be made, a frames folder likewise, no
    input replaced. Creates nothing: the run may yet fail (a camera that won't open, a model
    that won't load), and its sink makes the folder when it opens.

    Raises:
        InputError: an unusable ``out``, with the reason (permission denied, a read-only file
            system, a folder that takes no files).
    """
    if stream_out_kind(out) == "frames":
        check_folder(Path(out), f"frames to '{out}'")
    else:
        check_video_out(Path(out), _file_ids(protected))


def open_image_sink(out: PathLike, *, batch: bool,
                    protected: Iterable[PathLike] = ()) -> Union[ImageFileSink, ImageFolderSink]:
    """The sink for ``--image`` mode: a folder for a batch, an existing folder or a path ending
    in ``/``, else a file.

    Both sinks take ``write(image, name)``; a folder sink writes ``<name>.png``.

    Raises:
        InputError: a batch ``out`` that is a file or named like an image or video file, or an
            unusable path (see the sinks).
    """
    path = Path(out)
    if batch or path.is_dir() or names_folder(out):
        if path.is_file():
            raise InputError(f"cannot write a batch to '{path}': it is a file; "
                             "give a folder for --out")
        # A name typed with '/' is a folder whatever it looks like; else a new one named like a
        # file was likely meant as one.
        new_file_name = batch and not path.is_dir() and not names_folder(out)
        if new_file_name and path.suffix.lower() in IMAGE_WRITE_EXTENSIONS:
            raise InputError(f"cannot write a folder of images to '{path}': it is named like an "
                             "image file; give a folder for --out (e.g. cutouts/)")
        if new_file_name and path.suffix.lower() in VIDEO_EXTENSIONS:
            # A folder of cut-outs named talk.mp4 was made where a video was meant.
            raise InputError(f"cannot write a folder of images to '{path}': it is named like a "
                             "video file, and --image writes an image per photo; give a folder "
                             "for --out (e.g. cutouts/), or a video to --source")
        return ImageFolderSink(path, protected=protected)
    return ImageFileSink(path, protected=protected)

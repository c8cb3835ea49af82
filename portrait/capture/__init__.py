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

Layout: ``base`` (Frame, Source, pixel conversion, quiet_opencv), ``camera``, ``video``,
``images``; this module re-exports their public names and holds the :func:`open_source`
factory.

User-caused failures raise :class:`~portrait.errors.InputError` (files) or
:class:`~portrait.errors.DeviceError` (cameras) with a one-line message.
"""

from __future__ import annotations

import os

from portrait.capture.base import Frame, Source, quiet_opencv, to_bgr_uint8
from portrait.capture.camera import Capture, CameraSource, camera_index, is_camera_index
from portrait.capture.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    IMAGE_EXTENSIONS,
    ImageItem,
    ImageSource,
    list_images,
    read_image,
    read_photo,
)
from portrait.capture.looping import LoopedSource
from portrait.capture.video import VideoFileSource
from portrait.errors import InputError
from portrait.options import CaptureOptions

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "IMAGE_EXTENSIONS",
    "CameraSource",
    "Capture",
    "Frame",
    "ImageItem",
    "ImageSource",
    "LoopedSource",
    "Source",
    "VideoFileSource",
    "camera_index",
    "is_camera_index",
    "list_images",
    "open_source",
    "quiet_opencv",
    "read_image",
    "read_photo",
    "to_bgr_uint8",
]


def open_source(options: CaptureOptions) -> Source:
    """Open the camera or video file that ``options.source`` names.

    Args:
        options: a camera index such as ``"0"`` (or ``/dev/video0``) opens a
            :class:`CameraSource` with the requested size and rate; anything else a
            :class:`VideoFileSource` (``realtime`` applies), a :class:`LoopedSource` with
            ``loop`` True (``None`` is once: the caller decides it).

    Raises:
        DeviceError: the camera can't be opened.
        InputError: the video file is missing or unreadable, or a folder.
    """
    index = camera_index(options.source)
    if index is not None:
        return CameraSource(index, options.width, options.height, options.fps)
    if os.path.isdir(options.source):  # a folder of photos was meant for --image
        raise InputError(f"--source '{options.source}' is a folder; give a video file or a "
                         "camera index (a folder of photos goes to --image)")
    if options.loop:
        return LoopedSource(options.source, realtime=bool(options.realtime))
    return VideoFileSource(options.source, realtime=options.realtime)

"""What every frame source shares: the :class:`Frame` record, the :class:`Source` base, pixel
conversion to BGR uint8, and silencing OpenCV's console log."""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

from portrait.photo_metadata import NO_METADATA, PhotoMetadata


class Clock:
    """The clock a source times and paces its frames by: :meth:`now` is
    ``time.perf_counter()``, :meth:`wait` an event's own wait. Tests give a source one whose
    time moves only when it is waited on, so that a pace or a back-off is checked exactly,
    not against a loaded machine's timing."""

    @staticmethod
    def now() -> float:
        """Seconds, on a clock that only goes forward."""
        return time.perf_counter()

    @staticmethod
    def wait(event: threading.Event, seconds: float) -> bool:
        """Wait ``seconds`` or until ``event`` is set (a ``close()`` from another thread);
        True where it was set."""
        return event.wait(seconds)


#: The wall's clock: what a source times and paces by unless given another.
WALL_CLOCK = Clock()


@dataclass(frozen=True, eq=False)
class Frame:
    """One captured frame.

    Attributes:
        image: BGR uint8 ``(H, W, 3)``.
        index: position in the source (for a folder, the file's position in the sorted list).
        time_s: ``time.perf_counter()`` when the frame was read (the source's
            :class:`Clock`).
        name: file stem for images, else ``None``.
        path: the image file, else ``None``.
        lost: a marker, not a captured frame: the camera is lost and ``image`` is the last good
            frame (see :meth:`CameraSource.frames`); ``index`` is then -1.
        decode_ms: time spent reading and decoding this frame, where the source can tell it
            from waiting for the frame (a camera, a paced video file); ``None`` otherwise.
        wait_ms: time spent waiting for this frame before it was read: for a camera's sensor
            to deliver it, for a paced video file's frame to be due; ``None`` where the source
            does not wait (a video file read as fast as possible, photos) or can't tell (the
            frame a camera gave as it opened, which waited for the camera to start).
        pts_s: when the frame is shown, in seconds: in a video file its presentation time
            (from the start of the file's video), from a camera the time since its first frame;
            ``None`` where time does not apply (photos). A video file sink keeps these times,
            so a variable frame rate, frames a live run dropped and a camera's stalls keep
            their place against the sound and the clock.
        metadata: for a photo, what its output keeps of the file's metadata (colour profile,
            capture date, camera); empty for other frames.
        duration_s: how long the frame is shown, in seconds, where the file says so frame by
            frame (a GIF's delays); ``None`` otherwise: until the next frame's ``pts_s``, the
            last for one frame at the source's rate.
        cut: the first frame of another shot, not the one before's next moment (a looped
            video starting again): what carries from frame to frame (smoothing, framing)
            starts afresh here.
        alpha: for a photo with transparency (a PNG, WebP or TIFF with an alpha channel under
            255 somewhere, or a transparent palette colour), its own alpha, uint8 ``(H, W)``,
            255 = opaque, oriented as ``image``; ``None`` for an opaque photo and other frames.
    """

    image: np.ndarray
    index: int
    time_s: float
    name: Optional[str] = None
    path: Optional[Path] = None
    lost: bool = False
    decode_ms: Optional[float] = None
    pts_s: Optional[float] = None
    wait_ms: Optional[float] = None
    metadata: PhotoMetadata = NO_METADATA
    duration_s: Optional[float] = None
    cut: bool = False
    alpha: Optional[np.ndarray] = None



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


def opencv_can_open(path) -> bool:
    """Whether OpenCV's own file functions may be given ``path``: they take it as UTF-8 text,
    and a name that is not UTF-8 (a Latin-1 name on Linux, which Python holds with surrogates)
    crashes the process (a segmentation fault) instead of failing."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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

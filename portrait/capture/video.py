"""Every frame of a video file, in order, optionally paced to its frame rate
(:class:`VideoFileSource`)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Iterator, Optional, Union

import cv2
import numpy as np

from portrait.capture.base import Frame, Source, quiet_opencv, to_bgr_uint8
from portrait.capture.images import IMAGE_EXTENSIONS
from portrait.errors import InputError

log = logging.getLogger(__name__)

# Containers estimate their frame count (Matroska from the duration): a frame or two short is
# normal, more than this is reported as truncation.
_FRAME_COUNT_SLACK = 2


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
        if self.path.suffix.lower() in IMAGE_EXTENSIONS and self.path.suffix.lower() != ".gif":
            log.warning("'%s' is a photo: as --source it is a video of one frame; --image cuts "
                        "out photos", self.path)
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
            last_ms = capture.get(cv2.CAP_PROP_POS_MSEC)  # the frame just delivered
            started = time.perf_counter()
            with quiet_opencv():
                ok, image = capture.read()
            decode_ms = (time.perf_counter() - started) * 1000
            if not ok or image is None:
                self._warn_if_short(index, last_ms)
                break
        self.close()

    def _warn_if_short(self, frames_read: int, last_ms: float) -> None:
        """Say why fewer frames came than the container claims: a file cut short, or (when
        the frames reached the claimed length in time) a frame rate that varies."""
        if self._frame_count is None or frames_read >= self._frame_count - _FRAME_COUNT_SLACK:
            return
        length_s = self._frame_count / self._fps
        reached_s = last_ms / 1000 + 1 / self._fps
        if reached_s >= 0.95 * length_s:
            log.warning(
                "video '%s' has a variable frame rate: %d frames over %.1f s; the output holds "
                "them at %g fps (%.1f s), so its timing differs from the source's (and any sound "
                "kept drifts from the picture)",
                self.path, frames_read, reached_s, self._fps, frames_read / self._fps,
            )
        else:
            log.warning(
                "video '%s' ended after %d of the %d frames it claims (%.1f of %.1f s): the file "
                "may be truncated", self.path, frames_read, self._frame_count, reached_s, length_s,
            )

    def close(self) -> None:
        """Stop iteration and release the file; safe twice."""
        self._closed.set()
        if self._capture is not None:
            self._capture.release()
            self._capture = None

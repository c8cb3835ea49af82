"""The video file sink: ``.mp4`` (mp4v) or ``.avi`` (MJPG) through ``cv2.VideoWriter``."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Iterable, Optional

import cv2
import numpy as np

from portrait.capture import quiet_opencv
from portrait.errors import InputError
from portrait.sink.base import Sink, _check_image, to_bgr
from portrait.sink.paths import PathLike, _file_ids, _prepare_folder, _refuse_input

log = logging.getLogger(__name__)

VIDEO_CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


class VideoFileSink(Sink):
    """A video file: ``.mp4`` (mp4v) or ``.avi`` (MJPG), written with ``cv2.VideoWriter``.

    The writer opens on the first frame, at ``size`` or else the first frame's size; later
    frames of another size are resized to it (a writer silently drops mismatched frames).

    The frames go to a hidden file beside ``path`` (``.<name>.<token>.partial<ext>``).
    ``close()`` releases the writer, so the file is finalised and playable, reads it back, and
    only then moves it over ``path``: an earlier file of that name stays whole until the new one
    is, and a file that a full disk cut short is reported, never passed off as the output.

    Args:
        path: the output file; its folder is created.
        fps: frame rate stored in the file.
        size: (width, height), or ``None`` to take the first frame's.
        protected: input files that must never be overwritten (the source video).

    Raises:
        InputError: another extension, an unwritable folder, the path is an input, or OpenCV
            can't open a writer; from ``close()``, a file that does not read back whole.
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
        # An --out that is a link is finished where it points, as the writer used to write.
        self._final = Path(os.path.realpath(self.path))
        self._partial = self._final.with_name(
            f".{self._final.name}.{secrets.token_hex(4)}.partial{ext}")
        self._writer: Optional[cv2.VideoWriter] = None
        self._buffer: Optional[np.ndarray] = None
        self._closed = False
        self.frames_written = 0

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        with quiet_opencv():
            writer = cv2.VideoWriter(str(self._partial), cv2.VideoWriter_fourcc(*self._codec),
                                     self.fps, size, True)
        if not writer.isOpened():
            self._partial.unlink(missing_ok=True)
            raise InputError(f"cannot write video '{self.path}': OpenCV could not open a "
                             f"{self._codec} writer (is the disk full?); try .avi or another "
                             "--out")
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
        with quiet_opencv():  # a failed write (a full disk) is reported once, by close()
            self._writer.write(np.ascontiguousarray(frame))
        self.frames_written += 1

    def close(self) -> None:
        """Finalise the file, check it reads back whole, and move it to ``path``; safe twice.

        Raises:
            InputError: the file does not read back whole (a full disk); it is left as the
                partial file where some of it reads (else removed), and an earlier file at
                ``path`` is kept.
        """
        self._closed = True
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        whole, width, height = self._read_back()
        if not whole:
            if width and height:  # some frames may be salvaged from it
                kept = f"the partial file is '{self._partial}'"
            else:  # nothing can be: it would only keep the disk full
                self._partial.unlink(missing_ok=True)
                kept = "nothing of it could be read, so it was removed"
            raise InputError(f"cannot finish video '{self.path}': it does not read back whole "
                             f"({self.frames_written} frames written; is the disk full?); "
                             f"{kept}; free space or choose another --out")
        try:
            os.replace(self._partial, self._final)
        except OSError as error:
            raise InputError(f"cannot finish video '{self.path}': {error.strerror or error}; the "
                             f"whole file is '{self._partial}'") from None
        if (width, height) != tuple(self.size):
            log.warning("video '%s': %dx%d frames were stored as %dx%d (%s keeps even sizes); "
                        "write PNG frames (--out DIR/) to keep every pixel", self.path,
                        *self.size, width, height, self._codec)
        log.info("wrote %d frames to '%s'", self.frames_written, self.path)

    def _read_back(self) -> tuple[bool, int, int]:
        """Whether the finished partial file holds every frame written, its last one readable
        (a writer cut short by a full disk may still record the full count in its header), and
        the frame size it stores."""
        with quiet_opencv():
            capture = cv2.VideoCapture(str(self._partial))
            try:
                opened = capture.isOpened()
                frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if opened else 0
                size = ((int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                         int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) if opened else (0, 0))
                whole = (frames == self.frames_written
                         and capture.set(cv2.CAP_PROP_POS_FRAMES, frames - 1)
                         and capture.read()[0])
            finally:
                capture.release()
        return bool(whole), *size

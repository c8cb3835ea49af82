"""A GIF with transparency, frame by frame with its alpha (:class:`TransparentGif`): OpenCV's
video reader gives a GIF's transparent pixels a colour, so such a GIF is read with Pillow."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Iterator, Optional, Union

import cv2
import numpy as np

from portrait.capture.base import Frame
from portrait.capture.video import FileSource
from portrait.errors import InputError

log = logging.getLogger(__name__)

# As FFmpeg and browsers play a GIF: a delay under 20 ms (often 0: "as fast as you can") is
# taken as 100 ms.
_MIN_DELAY_MS, _DEFAULT_DELAY_MS = 20, 100


def frame_delay_s(delay_ms: Optional[float]) -> float:
    """How long a GIF frame with a delay of ``delay_ms`` (Pillow's ``duration``) is shown."""
    if not delay_ms or delay_ms < _MIN_DELAY_MS:
        return _DEFAULT_DELAY_MS / 1000
    return delay_ms / 1000


def is_transparent_gif(path: Union[str, Path]) -> bool:
    """Whether ``path`` is a GIF whose first frame has a transparent pixel; False for any other
    file, or one Pillow cannot read (the video reader then says why)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the video reader's limits
            with Image.open(path) as image:
                if image.format != "GIF" or "transparency" not in image.info:
                    return False
                return bool(np.asarray(image.convert("RGBA"))[:, :, 3].min() < 255)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        return False


class TransparentGif(FileSource):
    """The frames of a GIF, BGRA uint8 (straight alpha) as Pillow composes them (each frame
    drawn over what the one before left, by the GIF's disposal), each at its time from the
    frame delays and with its own delay as its ``duration_s`` (the last's too): what
    :class:`portrait.capture.looping.LoopingVideo` takes of a
    :class:`portrait.capture.video.VideoFileSource`.

    Args:
        path: the GIF.
        quiet: no info line on opening (a file read again).
        rewindable: kept open at its end, for :meth:`rewind`.

    Raises:
        InputError: a missing file, or one Pillow cannot read as a GIF.
    """

    def __init__(self, path: Union[str, Path], *, quiet: bool = False,
                 rewindable: bool = False) -> None:
        from PIL import Image

        super().__init__(path, rewindable=rewindable)
        try:
            self._image = Image.open(self.path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise InputError(f"cannot read video '{self.path}': not a GIF Pillow can read "
                             f"({error}); check the file or re-encode it") from None
        try:
            first = self._image.convert("RGBA")  # decodes the first frame: a bad file fails here
        except (OSError, ValueError, SyntaxError, EOFError) as error:
            self._image.close()
            raise InputError(f"cannot read video '{self.path}': its first frame cannot be "
                             f"decoded ({error}); check the file or re-encode it") from None
        self._first: Optional[np.ndarray] = cv2.cvtColor(np.asarray(first), cv2.COLOR_RGBA2BGRA)
        self._fps = 1 / frame_delay_s(self._image.info.get("duration"))
        log.log(logging.DEBUG if quiet else logging.INFO, "GIF '%s': %dx%d with transparency",
                self.path, *self._image.size)

    @property
    def fps(self) -> float:
        """The rate of the first frame's delay."""
        return self._fps

    def __iter__(self) -> Iterator[Frame]:
        if self._first is None or self._closed.is_set():
            raise ValueError("a TransparentGif can be iterated once (again after rewind()), "
                             "before close()")
        image, self._first = self._first, None
        index, pts_s = 0, 0.0
        while True:
            delay_s = frame_delay_s(self._image.info.get("duration"))  # this frame's own
            yield Frame(image=image, index=index, time_s=time.perf_counter(), pts_s=pts_s,
                        duration_s=delay_s)
            if self._closed.is_set():
                return
            pts_s += delay_s
            try:
                self._image.seek(index + 1)
                image = cv2.cvtColor(np.asarray(self._image.convert("RGBA")),
                                     cv2.COLOR_RGBA2BGRA)
            except EOFError:  # the last frame
                break
            index += 1
        if not self.rewindable:
            self.close()

    def rewind(self) -> bool:
        """Make the next iteration start again at the first frame; False (closed) where the
        file changed on disk or its first frame cannot be read again."""
        if self._closed.is_set() or not self.rewindable or not self.unchanged():
            self.close()
            return False
        try:
            self._image.seek(0)
            first = self._image.convert("RGBA")
        except (OSError, ValueError, EOFError):
            self.close()
            return False
        self._first = cv2.cvtColor(np.asarray(first), cv2.COLOR_RGBA2BGRA)
        return True

    def close(self) -> None:
        """Release the file; safe twice."""
        self._closed.set()
        self._image.close()

"""Segmenters that wrap others: running at the frame's aspect ratio, and mirror averaging."""

from __future__ import annotations

from typing import Callable, Optional

import cv2
import numpy as np

from portrait.segment.base import Segmenter


def size_for_frame(frame_size: tuple[int, int], short_px: int, multiple: int = 32,
                   max_aspect: float = 3.0) -> tuple[int, int]:
    """Model input (w, h) with the frame's aspect ratio and a short side of ``short_px``.

    Both sides are multiples of ``multiple`` (the model's stride), so a 1280x720 frame at 192
    gives 352x192 and a 600x800 portrait gives 192x256.
    """
    width, height = frame_size
    aspect = min(max(width / max(height, 1), 1 / max_aspect), max_aspect)
    if aspect >= 1:
        return max(multiple, round(short_px * aspect / multiple) * multiple), short_px
    return short_px, max(multiple, round(short_px / aspect / multiple) * multiple)


class AspectSegmenter(Segmenter):
    """A fully convolutional model run at the frame's own aspect ratio (no stretching).

    One TFLite conversion per input size, made on first use (and cached on disk like any
    conversion); a frame size change picks or builds the matching one.
    """

    def __init__(self, make: Callable[[tuple[int, int]], Segmenter], short_px: int,
                 first_frame_size: Optional[tuple[int, int]] = None):
        self._make = make
        self.short_px = short_px
        self._by_size: dict[tuple[int, int], Segmenter] = {}
        self._frame_size: Optional[tuple[int, int]] = None
        self._current = self._segmenter_for(first_frame_size or (1280, 720))  # a 720p webcam
        self.letterbox = False
        self.runtime = self._current.runtime
        self.output_kind = self._current.output_kind
        self.input_norm = getattr(self._current, "input_norm", None)
        self._closed = False

    @property
    def input_size(self) -> tuple[int, int]:
        return self._current.input_size

    def _segmenter_for(self, frame_size: tuple[int, int]) -> Segmenter:
        size = size_for_frame(frame_size, self.short_px)
        if size not in self._by_size:
            self._by_size[size] = self._make(size)
        return self._by_size[size]

    def segment(self, frame_bgr: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        self._check_open()
        frame_size = (frame_bgr.shape[1], frame_bgr.shape[0])
        if frame_size != self._frame_size:
            self._current = self._segmenter_for(frame_size)
            self._frame_size = frame_size
        return self._current.segment(frame_bgr, out)

    def close(self) -> None:
        for segmenter in self._by_size.values():
            segmenter.close()
        self._by_size.clear()
        self._closed = True


class MirrorAverage(Segmenter):
    """Test-time augmentation: the mean of a model's probability on a frame and on its mirror.

    Twice the model time, for fewer one-sided mistakes; a model that is not left-right
    symmetric errs differently on the two views. What it runs at and how (input size, runtime,
    letterbox, output kind, input scaling) is the wrapped segmenter's.

    Args:
        inner: the segmenter that runs the model.
    """

    def __init__(self, inner: Segmenter):
        self.inner = inner
        self.description = f"{inner.description}, averaged with its mirror image (--tta)"
        self._closed = False

    input_size = property(lambda self: self.inner.input_size)
    runtime = property(lambda self: self.inner.runtime)
    letterbox = property(lambda self: self.inner.letterbox)
    output_kind = property(lambda self: self.inner.output_kind)
    input_norm = property(lambda self: self.inner.input_norm)

    def segment(self, frame_bgr: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        self._check_open()
        # Every segmenter returns ``out`` or a new array the caller owns (OutputReader), and
        # refuses an ``out`` of the wrong shape: the first view can be accumulated in place.
        result = self.inner.segment(frame_bgr, out)
        result += self.inner.segment(cv2.flip(frame_bgr, 1))[:, ::-1]
        result *= 0.5
        return result

    def close(self) -> None:
        self.inner.close()
        self._closed = True

"""Temporal smoothing of the low-resolution person probability.

An exponential moving average whose weight on the new frame rises with the per-pixel change:
``w = min_weight`` where nothing changed, rising linearly to 1 at ``change >= change_full``
(divided by ``span`` where one mask is given for several frames).
Model noise on a still person is small, so it is averaged away (no flicker); a moving arm
changes the probability a lot, so those pixels take the new value at once (no ghost).
The caller owns the state, as in RobustVideoMatting: ``prob, state = smooth_probability(prob,
state, options)``. It works at the model's resolution, so it costs microseconds.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from portrait.options import SmoothOptions

log = logging.getLogger(__name__)


def check_probability(prob: np.ndarray) -> None:
    """Raise ValueError (actual vs expected) unless ``prob`` is a float32 (h, w) array."""
    if not isinstance(prob, np.ndarray) or prob.dtype != np.float32 or prob.ndim != 2:
        actual = f"{prob.dtype} {prob.shape}" if isinstance(prob, np.ndarray) else type(prob).__name__
        raise ValueError(f"unexpected prob: {actual} != float32 (h, w)")


def smooth_probability(prob: np.ndarray, state: Optional[np.ndarray], options: SmoothOptions,
                       span: int = 1) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Blend a new probability into the running average; never modifies its inputs.

    Args:
        prob: float32 (h, w) person probability in [0, 1] from the segmenter.
        state: the state returned by the previous call, or ``None`` to start fresh. A state of
            another shape (the model or frame size changed) is dropped and smoothing restarts.
        options: ``min_weight`` (weight of the new frame where still), ``change_full``
            (change at which the new frame gets full weight), ``enabled``.
        span: how many frames in a row the segmenter gives this probability for (a mask
            reused on a still scene): each call takes ``w / span``. A mask made after reused
            frames has caught up with all their motion at once, which crosses the motion test
            (``w`` 1 at the edge) where frame-by-frame changes would not; with ``span`` its
            step is shared out over the frames it is shown for instead of landing on the first.

    Returns:
        ``(smoothed, state)``: float32 (h, w) smoothed probability, and the state to pass next
        time (a separate array; ``None`` when smoothing is disabled).

    Raises:
        ValueError: ``prob`` is not a 2-D float32 array, or ``span`` is below 1.
    """
    check_probability(prob)
    if span < 1:
        raise ValueError(f"span must be at least 1 frame, got {span}")
    if not options.enabled:
        return prob, None
    if state is not None and state.shape != prob.shape:
        log.debug("probability shape changed %s -> %s: smoothing restarts", state.shape, prob.shape)
        state = None
    if state is None:
        return prob.copy(), prob.copy()
    min_weight = np.float32(options.min_weight)  # SmoothOptions: 0..1, change_full above 0
    slope = np.float32((1.0 - min_weight) / options.change_full)
    delta = prob - state
    weight = np.abs(delta)
    weight *= slope
    weight += min_weight
    np.minimum(weight, np.float32(1.0), out=weight)
    if span > 1:
        weight *= np.float32(1.0 / span)
    delta *= weight
    delta += state  # state + w * (prob - state)
    return delta, delta.copy()


class TemporalSmoother:
    """Holds the smoothing state between frames; ``reset()`` on a scene or source change."""

    def __init__(self, options: SmoothOptions):
        self.options = options
        self._state: Optional[np.ndarray] = None

    def __call__(self, prob: np.ndarray, span: int = 1) -> np.ndarray:
        """The smoothed float32 (h, w) probability for this frame (a new array); ``span``: see
        :func:`smooth_probability`."""
        smoothed, self._state = smooth_probability(prob, self._state, self.options, span)
        return smoothed

    def reset(self) -> None:
        """Forget the history: the next frame is taken as it is."""
        self._state = None

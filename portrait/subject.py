"""Subject selection: keep the people in front of the camera, drop small regions apart from them.

A call has a subject: the person, or the people, in front of the camera. A segmenter also marks
small regions apart from them: the back of a bystander's head cut by the frame's edge (a real
person, but not in the call), and, when it errs, a chair back or a coat on a door. Over a new
background each floats as a cut-out patch for as long as it stays in view. This stage keeps

* every region at least ``min_ratio`` times the largest one's area (the subject, and a second
  person about their size sitting beside them), and
* every region within ``margin`` of those (a hand the model split from its arm),

and zeroes the rest. A region is a connected part of ``prob > low``; its area counts its pixels
above 0.5, so a region's soft fringe goes with it. A region that overlaps what was kept in the
previous frame needs only ``HYSTERESIS`` times the ratio, so one near the bar does not blink.

It works on the model-resolution probability after temporal smoothing (288×160 for a 16:9 frame
with the camera default), so it costs about a tenth of a millisecond. The caller owns the
state (the last kept mask), as in :mod:`portrait.smooth`.
"""

from __future__ import annotations

import logging
from typing import Optional

import cv2
import numpy as np

from portrait.options import SUBJECT_CORE as CORE  # a region's area counts its pixels above this
from portrait.options import SubjectOptions
from portrait.smooth import check_probability

log = logging.getLogger(__name__)

HYSTERESIS = 0.5  # a region kept in the last frame stays while above this share of the bar


def select_subject(prob: np.ndarray, kept_before: Optional[np.ndarray], options: SubjectOptions
                   ) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Zero the regions of ``prob`` that are small and apart from the subject.

    Args:
        prob: float32 (h, w) person probability in [0, 1].
        kept_before: the mask returned for the previous frame, or None (start, or a new scene);
            one of another shape is ignored.
        options: ``enabled``, ``min_ratio``, ``margin`` (a fraction of the long side), ``low``.

    Returns:
        ``(prob, kept)``: the probability with dropped regions set to 0 (``prob`` itself when
        nothing is dropped; never modified in place), and the bool (h, w) mask of the kept
        regions to pass next time (None when disabled).

    Raises:
        ValueError: ``prob`` is not a 2-D float32 array.
    """
    check_probability(prob)
    if not options.enabled:
        return prob, None
    support = (prob > options.low).view(np.uint8)
    count, labels = cv2.connectedComponents(support, connectivity=8)
    if count <= 2:  # background and at most one region: nothing to choose between
        return prob, support.view(bool)
    areas = np.bincount(labels[prob > CORE], minlength=count)
    areas[0] = 0
    largest = areas.max()
    if largest == 0:  # only faint regions: nobody to anchor on, leave it to the threshold
        return prob, support.view(bool)
    bar = np.full(count, options.min_ratio * largest, dtype=np.float64)
    if kept_before is not None and kept_before.shape == prob.shape:
        was_kept = np.bincount(labels[kept_before], minlength=count) > 0
        bar[was_kept] *= HYSTERESIS
    keep = areas >= bar
    keep[0] = False
    margin_px = int(round(options.margin * max(prob.shape)))
    if margin_px > 0:
        size = 2 * margin_px + 1
        near = cv2.dilate(keep[labels].view(np.uint8),
                          cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
        keep |= np.bincount(labels[near.view(bool)], minlength=count) > 0
    keep[0] = True  # the background stays as it is
    kept = keep[labels]
    if kept.all():
        return prob, kept & support.view(bool)
    out = prob.copy()
    out[~kept] = 0.0
    return out, kept & support.view(bool)


class SubjectSelector:
    """Holds the last kept mask between frames; ``reset()`` on a scene or source change."""

    def __init__(self, options: SubjectOptions):
        self.options = options
        self._kept: Optional[np.ndarray] = None

    def __call__(self, prob: np.ndarray) -> np.ndarray:
        """This frame's probability with small regions apart from the subject zeroed."""
        out, self._kept = select_subject(prob, self._kept, self.options)
        return out

    def reset(self) -> None:
        """Forget the last frame's choice."""
        self._kept = None

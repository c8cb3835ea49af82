"""What a person in a call sees go wrong in a matte sequence, measured without labels.

* Stray area: matte outside the largest connected region of the frame. A webcam shows one person,
  so a second region is a chair, a patch of wall or floor taken for the person, floating over the
  new background. (A second real person also counts; the suite's clips show one.)
* Flicker: how much the matte changes between consecutive frames while the picture itself barely
  changes. A still scene should give a still matte; any change there is noise the viewer sees.
* Motion lag: where the picture moved, how much of the frame the app's matte and the same
  frame's own matte (the model on that frame alone: no smoothing, no mask reused) disagree on.
  Smoothing and reuse borrow from earlier frames; on a waving hand or a turning head that shows
  as a trail behind it (ghost) or a matte that arrives late.
* Bottom-edge gap: where the frame's bottom edge cuts the person (legs, waist, a chest at a
  webcam), the matte must reach the edge. In the bottom sixteenth of the frame, the pixels that
  are not person under a column that is person on the row just above it: the person made
  transparent at the bottom of the picture, a see-through cut a viewer notices.

Pure functions on uint8 arrays (alpha 0..255, 255 = person) and a small accumulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

ALPHA_THRESHOLD = 127  # alpha > 127 is person, as when a user thresholds the app's --matte
STRAY_FRAME_THRESHOLD = 0.002  # a frame "has stray" above 0.2 % of its area (issue 19's measure)
EDGE_GAP_FRAME_THRESHOLD = 0.001  # a frame "drops the edge" above 0.1 % of its area
STILL_THRESHOLD = 1.5  # mean absolute grey change (0..255) below which two frames show a still scene


def _check_alpha(alpha: np.ndarray, name: str = "alpha") -> None:
    if alpha.dtype != np.uint8 or alpha.ndim != 2:
        raise ValueError(f"unexpected {name}: {alpha.dtype} {alpha.shape} != uint8 (H, W)")


def stray_fraction(alpha: np.ndarray, threshold: int = ALPHA_THRESHOLD) -> float:
    """The share of the frame that is matte (alpha > ``threshold``) outside its largest region.

    Regions are 8-connected. An empty matte, or one single region, gives 0.

    Args:
        alpha: uint8 (H, W) matte, 255 = person.
        threshold: alpha above this is person.

    Returns:
        The stray pixels divided by the frame's pixels, in [0, 1).

    Raises:
        ValueError: ``alpha`` is not uint8 (H, W).
    """
    _check_alpha(alpha)
    person = (alpha > threshold).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(person, connectivity=8)
    if count <= 2:  # background plus at most one region
        return 0.0
    areas = stats[1:, cv2.CC_STAT_AREA]
    return float(areas.sum() - areas.max()) / alpha.size


def bottom_edge_gap(alpha: np.ndarray) -> int:
    """The person pixels the matte drops where the frame's bottom edge cuts the person.

    The band is the bottom ``H // 16`` rows. A column that is person (alpha >= 128, as
    alpha > ``ALPHA_THRESHOLD``) on the row just above the band should stay person down to the
    edge; the pixels of the band under such columns that are not person are the gap. Columns
    that are not person above the band (a person ending higher, a hand reaching into the band)
    add nothing. A matte under 16 rows has no band and gives 0.

    Args:
        alpha: uint8 (H, W) matte, 255 = person.

    Returns:
        The gap in pixels (divide by ``H * W`` for the share of the frame).

    Raises:
        ValueError: ``alpha`` is not uint8 (H, W).
    """
    _check_alpha(alpha)
    # Kept exactly as the decision script that measured rule E wrote it, so the numbers agree.
    h, w = alpha.shape
    band = h // 16
    above = alpha[h - band - 1] >= 128  # columns that are person on the row just above the band
    # the pixels in the band under them that are not person
    return int(((alpha[h - band:, :] < 128) & above[None, :]).sum())


def still_change(previous_bgr: np.ndarray, image_bgr: np.ndarray) -> float:
    """Mean absolute grey-level change (0..255) between two frames of the same size."""
    if previous_bgr.shape != image_bgr.shape:
        raise ValueError(f"frames differ in size: {previous_bgr.shape} != {image_bgr.shape}")
    previous = cv2.cvtColor(previous_bgr, cv2.COLOR_BGR2GRAY)
    current = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    return float(cv2.absdiff(previous, current).mean())


def alpha_change(previous_alpha: np.ndarray, alpha: np.ndarray) -> float:
    """Mean absolute alpha change between two mattes, as a share of full scale (0..1)."""
    _check_alpha(previous_alpha, "previous alpha")
    _check_alpha(alpha)
    if previous_alpha.shape != alpha.shape:
        raise ValueError(f"mattes differ in size: {previous_alpha.shape} != {alpha.shape}")
    return float(cv2.absdiff(previous_alpha, alpha).mean()) / 255.0


def motion_lag(alpha: np.ndarray, own_alpha: np.ndarray, threshold: int = ALPHA_THRESHOLD) -> float:
    """The share of the frame where two mattes of one frame disagree across ``threshold``.

    Args:
        alpha: uint8 (H, W) matte the app showed (smoothed, perhaps a reused mask).
        own_alpha: uint8 (H, W) matte made of the same frame alone.
        threshold: alpha above this is person.

    Returns:
        The pixels that are person in one matte and not in the other (a trail behind a moving
        hand, or the hand the matte has not reached yet) divided by the frame's pixels, in [0, 1].

    Raises:
        ValueError: either is not uint8 (H, W), or their sizes differ.
    """
    _check_alpha(alpha)
    _check_alpha(own_alpha, "own alpha")
    if alpha.shape != own_alpha.shape:
        raise ValueError(f"mattes differ in size: {alpha.shape} != {own_alpha.shape}")
    return float(np.count_nonzero((alpha > threshold) != (own_alpha > threshold))) / alpha.size


@dataclass
class SequenceScore:
    """Accumulates a clip's mattes frame by frame; read the results from the properties.

    Args:
        still_threshold: frames whose picture changed less than this (mean grey 0..255) count as
            a still pair for flicker; the others as a moving pair for motion lag.
        stray_frame_threshold: a frame with more stray area than this share counts as a stray frame.
        edge_gap_frame_threshold: a frame with a bottom-edge gap (:func:`bottom_edge_gap`) of
            more than this share of its pixels counts as a frame that drops the edge.
    """

    still_threshold: float = STILL_THRESHOLD
    stray_frame_threshold: float = STRAY_FRAME_THRESHOLD
    edge_gap_frame_threshold: float = EDGE_GAP_FRAME_THRESHOLD
    strays: list[float] = field(default_factory=list)
    edge_gaps: list[float] = field(default_factory=list)  # each frame's gap, share of the frame
    flickers: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    _previous: Optional[tuple[np.ndarray, np.ndarray]] = None

    def add(self, image_bgr: np.ndarray, alpha: np.ndarray,
            own_alpha: Optional[np.ndarray] = None) -> None:
        """Score one frame (BGR uint8) and its matte (uint8, same height and width).

        ``own_alpha``: the matte made of this frame alone (:func:`motion_lag`); without it the
        frame gives no motion lag.
        """
        if alpha.shape != image_bgr.shape[:2]:
            raise ValueError(f"matte {alpha.shape} does not match the frame {image_bgr.shape[:2]}")
        self.strays.append(stray_fraction(alpha))
        self.edge_gaps.append(bottom_edge_gap(alpha) / alpha.size)
        if self._previous is not None:
            previous_image, previous_alpha = self._previous
            if still_change(previous_image, image_bgr) < self.still_threshold:
                self.flickers.append(alpha_change(previous_alpha, alpha))
            elif own_alpha is not None:
                self.lags.append(motion_lag(alpha, own_alpha))
        self._previous = (image_bgr.copy(), alpha.copy())

    @property
    def frames(self) -> int:
        return len(self.strays)

    @property
    def stray_mean(self) -> float:
        """Mean stray share of the frame over all frames (0 with no frames)."""
        return float(np.mean(self.strays)) if self.strays else 0.0

    @property
    def stray_frames(self) -> int:
        """How many frames have more stray area than ``stray_frame_threshold``."""
        return int(sum(s > self.stray_frame_threshold for s in self.strays))

    @property
    def edge_gap_mean(self) -> float:
        """Mean bottom-edge gap, share of the frame, over all frames (0 with no frames)."""
        return float(np.mean(self.edge_gaps)) if self.edge_gaps else 0.0

    @property
    def edge_gap_frames(self) -> int:
        """How many frames drop the edge: a gap of more than ``edge_gap_frame_threshold``."""
        return int(sum(g > self.edge_gap_frame_threshold for g in self.edge_gaps))

    @property
    def flicker(self) -> Optional[float]:
        """Mean alpha change over still pairs (share of full scale); None without a still pair."""
        return float(np.mean(self.flickers)) if self.flickers else None

    @property
    def motion_lag(self) -> Optional[float]:
        """Mean :func:`motion_lag` over moving pairs; None without a moving pair given its own
        matte."""
        return float(np.mean(self.lags)) if self.lags else None

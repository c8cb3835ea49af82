"""Segmentation metrics, as NumPy functions (evaluation) and Keras metrics (training).

Conventions: a prediction is a person probability or a bool mask; ``threshold`` turns
probabilities into masks. Per-image scores are averaged over images ("mIoU" = mean person IoU).
An image where both truth and prediction are empty scores 1 (nothing to find, nothing found).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import keras
from keras import ops

import cv2


# Speckle (:func:`speckle_fraction`): alpha above a tenth (seen in a cut-out), in islands under
# 0.5 % of the image, farther than 1 % of its long side from every labelled person.
SPECKLE_LEVEL = 25
SPECKLE_ISLAND_SHARE = 0.005
SPECKLE_MARGIN_SHARE = 0.01


def _as_bool(mask: np.ndarray, threshold: float) -> np.ndarray:
    return mask if mask.dtype == bool else mask > threshold


def iou(truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> float:
    """Person intersection over union of one image: |T ∩ P| / |T ∪ P|."""
    t, p = _as_bool(truth, threshold), _as_bool(pred, threshold)
    union = np.count_nonzero(t | p)
    return 1.0 if union == 0 else np.count_nonzero(t & p) / union


def dice(truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> float:
    """Dice / F1 score of one image: 2|T ∩ P| / (|T| + |P|)."""
    t, p = _as_bool(truth, threshold), _as_bool(pred, threshold)
    total = np.count_nonzero(t) + np.count_nonzero(p)
    return 1.0 if total == 0 else 2.0 * np.count_nonzero(t & p) / total


def pixel_accuracy(truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of pixels whose person/background label is right."""
    t, p = _as_bool(truth, threshold), _as_bool(pred, threshold)
    return float(np.count_nonzero(t == p)) / t.size


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask with a non-mask pixel among their 8 neighbours."""
    m = mask.astype(np.uint8)
    return (m - cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)) > 0


def boundary_f(
    truth: np.ndarray, pred: np.ndarray, threshold: float = 0.5, tolerance_px: int = 2
) -> float:
    """Boundary F-score: F1 of boundary pixels matched within ``tolerance_px`` (Perazzi 2016)."""
    tb = _boundary(_as_bool(truth, threshold))
    pb = _boundary(_as_bool(pred, threshold))
    nt, npred = np.count_nonzero(tb), np.count_nonzero(pb)
    if nt == 0 and npred == 0:
        return 1.0
    if nt == 0 or npred == 0:
        return 0.0
    k = np.ones((2 * tolerance_px + 1,) * 2, np.uint8)
    precision = np.count_nonzero(pb & (cv2.dilate(tb.astype(np.uint8), k) > 0)) / npred
    recall = np.count_nonzero(tb & (cv2.dilate(pb.astype(np.uint8), k) > 0)) / nt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def distance_to_person(truth: np.ndarray) -> np.ndarray:
    """Each pixel's exact distance (px, float32) to the nearest pixel of the bool mask ``truth``
    (0 on the mask; about 1.8e19 everywhere when the mask is empty)."""
    return cv2.distanceTransform((~truth).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def far_mask(truth: np.ndarray, pred: np.ndarray, margin_px: float,
             threshold: float = 0.5) -> np.ndarray:
    """The pixels predicted person farther than ``margin_px`` from every true person pixel (bool).

    What a model takes for a person where there is none, apart from anyone: a chair, a curtain,
    a suitcase, a patch of floor. Errors along a person's outline (within the margin) are left to
    IoU and boundary F. In an image with no person, every pixel predicted person counts.
    """
    t, p = _as_bool(truth, threshold), _as_bool(pred, threshold)
    if not t.any():
        return p
    return p & (distance_to_person(t) > margin_px)


def far_fraction(truth: np.ndarray, pred: np.ndarray, margin_px: float,
                 threshold: float = 0.5) -> float:
    """Share of the image predicted person farther than ``margin_px`` from every true person
    pixel (:func:`far_mask`)."""
    far = far_mask(truth, pred, margin_px, threshold)
    return float(np.count_nonzero(far)) / far.size


def far_fp_pixels(truth: np.ndarray, pred: np.ndarray, share: float = 0.01,
                  threshold: float = 0.5) -> int:
    """How many pixels are predicted person farther than ``share`` of the image's short side
    from every true person pixel (:func:`far_mask`): a count, so a few thin lines of matte
    across the room weigh what they cover, which a share of photos above a bar does not see."""
    return int(np.count_nonzero(far_mask(truth, pred, share * min(truth.shape[:2]), threshold)))


def speckle_mask(truth: np.ndarray, alpha: np.ndarray, level: int, max_island_px: int,
                 margin_px: float) -> np.ndarray:
    """The pixels of small islands of matte apart from the person (bool): connected regions
    (8 neighbours) of ``alpha > level`` smaller than ``max_island_px`` pixels, other than the
    largest region, farther than ``margin_px`` from every true person pixel.

    What a cut-out shows as dirt floating beside the person: partly opaque flecks of textured
    ground (gravel, grass) by the feet that the edge refinement lifts from the frame. A region
    of any size that touches the person is part of the person's region; a second person is
    usually larger than an island or lies within the margin of the label. In an image with no
    labelled person, every small region counts.

    Raises:
        ValueError: truth not bool, alpha not uint8, or their shapes differ.
    """
    if truth.dtype != bool or alpha.dtype != np.uint8 or truth.shape != alpha.shape or alpha.ndim != 2:
        raise ValueError(f"unexpected truth/alpha: {truth.dtype} {truth.shape} / {alpha.dtype} "
                         f"{alpha.shape} != bool (H, W) / uint8 (H, W)")
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (alpha > level).view(np.uint8), connectivity=8)
    small = np.zeros(count, bool)
    if count > 1:
        areas = stats[1:, cv2.CC_STAT_AREA]
        small[1:] = areas < max_island_px
        small[1 + int(np.argmax(areas))] = False  # the person's own region, whatever its size
    islands = small[labels]
    if not truth.any():
        return islands
    return islands & (distance_to_person(truth) > margin_px)


def speckle_fraction(truth: np.ndarray, alpha: np.ndarray, level: int = SPECKLE_LEVEL,
                     island_share: float = SPECKLE_ISLAND_SHARE,
                     margin_share: float = SPECKLE_MARGIN_SHARE) -> float:
    """Share of the image in small islands of matte apart from the person
    (:func:`speckle_mask`), with the island size a share of the image's area and the margin a
    share of its long side."""
    height, width = alpha.shape[:2]
    speckle = speckle_mask(truth, alpha, level, max(1, round(island_share * height * width)),
                           margin_share * max(height, width))
    return float(np.count_nonzero(speckle)) / speckle.size


def outline_distance(truth: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Each pixel's distance (px, float32) to the other side of the labelled outline: for a person
    pixel the nearest background pixel, for a background pixel the nearest person pixel (so the
    pixels either side of the outline are at 1; about 1.8e19 everywhere when the image is all
    person or all background)."""
    t = _as_bool(truth, threshold)
    return np.where(t, distance_to_person(~t), distance_to_person(t))


def iou_edges_right(truth: np.ndarray, pred: np.ndarray, bands_px: Sequence[float],
                    threshold: float = 0.5) -> list[float]:
    """For each band, the IoU the image would score if every wrong pixel within that many px of
    the labelled outline were right (:func:`outline_distance`, computed once for all bands).

    What separates a model that draws the line in the wrong place by a pixel or two (the gap
    closes as the band grows by a few px) from one that decides wrongly what belongs to the
    person (a held object, a second person, a chair: the gap stays).
    """
    t, p = _as_bool(truth, threshold), _as_bool(pred, threshold)
    distance = outline_distance(t)
    return [iou(t, np.where(distance <= band, t, p)) for band in bands_px]


# Keras metrics: per-image scores inside a batch, averaged over all images seen.


def _batch_iou(y_true, y_pred):
    t = ops.cast(y_true > 0.5, "float32")
    p = ops.cast(y_pred > 0.5, "float32")
    inter = ops.sum(t * p, axis=(1, 2, 3))
    union = ops.sum(ops.maximum(t, p), axis=(1, 2, 3))
    return ops.where(union > 0, inter / ops.maximum(union, 1.0), 1.0)


def _batch_dice(y_true, y_pred):
    t = ops.cast(y_true > 0.5, "float32")
    p = ops.cast(y_pred > 0.5, "float32")
    total = ops.sum(t, axis=(1, 2, 3)) + ops.sum(p, axis=(1, 2, 3))
    return ops.where(total > 0, 2 * ops.sum(t * p, axis=(1, 2, 3)) / ops.maximum(total, 1.0), 1.0)


def _batch_pixel_accuracy(y_true, y_pred):
    same = ops.cast((y_true > 0.5) == (y_pred > 0.5), "float32")
    return ops.mean(same, axis=(1, 2, 3))


def _batch_boundary_f(y_true, y_pred, tolerance_px: int = 2):
    def edge(m):
        return m - (-ops.max_pool(-m, 3, strides=1, padding="same"))

    def near(m):
        return ops.max_pool(m, 2 * tolerance_px + 1, strides=1, padding="same")

    tb = edge(ops.cast(y_true > 0.5, "float32"))
    pb = edge(ops.cast(y_pred > 0.5, "float32"))
    nt, npred = ops.sum(tb, axis=(1, 2, 3)), ops.sum(pb, axis=(1, 2, 3))
    precision = ops.sum(pb * near(tb), axis=(1, 2, 3)) / ops.maximum(npred, 1.0)
    recall = ops.sum(tb * near(pb), axis=(1, 2, 3)) / ops.maximum(nt, 1.0)
    f = 2 * precision * recall / ops.maximum(precision + recall, 1e-6)
    both_empty = ops.logical_and(nt == 0, npred == 0)
    return ops.where(both_empty, 1.0, f)


def training_metrics() -> list[keras.metrics.Metric]:
    """IoU, Dice, pixel accuracy and boundary F as Keras metrics (names: iou, dice, ...)."""
    return [
        keras.metrics.MeanMetricWrapper(_batch_iou, name="iou"),
        keras.metrics.MeanMetricWrapper(_batch_dice, name="dice"),
        keras.metrics.MeanMetricWrapper(_batch_pixel_accuracy, name="pixel_accuracy"),
        keras.metrics.MeanMetricWrapper(_batch_boundary_f, name="boundary_f"),
    ]

"""Segmentation losses that combine with ``+`` and ``*`` (``DiceLoss() + BCELoss()``).

All take ``y_true`` in 0..1 and ``y_pred`` a sigmoid probability, shape (B, H, W, 1).
"""

from __future__ import annotations

import math

import keras
from keras import ops

EPS = 1e-6
FAR_PX = 10  # "far" background: no person within this many pixels (about 5 % of a 192 px crop)


class SegLoss(keras.losses.Loss):
    """Base class: adds ``+`` and scalar ``*`` so losses combine like numbers."""

    def __add__(self, other: "SegLoss") -> "SegLoss":
        return SumLoss([self, other])

    def __mul__(self, weight: float) -> "SegLoss":
        return SumLoss([self], [float(weight)])

    __rmul__ = __mul__


class SumLoss(SegLoss):
    """A weighted sum of losses."""

    def __init__(self, losses, weights=None, name="sum_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.losses = list(losses)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.losses)

    def call(self, y_true, y_pred):
        return sum(w * l.call(y_true, y_pred) for w, l in zip(self.weights, self.losses))

    def __add__(self, other):
        return SumLoss(self.losses + [other], self.weights + [1.0])


class DiceLoss(SegLoss):
    """1 − soft Dice per image: 1 − (2·Σ t·p + s) / (Σ t + Σ p + s)."""

    def __init__(self, smooth: float = 1.0, name="dice_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = smooth

    def call(self, y_true, y_pred):
        axes = (1, 2, 3)
        inter = ops.sum(y_true * y_pred, axis=axes)
        total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
        return 1.0 - (2.0 * inter + self.smooth) / (total + self.smooth)


def _bce(y_true, y_pred):
    y_pred = ops.clip(y_pred, EPS, 1.0 - EPS)
    return -(y_true * ops.log(y_pred) + (1.0 - y_true) * ops.log(1.0 - y_pred))


def _region_bce(y_true, y_pred, region):
    """BCE averaged over the pixels where ``region`` is 1, per image (+1 keeps an empty region 0)."""
    return ops.sum(region * _bce(y_true, y_pred), axis=(1, 2, 3)) / (
        ops.sum(region, axis=(1, 2, 3)) + 1.0
    )


class BCELoss(SegLoss):
    """Binary cross-entropy, mean per image."""

    def __init__(self, name="bce_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return ops.mean(_bce(y_true, y_pred), axis=(1, 2, 3))


class FocalLoss(SegLoss):
    """Binary focal loss (Lin et al. 2017): α_t (1 − p_t)^γ · BCE, mean per image."""

    def __init__(self, gamma: float = 2.0, alpha: float = 0.25, name="focal_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.gamma, self.alpha = gamma, alpha

    def call(self, y_true, y_pred):
        p_t = y_true * y_pred + (1.0 - y_true) * (1.0 - y_pred)
        alpha_t = y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha)
        return ops.mean(alpha_t * (1.0 - p_t) ** self.gamma * _bce(y_true, y_pred), axis=(1, 2, 3))


def _window_max(x, width_px: int):
    """The maximum over the (2·width_px + 1)² square around each pixel (a max-pool dilation),
    taken as a column max of row maxes: 2k comparisons a pixel instead of k²."""
    k = 2 * width_px + 1
    rows = ops.max_pool(x, (k, 1), strides=1, padding="same")
    return ops.max_pool(rows, (1, k), strides=1, padding="same")


def boundary_band(y_true, width_px: int = 3):
    """1 within ``width_px`` of a mask edge, else 0 (max-pool dilation minus erosion)."""
    dilated = _window_max(y_true, width_px)
    eroded = -_window_max(-y_true, width_px)
    return ops.cast(dilated - eroded > 0.5, y_true.dtype)


class BoundaryBCELoss(SegLoss):
    """BCE restricted to a band around the true edge, mean over the band's pixels."""

    def __init__(self, width_px: int = 3, name="boundary_bce_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.width_px = width_px

    def call(self, y_true, y_pred):
        return _region_bce(y_true, y_pred, boundary_band(y_true, self.width_px))


def far_from_people(y_true, width_px: int = FAR_PX):
    """1 where no person pixel (``y_true > 0.5``) lies within ``width_px`` (a square window), else 0.

    A crop with nobody in it is far everywhere.
    """
    return 1.0 - _window_max(ops.cast(y_true > 0.5, y_true.dtype), width_px)


class FarBCELoss(SegLoss):
    """BCE over the background far from every person, mean over those pixels.

    What the plain BCE spreads over the whole crop, this spends on the pixels a viewer sees as
    the room: a chair, a suitcase or a patch of floor taken for a person apart from everyone
    (the suite's "far" measure) costs as much in a close-up, where such pixels are few, as in a
    wide scene. Zero for a crop whose background all lies near a person.
    """

    def __init__(self, width_px: int = FAR_PX, name="far_bce_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.width_px = width_px

    def call(self, y_true, y_pred):
        return _region_bce(y_true, y_pred, far_from_people(y_true, self.width_px))


class ConsistencyLoss(SegLoss):
    """Agreement between two views of the same crops (PortraitNet's consistency constraint).

    The batch holds 2·B rows: rows ``i`` and ``B + i`` are one crop, the first as geometry alone
    made it, the second with colour, light, blur, noise, JPEG and occlusion changes on top
    (``make_dataset(..., views=2)``). The second row pays the binary KL divergence from the
    first row's prediction, which is held fixed (no gradient): what the scene's texture does
    must not change what is the person. The first row of each pair scores 0.

    Batches whose two halves do not share their masks (validation's whole photos, or any batch
    not built as pairs) score 0 throughout, so the validation loss stays the segmentation loss.
    """

    def __init__(self, name="consistency_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        rows = ops.shape(y_pred)[0]
        half = rows // 2
        # Row i of the second half against row i − half, its first view (an odd last row of a
        # batch has no partner and scores 0 with the first half).
        first = ops.stop_gradient(ops.clip(ops.roll(y_pred, half, axis=0), EPS, 1.0 - EPS))
        second = ops.clip(y_pred, EPS, 1.0 - EPS)
        kl = ops.mean(first * ops.log(first / second)
                      + (1.0 - first) * ops.log((1.0 - first) / (1.0 - second)), axis=(1, 2, 3))
        index = ops.arange(rows)
        in_second_half = ops.logical_and(index >= half, index < 2 * half)
        paired = ops.all(ops.equal(y_true[:half], y_true[half:2 * half]))
        return ops.where(ops.logical_and(in_second_half, paired), kl, ops.zeros_like(kl))


class LovaszLoss(SegLoss):
    """The Lovász extension of 1 − IoU per image (Berman et al. 2018, binary Lovász-softmax).

    The truth is taken as ``y_true > 0.5`` (warped masks have soft edges). Pixel errors
    ``|t − p|`` are sorted in decreasing order and weighted by the increments of the Jaccard
    loss along that order. For a 0/1 prediction this equals ``1 − IoU`` exactly; for
    probabilities it is the convex surrogate that optimises the per-image IoU directly. An image
    with an empty mask scores its largest predicted probability (1 as soon as a pixel is on).
    """

    def __init__(self, name="lovasz_loss", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        batch = ops.shape(y_true)[0]
        t = ops.reshape(ops.cast(y_true > 0.5, y_pred.dtype), (batch, -1))
        p = ops.reshape(y_pred, (batch, -1))
        errors = ops.abs(t - p)
        order = ops.flip(ops.argsort(errors, axis=1), axis=1)
        errors_sorted = ops.take_along_axis(errors, order, axis=1)
        t_sorted = ops.take_along_axis(t, order, axis=1)
        positives = ops.sum(t_sorted, axis=1, keepdims=True)
        intersection = positives - ops.cumsum(t_sorted, axis=1)
        union = positives + ops.cumsum(1.0 - t_sorted, axis=1)
        jaccard = 1.0 - intersection / ops.maximum(union, EPS)
        increments = ops.concatenate([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], axis=1)
        # The sort order is a constant of the surrogate: gradients flow through the errors only.
        return ops.sum(errors_sorted * ops.stop_gradient(increments), axis=1)


def uses_views(loss: SegLoss) -> bool:
    """Whether the loss compares two views of each crop (has a :class:`ConsistencyLoss` term)."""
    if isinstance(loss, SumLoss):
        return any(uses_views(term) for term in loss.losses)
    return isinstance(loss, ConsistencyLoss)


def make_loss(spec: str) -> SegLoss:
    """Build a loss from a spec such as ``dice+bce``, ``dice+focal``, ``dice+bce+0.5*boundary``,
    ``dice+bce+0.5*boundary+0.5*far``, ``bce+lovasz`` or ``dice+bce+2*consistency`` (the last
    needs batches of two views, :class:`ConsistencyLoss`).

    Raises:
        ValueError: an unknown term, or a weight that is not a finite number above 0.
    """
    known = {"dice": DiceLoss, "bce": BCELoss, "focal": FocalLoss, "boundary": BoundaryBCELoss,
             "far": FarBCELoss, "lovasz": LovaszLoss, "consistency": ConsistencyLoss}
    total = None
    for term in spec.replace(" ", "").split("+"):
        weight, _, name = term.rpartition("*")
        if name not in known:
            raise ValueError(f"unknown loss term '{name}' in '{spec}'; expected one of {sorted(known)}")
        loss = known[name]() * _term_weight(weight, spec) if weight else known[name]()
        total = loss if total is None else total + loss
    return total


def _term_weight(text: str, spec: str) -> float:
    """A loss term's weight: a finite number above 0 (nan or inf would train to nan; 0 or less
    would drop the term or reward the error it measures)."""
    try:
        weight = float(text)
    except ValueError:
        raise ValueError(f"loss weight '{text}' in '{spec}' is not a number, e.g. "
                         "'dice+0.5*bce'") from None
    if not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"loss weight '{text}' in '{spec}' must be a finite number greater "
                         "than 0, e.g. 'dice+0.5*bce'")
    return weight

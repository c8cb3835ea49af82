"""Edge refinement: a guided filter turns the low-resolution probability into a frame-size matte.

``guided_filter`` is the plain filter of He et al. (grey or colour guide), matching
``cv2.ximgproc.guidedFilter`` (box means with ``BORDER_REFLECT``, eps on the guide's own scale).
``refine_alpha`` is the fast variant (He & Sun, "Fast Guided Filter"): the coefficients a, b are
computed on a grey guide at 1/scale resolution, upsampled bilinearly and applied to the
full-resolution grey frame, ``alpha = a * I + b``. The coefficients are computed only over the
cells that can reach the matte (:func:`_support`: where the probability is not 0, and a margin;
0 elsewhere, as over the whole frame), into buffers kept between frames. The full-resolution
work is one colour conversion, then two resizes, one multiply and one saturating add only within
:func:`reach_box`, the box where the matte can be above 0 (found from the coefficients at low
resolution; 0 elsewhere, the same matte bit for bit as over the whole frame), a band of rows at a
time (:func:`_apply_bands`, the same again). With
``guide="colour"`` (photos) a is one coefficient per channel (a_B, a_G, a_R), which tells dark
hair and a bright face from a bright wall, at about three times the cost. The model's
probability is first sharpened (:func:`sharpen_probability`), so that where the frame has no
edge to follow the filter falls back to a narrow ramp instead of the low-resolution model's soft
blob. For photos, :func:`drop_islands` then clears the small islands of matte apart from the
person (``RefineOptions.min_island``): flecks of textured ground the colour filter lifts by
the feet.
"""

from __future__ import annotations

import logging
from typing import Optional

import cv2
import numpy as np

from portrait.options import RefineOptions
from portrait.scratch import box_mean, buffer, outside

log = logging.getLogger(__name__)

_ONES_3 = np.ones((1, 3), np.float32)  # sums a 3-channel image into one
_REACH = np.float32(0.25)  # a quarter grey level: at most this rounds to 0, with room for float error
# A probability below this is 0 to the filter: with eps = 1e-3 on a 0..1 guide, |a| <= p/(2*sqrt(eps))
# per channel, so all such cells together move a pixel's alpha by under 255 * (3 * 16 + 1) * 1e-6,
# about 1/80 of a grey level, while their zeros keep the coefficients' work to where the person is.
_FLUSH = np.float32(1e-6)
#: :func:`drop_islands` finds islands where alpha is above this (a tenth opaque: what a cut-out
#: shows as a fleck); fainter pixels around an island are left as they are.
ISLAND_LEVEL = 25


class _Scratch:
    """Named float32 arrays of one shape from a workspace (see :func:`buffer`): the filters'
    intermediates, reused between frames instead of dozens of fresh arrays a frame. Measured
    alone this saved little (the colour filter 6.43 → 6.29 ms a 720p frame); most of the
    saving is :func:`_support`'s."""

    def __init__(self, workspace: Optional[dict], prefix: str, shape: tuple):
        self.workspace = {} if workspace is None else workspace
        self.prefix, self.shape = prefix, shape

    def __call__(self, name: str) -> np.ndarray:
        return buffer(self.workspace, self.prefix + name, self.shape, np.float32)


def _product_mean(x: np.ndarray, y: np.ndarray, radius: int, tmp: np.ndarray,
                  dst: np.ndarray) -> np.ndarray:
    """Box mean of x·y (into ``dst``; ``tmp`` holds the product)."""
    np.multiply(x, y, out=tmp)
    return box_mean(tmp, radius, dst)


def _covariance(mean_xy: np.ndarray, mean_x: np.ndarray, mean_y: np.ndarray,
                tmp: np.ndarray) -> np.ndarray:
    """mean(x·y) − mean(x)·mean(y), in place of ``mean_xy``."""
    np.multiply(mean_x, mean_y, out=tmp)
    return np.subtract(mean_xy, tmp, out=mean_xy)


def _grey_coefficients(guide: np.ndarray, src: np.ndarray, radius: int, eps: float,
                       workspace: Optional[dict] = None):
    """Box-averaged coefficients (mean_a, mean_b) of q = a*I + b for a 1-channel float32 guide
    (arrays of ``workspace``, valid until its next use)."""
    f = _Scratch(workspace, "grey_", src.shape)
    tmp = f("tmp")
    mean_i = box_mean(guide, radius, f("mean_i"))
    mean_p = box_mean(src, radius, f("mean_p"))
    var_i = _covariance(_product_mean(guide, guide, radius, tmp, f("var_i")), mean_i, mean_i, tmp)
    cov_ip = _covariance(_product_mean(guide, src, radius, tmp, f("cov_ip")), mean_i, mean_p, tmp)
    var_i += np.float32(eps)
    a = np.divide(cov_ip, var_i, out=cov_ip)
    b = np.subtract(mean_p, np.multiply(a, mean_i, out=tmp), out=mean_p)
    return box_mean(a, radius, f("mean_a")), box_mean(b, radius, f("mean_b"))


def _colour_coefficients(guide: np.ndarray, src: np.ndarray, radius: int, eps: float,
                         workspace: Optional[dict] = None):
    """Box-averaged coefficients (mean_a (H, W, 3), mean_b (H, W)) of q = a·I + b for a
    3-channel float32 guide and a 1-channel float32 source (arrays of ``workspace``, valid
    until its next use)."""
    f = _Scratch(workspace, "colour_", src.shape)
    tmp, tmp2 = f("tmp"), f("tmp2")
    chans = [f(f"i{c}") for c in range(3)]
    for c in range(3):
        np.copyto(chans[c], guide[:, :, c])
    mean_i = [box_mean(chans[c], radius, f(f"mean_i{c}")) for c in range(3)]
    mean_p = box_mean(src, radius, f("mean_p"))
    cov_ip = [_covariance(_product_mean(chans[c], src, radius, tmp, f(f"cov{c}")), mean_i[c],
                          mean_p, tmp) for c in range(3)]
    # Sigma = cov(I) + eps*U, symmetric 3x3 per pixel; invert it through its cofactors.
    var = {}
    for i in range(3):
        for j in range(i, 3):
            var[i, j] = _covariance(_product_mean(chans[i], chans[j], radius, tmp,
                                                  f(f"var{i}{j}")), mean_i[i], mean_i[j], tmp)
    e = np.float32(eps)
    rr, rg, rb, gg, gb, bb = var[0, 0], var[0, 1], var[0, 2], var[1, 1], var[1, 2], var[2, 2]
    rr += e
    gg += e
    bb += e

    def cofactor(name, w, x, y, z):  # w·x − y·z
        np.multiply(y, z, out=tmp)
        return np.subtract(np.multiply(w, x, out=f(name)), tmp, out=f(name))

    inv_rr = cofactor("inv_rr", gg, bb, gb, gb)
    inv_rg = cofactor("inv_rg", gb, rb, rg, bb)
    inv_rb = cofactor("inv_rb", rg, gb, gg, rb)
    inv_gg = cofactor("inv_gg", rr, bb, rb, rb)
    inv_gb = cofactor("inv_gb", rb, rg, rr, gb)
    inv_bb = cofactor("inv_bb", rr, gg, rg, rg)

    def dot3(name, x0, x1, x2, y0, y1, y2):  # x0·y0 + x1·y1 + x2·y2, summed left to right
        out = np.multiply(x0, y0, out=f(name))
        out += np.multiply(x1, y1, out=tmp2)
        out += np.multiply(x2, y2, out=tmp2)
        return out

    det = dot3("det", rr, rg, rb, inv_rr, inv_rg, inv_rb)
    c0, c1, c2 = cov_ip
    a = [dot3("a0", inv_rr, inv_rg, inv_rb, c0, c1, c2),
         dot3("a1", inv_rg, inv_gg, inv_gb, c0, c1, c2),
         dot3("a2", inv_rb, inv_gb, inv_bb, c0, c1, c2)]
    for plane in a:
        plane /= det
    b = mean_p
    for c in range(3):
        b -= np.multiply(a[c], mean_i[c], out=tmp)
    mean_a = buffer(f.workspace, "colour_mean_a", (*src.shape, 3), np.float32)
    cv2.merge([box_mean(a[c], radius, f(f"mean_a{c}")) for c in range(3)], dst=mean_a)
    return mean_a, box_mean(b, radius, f("mean_b"))


def _colour_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Guided filter with a 3-channel float32 guide and a 1-channel float32 source."""
    mean_a, mean_b = _colour_coefficients(guide, src, radius, eps)
    return cv2.transform(mean_a * guide, _ONES_3) + mean_b


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Filter ``src`` with the guided filter, edges following ``guide`` (He et al. 2010).

    Args:
        guide: (H, W) or (H, W, 3) image, float32 or uint8 (used on its own scale, as cv2 does,
            so ``eps`` is in squared guide units).
        src: (H, W) or (H, W, C) float32 image to filter; each channel is filtered alone.
        radius: box radius in pixels (>= 1).
        eps: regularisation (> 0); smaller follows the guide's edges more closely.

    Returns:
        float32 array shaped like ``src``.

    Raises:
        ValueError: wrong dtype, shape, radius or eps (message gives actual vs expected).
    """
    if guide.dtype not in (np.float32, np.uint8):
        raise ValueError(f"unexpected guide dtype: {guide.dtype} != float32 or uint8")
    if src.dtype != np.float32:
        raise ValueError(f"unexpected src dtype: {src.dtype} != float32")
    if not (guide.ndim == 2 or (guide.ndim == 3 and guide.shape[2] in (1, 3))):
        raise ValueError(f"unexpected guide shape: {guide.shape} != (H, W) or (H, W, 3)")
    if src.ndim not in (2, 3) or src.shape[:2] != guide.shape[:2]:
        raise ValueError(f"unexpected src shape: {src.shape} != {guide.shape[:2]} (+ channels)")
    if int(radius) != radius or radius < 1:
        raise ValueError(f"unexpected radius: {radius!r} != an integer >= 1")
    if not eps > 0:
        raise ValueError(f"unexpected eps: {eps!r} != a number > 0")
    radius = int(radius)
    guide = guide.astype(np.float32, copy=False)
    if guide.ndim == 3 and guide.shape[2] == 1:
        guide = guide[:, :, 0]
    if src.ndim == 3:
        planes = [guided_filter(guide, np.ascontiguousarray(src[:, :, c]), radius, eps)
                  for c in range(src.shape[2])]
        return np.stack(planes, axis=2)
    if guide.ndim == 3:
        return _colour_filter(guide, src, radius, eps)
    mean_a, mean_b = _grey_coefficients(guide, src, radius, eps)
    return mean_a * guide + mean_b


def sharpen_probability(prob: np.ndarray, k: float, out: Optional[np.ndarray] = None) -> np.ndarray:
    """σ(k·logit p) = p^k / (p^k + (1 − p)^k): the same 0.5 contour, a k times steeper ramp.

    Args:
        prob: float32 probability in [0, 1].
        k: steepness (> 0); 1 returns the values unchanged, above 1 narrows the soft rim.
        out: optional float32 array shaped like ``prob`` to write into.

    Raises:
        ValueError: k not > 0.
    """
    if not k > 0:
        raise ValueError(f"unexpected sharpen: {k!r} != a number > 0")
    p = np.clip(prob, 0.0, 1.0, out=out)
    # As 1 / (1 + ((1 − p) / p)^k): p^k and (1 − p)^k both underflow float32 once k is large
    # (~150), which made every pixel 0; the odds' power goes to 0 or inf and keeps the contour.
    odds = np.subtract(1.0, p, dtype=np.float32)
    with np.errstate(divide="ignore", over="ignore"):
        np.divide(odds, p, out=odds)  # inf where p is 0; p and 1 − p are never both 0
    cv2.pow(odds, k, dst=odds)
    odds += 1.0
    np.divide(1.0, odds, out=p)
    return p


def refine_alpha(frame_bgr: np.ndarray, prob: np.ndarray, options: RefineOptions,
                 out: Optional[np.ndarray] = None, *, workspace: Optional[dict] = None,
                 bounded: bool = True) -> np.ndarray:
    """Turn a low-resolution person probability into an alpha matte at frame size.

    Args:
        frame_bgr: BGR uint8 (H, W, 3) frame, the guide.
        prob: float32 (h, w) person probability in [0, 1], any size, same field of view.
        options: radius_px, eps, scale, sharpen, guide; ``enabled=False`` gives a bilinear
            upscale; with the filter, ``min_island`` > 0 then clears small islands
            (:func:`drop_islands`).
        out: optional uint8 (H, W) array to write into.
        workspace: optional dict for scratch buffers reused between calls (see ``Refiner``).
        bounded: compute the coefficients only over the cells of :func:`_support` and do the
            full-resolution work only within :func:`reach_box` (the same matte, bit for bit, at
            a fraction of the cost when the person fills part of the frame); False does both
            over the whole frame.

    Returns:
        uint8 (H, W) alpha, 255 = person (``out`` when given).

    Raises:
        ValueError: wrong frame, prob or out dtype/shape.
    """
    alpha = _refine_alpha(frame_bgr, prob, options, out, workspace, bounded)
    if options.enabled and options.min_island > 0:  # the filter's flecks; a plain upscale has none
        drop_islands(alpha, options.min_island)
    return alpha


def _refine_alpha(frame_bgr: np.ndarray, prob: np.ndarray, options: RefineOptions,
                  out: Optional[np.ndarray], workspace: Optional[dict], bounded: bool) -> np.ndarray:
    """:func:`refine_alpha` before :func:`drop_islands`."""
    if frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"unexpected frame: {frame_bgr.dtype} {frame_bgr.shape} != uint8 (H, W, 3)")
    if prob.dtype != np.float32 or prob.ndim != 2:
        raise ValueError(f"unexpected prob: {prob.dtype} {prob.shape} != float32 (h, w)")
    height, width = frame_bgr.shape[:2]
    if out is None:
        out = np.empty((height, width), np.uint8)
    elif out.dtype != np.uint8 or out.shape != (height, width):
        raise ValueError(f"unexpected out: {out.dtype} {out.shape} != uint8 {(height, width)}")
    ws = {} if workspace is None else workspace
    if not options.enabled:
        full_f32 = buffer(ws, "full_a1", (height, width), np.float32)
        cv2.resize(prob, (width, height), dst=full_f32, interpolation=cv2.INTER_LINEAR)
        # Not cv2.multiply(full_f32, 255.0): a 1x1 frame's array is taken for the scalar there
        # and a (4, 1) matte comes back. Both round and saturate alike (probabilities are >= 0).
        return cv2.convertScaleAbs(full_f32, dst=out, alpha=255.0)

    scale = options.scale
    low_size = (max(1, width // scale), max(1, height // scale))
    radius = max(1, round(options.radius_px / scale))
    if options.sharpen != 1:
        prob = sharpen_probability(prob, options.sharpen, buffer(ws, "sharp", prob.shape, np.float32))
    elif prob.shape[::-1] == low_size:  # it would be the low-resolution one: _support zeroes
        copy = buffer(ws, "sharp", prob.shape, np.float32)  # in place, never the caller's array
        np.copyto(copy, prob)
        prob = copy
    prob_low = prob if prob.shape[::-1] == low_size else cv2.resize(
        prob, low_size, interpolation=cv2.INTER_LINEAR)
    cells = _support(prob_low, radius)
    if cells is None:  # nobody: nothing to refine
        out.fill(0)
        return out
    if not bounded:
        cells = (slice(0, low_size[1]), slice(0, low_size[0]))
    exact = width == low_size[0] * scale and height == low_size[1] * scale
    if options.guide == "colour":
        guide = frame_bgr
        if exact:  # only the cells that can reach the matte; AREA averages whole blocks
            rows, cols = cells
            block = frame_bgr[rows.start * scale:rows.stop * scale, cols.start * scale:cols.stop * scale]
            guide_low = cv2.resize(block, (cols.stop - cols.start, rows.stop - rows.start),
                                   interpolation=cv2.INTER_AREA)
        else:
            guide_low = cv2.resize(frame_bgr, low_size, interpolation=cv2.INTER_AREA)[cells]
        coefficients = _colour_coefficients
    else:
        guide = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY,
                             dst=buffer(ws, "grey", (height, width), np.uint8))
        grey_low = guide
        # A power of two that divides the frame: exact 2x linear steps average 2x2 blocks, as
        # AREA, at a fraction of its cost. Not otherwise: a 2x step of an odd size interpolates
        # between two pixels instead of averaging (at 1079x1919 the matte's mean error along a
        # person's edge was a third above AREA's), so such a frame is area-averaged at once.
        if exact and scale & (scale - 1) == 0:
            while grey_low.shape[1] > low_size[0] or grey_low.shape[0] > low_size[1]:
                half = (max(1, grey_low.shape[1] // 2), max(1, grey_low.shape[0] // 2))
                grey_low = cv2.resize(grey_low, half, interpolation=cv2.INTER_LINEAR)
        else:
            grey_low = cv2.resize(guide, low_size, interpolation=cv2.INTER_AREA)
        guide_low = grey_low[cells]
        coefficients = _grey_coefficients
    guide_low = guide_low.astype(np.float32) * np.float32(1 / 255)
    mean_a, mean_b = coefficients(guide_low, np.ascontiguousarray(prob_low[cells]), radius,
                                  options.eps, ws)
    # Every cell outside ``cells`` has a = b = 0 (see _support).
    low_a = buffer(ws, f"low_a{guide.ndim}", prob_low.shape + mean_a.shape[2:], np.float32)
    low_b = buffer(ws, "low_b", prob_low.shape, np.float32)
    low_a.fill(0)
    low_b.fill(0)
    low_a[cells] = mean_a
    # alpha*255 = a·I255 + 255*b, so the guide stays uint8 at full resolution.
    np.multiply(mean_b, np.float32(255), out=low_b[cells])
    alpha = _apply(low_a, low_b, guide, out, ws, bounded)
    if options.confine > 0:
        confine_to_model(alpha, prob, options.confine, ws)
    return alpha


def confine_to_model(alpha: np.ndarray, prob: np.ndarray, level: float,
                     workspace: Optional[dict] = None) -> np.ndarray:
    """Cap ``alpha`` (uint8 (H, W), in place) at 255·min(1, p/``level``), p the probability the
    filter was given (float32 (h, w), the frame's field of view) bilinearly upsampled as
    ``cv2.resize`` does: where the model is sure there is nobody, the guided filter cannot carry
    the matte along an edge of the room (a tile's grout beside an arm), however strong the edge.

    Only the box of nonzero alpha is touched (the rest is 0 already). Returns ``alpha``.
    """
    x, y, w, h = cv2.boundingRect(alpha)
    if w == 0 or h == 0:
        return alpha
    height, width = alpha.shape
    sx, sy = prob.shape[1] / width, prob.shape[0] / height
    # dst (i, j) of the box is the frame's (x + i, y + j): src = (dst + 0.5)·s − 0.5, as resize
    to_prob = np.array([[sx, 0.0, (x + 0.5) * sx - 0.5], [0.0, sy, (y + 0.5) * sy - 0.5]])
    ws = {} if workspace is None else workspace
    cap = buffer(ws, "confine", (h, w), np.float32)
    cv2.warpAffine(prob, to_prob, (w, h), dst=cap, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                   borderMode=cv2.BORDER_REPLICATE)
    cap_u8 = cv2.convertScaleAbs(cap, dst=buffer(ws, "confine_u8", (h, w), np.uint8),
                                 alpha=255.0 / level)
    box = alpha[y:y + h, x:x + w]
    np.minimum(box, cap_u8, out=box)
    return alpha


def drop_islands(alpha: np.ndarray, min_share: float, level: int = ISLAND_LEVEL) -> np.ndarray:
    """Set to 0, in place, every island of matte smaller than ``min_share`` of the largest one.

    An island is an 8-connected region of ``alpha > level``. On textured ground (gravel, grass)
    the colour-guided filter follows the grain within its radius of the feet and leaves
    partly opaque flecks apart from the person, dirt floating beside the shoes in a cut-out;
    the model's own probability mostly has none there (README, "Edges"). The largest region is
    kept whatever its size, and so is any region at least ``min_share`` of it (a second person,
    a hand apart from the arm).

    Args:
        alpha: uint8 (H, W) matte, changed in place.
        min_share: islands under this share of the largest region's area are dropped
            (0 <= min_share < 1; 0 changes nothing).
        level: the alpha an island's pixels are above (0..254).

    Returns:
        ``alpha``.

    Raises:
        ValueError: alpha not uint8 (H, W), or min_share or level out of range.
    """
    if alpha.dtype != np.uint8 or alpha.ndim != 2:
        raise ValueError(f"unexpected alpha: {alpha.dtype} {alpha.shape} != uint8 (H, W)")
    if not 0 <= min_share < 1:
        raise ValueError(f"unexpected min_share: {min_share!r} != a number from 0 to below 1")
    if int(level) != level or not 0 <= level < 255:
        raise ValueError(f"unexpected level: {level!r} != an integer from 0 to 254")
    if min_share == 0:
        return alpha
    matte = (alpha > level).view(np.uint8)
    # Labelled only within the box of the matte: at 3000x2000 the labelling is most of the cost.
    x, y, w, h = cv2.boundingRect(matte)
    if w == 0:
        return alpha
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        matte[y:y + h, x:x + w], connectivity=8)
    if count <= 2:  # one region
        return alpha
    areas = stats[1:, cv2.CC_STAT_AREA]
    small = np.zeros(count, bool)
    small[1:] = areas < min_share * areas.max()
    if small.any():
        alpha[y:y + h, x:x + w][small[labels]] = 0
    return alpha


def _support(prob_low: np.ndarray, radius: int) -> Optional[tuple[slice, slice]]:
    """The cells (rows, columns) whose filter coefficients can be non-zero, after setting the
    probabilities below :data:`_FLUSH` to 0 (in place).

    A cell whose window holds no probability has a = cov(I, p) / (var(I) + eps) = 0 and
    b = mean(p) − a·mean(I) = 0, whatever the guide; box-averaged over windows of radius r,
    the coefficients are 0 farther than 2r from every cell with p > 0. Computed over those cells
    and a margin of 2r + 1, the box means' reflection at the margin's edge reads only cells with
    p = 0 and coefficients 0, as the whole frame's computation does: the same coefficients.
    """
    cv2.threshold(prob_low, _FLUSH, 0, cv2.THRESH_TOZERO, dst=prob_low)
    x, y, w, h = cv2.boundingRect((prob_low > 0).view(np.uint8))
    if w == 0:
        return None
    margin = 2 * radius + 1
    rows, cols = prob_low.shape
    return (slice(max(0, y - margin), min(rows, y + h + margin)),
            slice(max(0, x - margin), min(cols, x + w + margin)))


def reach_box(mean_a: np.ndarray, mean_b255: np.ndarray, full_size: tuple[int, int]
              ) -> Optional[tuple[int, int, int, int]]:
    """Where ``alpha = a·I + b`` can be above 0 once the coefficients are upsampled.

    A bilinear upsample is a convex combination of neighbouring cells, so a full-resolution pixel
    is at most the largest ``255·Σ max(a, 0) + b`` over the cells it reads. Cells where that is
    under a quarter grey level round to 0 whatever the frame holds; a pixel reads only cells
    within one of it. So the box of the other cells, one cell wider on each side, holds every
    pixel that can be above 0.

    Args:
        mean_a: float32 (h, w) or (h, w, C) coefficients, on a 0..255 guide.
        mean_b255: float32 (h, w) offsets, times 255.
        full_size: (W, H) of the frame they are upsampled to.

    Returns:
        (x0, y0, x1, y1) at full resolution, a multiple of the scale and clipped to the frame;
        (0, 0, W, H) when W, H are not exact multiples of (w, h) (a cropped upsample would not
        sample the same positions); None when no pixel can be above 0.
    """
    low_h, low_w = mean_b255.shape
    width, height = full_size
    scale_x, scale_y = width // low_w, height // low_h
    if scale_x * low_w != width or scale_y * low_h != height:
        return 0, 0, width, height
    positive = np.maximum(mean_a, np.float32(0))
    if positive.ndim == 3:
        positive = cv2.transform(positive, _ONES_3)
    positive *= np.float32(255)
    positive += mean_b255
    x, y, w, h = cv2.boundingRect((positive >= _REACH).view(np.uint8))
    if w == 0:
        return None
    return (max(0, x - 1) * scale_x, max(0, y - 1) * scale_y,
            min(low_w, x + w + 1) * scale_x, min(low_h, y + h + 1) * scale_y)


def _apply(mean_a: np.ndarray, mean_b255: np.ndarray, guide: np.ndarray, out: np.ndarray,
           ws: dict, bounded: bool) -> np.ndarray:
    """alpha = upsample(a)·guide + upsample(b), full resolution, within :func:`reach_box`
    (``bounded``; in bands, :func:`_apply_bands`, where the box is on whole cells of an exact
    factor) or over the whole frame; 0 outside the box."""
    height, width = guide.shape[:2]
    box = reach_box(mean_a, mean_b255, (width, height)) if bounded else (0, 0, width, height)
    if box is None:
        out.fill(0)
        return out
    x0, y0, x1, y1 = box
    scale_y, scale_x = height // mean_b255.shape[0], width // mean_b255.shape[1]
    exact = scale_x * mean_b255.shape[1] == width and scale_y * mean_b255.shape[0] == height
    if (x1 - x0, y1 - y0) != (width, height):  # only the cells the box reads; its edges are whole cells
        cells = np.s_[y0 // scale_y:y1 // scale_y, x0 // scale_x:x1 // scale_x]
        mean_a, mean_b255 = mean_a[cells], mean_b255[cells]
    channels = guide.shape[2] if guide.ndim == 3 else 1
    scratch = (buffer(ws, f"full_a{channels}", guide.shape, np.float32),
               buffer(ws, "full_b", (height, width), np.float32),
               buffer(ws, "full_a1", (height, width), np.float32) if channels > 1 else None)
    box_guide, box_out = guide[y0:y1, x0:x1], out[y0:y1, x0:x1]
    if bounded and exact and scale_y > 1:
        _apply_bands(mean_a, mean_b255, box_guide, box_out, scale_y, scratch)
    else:
        _apply_rows(mean_a, mean_b255, box_guide, box_out, y1 - y0, 0, scratch)
    for strip in outside(x0, y0, x1, y1):
        out[strip] = 0
    return out


#: Rows of coefficient cells :func:`_apply_bands` upsamples and applies at a time: a band's
#: float32 intermediates (for a 720p person about 1 MB) stay in the cache between the passes
#: over them, where the whole box's (about 5 MB) went through memory on each pass; a larger
#: band wastes less on its margin cells.
_BAND_CELLS = 32


def _apply_bands(mean_a: np.ndarray, mean_b255: np.ndarray, guide: np.ndarray, out: np.ndarray,
                 scale: int, scratch: tuple) -> None:
    """:func:`_apply_rows` over a box (``guide`` and ``out`` its views, an exact multiple
    ``scale`` of the cells), :data:`_BAND_CELLS` rows of cells at a time, bit for bit as over
    the whole box at once: at an exact factor each output row of a bilinear upsample reads the
    two cell rows around it, at weights that depend only on its place within its cell, so a
    band's rows come out the same from its cells and one more on each side (the rows made from
    those are dropped; at the box's own edges there is none, as for the whole box)."""
    rows = mean_b255.shape[0]
    for k0 in range(0, rows, _BAND_CELLS):
        k1 = min(rows, k0 + _BAND_CELLS)
        c0, c1 = max(0, k0 - 1), min(rows, k1 + 1)
        _apply_rows(mean_a[c0:c1], mean_b255[c0:c1], guide[k0 * scale:k1 * scale],
                    out[k0 * scale:k1 * scale], (c1 - c0) * scale, (k0 - c0) * scale, scratch)


def _apply_rows(mean_a: np.ndarray, mean_b255: np.ndarray, guide: np.ndarray, out: np.ndarray,
                made: int, skip: int, scratch: tuple) -> None:
    """``out = a·guide + b``, saturated to uint8: a and b upsampled bilinearly from the cells to
    ``made`` rows of ``guide``'s width, of which the rows from ``skip`` on, as many as ``guide``
    has, are used; in ``scratch`` (frame-size float32 buffers: a, b, the sum of a's channels)."""
    height, width = guide.shape[:2]
    full_a, full_b = (buffer[:made, :width] for buffer in scratch[:2])
    if mean_b255.shape == (made, width):
        full_a[...] = mean_a
        full_b[...] = mean_b255
    else:
        cv2.resize(mean_a, (width, made), dst=full_a, interpolation=cv2.INTER_LINEAR)
        cv2.resize(mean_b255, (width, made), dst=full_b, interpolation=cv2.INTER_LINEAR)
    full_a, full_b = full_a[skip:skip + height], full_b[skip:skip + height]
    cv2.multiply(full_a, guide, dst=full_a, dtype=cv2.CV_32F)
    if guide.ndim == 3:
        full_a = cv2.transform(full_a, _ONES_3, dst=scratch[2][skip:skip + height, :width])
    cv2.add(full_a, full_b, dst=out, dtype=cv2.CV_8U)  # saturates to 0..255


class Refiner:
    """``refine_alpha`` with scratch buffers kept between calls (reallocated on a size change)."""

    def __init__(self, options: RefineOptions):
        self.options = options
        self._workspace: dict = {}

    def __call__(self, frame_bgr: np.ndarray, prob: np.ndarray,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
        """Alpha uint8 (H, W) for ``frame_bgr``; a new array unless ``out`` is given."""
        return refine_alpha(frame_bgr, prob, self.options, out, workspace=self._workspace)

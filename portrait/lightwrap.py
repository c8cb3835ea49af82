"""Light wrap: the new background's light spills a few pixels onto the person's edge.

A person pasted over a new background looks cut out because none of that background's light
reaches them. Light wrap adds it back where it would show, at the rim: the background, masked to
where the person is not (``1 - alpha``) and box-blurred, reaches ``width_px`` into the person;
weighted by alpha squared (so it lands on the person, not on the soft fringe around them) and by
``strength``, it is screen-blended onto the composite: ``out = c + light * (1 - c)``, which
brightens but never clips.

Cost: everything except the final blend runs at 1/4 (or 1/2) resolution, and only inside the
bounding box of the edge band's big parts (a speck of matte in a corner doesn't stretch it). The
full-resolution work is one upsample, a NOT, a multiply and an add over that box, uint8
throughout.

Reach: a pixel changes only if it lies within ``width_px`` (Chebyshev) of the matte's edge, the
pixels where alpha is not locally constant. At reduced scale ``s`` the blur radius is
``width_px // s - 2``: one low-resolution cell for the downsampled alpha, one for the bilinear
upsample. A plain frame (alpha all 0 or all 255) has no edge and is left as it is.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from portrait.options import CompositeOptions
from portrait.scratch import buffer

_COARSE = 4  # the band's parts are told apart at this further reduction
_FAINT = 12  # alpha levels this close to 0 or 255 count as clear or opaque (about 5 %)


def reach(width_px: int) -> tuple[int, int]:
    """The working scale and the blur radius (in scaled pixels) for a light-wrap width.

    The coarsest scale (4, 2, then 1) that still leaves a blur radius of 2 scaled pixels; at
    scale ``s > 1`` a changed pixel is at most ``(radius + 2) * s - 1`` from the edge.
    """
    for scale in (4, 2):
        radius = width_px // scale - 2
        if radius >= 2:
            return scale, radius
    return 1, width_px


def _downscale(image: np.ndarray, scale: int) -> np.ndarray:
    # Exact 2x INTER_LINEAR steps average 2x2 blocks (rounded): an all-0 or all-255 block stays
    # 0 or 255, which is what keeps the light within its reach (see the module docstring).
    while scale > 1:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2),
                           interpolation=cv2.INTER_LINEAR)
        scale //= 2
    return image


def _main_box(band: np.ndarray) -> Optional[tuple[int, int, int, int]]:
    """The bounding box of the band's big parts (at least a quarter of the largest one's area).

    Specks of matte far from the person would otherwise stretch the box, and the full-resolution
    work with it, over the whole frame; their rims are left without light. The parts are found
    on the band shrunk 4x more (labelling costs 0.3 ms at 320x180, 0.02 ms at 80x45). Each
    coarse cell covers whole band cells when the size divides by 4; otherwise the box is grown
    by one coarse cell, so it still holds every band pixel of the parts it keeps.
    """
    height, width = band.shape
    margin = 0 if width % _COARSE == 0 and height % _COARSE == 0 else 1
    coarse = cv2.resize(band, (-(-width // _COARSE), -(-height // _COARSE)),
                        interpolation=cv2.INTER_AREA)  # any band pixel leaves a cell > 0
    count, _, stats, _ = cv2.connectedComponentsWithStats(coarse, connectivity=8)
    if count <= 1:
        return None
    stats = stats[1:]
    areas = stats[:, cv2.CC_STAT_AREA]
    parts = stats[areas * 4 >= areas.max()]
    scale_x, scale_y = width / coarse.shape[1], height / coarse.shape[0]
    x0 = max(0, int((parts[:, cv2.CC_STAT_LEFT].min() - margin) * scale_x))
    y0 = max(0, int((parts[:, cv2.CC_STAT_TOP].min() - margin) * scale_y))
    x1 = min(width, int(np.ceil(
        ((parts[:, cv2.CC_STAT_LEFT] + parts[:, cv2.CC_STAT_WIDTH]).max() + margin) * scale_x)))
    y1 = min(height, int(np.ceil(
        ((parts[:, cv2.CC_STAT_TOP] + parts[:, cv2.CC_STAT_HEIGHT]).max() + margin) * scale_y)))
    return x0, y0, x1 - x0, y1 - y0


def light_wrap(composite_bgr: np.ndarray, alpha: np.ndarray, background_bgr: np.ndarray,
               strength: float, width_px: int, *, workspace: Optional[dict] = None) -> np.ndarray:
    """Screen-blend the background's light onto the person's rim, in place.

    Args:
        composite_bgr: BGR uint8 (H, W, 3), the person over ``background_bgr``; modified.
        alpha: uint8 (H, W), 255 = person: the matte the composite was made with.
        background_bgr: BGR uint8 (H, W, 3), the new background (e.g. the blurred frame).
        strength: 0..1; 0 leaves the composite as it is.
        width_px: how far the light reaches into the person, in pixels (>= 1).
        workspace: optional dict of scratch buffers, reused between calls.

    Returns:
        ``composite_bgr``.

    Raises:
        ValueError: wrong dtypes or shapes (actual vs expected), strength outside 0..1, or a
            width below 1.
    """
    if composite_bgr.dtype != np.uint8 or composite_bgr.ndim != 3 or composite_bgr.shape[2] != 3:
        raise ValueError(f"unexpected composite: {composite_bgr.dtype} {composite_bgr.shape}"
                         " != uint8 (H, W, 3)")
    if alpha.dtype != np.uint8 or alpha.shape != composite_bgr.shape[:2]:
        raise ValueError(f"unexpected alpha: {alpha.dtype} {alpha.shape}"
                         f" != uint8 {composite_bgr.shape[:2]}")
    if background_bgr.dtype != np.uint8 or background_bgr.shape != composite_bgr.shape:
        raise ValueError(f"unexpected background: {background_bgr.dtype} {background_bgr.shape}"
                         f" != uint8 {composite_bgr.shape}")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"light-wrap strength {strength} is not between 0 and 1")
    if width_px < 1:
        raise ValueError(f"light-wrap width {width_px} px must be at least 1")
    if strength == 0.0:
        return composite_bgr
    ws = {} if workspace is None else workspace
    scale, radius = reach(int(width_px))
    height, width = alpha.shape
    low_h, low_w = height // scale, width // scale  # a right/bottom rim under `scale` px is left
    if low_h < 1 or low_w < 1:
        return composite_bgr
    alpha_low = _downscale(alpha[:low_h * scale, :low_w * scale], scale)
    # A model's matte is rarely exactly 0 or 255: the faint last few levels on either side
    # (noise in the room, a not-quite-opaque body) are taken as clear and opaque, else they'd
    # stretch the band's box over the whole frame and tint the person's inside.
    person_low = cv2.subtract(alpha_low, _FAINT)
    outside_low = cv2.subtract(cv2.bitwise_not(alpha_low), _FAINT)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * radius + 1, 2 * radius + 1))
    # The band: person pixels with some background within the radius.
    band = cv2.compare(cv2.min(person_low, cv2.dilate(outside_low, kernel)), 0, cv2.CMP_GT)
    box = _main_box(band)
    if box is None:
        return composite_bgr  # no edge (a plain frame): nothing to wrap
    x, y, w, h = box
    # inner: the band plus one cell (the upsample's reach); outer: plus the blur radius.
    ix0, iy0 = max(0, x - 1), max(0, y - 1)
    ix1, iy1 = min(low_w, x + w + 1), min(low_h, y + h + 1)
    ox0, oy0 = max(0, ix0 - radius), max(0, iy0 - radius)
    ox1, oy1 = min(low_w, ix1 + radius), min(low_h, iy1 + radius)

    background_full = background_bgr[oy0 * scale:oy1 * scale, ox0 * scale:ox1 * scale]
    background_low = (cv2.resize(background_full, (ox1 - ox0, oy1 - oy0),
                                 interpolation=cv2.INTER_LINEAR) if scale > 1 else background_full)
    outside3 = cv2.cvtColor(outside_low[oy0:oy1, ox0:ox1], cv2.COLOR_GRAY2BGR)
    light = cv2.multiply(background_low, outside3, scale=1 / 255)
    light = cv2.blur(light, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)
    inner = (slice(iy0 - oy0, iy1 - oy0), slice(ix0 - ox0, ix1 - ox0))
    person3 = cv2.cvtColor(person_low[iy0:iy1, ix0:ix1], cv2.COLOR_GRAY2BGR)
    # weight alpha squared: the light lands on the person, barely on the soft matte's outer
    # fringe, where the composite is mostly background and brightening it would be a halo
    light_low = cv2.multiply(light[inner], person3, scale=1 / 255)
    cv2.multiply(light_low, person3, dst=light_low, scale=strength / 255)

    region = composite_bgr[iy0 * scale:iy1 * scale, ix0 * scale:ix1 * scale]
    shape = region.shape
    if scale > 1:
        light_full = cv2.resize(light_low, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR,
                                dst=buffer(ws, "light", shape))
    else:
        light_full = light_low
    # screen: c + light * (255 - c) / 255, in place on the region (a view of the composite)
    room = cv2.bitwise_not(region, dst=buffer(ws, "room", shape))
    cv2.multiply(room, light_full, dst=room, scale=1 / 255)
    cv2.add(region, room, dst=region)
    return composite_bgr


class LightWrap:
    """:func:`light_wrap` with its options and reused buffers; a ``Background.render`` hook.

    Args:
        strength: 0..1 (0 = no change), as ``CompositeOptions.light_wrap``.
        width_px: how far the light reaches into the person, in pixels, as
            ``CompositeOptions.light_wrap_px`` (at least 1).

    Raises:
        ValueError, TypeError: a value ``CompositeOptions`` refuses for its field, checked by
            it (:mod:`portrait.option_checks`): a strength outside 0..1, a width below 1, not a
            whole number or not a number.
    """

    def __init__(self, strength: float, width_px: int = CompositeOptions.light_wrap_px):
        # The options' own check of these two fields, so its ranges are written once.
        self._take(CompositeOptions(light_wrap=strength, light_wrap_px=width_px))

    @classmethod
    def from_options(cls, options: CompositeOptions) -> Optional["LightWrap"]:
        """The light wrap ``options`` ask for, or None when it is off; their values were checked
        as they were built, and are not checked again."""
        if options.light_wrap <= 0.0:
            return None
        wrap = cls.__new__(cls)
        wrap._take(options)
        return wrap

    def _take(self, options: CompositeOptions) -> None:
        self.strength = float(options.light_wrap)
        self.width_px = options.light_wrap_px
        self._workspace: dict = {}

    def __call__(self, composite_bgr: np.ndarray, alpha: np.ndarray,
                 background_bgr: np.ndarray) -> np.ndarray:
        """Wrap the background's light onto ``composite_bgr`` in place; returns it."""
        return light_wrap(composite_bgr, alpha, background_bgr, self.strength, self.width_px,
                          workspace=self._workspace)

"""Foreground colour at the edge: the person's own colour where the matte is partly see-through.

Where 0 < alpha < 255 the frame's pixel mixes the person and the room behind them,
``I = a F + (1 - a) B``. Blending ``I`` over a new background brings the room along: a bright
wall leaves a pale fringe around the hair and a haze at the shoulders. :func:`estimate_foreground`
puts an estimate of ``F`` in those pixels instead ("decontaminate colours" in photo editors).

The estimate is blur fusion (Forte and Pitié, "Approximate fast foreground colour estimation",
ICIP 2021): with ``Fm`` and ``Bm`` the local means of the person's and of the room's colours
(box means weighted by ``a`` and by ``1 - a``),

    F = Fm + a (I - a Fm - (1 - a) Bm)

which keeps ``I`` where ``a = 1`` and moves a mixed pixel's colour away from the room's. Two
passes: a wide one (``WIDE_PX``) from the frame's own colours, then a narrow one (``NARROW_PX``)
whose person and room colours are the first pass's ``F`` and ``Bm``.

Cost: the means are smooth, so both passes run at ``1/SCALE`` of the frame, on the frame and
alpha shrunk once, and only around the box of the soft pixels, as far as the passes reach; at
full resolution only the last formula runs, on the soft pixels themselves (alpha from ``FAINT``
to ``255 - FAINT``), and only they change. Every other pixel is the frame's. About 4.5 ms a 720p
frame of the camera model's mattes (``python -m portrait.training.bench_effects``).

Off by default (``--decontaminate``): the rule for making it the default, and what it measured,
are in weights/HISTORY.md ("Edge refinement studies").
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from portrait.scratch import box_mean, buffer, check_frame_alpha

SCALE = 4  # the passes run at 1/SCALE of the frame's size
WIDE_PX = 45  # the first pass's box radius, full-resolution pixels (the paper's 90 px box;
# the camera model's soft band at 720p is 10-30 px wide, and a 12 px pass recovers little there)
NARROW_PX = 4  # the second pass's: one cell at 1/4
FAINT = 4  # alpha below this, or above 255 - this, is left as it is (the estimate would move
# such a pixel's composite by a few grey levels at most)
_EPS = np.float32(1e-5)  # keeps the weighted means finite where a weight sums to 0
_ROW = 1024  # points per row of the maps given to cv2.remap
_CHUNK = 1 << 20  # soft pixels are estimated in strips of rows of at most this many pixels


def _shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _means(person: np.ndarray, room: np.ndarray, alpha: np.ndarray,
           radius: int) -> tuple[np.ndarray, np.ndarray]:
    """The local means ``(Fm, Bm)`` of the person's and the room's colours, weighted by
    ``alpha`` (H, W, 1) and by ``1 - alpha``; float32 0..1."""
    alpha_mean = box_mean(alpha, radius)[:, :, None]
    person_mean = box_mean(person * alpha, radius)
    person_mean /= alpha_mean + _EPS
    room_mean = box_mean(room * (1 - alpha), radius)
    room_mean /= 1 - alpha_mean + _EPS
    return person_mean, room_mean


def _formula(image: np.ndarray, alpha: np.ndarray, person_mean: np.ndarray,
             room_mean: np.ndarray) -> np.ndarray:
    """``F = Fm + a (I - Bm - a (Fm - Bm))``, the module's formula, clipped to 0..1 (a new
    array)."""
    estimate = image - room_mean
    apart = person_mean - room_mean
    apart *= alpha
    estimate -= apart
    estimate *= alpha
    estimate += person_mean
    return np.clip(estimate, 0, 1, out=estimate)


def estimate_foreground(frame_bgr: np.ndarray, alpha: np.ndarray,
                        out: Optional[np.ndarray] = None,
                        workspace: Optional[dict] = None) -> np.ndarray:
    """The frame with the person's estimated colour where the matte mixes person and room.

    Args:
        frame_bgr: BGR uint8 (H, W, 3).
        alpha: uint8 (H, W), 255 = person.
        out: optional uint8 (H, W, 3) destination, C-contiguous, not sharing ``frame_bgr``'s
            memory.
        workspace: optional dict for scratch buffers, reused between calls.

    Returns:
        BGR uint8 (H, W, 3) (``out`` when given): the estimate where ``FAINT <= alpha <= 255 -
        FAINT``, the frame's own pixels elsewhere.

    Raises:
        ValueError: a wrong dtype or shape (actual vs expected).
    """
    check_frame_alpha(frame_bgr, alpha)
    if out is None:
        out = np.empty_like(frame_bgr)
    elif (out.dtype != np.uint8 or out.shape != frame_bgr.shape or not out.flags.c_contiguous
          or np.shares_memory(out, frame_bgr)):
        raise ValueError(f"unexpected out: {out.dtype} {out.shape} != a uint8 {frame_bgr.shape}"
                         " of its own, C-contiguous")
    ws = {} if workspace is None else workspace
    np.copyto(out, frame_bgr)
    height, width = alpha.shape
    band = buffer(ws, "band", alpha.shape, np.uint8)
    cv2.inRange(alpha, FAINT, 255 - FAINT, dst=band)
    x, y, w, h = cv2.boundingRect(band)
    if w == 0:
        return out
    # The passes at 1/SCALE (cell i averages pixels i*SCALE to i*SCALE + SCALE - 1; a last
    # partial row or column of cells is left out, and the pixels there take the cells beside
    # them), over the band's box and as far around it as the passes reach: each cell there is
    # what the whole frame would give, for a fraction of the work.
    low_w, low_h = max(1, width // SCALE), max(1, height // SCALE)
    wide, narrow = max(1, round(WIDE_PX / SCALE)), max(1, round(NARROW_PX / SCALE))
    reach = wide + narrow + 2
    left, top = max(0, x // SCALE - reach), max(0, y // SCALE - reach)
    right = max(left + 1, min(low_w, (x + w) // SCALE + 1 + reach))
    bottom = max(top + 1, min(low_h, (y + h) // SCALE + 1 + reach))
    cells = (right - left, bottom - top)
    region = np.s_[top * SCALE:bottom * SCALE, left * SCALE:right * SCALE]
    image_low = _shrink(frame_bgr[region], cells).astype(np.float32) * np.float32(1 / 255)
    alpha_low = _shrink(alpha[region], cells).astype(np.float32)[:, :, None] * np.float32(1 / 255)
    person_wide, room_wide = _means(image_low, image_low, alpha_low, wide)
    person_wide = _formula(image_low, alpha_low, person_wide, room_wide)
    person_mean, room_mean = _means(person_wide, room_wide, alpha_low, narrow)
    # Full resolution, the band's pixels only, in strips of rows of at most _CHUNK pixels (which
    # bounds the memory and cv2.remap's map size on a very large photo): the means sampled there
    # (bilinear, pixel centres mapped as cv2.resize maps them), then the formula.
    frame_flat, alpha_flat, out_flat = frame_bgr.reshape(-1, 3), alpha.reshape(-1), out.reshape(-1, 3)
    strip = max(1, _CHUNK // width)
    for first in range(y, y + h, strip):
        points = cv2.findNonZero(band[first:first + strip])
        if points is None:
            continue
        points = points.reshape(-1, 2)  # x, y (OpenCV 4 gives (N, 1, 2), OpenCV 5 (N, 2))
        xs, ys = points[:, 0], points[:, 1] + first
        map_x = (xs + np.float32(0.5)) * np.float32(1 / SCALE) - np.float32(0.5 + left)
        map_y = (ys + np.float32(0.5)) * np.float32(1 / SCALE) - np.float32(0.5 + top)
        flat = ys.astype(np.intp) * width + xs
        image = np.take(frame_flat, flat, axis=0).astype(np.float32)
        image *= np.float32(1 / 255)
        a = np.take(alpha_flat, flat).astype(np.float32)[:, None]
        a *= np.float32(1 / 255)
        estimate = _formula(image, a, _sample(person_mean, map_x, map_y),
                            _sample(room_mean, map_x, map_y))
        estimate *= np.float32(255)
        estimate += np.float32(0.5)
        out_flat[flat] = estimate.astype(np.uint8)
    return out


def _sample(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """``image`` (H, W, C) at the points (map_x, map_y), bilinear: (N, C). cv2.remap takes maps
    of under 32,767 rows, so the N points (at most ``_CHUNK``) go in as rows of ``_ROW``, the last
    one padded."""
    count = len(map_x)
    rows = -(-count // _ROW)
    grid_x = np.zeros(rows * _ROW, np.float32)
    grid_y = np.zeros(rows * _ROW, np.float32)
    grid_x[:count], grid_y[:count] = map_x, map_y
    sampled = cv2.remap(image, grid_x.reshape(rows, _ROW), grid_y.reshape(rows, _ROW),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return sampled.reshape(rows * _ROW, -1)[:count]


class ForegroundEstimator:
    """:func:`estimate_foreground` with its buffers kept between frames (thread-confined). The
    frame processor uses it while the live state's ``decontaminate`` is on (``--decontaminate``,
    the ``e`` key)."""

    def __init__(self):
        self._workspace: dict = {}

    def __call__(self, frame_bgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        out = buffer(self._workspace, "out", frame_bgr.shape, np.uint8)
        return estimate_foreground(frame_bgr, alpha, out=out, workspace=self._workspace)

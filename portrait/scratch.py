"""Helpers the per-frame stages share: scratch arrays reused between frames, the parts of a
frame outside a box (where a bounded stage writes its constant instead of computing), the box
mean the guided filter and the foreground estimate are made of, and the frame-and-matte check
of the stages that take both."""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

BOX_BORDER = cv2.BORDER_REFLECT  # what cv2.ximgproc.guidedFilter uses for its box means


def buffer(workspace: dict, name: str, shape: tuple, dtype=np.uint8) -> np.ndarray:
    """A scratch array kept in ``workspace`` and reallocated only when the shape changes."""
    buf = workspace.get(name)
    if buf is None or buf.shape != shape:
        buf = workspace[name] = np.empty(shape, dtype)
    return buf


def fit_inside(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where an image of ``size`` (w, h) goes when scaled to fit ``box`` (w, h), its aspect
    kept and centred: (x, y, width, height) in the box."""
    box_w, box_h = box
    scale = min(box_w / size[0], box_h / size[1])
    width = min(box_w, max(1, round(size[0] * scale)))
    height = min(box_h, max(1, round(size[1] * scale)))
    return (box_w - width) // 2, (box_h - height) // 2, width, height


def outside(x0: int, y0: int, x1: int, y1: int) -> tuple:
    """Index expressions for the four strips of a frame outside the box [x0, x1) × [y0, y1):
    above, below, left and right of it (empty where the box touches the frame's edge)."""
    return np.s_[:y0], np.s_[y1:], np.s_[y0:y1, :x0], np.s_[y0:y1, x1:]


def box_mean(x: np.ndarray, radius: int, dst: Optional[np.ndarray] = None) -> np.ndarray:
    """The mean over the (2 radius + 1)² box around each pixel, float32, the frame's edge
    mirrored (``BOX_BORDER``)."""
    size = 2 * radius + 1
    return cv2.boxFilter(x, cv2.CV_32F, (size, size), dst=dst, normalize=True,
                         borderType=BOX_BORDER)


def check_frame_alpha(frame_bgr: np.ndarray, alpha: np.ndarray) -> None:
    """Raise ValueError (actual vs expected) unless ``frame_bgr`` is BGR uint8 (H, W, 3) and
    ``alpha`` uint8 (H, W) of the same size."""
    if frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"unexpected frame: {frame_bgr.dtype} {frame_bgr.shape} != uint8 (H, W, 3)")
    if alpha.dtype != np.uint8 or alpha.shape != frame_bgr.shape[:2]:
        raise ValueError(f"unexpected alpha: {alpha.dtype} {alpha.shape} != uint8 {frame_bgr.shape[:2]}")

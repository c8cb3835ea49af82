"""Helpers the per-frame stages share: scratch arrays reused between frames, and the parts of a
frame outside a box (where a bounded stage writes its constant instead of computing)."""

from __future__ import annotations

import numpy as np


def buffer(workspace: dict, name: str, shape: tuple, dtype=np.uint8) -> np.ndarray:
    """A scratch array kept in ``workspace`` and reallocated only when the shape changes."""
    buf = workspace.get(name)
    if buf is None or buf.shape != shape:
        buf = workspace[name] = np.empty(shape, dtype)
    return buf


def outside(x0: int, y0: int, x1: int, y1: int) -> tuple:
    """Index expressions for the four strips of a frame outside the box [x0, x1) × [y0, y1):
    above, below, left and right of it (empty where the box touches the frame's edge)."""
    return np.s_[:y0], np.s_[y1:], np.s_[y0:y1, :x0], np.s_[y0:y1, x1:]

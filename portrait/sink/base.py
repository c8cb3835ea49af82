"""What every sink shares: the :class:`Sink` base, input checks and :func:`to_bgr`."""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from portrait.scratch import fit_inside


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"unexpected frame dtype: {dtype} != uint8")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(f"unexpected frame shape: {image.shape} != (H, W), (H, W, 3) or (H, W, 4)")


def to_bgr(image: np.ndarray, size: Optional[tuple[int, int]] = None,
           out: Optional[np.ndarray] = None) -> np.ndarray:
    """Convert a sink input to BGR uint8, resized to ``size`` (w, h) when it differs: scaled to
    fit, its aspect kept, with black bars where the aspects differ (a camera that comes back at
    another aspect is not stretched).

    Args:
        image: BGR, BGRA or grey uint8.
        size: target (width, height), or ``None`` to keep the image's.
        out: a buffer of the result's shape to reuse, or ``None``.

    Returns:
        ``image`` itself when nothing needs changing, else the converted (or ``out``) array.

    Raises:
        ValueError: an image that isn't uint8 grey/BGR/BGRA.
    """
    _check_image(image)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if size is None or (image.shape[1], image.shape[0]) == tuple(size):
        return image
    if out is None or out.shape != (size[1], size[0], 3):
        out = np.empty((size[1], size[0], 3), np.uint8)
    width, height = size
    left, top, fit_w, fit_h = fit_inside((image.shape[1], image.shape[0]), (width, height))
    # INTER_AREA when shrinking keeps thin edges (hair) from aliasing.
    shrink = image.shape[1] > fit_w or image.shape[0] > fit_h
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    if width - fit_w <= 1 and height - fit_h <= 1:  # the same aspect, to a pixel
        return cv2.resize(image, (width, height), dst=out, interpolation=interpolation)
    out[:] = 0
    out[top:top + fit_h, left:left + fit_w] = cv2.resize(image, (fit_w, fit_h),
                                                         interpolation=interpolation)
    return out


class Sink:
    """Base of all sinks: ``write(image, pts_s)``, ``close()``, a context manager."""

    frames_written = 0

    def write(self, image: np.ndarray, pts_s: Optional[float] = None) -> None:
        """Output one frame; ``pts_s`` is when it is shown (``capture.Frame.pts_s``), which
        only a video file keeps (the others show a frame when it comes)."""
        raise NotImplementedError

    def close(self) -> None:
        """Finalise and release; safe to call twice."""

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

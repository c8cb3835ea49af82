"""The segmenter interface, and the start-up line every runtime composes."""

from __future__ import annotations

import abc
from typing import Optional

import numpy as np

DEFAULT_INPUT_SIZE = (256, 256)
NORM_TEXT = {"raw": "RGB 0..255", "unit": "RGB x/255", "symmetric": "RGB x/127.5-1"}


class Segmenter(abc.ABC):
    """A model that maps a BGR frame to a low-resolution person probability.

    Attributes:
        description: one line for the start-up log: runtime, device, model, and why.
        input_size: (width, height) the model runs at.
    """

    description: str = ""
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    # What the start-up line is made of (see _describe).
    runtime: str = ""
    letterbox: bool = False
    output_kind: str = ""
    input_norm: Optional[str] = None

    @abc.abstractmethod
    def segment(self, frame_bgr: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Return the person probability of a frame.

        Args:
            frame_bgr: BGR uint8 (H, W, 3), any size (sizes may change between calls).
            out: optional float32 array to write into; it must have the size of the previous
                result for this frame size.

        Returns:
            float32 (h, w) in [0, 1] at the model's resolution, covering exactly the frame's
            field of view (letterbox padding removed; the aspect may differ from the frame's).

        Raises:
            ValueError: a frame that is not BGR uint8 (H, W, 3).
        """

    def close(self) -> None:
        """Release the runtime. Safe to call twice."""

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _check_open(self) -> None:
        if getattr(self, "_closed", False):
            raise ValueError(f"{type(self).__name__} is closed")


def describe(segmenter: Segmenter, source: str, norm_why: Optional[str], reason: str) -> str:
    """Compose the one start-up line: runtime, source, input, scaling, output, and why."""
    width, height = segmenter.input_size
    short_px = getattr(segmenter, "short_px", None)  # an AspectSegmenter sizes per frame
    if short_px:
        frames = getattr(segmenter, "first_frame_size", None)
        # The size it runs at, where the frames are known: what the cost depends on.
        size = (f"input {width}x{height} for a {frames[0]}x{frames[1]} frame (each frame's "
                f"aspect, short side {short_px} px)" if frames else
                f"input sized to the frame's aspect, short side {short_px} px")
    else:
        size = f"input {width}x{height} {'letterboxed' if segmenter.letterbox else 'stretched'}"
    parts = [f"segmenter: {segmenter.runtime}", source, size]
    norm = getattr(segmenter, "input_norm", None)
    if norm:
        parts.append(f"{NORM_TEXT[norm]} ({norm_why})" if norm_why else NORM_TEXT[norm])
    parts.append(segmenter.output_kind)
    if reason:
        parts.append(reason)
    return ", ".join(parts)


def resolve_norm(requested: str, detected: Optional[str], detected_why: str) -> tuple[str, str]:
    """Return (norm, why) following the module's ``input_norm`` rules."""
    if requested != "auto":
        return requested, f"--input-norm {requested}"
    if detected:
        return detected, detected_why
    return "unit", "the default; set --input-norm if the model differs"


def one_line(error: BaseException, limit: int = 160) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Frames in, masks out: fitting a BGR frame to a model's input and reading a mask from its output.

* :func:`place_frame` decides where the frame sits in the model input (stretched, or letterboxed
  and padded); :class:`Placement` records it so the padding can be cut from the output.
* :class:`Preprocessor` resizes a frame into a preallocated input buffer (area averaging when
  shrinking, as a fast whole-factor INTER_AREA then INTER_LINEAR), BGR→RGB on the small image,
  scaled as the model expects (``NORMS``).
* :class:`OutputReader` turns the raw output (sigmoid, logits, or a two-channel softmax) into a
  float32 probability of the frame's field of view.

Used by every runtime in :mod:`portrait.segment`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from portrait.errors import ModelError
from portrait.scratch import fit_inside

log = logging.getLogger(__name__)

NORMS = {"raw": (1.0, 0.0), "unit": (1.0 / 255.0, 0.0), "symmetric": (1.0 / 127.5, -1.0)}


@dataclass(frozen=True)
class Placement:
    """Where a frame's content sits inside the model input (pixels of the model input).

    Attributes:
        input_size: (width, height) of the model input.
        x, y, width, height: the content rectangle; the rest is padding.
    """

    input_size: tuple[int, int]
    x: int
    y: int
    width: int
    height: int

    def output_window(self, output_size: tuple[int, int]) -> tuple[slice, slice]:
        """Return (rows, cols) slices of the content in an output of (width, height).

        The model output may be smaller than its input (e.g. half resolution): the content
        rectangle is scaled to it and kept at least one pixel wide.
        """
        in_w, in_h = self.input_size
        out_w, out_h = output_size
        x0 = min(round(self.x * out_w / in_w), out_w - 1)
        y0 = min(round(self.y * out_h / in_h), out_h - 1)
        x1 = max(round((self.x + self.width) * out_w / in_w), x0 + 1)
        y1 = max(round((self.y + self.height) * out_h / in_h), y0 + 1)
        return slice(y0, y1), slice(x0, x1)


def fixed_input(fixed: tuple[int, int], requested: Optional[tuple[int, int]]) -> tuple[int, int]:
    """A fixed-size model's input (w, h), with a warning when ``--input-size`` asked for
    another, which it cannot take."""
    if requested and tuple(requested) != tuple(fixed):
        log.warning("the model has a fixed %dx%d input; ignoring --input-size", *fixed)
    return tuple(fixed)


def place_frame(frame_size: tuple[int, int], input_size: tuple[int, int], letterbox: bool) -> Placement:
    """Compute where a frame goes in the model input.

    Args:
        frame_size: (width, height) of the frame.
        input_size: (width, height) of the model input.
        letterbox: keep the aspect ratio (fit and centre, padding the rest); else stretch.

    Returns:
        The :class:`Placement`.
    """
    if not letterbox:
        return Placement(input_size, 0, 0, *input_size)
    return Placement(input_size, *fit_inside(frame_size, input_size))


def check_frame(frame_bgr: np.ndarray) -> None:
    """Raise ValueError unless ``frame_bgr`` is a BGR uint8 (H, W, 3) array."""
    if not isinstance(frame_bgr, np.ndarray) or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        shape = getattr(frame_bgr, "shape", type(frame_bgr).__name__)
        raise ValueError(f"unexpected frame shape: {shape} != (H, W, 3)")
    if frame_bgr.dtype != np.uint8:
        raise ValueError(f"unexpected frame dtype: {frame_bgr.dtype} != uint8")
    if frame_bgr.shape[0] < 1 or frame_bgr.shape[1] < 1:
        raise ValueError(f"unexpected empty frame: {frame_bgr.shape}")


class Preprocessor:
    """Turns a BGR frame into the model's input tensor, reusing its small buffers.

    Args:
        input_size: (width, height) of the model input.
        norm: ``raw``, ``unit`` or ``symmetric`` (see the module docstring).
        letterbox: keep the aspect ratio by padding.
    """

    def __init__(self, input_size: tuple[int, int], norm: str, letterbox: bool):
        if norm not in NORMS:
            raise ValueError(f"unknown input norm {norm!r}: expected one of {tuple(NORMS)}")
        self.input_size = input_size
        self.letterbox = letterbox
        self.scale, self.offset = NORMS[norm]
        self._frame_size: Optional[tuple[int, int]] = None
        self.placement = place_frame(input_size, input_size, letterbox)
        self._small = self._rgb = np.empty((0, 0, 3), np.uint8)
        self._steps: Optional[tuple[tuple[int, int], np.ndarray]] = None

    def _plan(self, frame_size: tuple[int, int]) -> None:
        """Place a new frame size and allocate the buffers for it."""
        self._frame_size = frame_size
        p = self.placement = place_frame(frame_size, self.input_size, self.letterbox)
        shape = (p.height, p.width, 3)
        self._small = np.empty(shape, np.uint8)
        self._rgb = np.empty(shape, np.uint8)
        factor_x, factor_y = frame_size[0] // p.width, frame_size[1] // p.height
        self._steps = None
        if max(factor_x, factor_y) >= 2 and min(factor_x, factor_y) >= 1:
            # Cropping to whole multiples drops fewer than factor source pixels at the right and
            # bottom edges: less than one model pixel.
            middle_w, middle_h = frame_size[0] // factor_x, frame_size[1] // factor_y
            exact = (middle_w, middle_h) == (p.width, p.height)
            middle = self._small if exact else np.empty((middle_h, middle_w, 3), np.uint8)
            self._steps = ((middle_w * factor_x, middle_h * factor_y), middle)

    def __call__(self, frame_bgr: np.ndarray, dst: np.ndarray) -> Placement:
        """Write ``frame_bgr`` into ``dst`` (shape (1, H, W, 3), float32 or uint8).

        Returns:
            The placement of the frame in ``dst`` (needed to un-letterbox the output).
        """
        check_frame(frame_bgr)
        frame_size = (frame_bgr.shape[1], frame_bgr.shape[0])
        if frame_size != self._frame_size:
            # Size changes are rare (a new camera mode); re-plan and reallocate only then.
            self._plan(frame_size)
        p = self.placement
        if self._steps:
            # Whole-factor INTER_AREA takes OpenCV's fast path; the factor < 2 left is then
            # alias-free with INTER_LINEAR. Half the cost of one INTER_AREA at 720p, a third at
            # 1080p, within one grey level of it.
            (crop_w, crop_h), middle = self._steps
            cv2.resize(frame_bgr[:crop_h, :crop_w], middle.shape[1::-1], dst=middle, interpolation=cv2.INTER_AREA)
            if middle is not self._small:
                cv2.resize(middle, (p.width, p.height), dst=self._small, interpolation=cv2.INTER_LINEAR)
        else:
            shrinking = p.width <= frame_size[0] and p.height <= frame_size[1]
            interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
            cv2.resize(frame_bgr, (p.width, p.height), dst=self._small, interpolation=interpolation)
        cv2.cvtColor(self._small, cv2.COLOR_BGR2RGB, dst=self._rgb)
        image = dst[0]
        content = image[p.y: p.y + p.height, p.x: p.x + p.width]
        if dst.dtype == np.uint8 or (self.scale == 1.0 and self.offset == 0.0):
            np.copyto(content, self._rgb, casting="unsafe")
        else:
            np.multiply(self._rgb, np.float32(self.scale), out=content, casting="unsafe")
            if self.offset:
                content += np.float32(self.offset)
        if (p.width, p.height) != self.input_size:
            # Refill every frame: the runtime may reuse its input buffer between calls.
            pad = 0 if dst.dtype == np.uint8 else np.float32(self.offset)
            image[: p.y] = pad
            image[p.y + p.height:] = pad
            image[p.y: p.y + p.height, : p.x] = pad
            image[p.y: p.y + p.height, p.x + p.width:] = pad
        return p


class OutputReader:
    """Turns a raw model output into the person probability of the frame's field of view.

    Args:
        output_shape: the model's output shape, (1, H, W, C) with C in {1, 2}, or (1, H, W).
        activation: ``sigmoid``/``softmax`` when the output is known to be a probability,
            ``logits`` when known not to be, None to decide from the values (see module docs).
        quantization: (scale, zero_point) of a quantised output; (0, 0) for float.

    Raises:
        ModelError: an output shape that is not a one- or two-channel mask.
    """

    def __init__(self, output_shape, activation: Optional[str] = None, quantization=(0.0, 0)):
        found = tuple(int(v) if v is not None else None for v in output_shape)
        shape = found + (1,) if len(found) == 3 else found
        if len(shape) != 4 or shape[0] not in (1, None) or shape[3] not in (1, 2):
            raise ModelError(
                f"model output shape {found} is not a mask: expected (1, H, W, 1) or "
                "(1, H, W, 2); pass a segmentation model with a one-channel sigmoid or a "
                "two-channel softmax output"
            )
        self.channels = shape[3]
        self.activation = activation
        scale, zero_point = quantization or (0.0, 0)
        self._dequantize = (float(scale), float(zero_point)) if scale else None

    @property
    def kind(self) -> str:
        """A short description of how the output is read, for the start-up log."""
        head = "softmax, person = channel 1" if self.channels == 2 else "sigmoid"
        if self.activation == "logits":
            return f"{self.channels}-channel logits"
        if self.activation is None:
            return f"{head} (logits if values leave [0, 1])"
        return head

    def __call__(self, raw: np.ndarray, placement: Placement, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Read ``raw`` into a float32 (h, w) probability in [0, 1].

        Args:
            raw: the model output (1, H, W, C) or (1, H, W); not modified.
            placement: where the frame sat in the input (the output is cropped to it).
            out: optional float32 array of the cropped size to write into.

        Returns:
            ``out`` or a new array: the caller owns it (the pipeline hands it to other threads).

        Raises:
            ValueError: ``out`` of the wrong shape or dtype.
        """
        if raw.ndim == 3:
            raw = raw[..., None]
        rows, cols = placement.output_window((raw.shape[2], raw.shape[1]))
        window = raw[0, rows, cols]
        size = window.shape[:2]
        if out is None:
            out = np.empty(size, np.float32)
        elif out.shape != size or out.dtype != np.float32:
            raise ValueError(f"unexpected out array: {out.shape} {out.dtype} != {size} float32")
        if self._dequantize:
            scale, zero_point = self._dequantize
            window = (window.astype(np.float32) - zero_point) * scale
        if self.channels == 1:
            np.copyto(out, window[..., 0], casting="unsafe")
        else:
            np.copyto(out, window[..., 1], casting="unsafe")
        if self.activation is None and self._looks_like_logits(out, window):
            log.info("model output leaves [0, 1]: reading it as logits from now on")
            self.activation = "logits"
        if self.activation == "logits":
            if self.channels == 2:
                out -= window[..., 0]  # softmax of two logits = sigmoid of their difference
            _sigmoid(out)
        elif self.activation is None:
            np.clip(out, 0.0, 1.0, out=out)
        return out

    def _looks_like_logits(self, person: np.ndarray, window: np.ndarray) -> bool:
        if float(person.min()) < 0.0 or float(person.max()) > 1.0:
            return True
        if self.channels == 2:
            background = window[..., 0]
            return float(background.min()) < 0.0 or float(background.max()) > 1.0
        return False


def _sigmoid(values: np.ndarray) -> None:
    """In-place logistic function on a float32 array (clamped so exp cannot overflow)."""
    np.clip(values, -60.0, 60.0, out=values)
    np.negative(values, out=values)
    np.exp(values, out=values)
    values += np.float32(1.0)
    np.reciprocal(values, out=values)

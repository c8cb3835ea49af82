"""The TFLite runtime: a ``.tflite`` flatbuffer on the CPU, in LiteRT's interpreter (or tf.lite's)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from portrait.errors import ModelError
from portrait.native_log import drop_model_load_noise, filtered_stderr
from portrait.segment import tflite_utils
from portrait.segment.base import DEFAULT_INPUT_SIZE, Segmenter, describe, one_line
from portrait.segment.locate import MODEL_HINT
from portrait.segment.model_io import OutputReader, Preprocessor

PROBABILITY_OPS = {"LOGISTIC": "sigmoid", "SOFTMAX": "softmax"}


class TFLiteSegmenter(Segmenter):
    """Runs a TFLite flatbuffer with the TFLite interpreter on the CPU (see
    :func:`tflite_utils.make_interpreter`: LiteRT's when installed).

    Args:
        model_content: the ``.tflite`` bytes.
        input_norm: ``raw``, ``unit`` or ``symmetric`` (already resolved from ``auto``).
        input_size: (width, height) for a model with a dynamic input size; ignored otherwise.
        letterbox: keep the aspect ratio by padding.
        threads: interpreter threads (0 = all cores).
        name: how to call the model in error messages.
        interpreter: ``"LiteRT"`` or ``"tf.lite"``; None: LiteRT when installed (benchmarks
            compare the two).

    Raises:
        ModelError: bytes that are not a usable TFLite model, or an input/output that is not
            an image/mask.
    """

    def __init__(
        self,
        model_content: bytes,
        input_norm: str = "unit",
        input_size: Optional[tuple[int, int]] = None,
        letterbox: bool = False,
        threads: int = 0,
        name: str = "model",
        interpreter: Optional[str] = None,
    ):
        self._closed = False
        self.threads = threads or os.cpu_count() or 1
        try:
            self._interpreter = tflite_utils.make_interpreter(model_content, self.threads, which=interpreter)
            activation = tflite_utils.output_activation(model_content)
        except (ValueError, RuntimeError) as error:
            raise ModelError(
                f"cannot load TFLite model '{name}': {one_line(error)}; the file may be truncated "
                f"or corrupt, re-download or re-export it"
            ) from None
        details = self._interpreter.get_input_details()
        if len(details) != 1:
            raise ModelError(
                f"model '{name}' has {len(details)} inputs: expected one RGB image; {MODEL_HINT}"
            )
        signature = [int(v) for v in details[0].get("shape_signature", details[0]["shape"])]
        if len(signature) != 4 or signature[3] != 3:
            raise ModelError(
                f"model input shape {tuple(signature)} is not an image: expected (1, H, W, 3); "
                f"{MODEL_HINT}"
            )
        height, width = signature[1:3]
        if -1 in signature[1:3]:
            width, height = input_size or DEFAULT_INPUT_SIZE
            shape = [1, height, width, 3]
        else:
            # A fixed image size with a batch of any size (what TFLiteConverter.from_keras_model
            # writes): one frame at the model's own size, not resized to 256x256 as a
            # dynamic one is (which ran it at a size it was not made for, or failed it).
            shape = [1, *signature[1:]] if signature[0] != 1 else None
        try:
            if shape is not None:
                self._interpreter.resize_tensor_input(details[0]["index"], shape, strict=False)
            with filtered_stderr(drop_model_load_noise):
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ModelError(_unprepared(name, signature, height, width, error)) from None
        input_detail = self._interpreter.get_input_details()[0]
        output_detail = self._interpreter.get_output_details()[0]
        _, height, width, _ = (int(v) for v in input_detail["shape"])
        self.input_size = (width, height)
        if input_detail["dtype"] == np.uint8:
            input_norm = "raw"
        elif input_detail["dtype"] != np.float32:
            raise ModelError(
                f"model '{name}' takes {np.dtype(input_detail['dtype']).name} input: expected float32 "
                f"or uint8; {MODEL_HINT}"
            )
        self.input_norm = input_norm
        self._preprocess = Preprocessor(self.input_size, input_norm, letterbox)
        self._read = OutputReader(
            output_detail["shape"], PROBABILITY_OPS.get(activation or ""), output_detail.get("quantization")
        )
        # tensor() returns functions giving views of the interpreter's own buffers: writing the
        # input in place and reading the output in place saves two copies per frame. No view
        # may be alive during invoke(), so each is fetched, used and dropped.
        self._input = self._interpreter.tensor(input_detail["index"])
        self._output = self._interpreter.tensor(output_detail["index"])
        self.letterbox = letterbox
        self.output_kind = self._read.kind
        threads_text = f"{self.threads} thread{'' if self.threads == 1 else 's'}"
        self.runtime = f"TFLite (CPU, {threads_text}, {tflite_utils.interpreter_module(interpreter)[1]})"
        self.cache_path: Optional[Path] = None  # set by the factory for a cached conversion
        self.cache_hit = False
        self.description = describe(self, name, None, "")
        try:
            # One run now: XNNPACK sets up on the first invoke, and a model that cannot run
            # should fail here, not on the first camera frame.
            self._interpreter.invoke()
        except (ValueError, RuntimeError) as error:
            raise ModelError(f"TFLite model '{name}' fails to run: {one_line(error)}; {MODEL_HINT}") from None

    def segment(self, frame_bgr: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        self._check_open()
        placement = self._preprocess(frame_bgr, self._input())
        self._interpreter.invoke()
        return self._read(self._output(), placement, out)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._input = self._output = None
            self._interpreter = None


def _unprepared(name: str, signature: list[int], height: int, width: int,
                error: BaseException) -> str:
    """Why a TFLite model that loaded could not be made ready to run at ``width`` x ``height``:
    the size its dynamic input was given, or its own (``signature``: its input's shape)."""
    if -1 in signature[1:3]:
        return (f"TFLite model '{name}' does not run at {width}x{height}: {one_line(error)}; its "
                "input size is not fixed, so give --input-size WxH at a size it was made for")
    return (f"TFLite model '{name}' cannot be prepared to run one frame at its input size "
            f"{width}x{height}: {one_line(error)}; {MODEL_HINT}")

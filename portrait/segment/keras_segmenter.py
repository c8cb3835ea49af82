"""The Keras runtime: a Keras model as a compiled ``tf.function`` (the GPU path)."""

from __future__ import annotations

import logging
import warnings
from typing import Callable, Optional

import numpy as np

from portrait.errors import ModelError
from portrait.segment import keras_compat
from portrait.segment.base import Segmenter, describe, one_line
from portrait.segment.model_io import OutputReader, Preprocessor

log = logging.getLogger(__name__)


class KerasSegmenter(Segmenter):
    """Runs a Keras model as a ``tf.function`` with a fixed (1, H, W, 3) input.

    Args:
        model: the loaded ``keras.Model``.
        input_norm: ``raw``, ``unit`` or ``symmetric`` (already resolved from ``auto``).
        input_size: (width, height) to run at.
        letterbox: keep the aspect ratio by padding.
        device: a TensorFlow device name such as ``/GPU:0`` or ``/CPU:0``.
        jit_compile: compile with XLA (on a GPU); falls back to a plain graph if XLA fails.

    Raises:
        ModelError: an output that is not a mask, or a model that fails on a test frame.
    """

    def __init__(
        self,
        model,
        input_norm: str,
        input_size: tuple[int, int],
        letterbox: bool = False,
        device: str = "/CPU:0",
        jit_compile: bool = False,
    ):
        import tensorflow as tf

        self._closed = False
        self._tf = tf
        self._model = model
        self._device = device
        self.input_size = input_size
        self.input_norm = input_norm
        width, height = input_size
        self._input = np.zeros((1, height, width, 3), np.float32)
        self._preprocess = Preprocessor(input_size, input_norm, letterbox)
        self.jit_compile = jit_compile
        self._fn = self._trace(jit_compile)
        try:
            raw = self._run(self._input)
        except Exception as error:  # TensorFlow raises many types for a model it cannot run
            if not jit_compile:
                raise ModelError(f"model fails on a {width}x{height} input: {one_line(error)}") from None
            log.info("XLA compilation failed (%s); running the plain graph", one_line(error))
            self.jit_compile = False
            self._fn = self._trace(False)
            try:
                raw = self._run(self._input)
            except Exception as error:
                raise ModelError(f"model fails on a {width}x{height} input: {one_line(error)}") from None
        self._read = OutputReader(raw.shape, keras_compat.keras_output_activation(model))
        self.letterbox = letterbox
        self.output_kind = self._read.kind
        xla = ", XLA" if self.jit_compile else ""
        self.runtime = f"TensorFlow tf.function ({device.strip('/').split(':')[0]}{xla})"
        self.description = describe(self, model.name, None, "")

    def _trace(self, jit_compile: bool) -> Callable:
        tf = self._tf
        width, height = self.input_size
        model = self._model

        @tf.function(
            input_signature=[tf.TensorSpec((1, height, width, 3), tf.float32)],
            jit_compile=jit_compile,
            reduce_retracing=False,
        )
        def infer(images):
            return model(images, training=False)

        return infer

    def _run(self, images: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            # Keras 2 files declare inputs as a list; a single tensor is what they mean.
            warnings.filterwarnings("ignore", message=r".*structure of `inputs` doesn't match.*")
            with self._tf.device(self._device):
                result = self._fn(images)
        if isinstance(result, (list, tuple)):
            result = result[0]
        return result.numpy()

    def segment(self, frame_bgr: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        self._check_open()
        placement = self._preprocess(frame_bgr, self._input)
        return self._read(self._run(self._input), placement, out)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._fn = self._model = None

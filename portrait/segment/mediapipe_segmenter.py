"""The MediaPipe runtime: a MediaPipe selfie model through ``mediapipe.tasks``' ImageSegmenter."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from portrait.errors import ModelError
from portrait.native_log import drop_model_load_noise, filtered_stderr, import_mediapipe_quietly
from portrait.segment import tflite_utils
from portrait.segment.base import DEFAULT_INPUT_SIZE, Segmenter, describe, one_line
from portrait.segment.locate import MODEL_HINT, display_path
from portrait.segment.model_io import OutputReader, Preprocessor, fixed_input


class MediaPipeSegmenter(Segmenter):
    """Runs a MediaPipe segmentation model through ``mediapipe.tasks`` ImageSegmenter.

    The frame is resized here to the model's input size (so MediaPipe's own resize is a no-op
    and its output is model-sized, not frame-sized). MediaPipe reads the input scaling from the
    model's metadata, so ``input_norm`` does not apply. A model with one confidence mask gives
    it; with two, mask 1; with more, 1 − mask 0 (category 0 is the background).

    Args:
        path: a ``.tflite`` model with MediaPipe metadata (e.g. ``selfie_segmentation.tflite``).
        letterbox: keep the aspect ratio by padding.
        input_size: (width, height) for a model with a dynamic input size.

    Raises:
        ModelError: MediaPipe cannot load the model (for example a plain TFLite model without
            MediaPipe metadata).
    """

    def __init__(self, path: Path, letterbox: bool = False, input_size: Optional[tuple[int, int]] = None):
        import_mediapipe_quietly()
        import mediapipe as mp
        from mediapipe.tasks.python import vision
        from mediapipe.tasks.python.core.base_options import BaseOptions

        self._closed = False
        self._mp = mp
        try:
            shape, _ = tflite_utils.input_shape(path)
            options = vision.ImageSegmenterOptions(
                base_options=BaseOptions(model_asset_path=str(path)),
                running_mode=vision.RunningMode.IMAGE,
                output_confidence_masks=True,
                output_category_mask=False,
            )
            with filtered_stderr(drop_model_load_noise):
                self._segmenter = vision.ImageSegmenter.create_from_options(options)
        except (ValueError, RuntimeError, OSError) as error:
            raise ModelError(
                f"MediaPipe cannot load model '{path}': {one_line(error)}; --backend mediapipe needs "
                "a MediaPipe segmentation model with metadata (e.g. selfie_segmentation.tflite), "
                "or drop --backend to run it with TFLite"
            ) from None
        if len(shape) == 4 and shape[1] > 0 and shape[2] > 0:
            self.input_size = fixed_input((shape[2], shape[1]), input_size)
        else:
            self.input_size = input_size or DEFAULT_INPUT_SIZE
        width, height = self.input_size
        self._image = np.zeros((1, height, width, 3), np.uint8)
        self._preprocess = Preprocessor(self.input_size, "raw", letterbox)
        self._read = OutputReader((1, height, width, 1), "sigmoid")
        self.letterbox = letterbox
        self.output_kind = "confidence mask"
        self.runtime = "MediaPipe ImageSegmenter (CPU)"
        self.description = describe(self, display_path(path), None, "")
        try:
            self.segment(np.zeros((height, width, 3), np.uint8))  # fail here, not on frame one
        except (ValueError, RuntimeError) as error:
            self.close()
            raise ModelError(f"MediaPipe cannot run model '{path}': {one_line(error)}; {MODEL_HINT}") from None

    def segment(self, frame_bgr: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        self._check_open()
        placement = self._preprocess(frame_bgr, self._image)
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=self._image[0])
        masks = self._segmenter.segment(image).confidence_masks
        if len(masks) == 1:
            person = masks[0].numpy_view()
        elif len(masks) == 2:
            person = masks[1].numpy_view()
        else:
            person = 1.0 - masks[0].numpy_view()
        person = person.reshape(person.shape[0], person.shape[1], 1)
        return self._read(person[None], placement, out)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._segmenter.close()
            self._segmenter = None

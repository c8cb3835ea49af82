"""A Keras model on the CPU: converted to TFLite once per input size, cached, run by TFLite."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Callable, Optional

from portrait.errors import ModelError
from portrait.options import SegmentOptions
from portrait.segment import keras_compat, tflite_utils
from portrait.segment.base import Segmenter, describe, one_line, resolve_norm
from portrait.segment.locate import display_path, read_short_side_hint
from portrait.segment.tflite_segmenter import TFLiteSegmenter
from portrait.segment.wrappers import current_runtime, keras_run_size, sized_for_frames

log = logging.getLogger(__name__)


def create_converted(path: Path, config: dict, options: SegmentOptions, no_gpu: str) -> Segmenter:
    """Keras model on the CPU: convert to TFLite once, cache by file hash, run the conversion."""
    loaded = {}

    def model():
        if "model" not in loaded:
            loaded["model"] = keras_compat.load_keras_model(path, options.trust_model)
        return loaded["model"]

    model_input = keras_compat.config_input_size(config)
    if model_input is None:  # the config does not say plainly: the loaded model does
        model_input = keras_compat.saved_input_size(model()) or "dynamic"
    short_px = None
    if model_input == "dynamic":
        short_px = read_short_side_hint(path)
    elif options.input_size and tuple(options.input_size) != model_input:
        log.warning("model '%s' has a fixed %dx%d input; ignoring --input-size", path, *model_input)
    size = keras_run_size(model_input, short_px, options.input_size)

    segmenter = sized_for_frames(lambda sz: _converted_at(path, sz, model, options), short_px, size, options)
    first = current_runtime(segmenter)
    norm_why = first.norm_why
    cache_text = "cached" if first.cache_hit else (
        "converted now, cached" if first.cache_path else "converted now, not cached")
    if options.device == "cpu":
        reason = "--device cpu"
    elif options.backend == "tflite":
        reason = "--backend tflite"
    else:
        reason = no_gpu
    source = f"converted from {display_path(path)} ({cache_text})"
    segmenter.description = describe(segmenter, source, norm_why, reason)
    return segmenter


def convert_keras(keras_model, path: Path, size: Optional[tuple[int, int]], advice: str) -> bytes:
    """Convert a loaded Keras model to TFLite at ``size`` (width, height; None: dynamic).

    Raises:
        ModelError: the converter failed; the message names the model, the size and ``advice``.
    """
    try:
        with warnings.catch_warnings():
            # Keras 2 files declare inputs as a list; a single tensor is what they mean.
            warnings.filterwarnings("ignore", message=r".*structure of `inputs` doesn't match.*")
            return tflite_utils.convert_keras_to_tflite(keras_model, size)
    except Exception as error:  # the converter raises many types
        at = f"{size[0]}x{size[1]}" if size else "a dynamic input size"
        raise ModelError(f"cannot convert model '{path}' to TFLite at {at}: "
                         f"{one_line(error)}; {advice}") from None


def _converted_at(path: Path, size: tuple[int, int], model: Callable, options: SegmentOptions
                  ) -> "TFLiteSegmenter":
    """The TFLite conversion of a Keras model at one input size (from the cache when there)."""

    def convert() -> bytes:
        keras_model = model()
        keras_compat.saved_input_size(keras_model)  # refuses a non-image input before converting
        log.info("converting '%s' to TFLite at %dx%d (once; the result is cached)", path, *size)
        content = convert_keras(keras_model, path, size,
                                "try another --input-size (a multiple of 32) or --backend keras")
        detected = keras_compat.keras_input_norm(keras_model)
        return tflite_utils.mark_tflite_input_norm(content, detected) if detected else content

    content, cache_path, hit = tflite_utils.cached_conversion(path, size, convert)
    marked = tflite_utils.read_tflite_input_norm(content)
    norm, why = resolve_norm(options.input_norm, marked, "Rescaling layer in the model")
    segmenter = TFLiteSegmenter(
        content,
        input_norm=norm,
        input_size=size,
        letterbox=options.letterbox,
        threads=options.threads,
        name=str(cache_path or path),
    )
    segmenter.cache_path = cache_path
    segmenter.cache_hit = hit
    segmenter.norm_why = why
    return segmenter

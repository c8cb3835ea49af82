"""Choosing and building the segmenter that the options ask for."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from portrait.errors import DeviceError, ModelError
from portrait.options import SegmentOptions
from portrait.segment import keras_compat, tflite_utils
from portrait.segment.base import Segmenter, describe, one_line, resolve_norm
from portrait.segment.convert import create_converted
from portrait.segment.keras_segmenter import KerasSegmenter, keras_input_size
from portrait.segment.locate import KERAS_SUFFIXES, display_path, resolve_model_path
from portrait.segment.mediapipe_segmenter import MediaPipeSegmenter
from portrait.segment.tflite_segmenter import TFLiteSegmenter
from portrait.segment.wrappers import MirrorAverage

log = logging.getLogger(__name__)


def create_segmenter(options: SegmentOptions) -> Segmenter:
    """Build the segmenter that ``options`` ask for and log one line saying what was chosen.

    Args:
        options: model path, backend, device, input scaling and size, letterbox, threads, trust.

    Returns:
        A ready :class:`Segmenter` (it has already run once on a blank frame). Its
        ``description`` reads like ``segmenter: TFLite (CPU, 2 threads), converted from
        weights/unet.hdf5 (cached), input 256x256 stretched, RGB 0..255 (Rescaling layer in the
        model), sigmoid, no GPU visible to TensorFlow``.

    Raises:
        ModelError: a missing, corrupt, unsafe or unsupported model, or a backend that does not
            fit the file.
        DeviceError: ``--device gpu`` where no GPU can run the model.
    """
    started = time.perf_counter()
    size = options.input_size
    if size is not None and (len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size)):
        raise ModelError(f"--input-size must be two positive integers W H, got {size}")
    path = resolve_model_path(options.model)
    suffix = path.suffix.lower()
    if suffix not in KERAS_SUFFIXES + (".tflite",):
        raise ModelError(
            f"model '{path}' has an unsupported type '{suffix or '(none)'}': expected .hdf5, .h5, "
            ".keras or .tflite"
        )
    if suffix == ".tflite":
        segmenter = _create_from_tflite(path, options)
    else:
        segmenter = _create_from_keras(path, options)
    if options.tta:
        segmenter = MirrorAverage(segmenter)
    log.info("%s (ready in %.1f s)", segmenter.description, time.perf_counter() - started)
    return segmenter


def _create_from_tflite(path: Path, options: SegmentOptions) -> Segmenter:
    if options.backend == "keras":
        raise ModelError(f"--backend keras needs a Keras model (.hdf5/.h5/.keras), got '{path}'")
    if options.device == "gpu":
        raise DeviceError(
            f"--device gpu needs a Keras model (.hdf5/.h5/.keras): '{path}' runs on the CPU with "
            "TFLite or MediaPipe; pass --device auto or cpu"
        )
    if options.backend == "mediapipe":
        if options.input_norm != "auto":
            log.warning("--input-norm %s is ignored: MediaPipe reads the scaling from the model", options.input_norm)
        segmenter = MediaPipeSegmenter(path, options.letterbox, options.input_size)
        segmenter.description = describe(segmenter, display_path(path), None, "--backend mediapipe")
        return segmenter
    try:
        content = path.read_bytes()
        marked = tflite_utils.read_tflite_input_norm(content)
    except (OSError, ValueError) as error:
        raise ModelError(
            f"cannot read TFLite model '{path}': {one_line(error)}; the file may be truncated or "
            "corrupt, re-download or re-export it"
        ) from None
    norm, why = resolve_norm(options.input_norm, marked, "marked in the file")
    segmenter = TFLiteSegmenter(
        content,
        input_norm=norm,
        input_size=options.input_size,
        letterbox=options.letterbox,
        threads=options.threads,
        name=str(path),
    )
    if segmenter.input_norm != norm:
        why = "uint8 model input"
    reason = "--backend tflite" if options.backend == "tflite" else "a .tflite model runs on the TFLite interpreter"
    segmenter.description = describe(segmenter, display_path(path), why, reason)
    return segmenter


def _create_from_keras(path: Path, options: SegmentOptions) -> Segmenter:
    if options.backend == "mediapipe":
        raise ModelError(f"--backend mediapipe needs a MediaPipe .tflite model, got '{path}'")
    config = keras_compat.read_model_config(path)
    keras_compat.check_model_safety(path, config, options.trust_model)

    wants_tflite = options.backend == "tflite"
    gpus = _visible_gpus() if options.device != "cpu" else []
    if options.device == "gpu" and wants_tflite:
        raise DeviceError("--backend tflite runs on the CPU only; pass --device auto or cpu, or --backend keras")
    if options.device == "gpu" and not gpus:
        raise DeviceError(
            "--device gpu: TensorFlow sees no GPU; install GPU support with "
            'pip install "tensorflow[and-cuda]" (Linux, NVIDIA) or pass --device cpu'
        )
    if wants_tflite or not (gpus or options.backend == "keras"):
        return create_converted(path, config, options, "no GPU visible to TensorFlow" if not gpus else "")

    model = keras_compat.load_keras_model(path, options.trust_model)
    size = keras_input_size(model, options.input_size)
    norm, why = resolve_norm(options.input_norm, keras_compat.keras_input_norm(model), "Rescaling layer in the model")
    if gpus:
        device, reason = "/GPU:0", f"a GPU is visible to TensorFlow ({gpus[0]})"
    else:
        device = "/CPU:0"
        reason = "--backend keras" + (", --device cpu" if options.device == "cpu" else ", no GPU visible to TensorFlow")
    segmenter = KerasSegmenter(model, norm, size, options.letterbox, device=device, jit_compile=bool(gpus))
    segmenter.description = describe(segmenter, display_path(path), why, reason)
    return segmenter


def _visible_gpus() -> list[str]:
    """Names of the GPUs TensorFlow can use (empty without one)."""
    import tensorflow as tf

    try:
        devices = tf.config.list_physical_devices("GPU")
    except RuntimeError:  # a broken CUDA install: treat as no GPU, the CPU path still works
        return []
    names = []
    for device in devices:
        try:
            # Take GPU memory as needed, not all of it: the video-call app shares the GPU.
            tf.config.experimental.set_memory_growth(device, True)
        except (RuntimeError, ValueError):  # already initialised by someone else
            pass
        try:
            details = tf.config.experimental.get_device_details(device)
        except (RuntimeError, ValueError):
            details = {}
        names.append(details.get("device_name") or device.name)
    return names

"""Choosing and building the segmenter that the options ask for.

TensorFlow is imported only on the paths that need it (about 4 s): a Keras model to convert or
to run with ``tf.function``, or a GPU to look for. A Keras model on the CPU with a fresh exported
``.tflite`` beside it (:mod:`portrait.segment.exported`) runs without it. Whether to ask
TensorFlow for a GPU at all is decided first without importing it (:func:`gpu_plausible`).
"""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import logging
import os
import sys
import time
from pathlib import Path

from portrait.errors import DeviceError, ModelError
from portrait.native_log import import_tensorflow_quietly
from portrait.options import SegmentOptions
from portrait.segment import exported, keras_compat
from portrait.segment.base import Segmenter, describe, resolve_norm
from portrait.segment.convert import create_converted
from portrait.segment.keras_segmenter import KerasSegmenter
from portrait.segment.locate import (KERAS_SUFFIXES, display_path, read_short_side_hint,
                                     resolve_model_path, unreadable_model)
from portrait.segment.mediapipe_segmenter import MediaPipeSegmenter
from portrait.segment.model_io import fixed_input
from portrait.segment.wrappers import keras_run_size, sized_for_frames, with_test_time

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
    segmenter = with_test_time(segmenter, options.tta)
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
    except OSError as error:  # its first byte read when it was found: a later failure
        raise unreadable_model(path, error) from None
    exported.warn_if_stale(path, content)
    reason = "--backend tflite" if options.backend == "tflite" else "a .tflite model runs on the TFLite interpreter"
    return exported.create_tflite(content, path, options, display_path(path), "marked in the file", reason)


def _create_from_keras(path: Path, options: SegmentOptions) -> Segmenter:
    if options.backend == "mediapipe":
        raise ModelError(f"--backend mediapipe needs a MediaPipe .tflite model, got '{path}'")
    config = keras_compat.read_model_config(path)
    # Refused before any work; the warning that trusted code runs comes where it is loaded.
    keras_compat.check_model_safety(path, config, options.trust_model, warn=False)

    wants_tflite = options.backend == "tflite"
    if options.device == "gpu" and wants_tflite:
        raise DeviceError("--backend tflite runs on the CPU only; pass --device auto or cpu, or --backend keras")
    gpus: list[str] = []
    no_gpu = ""
    if options.device == "gpu" or (options.backend == "keras" and options.device != "cpu"):
        gpus = _visible_gpus()
        no_gpu = "no GPU visible to TensorFlow"
    elif options.device == "auto" and not wants_tflite:
        plausible, no_gpu = gpu_plausible()
        if plausible:
            gpus = _visible_gpus()
            no_gpu = "no GPU visible to TensorFlow"
    if options.device == "gpu" and not gpus:
        raise DeviceError(
            "--device gpu: TensorFlow sees no GPU; install GPU support with "
            'pip install "tensorflow[and-cuda]" (Linux, NVIDIA) or pass --device cpu'
        )
    if wants_tflite or not (gpus or options.backend == "keras"):
        reason = "--device cpu" if options.device == "cpu" else "--backend tflite" if wants_tflite else no_gpu
        content = exported.fresh_companion(path, config, options.input_size)
        if content is not None:
            segmenter = exported.create_companion(path, content, options, reason)
            if segmenter is not None:
                return segmenter
        import_tensorflow_quietly()
        return create_converted(path, config, options, no_gpu)

    import_tensorflow_quietly()
    model = keras_compat.load_keras_model(path, options.trust_model)
    # The size the CPU path converts the model at (keras_run_size, the one rule): a fixed input at
    # its own size; a dynamic one that notes its short side at each frame's aspect (size None,
    # one traced function per input size) unless --input-size fixes it; any other at
    # --input-size, else 256x256.
    fixed = keras_compat.saved_input_size(model)  # also refuses a non-image input
    if fixed is not None:
        fixed_input(fixed, options.input_size)  # warns when --input-size asks for another
    short_px = read_short_side_hint(path) if fixed is None else None
    size = keras_run_size(fixed or "dynamic", short_px, options.input_size)
    norm, why = resolve_norm(options.input_norm, keras_compat.keras_input_norm(model), "Rescaling layer in the model")
    if gpus:
        device, reason = "/GPU:0", f"a GPU is visible to TensorFlow ({gpus[0]})"
    else:
        device = "/CPU:0"
        reason = "--backend keras" + (", --device cpu" if options.device == "cpu" else ", no GPU visible to TensorFlow")

    def at(run_size: tuple[int, int]) -> KerasSegmenter:
        return KerasSegmenter(model, norm, run_size, options.letterbox, device=device, jit_compile=bool(gpus))

    segmenter = sized_for_frames(at, short_px, size, options)
    segmenter.description = describe(segmenter, display_path(path), why, reason)
    return segmenter


def gpu_plausible() -> tuple[bool, str]:
    """Whether TensorFlow might see a GPU here, decided without importing it.

    Importing TensorFlow to ask costs about 4 s, so it is asked only where a GPU could answer:
    TensorFlow is installed, ``CUDA_VISIBLE_DEVICES`` does not hide every device, and the system
    has a GPU device TensorFlow can use (Linux: an NVIDIA ``/dev/nvidia0``..., ROCm's
    ``/dev/kfd`` or WSL's ``/dev/dxg``; macOS and Windows: the ``tensorflow-metal`` or
    ``tensorflow-directml-plugin`` package, as TensorFlow has no GPU support of its own there).

    Returns:
        (plausible, why not): the second is the reason for the start-up line when it is not.
    """
    if importlib.util.find_spec("tensorflow") is None:
        return False, "TensorFlow is not installed"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False, "CUDA_VISIBLE_DEVICES hides every GPU"
    if sys.platform.startswith("linux"):
        if glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd") or os.path.exists("/dev/dxg"):
            return True, ""
        return False, "no GPU device (/dev/nvidia*) for TensorFlow"
    for plugin in ("tensorflow-metal", "tensorflow-directml-plugin"):
        try:
            importlib.metadata.distribution(plugin)
        except importlib.metadata.PackageNotFoundError:
            continue
        return True, ""
    return False, "no GPU plug-in for TensorFlow on this system"


def _visible_gpus() -> list[str]:
    """Names of the GPUs TensorFlow can use (empty without one). Imports TensorFlow."""
    import_tensorflow_quietly()
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

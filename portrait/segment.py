"""Segmenters: a BGR frame in, a low-resolution person probability out.

One interface, three runtimes:

* :class:`TFLiteSegmenter` runs a ``.tflite`` model with the TFLite interpreter on the CPU; a
  Keras model on a machine without a GPU is converted to TFLite once and cached (see
  :mod:`portrait.tflite_utils`).
* :class:`KerasSegmenter` runs a Keras model as a ``tf.function`` with a fixed input shape; the
  choice where TensorFlow sees a GPU.
* :class:`MediaPipeSegmenter` runs a MediaPipe selfie model through MediaPipe's ImageSegmenter.

:func:`create_segmenter` picks one from :class:`~portrait.options.SegmentOptions`:

============ ======================== ==================================================
backend      model file               runtime
============ ======================== ==================================================
``auto``     ``.h5/.hdf5/.keras``     GPU ``tf.function`` if TensorFlow sees a GPU and
                                      ``device`` is not ``cpu``; else cached TFLite
``auto``     ``.tflite``              TFLite interpreter
``tflite``   Keras or ``.tflite``     TFLite interpreter (Keras converted and cached)
``keras``    Keras                    ``tf.function`` on the GPU, or on the CPU (slower)
``mediapipe`` ``.tflite`` with        MediaPipe ImageSegmenter
             MediaPipe metadata
============ ======================== ==================================================

Rules for what cannot be read from a model file:

* Input size: a fixed model input size is used as is. A dynamic one (None, None, 3) runs at
  ``options.input_size``, else 256×256. A frame is stretched to the input size, or with
  ``options.letterbox`` scaled to fit and padded with black; the padding is cut from the
  output, so the probability always covers exactly the frame's field of view.
* Input scaling (``input_norm``): ``raw`` feeds RGB 0..255, ``unit`` x/255, ``symmetric``
  x/127.5−1. ``auto``: a Keras model whose first layer is a ``Rescaling`` or ``Normalization``
  layer takes ``raw`` (our own models' contract); a ``.tflite`` file marked by our export
  (metadata ``portrait_input_norm``) takes its mark; anything else takes ``unit``, which
  MediaPipe's selfie models use. A model with a uint8 input always gets raw pixels.
* Output: (1, H, W, 1) is a sigmoid probability, (1, H, W, 2) a softmax whose channel 1 is the
  person; (1, H, W) counts as one channel. When the op or layer that makes the output is not a
  sigmoid/softmax, an output with values outside [0, 1] is taken as logits from then on (two
  logit channels give sigmoid(c1 − c0)). Any other shape is a ModelError at construction.

Per frame: fit the frame into the preallocated model input, invoke, read the mask back
(:mod:`portrait.model_io`). Segmenters are not thread-safe: call ``segment`` from one thread.
"""

from __future__ import annotations

import abc
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from portrait import keras_compat, tflite_utils
from portrait.errors import DeviceError, ModelError
from portrait.model_io import OutputReader, Preprocessor
from portrait.native_log import drop_model_load_noise, filtered_stderr
from portrait.options import LIVE_MODEL, PHOTO_MODEL, SegmentOptions

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = PROJECT_ROOT / "weights"
SHIPPED_MODELS = (PHOTO_MODEL, LIVE_MODEL)
DEFAULT_INPUT_SIZE = (256, 256)
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
HDF5_SUFFIXES = (".h5", ".hdf5")  # whole models in HDF5: what train and ensemble write
MODEL_HINT = "pass --model PATH to a .hdf5 or .tflite model"
NORM_TEXT = {"raw": "RGB 0..255", "unit": "RGB x/255", "symmetric": "RGB x/127.5-1"}
PROBABILITY_OPS = {"LOGISTIC": "sigmoid", "SOFTMAX": "softmax"}


# ---------------------------------------------------------------- model files


def resolve_model_path(name: str, hint: str = MODEL_HINT) -> Path:
    """Find a model file: the path as given, else relative to the project, else in ``weights/``.

    Args:
        name: a path, or a bare file name such as ``unet.hdf5``.
        hint: what the user should do instead, for the error message (the default names the
            ``--model`` option; a command that takes models otherwise says so).

    Returns:
        The existing file's path.

    Raises:
        ModelError: no such file (the message says where it looked and what to do).
    """
    given = Path(name).expanduser()
    candidates = [given]
    if not given.is_absolute():
        candidates += [PROJECT_ROOT / given, WEIGHTS_DIR / given.name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            raise ModelError(f"model '{name}' is a folder, not a model file; {hint}")
    if name in SHIPPED_MODELS:
        raise ModelError(
            f"the default model '{name}' is missing from this checkout; restore it with 'git "
            f"checkout -- {name}', train one with 'python -m portrait.train' (README, "
            "'Train your own'), or pass --model PATH, e.g. a MediaPipe selfie_segmentation.tflite"
        )
    raise ModelError(f"model '{name}' not found (also looked in weights/); {hint}")


# ---------------------------------------------------------------- segmenters


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


class TFLiteSegmenter(Segmenter):
    """Runs a TFLite flatbuffer with the TFLite interpreter on the CPU.

    Args:
        model_content: the ``.tflite`` bytes.
        input_norm: ``raw``, ``unit`` or ``symmetric`` (already resolved from ``auto``).
        input_size: (width, height) for a model with a dynamic input size; ignored otherwise.
        letterbox: keep the aspect ratio by padding.
        threads: interpreter threads (0 = all cores).
        name: how to call the model in error messages.

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
    ):
        self._closed = False
        self.threads = threads or os.cpu_count() or 1
        try:
            self._interpreter = tflite_utils.make_interpreter(model_content, self.threads)
            details = self._interpreter.get_input_details()
            if len(details) != 1:
                raise ModelError(
                    f"model '{name}' has {len(details)} inputs: expected one RGB image; {MODEL_HINT}"
                )
            signature = list(details[0].get("shape_signature", details[0]["shape"]))
            if len(signature) != 4 or signature[3] != 3:
                raise ModelError(
                    f"model input shape {tuple(signature)} is not an image: expected (1, H, W, 3); "
                    f"{MODEL_HINT}"
                )
            if -1 in signature:
                width, height = input_size or DEFAULT_INPUT_SIZE
                self._interpreter.resize_input_tensor(details[0]["index"], [1, height, width, 3], strict=False)
            with filtered_stderr(drop_model_load_noise):
                self._interpreter.allocate_tensors()
            activation = tflite_utils.output_activation(model_content)
        except ModelError:
            raise
        except (ValueError, RuntimeError) as error:
            raise ModelError(
                f"cannot load TFLite model '{name}': {_one_line(error)}; the file may be truncated "
                f"or corrupt, re-download or re-export it"
            ) from None
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
        self.runtime = f"TFLite (CPU, {self.threads} threads)"
        self.cache_path: Optional[Path] = None  # set by the factory for a cached conversion
        self.cache_hit = False
        self.description = _describe(self, name, None, "")
        try:
            # One run now: XNNPACK sets up on the first invoke, and a model that cannot run
            # should fail here, not on the first camera frame.
            self._interpreter.invoke()
        except (ValueError, RuntimeError) as error:
            raise ModelError(f"TFLite model '{name}' fails to run: {_one_line(error)}; {MODEL_HINT}") from None

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
                raise ModelError(f"model fails on a {width}x{height} input: {_one_line(error)}") from None
            log.info("XLA compilation failed (%s); running the plain graph", _one_line(error))
            self.jit_compile = False
            self._fn = self._trace(False)
            try:
                raw = self._run(self._input)
            except Exception as error:
                raise ModelError(f"model fails on a {width}x{height} input: {_one_line(error)}") from None
        self._read = OutputReader(raw.shape, keras_compat.keras_output_activation(model))
        self.letterbox = letterbox
        self.output_kind = self._read.kind
        xla = ", XLA" if self.jit_compile else ""
        self.runtime = f"TensorFlow tf.function ({device.strip('/').split(':')[0]}{xla})"
        self.description = _describe(self, model.name, None, "")

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
                f"MediaPipe cannot load model '{path}': {_one_line(error)}; --backend mediapipe needs "
                "a MediaPipe segmentation model with metadata (e.g. selfie_segmentation.tflite), "
                "or drop --backend to run it with TFLite"
            ) from None
        if len(shape) == 4 and shape[1] > 0 and shape[2] > 0:
            self.input_size = (shape[2], shape[1])
        else:
            self.input_size = input_size or DEFAULT_INPUT_SIZE
        width, height = self.input_size
        self._image = np.zeros((1, height, width, 3), np.uint8)
        self._preprocess = Preprocessor(self.input_size, "raw", letterbox)
        self._read = OutputReader((1, height, width, 1), "sigmoid")
        self.letterbox = letterbox
        self.output_kind = "confidence mask"
        self.runtime = "MediaPipe ImageSegmenter (CPU)"
        self.description = _describe(self, _display(path), None, "")
        try:
            self.segment(np.zeros((height, width, 3), np.uint8))  # fail here, not on frame one
        except (ValueError, RuntimeError) as error:
            self.close()
            raise ModelError(f"MediaPipe cannot run model '{path}': {_one_line(error)}; {MODEL_HINT}") from None

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


# ---------------------------------------------------------------- factory


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
        segmenter.description = _describe(segmenter, _display(path), None, "--backend mediapipe")
        return segmenter
    try:
        content = path.read_bytes()
        marked = tflite_utils.read_tflite_input_norm(content)
    except (OSError, ValueError) as error:
        raise ModelError(
            f"cannot read TFLite model '{path}': {_one_line(error)}; the file may be truncated or "
            "corrupt, re-download or re-export it"
        ) from None
    norm, why = _resolve_norm(options.input_norm, marked, "marked in the file")
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
    segmenter.description = _describe(segmenter, _display(path), why, reason)
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
        return _create_converted(path, config, options, "no GPU visible to TensorFlow" if not gpus else "")

    model = keras_compat.load_keras_model(path, options.trust_model)
    size = _keras_input_size(model, options.input_size)
    norm, why = _resolve_norm(options.input_norm, keras_compat.keras_input_norm(model), "Rescaling layer in the model")
    if gpus:
        device, reason = "/GPU:0", f"a GPU is visible to TensorFlow ({gpus[0]})"
    else:
        device = "/CPU:0"
        reason = "--backend keras" + (", --device cpu" if options.device == "cpu" else ", no GPU visible to TensorFlow")
    segmenter = KerasSegmenter(model, norm, size, options.letterbox, device=device, jit_compile=bool(gpus))
    segmenter.description = _describe(segmenter, _display(path), why, reason)
    return segmenter


SHORT_SIDE_ATTR = "portrait_input_short_px"  # HDF5 attribute our training writes


def read_short_side_hint(path: Path) -> Optional[int]:
    """The short side (px) a fully convolutional model of ours was trained for, if it says."""
    if path.suffix.lower() not in HDF5_SUFFIXES:
        return None
    try:
        import h5py

        with h5py.File(path, "r") as f:
            value = f.attrs.get(SHORT_SIDE_ATTR)
    except (OSError, ValueError):
        return None
    return int(value) if value is not None and int(value) > 0 else None


def size_for_frame(frame_size: tuple[int, int], short_px: int, multiple: int = 32,
                   max_aspect: float = 3.0) -> tuple[int, int]:
    """Model input (w, h) with the frame's aspect ratio and a short side of ``short_px``.

    Both sides are multiples of ``multiple`` (the model's stride), so a 1280x720 frame at 192
    gives 352x192 and a 600x800 portrait gives 192x256.
    """
    width, height = frame_size
    aspect = min(max(width / max(height, 1), 1 / max_aspect), max_aspect)
    if aspect >= 1:
        return max(multiple, round(short_px * aspect / multiple) * multiple), short_px
    return short_px, max(multiple, round(short_px / aspect / multiple) * multiple)


class AspectSegmenter(Segmenter):
    """A fully convolutional model run at the frame's own aspect ratio (no stretching).

    One TFLite conversion per input size, made on first use (and cached on disk like any
    conversion); a frame size change picks or builds the matching one.
    """

    def __init__(self, make: Callable[[tuple[int, int]], Segmenter], short_px: int,
                 first_frame_size: Optional[tuple[int, int]] = None):
        self._make = make
        self.short_px = short_px
        self._by_size: dict[tuple[int, int], Segmenter] = {}
        self._frame_size: Optional[tuple[int, int]] = None
        self._current = self._segmenter_for(first_frame_size or (1280, 720))  # a 720p webcam
        self.letterbox = False
        self.runtime = self._current.runtime
        self.output_kind = self._current.output_kind
        self.input_norm = getattr(self._current, "input_norm", None)
        self._closed = False

    @property
    def input_size(self) -> tuple[int, int]:
        return self._current.input_size

    def _segmenter_for(self, frame_size: tuple[int, int]) -> Segmenter:
        size = size_for_frame(frame_size, self.short_px)
        if size not in self._by_size:
            self._by_size[size] = self._make(size)
        return self._by_size[size]

    def segment(self, frame_bgr: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        self._check_open()
        frame_size = (frame_bgr.shape[1], frame_bgr.shape[0])
        if frame_size != self._frame_size:
            self._current = self._segmenter_for(frame_size)
            self._frame_size = frame_size
        return self._current.segment(frame_bgr, out)

    def close(self) -> None:
        for segmenter in self._by_size.values():
            segmenter.close()
        self._by_size.clear()
        self._closed = True


class MirrorAverage(Segmenter):
    """Test-time augmentation: the mean of a model's probability on a frame and on its mirror.

    Twice the model time, for fewer one-sided mistakes; a model that is not left-right
    symmetric errs differently on the two views. What it runs at and how (input size, runtime,
    letterbox, output kind, input scaling) is the wrapped segmenter's.

    Args:
        inner: the segmenter that runs the model.
    """

    def __init__(self, inner: Segmenter):
        self.inner = inner
        self.description = f"{inner.description}, averaged with its mirror image (--tta)"
        self._closed = False

    input_size = property(lambda self: self.inner.input_size)
    runtime = property(lambda self: self.inner.runtime)
    letterbox = property(lambda self: self.inner.letterbox)
    output_kind = property(lambda self: self.inner.output_kind)
    input_norm = property(lambda self: self.inner.input_norm)

    def segment(self, frame_bgr: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        self._check_open()
        # Every segmenter returns ``out`` or a new array the caller owns (OutputReader), and
        # refuses an ``out`` of the wrong shape: the first view can be accumulated in place.
        result = self.inner.segment(frame_bgr, out)
        result += self.inner.segment(cv2.flip(frame_bgr, 1))[:, ::-1]
        result *= 0.5
        return result

    def close(self) -> None:
        self.inner.close()
        self._closed = True


def _create_converted(path: Path, config: dict, options: SegmentOptions, no_gpu: str) -> Segmenter:
    """Keras model on the CPU: convert to TFLite once, cache by file hash, run the conversion."""
    loaded = {}

    def model():
        if "model" not in loaded:
            loaded["model"] = keras_compat.load_keras_model(path, options.trust_model)
        return loaded["model"]

    size = keras_compat.config_input_size(config)
    short_px = None
    if size is None:
        size = _keras_input_size(model(), options.input_size)
    elif size == "dynamic":
        short_px = None if options.input_size else read_short_side_hint(path)
        size = tuple(options.input_size) if options.input_size else DEFAULT_INPUT_SIZE
    elif options.input_size and tuple(options.input_size) != size:
        log.warning("model '%s' has a fixed %dx%d input; ignoring --input-size", path, *size)

    if short_px and not options.letterbox:
        segmenter = AspectSegmenter(lambda sz: _converted_at(path, sz, model, options),
                                    short_px, options.frame_size)
        first = segmenter._current
        sizing = f"input sized to the frame's aspect, short side {short_px} px"
    else:
        segmenter = first = _converted_at(path, size, model, options)
        sizing = None
    norm_why = first.norm_why
    cache_text = "cached" if first.cache_hit else (
        "converted now, cached" if first.cache_path else "converted now, not cached")
    if options.device == "cpu":
        reason = "--device cpu"
    elif options.backend == "tflite":
        reason = "--backend tflite"
    else:
        reason = no_gpu
    source = f"converted from {_display(path)} ({cache_text})"
    segmenter.description = _describe(segmenter, source, norm_why, reason)
    if sizing:
        segmenter.description = segmenter.description.replace(
            f"input {segmenter.input_size[0]}x{segmenter.input_size[1]} stretched", sizing)
    return segmenter


def convert_keras(keras_model, path: Path, size: tuple[int, int], advice: str) -> bytes:
    """Convert a loaded Keras model to TFLite at ``size`` (width, height).

    Raises:
        ModelError: the converter failed; the message names the model, the size and ``advice``.
    """
    try:
        with warnings.catch_warnings():
            # Keras 2 files declare inputs as a list; a single tensor is what they mean.
            warnings.filterwarnings("ignore", message=r".*structure of `inputs` doesn't match.*")
            return tflite_utils.convert_keras_to_tflite(keras_model, size)
    except Exception as error:  # the converter raises many types
        raise ModelError(f"cannot convert model '{path}' to TFLite at {size[0]}x{size[1]}: "
                         f"{_one_line(error)}; {advice}") from None


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
    norm, why = _resolve_norm(options.input_norm, marked, "Rescaling layer in the model")
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


def _describe(segmenter: Segmenter, source: str, norm_why: Optional[str], reason: str) -> str:
    """Compose the one start-up line: runtime, source, input, scaling, output, and why."""
    width, height = segmenter.input_size
    parts = [
        f"segmenter: {segmenter.runtime}",
        source,
        f"input {width}x{height} {'letterboxed' if segmenter.letterbox else 'stretched'}",
    ]
    norm = getattr(segmenter, "input_norm", None)
    if norm:
        parts.append(f"{NORM_TEXT[norm]} ({norm_why})" if norm_why else NORM_TEXT[norm])
    parts.append(segmenter.output_kind)
    if reason:
        parts.append(reason)
    return ", ".join(parts)


def _keras_input_size(model, requested: Optional[tuple[int, int]]) -> tuple[int, int]:
    fixed = keras_compat.saved_input_size(model)
    if fixed is None:
        return tuple(requested) if requested else DEFAULT_INPUT_SIZE
    if requested and tuple(requested) != fixed:
        log.warning("the model has a fixed %dx%d input; ignoring --input-size", *fixed)
    return fixed


def _resolve_norm(requested: str, detected: Optional[str], detected_why: str) -> tuple[str, str]:
    """Return (norm, why) following the module's ``input_norm`` rules."""
    if requested != "auto":
        return requested, f"--input-norm {requested}"
    if detected:
        return detected, detected_why
    return "unit", "the default; set --input-norm if the model differs"


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


def _display(path: Path) -> str:
    """The path relative to the working folder when inside it, else as is (for log lines)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _one_line(error: BaseException, limit: int = 160) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"

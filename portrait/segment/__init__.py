"""Segmenters: a BGR frame in, a low-resolution person probability out.

One interface, three runtimes:

* :class:`TFLiteSegmenter` runs a ``.tflite`` model with the TFLite interpreter (LiteRT's when
  installed) on the CPU. A Keras model on a machine without a GPU runs as the ``.tflite``
  exported beside it when that file is fresh (:mod:`portrait.segment.exported`; no TensorFlow
  import), else is converted to TFLite once and cached (:mod:`portrait.segment.convert`).
* :class:`KerasSegmenter` runs a Keras model as a ``tf.function`` with a fixed input shape; the
  choice where TensorFlow sees a GPU.
* :class:`MediaPipeSegmenter` runs a MediaPipe selfie model through MediaPipe's ImageSegmenter.

:func:`create_segmenter` picks one from :class:`~portrait.options.SegmentOptions`:

============ ======================== ==================================================
backend      model file               runtime
============ ======================== ==================================================
``auto``     ``.h5/.hdf5/.keras``     GPU ``tf.function`` if TensorFlow sees a GPU and
                                      ``device`` is not ``cpu``; else the fresh ``.tflite``
                                      exported beside it, else cached TFLite conversion
``auto``     ``.tflite``              TFLite interpreter
``tflite``   Keras or ``.tflite``     TFLite interpreter (Keras: its fresh export, else
                                      converted and cached)
``keras``    Keras                    ``tf.function`` on the GPU, or on the CPU (slower)
``mediapipe`` ``.tflite`` with        MediaPipe ImageSegmenter
             MediaPipe metadata
============ ======================== ==================================================

Rules for what cannot be read from a model file:

* Input size: a fixed model input size is used as is. A dynamic one (None, None, 3) runs at
  ``options.input_size``, else at the frame's aspect ratio when the file notes the short side it
  was trained for (our ``.hdf5`` attribute, our export's metadata), else 256×256. A frame is
  stretched to the input size, or with ``options.letterbox`` scaled to fit and padded with
  black; the padding is cut from the output, so the probability always covers exactly the
  frame's field of view.
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
(:mod:`portrait.segment.model_io`). Segmenters are not thread-safe: call ``segment`` from one thread.
"""

from __future__ import annotations

from portrait.segment.base import DEFAULT_INPUT_SIZE, Segmenter
from portrait.segment.convert import convert_keras
from portrait.segment.factory import create_segmenter
from portrait.segment.keras_segmenter import KerasSegmenter
from portrait.segment.locate import (
    HDF5_SUFFIXES,
    KERAS_SUFFIXES,
    PROJECT_ROOT,
    SHIPPED_MODELS,
    SHORT_SIDE_ATTR,
    WEIGHTS_DIR,
    read_short_side_hint,
    resolve_model_path,
)
from portrait.segment.mediapipe_segmenter import MediaPipeSegmenter
from portrait.segment.tflite_segmenter import TFLiteSegmenter
from portrait.segment.wrappers import (
    AspectSegmenter,
    TestTimeAverage,
    size_for_frame,
    tta_short_sides,
    with_test_time,
)

__all__ = [
    "DEFAULT_INPUT_SIZE", "HDF5_SUFFIXES", "KERAS_SUFFIXES", "PROJECT_ROOT", "SHIPPED_MODELS",
    "SHORT_SIDE_ATTR", "WEIGHTS_DIR", "AspectSegmenter", "KerasSegmenter", "MediaPipeSegmenter",
    "Segmenter", "TestTimeAverage", "TFLiteSegmenter", "convert_keras", "create_segmenter",
    "read_short_side_hint", "resolve_model_path", "size_for_frame", "tta_short_sides",
    "with_test_time",
]

"""Options for each pipeline stage, as frozen dataclasses.

Only ``app.py`` (through :mod:`portrait.cli`) turns the command line into these; library code
takes the dataclass of its own stage and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

InputNorm = Literal["auto", "raw", "unit", "symmetric"]
Device = Literal["auto", "cpu", "gpu"]
Backend = Literal["auto", "keras", "tflite", "mediapipe"]
PAD_MODES = ("constant", "reflect")  # training crops that leave the photo: grey or mirrored
# Context modules between the encoder and the decoder (portrait.training.model.build_unet, train --context).
CONTEXT_MODULES = ("none", "lraspp")
# The shipped models: the most accurate for photos (and the library's default), and a cheaper
# one for camera and video frames, where each frame has a 33 ms budget (weights/README.md).
PHOTO_MODEL = "weights/unet.hdf5"
LIVE_MODEL = "weights/unet_live.hdf5"


@dataclass(frozen=True)
class CaptureOptions:
    """Where frames come from.

    Attributes:
        source: camera index (``"0"``) or video file path.
        width, height, fps: what to ask a camera for; a camera may give something else.
        realtime: play a video file at its own frame rate, as a camera would deliver it.
    """

    source: str = "0"
    width: int = 1280
    height: int = 720
    fps: float = 30.0
    realtime: bool = False


@dataclass(frozen=True)
class SegmentOptions:
    """Which model runs and how.

    Attributes:
        model: path to a ``.hdf5``/``.h5``/``.keras`` Keras model or a ``.tflite`` model; a bare
            name is also looked up in ``weights/``.
        backend: ``auto`` picks by file type (Keras: GPU tf.function or cached TFLite on CPU;
            ``.tflite``: the TFLite interpreter); ``mediapipe`` runs a ``.tflite`` selfie model
            through MediaPipe's ImageSegmenter.
        device: ``auto`` uses a GPU when TensorFlow sees one, else the CPU.
        input_norm: how the model expects pixels: ``raw`` 0..255, ``unit`` x/255,
            ``symmetric`` x/127.5-1; ``auto`` detects what can be detected (see segment.py).
        input_size: (width, height) to run a model whose input size is not fixed.
        letterbox: keep the aspect ratio by padding instead of stretching to a fixed input.
        threads: CPU threads for the TFLite interpreter (0 = all cores).
        trust_model: allow Keras models that contain serialised code (Lambda layers).
        frame_size: (width, height) of the first frame, when known: a model run at each
            frame's aspect ratio is prepared for it at start-up (default: 1280x720).
        tta: test-time augmentation: average the model's output on each frame and on its
            mirror image (twice the model time; meant for photos).
    """

    model: str = PHOTO_MODEL
    backend: Backend = "auto"
    device: Device = "auto"
    input_norm: InputNorm = "auto"
    input_size: Optional[tuple[int, int]] = None
    letterbox: bool = False
    threads: int = 0
    trust_model: bool = False
    frame_size: Optional[tuple[int, int]] = None
    tta: bool = False


@dataclass(frozen=True)
class SmoothOptions:
    """Temporal smoothing of the low-resolution probability.

    An exponential average whose weight on the new frame rises with the change between frames:
    still pixels average over many frames (no flicker), moving pixels follow at once (no ghost).

    Attributes:
        enabled: turn smoothing off to see raw model output.
        min_weight: weight of the new frame where nothing changed (lower = smoother).
        change_full: per-pixel probability change at which the new frame gets full weight.
    """

    enabled: bool = True
    min_weight: float = 0.25
    change_full: float = 0.35


@dataclass(frozen=True)
class RefineOptions:
    """Edge refinement with a fast guided filter guided by the full-resolution frame.

    Attributes:
        enabled: off gives a plain bilinear upscale of the probability.
        radius_px: filter radius at full resolution.
        eps: regularisation; smaller follows image edges more closely.
        scale: the coefficients are computed at 1/scale resolution (the fast variant).
    """

    enabled: bool = True
    radius_px: int = 8
    eps: float = 1e-3
    scale: int = 4


@dataclass(frozen=True)
class CompositeOptions:
    """What replaces the background.

    Attributes:
        background: ``blur``, ``transparent``, ``#rrggbb``, or an image or video file path.
        blur_px: background blur strength (kernel radius in pixels at full resolution).
    """

    background: str = "blur"
    blur_px: int = 21


@dataclass(frozen=True)
class OutputOptions:
    """Where results go.

    Attributes:
        out: output file or folder; ``None`` in live mode means the virtual camera.
        matte: write the alpha matte (8-bit grey, 255 = person) instead of the composite.
        preview: show a preview window (``q`` quits).
        max_frames: stop after this many frames (``None`` = no limit).
        stats: write a JSON summary here at exit.
    """

    out: Optional[str] = None
    matte: bool = False
    preview: bool = False
    max_frames: Optional[int] = None
    stats: Optional[str] = None


@dataclass(frozen=True)
class PipelineOptions:
    """How the stages are scheduled.

    Attributes:
        live: drop stale frames so latency never builds up (camera, ``--realtime``); otherwise
            every frame is processed, in order (files).
        queue_size: frames allowed to wait between two stages.
        reuse_still: reuse the last mask while the scene is still (frame difference).
        still_threshold: mean absolute grey-level change (0..255) of a thumbnail below which a
            frame counts as still.
        max_reuse: at most this many frames in a row reuse a mask.
    """

    live: bool = False
    queue_size: int = 2
    reuse_still: bool = True
    still_threshold: float = 1.5
    max_reuse: int = 2


@dataclass(frozen=True)
class ControlOptions:
    """How live controls start (the keys change them while a stream runs).

    Attributes:
        mirror: flip the output horizontally (what the call sees; the matte too).
        framing: auto-framing on at start (``f`` toggles it).
        backgrounds: more backgrounds for ``b`` to step through besides ``--background``: the
            config file's ``background`` when the command line names another kind (see
            :func:`portrait.controls.background_cycle`).
    """

    mirror: bool = False
    framing: bool = False
    backgrounds: tuple[str, ...] = ()

"""Options for each pipeline stage, as frozen dataclasses.

Only ``app.py`` (through :mod:`portrait.cli`) turns the command line into these; library code
takes the dataclass of its own stage and nothing else. Each checks its values when built (also by
``dataclasses.replace``): a value of the wrong type or out of its range raises
:class:`~portrait.option_checks.OptionTypeError` (a ``TypeError``) or
:class:`~portrait.option_checks.OptionValueError` (a ``ValueError``) naming the field, the value
and what it may be; the ranges are the fields' :func:`~portrait.option_checks.bounded` metadata,
which the command line's checks share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, get_args

from portrait.option_checks import (
    AT_LEAST_ONE,
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    SHARE,
    UNIT,
    CheckedOptions,
    Range,
    bounded,
)

InputNorm = Literal["auto", "raw", "unit", "symmetric"]
Device = Literal["auto", "cpu", "gpu"]
Backend = Literal["auto", "keras", "tflite", "mediapipe"]
# Test-time augmentation (SegmentOptions.tta): one pass; the frame and its mirror image; or the
# mirror pair at three scales of a model run at the frame's aspect; or those, each also turned
# either way (portrait.segment.wrappers).
TestTime = Literal["off", "mirror", "scales", "turns"]
TEST_TIME_MODES = get_args(TestTime)
Guide = Literal["grey", "colour"]  # RefineOptions.guide
# What fills training crops where they leave the photo: grey or mirrored (AugmentOptions.pad).
PadMode = Literal["constant", "reflect"]
PAD_MODES = get_args(PadMode)
# Context modules between the encoder and the decoder (portrait.training.model.build_unet, train --context).
ContextModule = Literal["none", "lraspp", "tail"]
CONTEXT_MODULES = get_args(ContextModule)
# The shipped models: the most accurate for photos (and the library's default), and a cheaper
# one for camera and video frames, where each frame has a 33 ms budget (weights/README.md).
PHOTO_MODEL = "weights/unet.hdf5"
LIVE_MODEL = "weights/unet_live.hdf5"
# Photos clear islands of matte under 1 % of the person's region (RefineOptions.min_island):
# on textured ground the colour filter leaves flecks by the feet (README, "Edges").
PHOTO_MIN_ISLAND = 0.01
# Camera and video cap the guided filter's matte by the model's sharpened probability
# (RefineOptions.confine; rule CAP, stop 55): no faint lines of the room; photos keep 0 (off).
VIDEO_CONFINE = 0.05
SUBJECT_CORE = 0.5  # a region's area counts its pixels above this probability (portrait.subject)
MAX_ZOOM = 10.0  # training's largest zoom; a larger one (or inf) crashes the crop's resize
ZOOM_FACTOR = Range(0, MAX_ZOOM, low_open=True)  # each end of a training zoom range (train --zoom)
MAX_THREADS = 1024  # SegmentOptions.threads: more cores than any machine the app runs on has
# CompositeOptions.blur_px: 43x the default blur of the largest photo the app takes (233 px
# at 8000x8000, 64 MP);
# 4294967296 (a typo's size) overflowed OpenCV's kernel size and ended the run in a C++ error.
MAX_BLUR_PX = 10000


@dataclass(frozen=True)
class CaptureOptions(CheckedOptions):
    """Where frames come from.

    Attributes:
        source: camera index (``"0"``) or video file path.
        width, height, fps: what to ask a camera for; a camera may give something else.
        realtime: play a video file at its own pace (its frames' times), as a camera would
            deliver it; ``None`` (the default) decides by the output: paced into a virtual
            camera, as fast as possible, every frame, into a file.
        loop: play a video file again from its start each time it ends, on one timeline
            (:class:`portrait.capture.looping.LoopedSource`), so a call keeps its picture;
            ``None`` (the default) decides by the output: looped into a virtual camera, once
            into a file. Ignored for a camera.
    """

    source: str = "0"
    width: int = bounded(1280, POSITIVE)
    height: int = bounded(720, POSITIVE)
    fps: float = bounded(30.0, POSITIVE)
    realtime: Optional[bool] = None
    loop: Optional[bool] = None


@dataclass(frozen=True)
class SegmentOptions(CheckedOptions):
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
        threads: CPU threads for the TFLite interpreter (0 = automatic: half the cores for a
            camera or video stream, every core for photos; see
            :func:`portrait.pipeline.stream_inference_threads`).
        trust_model: allow Keras models that contain serialised code (Lambda layers).
        frame_size: (width, height) of the first frame, when known: a model run at each
            frame's aspect ratio is prepared for it at start-up (default: 1280x720).
        tta: test-time augmentation: ``off`` runs the model once; ``mirror`` averages its output
            on each frame and on its mirror image (twice the model time); ``scales`` does that at
            three short sides of a model that runs at the frame's aspect, 5/6, 1 and 7/6 of its
            own (six times the model time; a model with a fixed input gets ``mirror``); ``turns``
            runs each of those views again turned by 8 degrees either way (three times
            ``scales``' time). Meant for photos.
    """

    model: str = PHOTO_MODEL
    backend: Backend = "auto"
    device: Device = "auto"
    input_norm: InputNorm = "auto"
    # Each side at most 4096 px, a 4K frame's long side: a model run at 99968x99968 (a typo's
    # size) overflowed TFLite's convolutions, was called a corrupt file and then converted from
    # Keras for minutes.
    input_size: Optional[tuple[int, int]] = bounded(None, Range(1, 4096))
    letterbox: bool = False
    # At most MAX_THREADS: 100000 (a typo's count) made the interpreter fail to start its
    # threads, which called the shipped .tflite stale, converted the .hdf5 instead and then
    # ended the run in "unexpected RuntimeError: can't start new thread".
    threads: int = bounded(0, Range(0, MAX_THREADS))
    trust_model: bool = False
    frame_size: Optional[tuple[int, int]] = bounded(None, POSITIVE)
    tta: TestTime = "off"


@dataclass(frozen=True)
class SmoothOptions(CheckedOptions):
    """Temporal smoothing of the low-resolution probability.

    An exponential average whose weight on the new frame rises with the change between frames:
    still pixels average over many frames (no flicker), moving pixels follow at once (no ghost).

    Attributes:
        enabled: turn smoothing off to see raw model output.
        min_weight: weight of the new frame where nothing changed (lower = smoother).
        change_full: per-pixel probability change at which the new frame gets full weight.
    """

    enabled: bool = True
    min_weight: float = bounded(0.25, UNIT)
    change_full: float = bounded(0.35, SHARE)


@dataclass(frozen=True)
class SubjectOptions(CheckedOptions):
    """Which regions of the probability a video keeps (:mod:`portrait.subject`).

    Attributes:
        enabled: drop regions that are small and apart from the subject (``--people main``);
            off keeps everything the model marks (``--people all``, and always for photos).
        min_ratio: a region is kept when its area is at least this share of the largest's.
        margin: and a region is kept when it lies within this share of the frame's long side
            of a kept one (a hand split from its arm).
        low: regions are the connected parts of the probability above this.
    """

    enabled: bool = True
    min_ratio: float = bounded(0.2, SHARE)
    margin: float = bounded(0.05, FRACTION)
    low: float = bounded(0.2, Range(0, SUBJECT_CORE, low_open=True, high_open=True))


@dataclass(frozen=True)
class RefineOptions(CheckedOptions):
    """Edge refinement with a fast guided filter guided by the full-resolution frame.

    Attributes:
        enabled: off gives a plain bilinear upscale of the probability.
        radius_px: filter radius at full resolution.
        eps: regularisation; smaller follows image edges more closely.
        scale: the coefficients are computed at 1/scale resolution (the fast variant).
        sharpen: the model's probability p is sharpened to σ(k·logit p) before the filter
            (k = sharpen; 1 = as the model gives it). The filter falls back to p where the frame
            has no edge to follow (hair against a wall of the same grey), and a low-resolution
            model's p is a soft blob there: a glow of the room around the head.
        guide: ``colour`` (B, G and R, as He et al.'s colour filter: dark hair beside a bright
            face and a bright wall stays opaque, and the wall does not glow around the head; the
            default for photos and, since stop 42, video) or ``grey`` (the frame's luma: about
            a third of the colour filter's cost).
        min_island: islands of matte (alpha above a tenth) under this share of the largest
            region's area are cleared after the filter (not with ``enabled`` off) (:func:`portrait.refine.drop_islands`):
            flecks of gravel or grass it lifts by the feet. 0 (off) for camera and video, whose
            output stays as it was; :data:`PHOTO_MIN_ISLAND` for photos.
        confine: after the filter, alpha is capped at 255·min(1, p'/confine), p' the sharpened
            probability the filter was given, upsampled (:func:`portrait.refine.confine_to_model`):
            where the model is sure nobody is, the filter cannot carry the matte along a strong
            edge of the room (a tile's grout or a desk's edge beside an arm, as faint lines).
            :data:`VIDEO_CONFINE` for camera and video; 0 (off) for photos.
    """

    enabled: bool = True
    # At most 64 px, 8 times the default: far more costs seconds a frame and blurs the edge.
    radius_px: int = bounded(8, Range(1, 64))
    eps: float = bounded(1e-3, POSITIVE)
    scale: int = bounded(4, AT_LEAST_ONE)
    sharpen: float = bounded(3.0, POSITIVE)
    guide: Guide = "colour"
    min_island: float = bounded(0.0, FRACTION)
    confine: float = bounded(VIDEO_CONFINE, FRACTION)

LIGHT_WRAP_STRENGTH = 0.5  # what a bare --light-wrap means


@dataclass(frozen=True)
class FramingOptions(CheckedOptions):
    """Auto-framing: the output shows a crop of the frame that keeps the person centred.

    Attributes:
        enabled: frame automatically (``--framing auto``); can be toggled at run time.
        max_zoom: never zoom in further than this (crop height >= frame height / max_zoom).
        fill: the person's box fills this fraction of the crop's width (or height).
        headroom: when the person is cut off at the bottom of the frame, the top of their box
            sits this fraction of the crop's height below the crop's top.
        dead_zone: the aim moves only when the person's centre moved more than this fraction
            of the picture shown (the crop) away from it.
        zoom_dead_zone: the zoom changes only when the wanted crop height differs from the aim
            by more than this fraction of it.
        glide_s: about how long a glide takes to settle (a critically damped spring).
        zoom_window_s: the zoom frames the person's median size over this long (0: each frame's).
        hold_s: nobody in the frame: keep the crop this long, then ease back to the whole frame.
        min_area: a person covers at least this fraction of the frame.
    """

    enabled: bool = False
    max_zoom: float = bounded(2.0, Range(1, note="1 = never zoom in"))
    fill: float = bounded(0.65, SHARE)
    headroom: float = bounded(0.15, FRACTION)
    dead_zone: float = bounded(0.05, NON_NEGATIVE)
    zoom_dead_zone: float = bounded(0.1, NON_NEGATIVE)
    glide_s: float = bounded(0.5, POSITIVE)
    zoom_window_s: float = bounded(5.0, NON_NEGATIVE)
    hold_s: float = bounded(1.5, NON_NEGATIVE)
    min_area: float = bounded(0.01, FRACTION)


@dataclass(frozen=True)
class CompositeOptions(CheckedOptions):
    """What replaces the background.

    Attributes:
        background: ``blur``, ``transparent``, ``#rrggbb``, or an image or video file path.
        blur_px: background blur strength (kernel radius in pixels at full resolution); None:
            by the frame's size, :func:`portrait.composite.default_blur_px` (21 px up to 720p).
        light_wrap: light-wrap strength, 0..1 (0 = off): the new background's light spills onto
            the person's edge (:mod:`portrait.lightwrap`); not for transparent output.
        light_wrap_px: how far the light reaches into the person, in full-resolution pixels.
        decontaminate: where the matte mixes person and room, blend an estimate of the
            person's own colour instead of the frame's (:mod:`portrait.foreground`), so the
            room's colour does not come along into the new background or the cut-out.
    """

    background: str = "blur"
    blur_px: Optional[int] = bounded(None, Range(1, MAX_BLUR_PX))
    light_wrap: float = bounded(0.0, UNIT)
    light_wrap_px: int = bounded(16, AT_LEAST_ONE)
    decontaminate: bool = False


@dataclass(frozen=True)
class OutputOptions(CheckedOptions):
    """Where results go.

    Attributes:
        out: output file or folder; ``None`` in live mode means the virtual camera.
        matte: write the alpha matte (8-bit grey, 255 = person) instead of the composite.
        preview: show a preview window (``q`` quits).
        max_frames: stop after this many frames (``None`` = no limit).
        stats: write a JSON summary here at exit.
        audio: carry a video file source's sound into a video file ``out``.
        vcam_backend: the pyvirtualcam backend of the virtual camera (``v4l2loopback``,
            ``obs``, ``unitycapture``); ``None`` takes the first one that opens.
        vcam_device: the virtual camera device (``/dev/video2``, a backend's device name);
            ``None`` takes the backend's first free one.
    """

    out: Optional[str] = None
    matte: bool = False
    preview: bool = False
    max_frames: Optional[int] = bounded(None, POSITIVE)
    stats: Optional[str] = None
    audio: bool = True
    vcam_backend: Optional[str] = None
    vcam_device: Optional[str] = None


@dataclass(frozen=True)
class PipelineOptions(CheckedOptions):
    """How the stages are scheduled.

    Attributes:
        live: drop stale frames so latency never builds up (camera, ``--realtime``); otherwise
            every frame is processed, in order (files).
        queue_size: frames allowed to wait between two stages.
        reuse_still: reuse the last mask while the scene is still (frame difference).
        still_threshold: mean absolute grey-level change (0..255) of a thumbnail below which a
            frame counts as still.
        max_reuse: at most this many frames in a row reuse a mask.
        spread_still: on a still scene the temporal smoother spreads each mask's step over the
            ``max_reuse + 1`` frames it is shown for (:func:`portrait.smooth.smooth_probability`'s
            ``span``); off, the whole step lands on the frame the model runs, and the matte's
            edge jumps every ``max_reuse + 1`` frames.
        opencv_threads: OpenCV's thread pool while a stream runs (restored after it); None =
            the cores shared out among the stages that run at once (reader, segment, finish),
            at least one each, so the stages' own pools don't fight over the cores.
    """

    live: bool = False
    queue_size: int = bounded(2, AT_LEAST_ONE)
    reuse_still: bool = True
    still_threshold: float = bounded(1.5, Range(0, 255))
    max_reuse: int = bounded(2, NON_NEGATIVE)
    spread_still: bool = True
    opencv_threads: Optional[int] = bounded(None, AT_LEAST_ONE)


@dataclass(frozen=True)
class ControlOptions(CheckedOptions):
    """How live controls start (the keys change them while a stream runs).

    Attributes:
        mirror: flip the output horizontally (what the call sees; the matte too); a background
            picture is kept the right way round.
        framing: auto-framing on at start (``f`` toggles it).
        backgrounds: more backgrounds for ``b`` to step through besides ``--background``: the
            config file's ``background`` when the command line names another kind (see
            :func:`portrait.controls.background_cycle`).
    """

    mirror: bool = False
    framing: bool = False
    backgrounds: tuple[str, ...] = ()

"""The command line: ``python app.py [options]``. Parses arguments into the stage options and
runs image mode or stream mode. Bad input ends in one line on stderr and a non-zero exit code."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
from typing import Callable, Iterator, Optional, Sequence, get_args

from portrait.config import ConfigError, config_origin, format_config, parse_with_config
from portrait.errors import InputError, PortraitError, run_command, stop_on_termination_signals
from portrait.native_log import import_tensorflow_quietly  # noqa: F401 (the workshop's commands use it)
from portrait.option_checks import (
    NON_NEGATIVE,
    POSITIVE,
    UNIT,
    OptionTypeError,
    OptionValueError,
    Range,
    number_field,
)
from portrait.options import (
    LIGHT_WRAP_STRENGTH,
    LIVE_MODEL,
    MAX_THREADS,
    MAX_ZOOM,
    PHOTO_MIN_ISLAND,
    PHOTO_MODEL,
    TEST_TIME_MODES,
    VIDEO_CONFINE,
    ZOOM_FACTOR,
    Backend,
    CaptureOptions,
    CompositeOptions,
    ControlOptions,
    Device,
    FramingOptions,
    Guide,
    InputNorm,
    OutputOptions,
    PipelineOptions,
    RefineOptions,
    SegmentOptions,
    SmoothOptions,
    SubjectOptions,
)

log = logging.getLogger("portrait")


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` → (width, height); a single ``N`` means N×N."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"size '{text}' is not WxH, e.g. 256x256")
    if min(parts) <= 0:
        raise argparse.ArgumentTypeError(f"size '{text}' must be positive, e.g. 256x256")
    return parts[0], parts[1]


def model_size(text: str) -> tuple[int, int]:
    """``--input-size``: :func:`parse_size`, both sides multiples of 32 (the models halve their
    input five times; the app itself only picks such sizes) and at most the largest side
    ``SegmentOptions.input_size`` takes (4096)."""
    width, height = parse_size(text)
    if width % 32 or height % 32:
        raise argparse.ArgumentTypeError(
            f"size '{text}' is not a multiple of 32 on both sides, e.g. 352x192 or 256x256")
    largest = int(number_field(SegmentOptions, "input_size")[1].high)
    if max(width, height) > largest:
        raise argparse.ArgumentTypeError(
            f"size '{text}' has a side of {max(width, height)} px; each side must be at most "
            f"{largest} px, e.g. 352x192 or 4096x2176")
    return width, height


def given(text: str) -> str:
    """A path or name that must not be empty (an empty one would silently mean "not given").
    A leading ``~`` is expanded as a shell would: ``--out=~/x.png`` and a quoted ``"~/x.png"``
    reach the app unexpanded, and a folder named ``~`` is a trap."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty; give a value or leave the option out")
    return os.path.expanduser(text)


given.quoted = True  # a config file gives it as a string in quotes (portrait.config)


def source_spec(text: str) -> str:
    """``--source``: a camera index or a video file, not empty; a config file may give the index
    as a number (``source = 1``)."""
    return given(text)


# A config file's number that is no whole number (source = 1.0) would name a file "1.0".
source_spec.refuse_float = ("a camera index is a whole number: source = 1; a video file's name "
                            "goes in quotes: source = \"clip.mp4\"")


def _number(text: str, kind: type, bounds: Range, label: str = "",
            requirement: Optional[str] = None):
    """``text`` as an ``int`` or a finite ``float`` within ``bounds`` (a range the option
    dataclasses' fields are checked against, :mod:`portrait.option_checks`), else the argparse
    error: "'x' is not a number", "<label>'x' must be <bounds.says>" (or ``requirement``; nan
    too), "<label>'inf' is not a finite number" (where the range has no bound on its side) or
    "<label>'100' is not a multiple of 32, e.g. 96 or 128" (where the range has a step)."""
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"'{text}' is not {what}") from None
    if not bounds.within(value):  # nan too: no comparison holds for it
        raise argparse.ArgumentTypeError(f"{label}'{text}' {requirement or 'must be ' + bounds.says}")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{label}'{text}' is not a finite number")
    if bounds.off_step(value):
        below = value // bounds.step * bounds.step
        example = f"{below} or {below + bounds.step}" if below else str(bounds.step)
        raise argparse.ArgumentTypeError(f"{label}'{text}' is not a multiple of {bounds.step}, "
                                         f"e.g. {example}")
    return value


def field_number(cls: type, name: str, label: str = "",
                 requirement: Optional[str] = None) -> Callable[[str], float]:
    """An argparse type for the number field ``name`` of the option dataclass ``cls``: its
    kind (``int``, ``float``) and its range from the field itself (its ``bounded`` metadata,
    :func:`portrait.option_checks.number_field`), so the command line takes what the options
    take; ``label`` and ``requirement`` as :func:`_number` words its error."""
    kind, bounds = number_field(cls, name)

    def parse(text: str):
        return _number(text, kind, bounds, label, requirement)

    parse.__name__ = parse.__qualname__ = name  # argparse names a type by it
    parse.field = (cls, name)  # what it checks against, for the tests that compare the two
    return parse


def threads_type(zero_means: str, name: str = "threads_count") -> Callable[[str], int]:
    """A ``--threads`` type: ``SegmentOptions.threads`` (:func:`field_number`), whose error says
    what 0 means for the command (``zero_means``): each command runs its interpreter on its own
    share of cores."""
    threads = field_number(SegmentOptions, "threads",
                           requirement=f"must be 0 ({zero_means}) or more, at most "
                                       f"{MAX_THREADS}")
    threads.__name__ = threads.__qualname__ = name
    return threads


# The app: a camera or video stream gives its model half the cores (pipeline.
# stream_inference_threads), a photo every core.
threads_count = threads_type("half the cores for camera and video, every core for photos")
# evaluate and the runtime benchmark: the model alone, on every core.
threads_all_cores = threads_type("all cores", "threads_all_cores")
# bench: our model as the app runs a stream.
threads_as_stream = threads_type("half the cores, as the app's camera and video",
                                 "threads_as_stream")


def positive_int(text: str) -> int:
    return _number(text, int, POSITIVE)


def non_negative_int(text: str) -> int:
    return _number(text, int, NON_NEGATIVE)


def positive_float(text: str) -> float:
    return _number(text, float, POSITIVE)


def non_negative_float(text: str) -> float:
    return _number(text, float, NON_NEGATIVE)


def probability(text: str) -> float:
    """A value from 0 to 1: a probability, a strength, a weight or a share."""
    return _number(text, float, UNIT)


def zoom_range(text: str) -> tuple[float, float]:
    """``MIN,MAX`` → (min, max) zoom factors, each :data:`~portrait.options.ZOOM_FACTOR`
    (0 < x <= :data:`~portrait.options.MAX_ZOOM`), MIN <= MAX."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"zoom '{text}' is not MIN,MAX, e.g. 0.55,1.35") from None
    if not (ZOOM_FACTOR.holds(low) and ZOOM_FACTOR.holds(high) and low <= high):
        raise argparse.ArgumentTypeError(
            f"zoom '{text}' must have 0 < MIN <= MAX <= {MAX_ZOOM:g} (a crop a tenth of the "
            "photo's side), e.g. 0.55,1.35")
    return low, high


def with_debug(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--debug`` (tracebacks of unexpected errors, as :func:`portrait.errors.run_command`
    shows them when asked) to a tool's parser; returns it."""
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    return parser


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (plus the pointer to --help), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see {self.prog} --help\n")


def extra_photos_hint(argv: Sequence[str], extras: Sequence[str]) -> str:
    """What to say of ``extras``, arguments the app does not take, where they follow the file
    of ``--image`` in ``argv``: several photos, as a shell pattern (``--image *.jpg``) gives
    them; ``""`` otherwise."""
    argv = list(argv)
    for index, arg in enumerate(argv):
        after = index + 2 if arg == "--image" else index + 1 if arg.startswith("--image=") else None
        if after is not None and argv[after:after + 1] == list(extras[:1]):
            return ("; --image takes one photo or a folder: to cut out several, give their "
                    "folder (a pattern such as *.jpg gives each file as an argument of its own)")
    return ""


class AppParser(OneLineParser):
    """The app's parser: arguments it does not take are refused saying so, and, where they
    follow ``--image``'s file, how to give several photos."""

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            argv = sys.argv[1:] if args is None else args
            self.error(f"unrecognized arguments: {' '.join(extras)}"
                       f"{extra_photos_hint(argv, extras)}")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    p = AppParser(
        prog="python app.py",
        description="Real-time portrait segmentation: blur or replace the background of a "
                    "webcam (to a virtual camera), a video file, or photos.",
    )
    io = p.add_argument_group("input and output")
    io.add_argument("--source", type=source_spec, default="0", metavar="N|PATH",
                    help="camera index or video file (default: 0, the first camera)")
    io.add_argument("--image", type=given, metavar="PATH",
                    help="single-shot mode: one image file, or a folder of images (batch)")
    io.add_argument("--out", type=given, metavar="PATH",
                    help="with --image: output file, or folder for a batch (OUT/<stem>.png); with "
                         "a video or camera: a .mp4/.avi file, or a folder of numbered PNG frames "
                         "(a path ending in / is a folder); without it, live mode writes to the "
                         "virtual camera; never an input file")
    io.add_argument("--matte", action=argparse.BooleanOptionalAction, default=False,
                    help="write the alpha matte (8-bit grey, 255 = person) instead of a composite")
    io.add_argument("--preview", action=argparse.BooleanOptionalAction, default=False,
                    help="show a preview window; it takes the live keys (space, b, +/-, m, f, e, q)")
    io.add_argument("--max-frames", type=field_number(OutputOptions, "max_frames"), metavar="N",
                    help="stop after N frames")
    io.add_argument("--stats", type=given, metavar="PATH",
                    help="write a JSON summary at exit: frames, fps, per-stage ms, latency, CPU")
    io.add_argument("--vcam-backend", type=given, metavar="NAME",
                    help="the virtual camera's pyvirtualcam backend: v4l2loopback (Linux), obs "
                         "(OBS Studio's virtual camera; Windows, macOS), unitycapture (Windows) "
                         "(default: the first one that opens)")
    io.add_argument("--vcam-device", type=given, metavar="DEVICE",
                    help="the virtual camera device, e.g. /dev/video2 for v4l2loopback "
                         "(default: the backend's first free one)")

    cam = p.add_argument_group("camera and video")
    cam.add_argument("--width", type=field_number(CaptureOptions, "width"), default=1280,
                     metavar="W",
                     help="camera width to ask for (default 1280)")
    cam.add_argument("--height", type=field_number(CaptureOptions, "height"), default=720,
                     metavar="H",
                     help="camera height to ask for (default 720)")
    cam.add_argument("--fps", type=field_number(CaptureOptions, "fps"), default=30.0, metavar="F",
                     help="camera frame rate to ask for (default 30)")
    cam.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                     help="play a video file at its own pace, as a camera would deliver it "
                          "(stale frames are dropped; a video --out keeps the times of those "
                          "kept, and the sound); --no-realtime: as fast as possible, every "
                          "frame; default: at its own pace into the virtual camera, every "
                          "frame into an --out")
    cam.add_argument("--loop", action=argparse.BooleanOptionalAction, default=None,
                     help="play a video file --source again from its start each time it ends, "
                          "so a call keeps its picture (stop with Ctrl-C or --max-frames); "
                          "--no-loop: once; default: looped into the virtual camera, once into "
                          "an --out (which --loop is refused with: it would never end)")
    cam.add_argument("--audio", action=argparse.BooleanOptionalAction, default=True,
                     help="a video file's sound goes into a .mp4/.avi --out, in step with the "
                          "picture (default); --no-audio leaves it out")

    model = p.add_argument_group("model")
    model.add_argument("--model", type=given, metavar="PATH",
                       help=".hdf5/.h5/.keras Keras model or .tflite; a bare name is looked up in "
                            f"weights/ (default: {PHOTO_MODEL} with --image, the most accurate; "
                            f"{LIVE_MODEL} for camera and video, about a quarter of its CPU)")
    model.add_argument("--backend", choices=get_args(Backend), default="auto",
                       help="auto: Keras on the GPU, else on the CPU the .tflite exported beside "
                            "the model while it is fresh, or a cached TFLite conversion; "
                            "a .tflite runs in the TFLite interpreter; mediapipe runs a MediaPipe "
                            "selfie model through its ImageSegmenter")
    model.add_argument("--device", choices=get_args(Device), default="auto",
                       help="where a Keras model runs (default: the GPU when TensorFlow sees one)")
    model.add_argument("--input-norm", choices=get_args(InputNorm), default="auto",
                       help="pixel scaling the model expects: raw 0..255, unit x/255, symmetric "
                            "x/127.5-1 (default: detected, see README)")
    model.add_argument("--input-size", type=model_size, metavar="WxH",
                       help="size to run a model whose input size is not fixed, both sides "
                            "multiples of 32 (N alone means NxN)")
    model.add_argument("--letterbox", action=argparse.BooleanOptionalAction, default=False,
                       help="pad to keep the aspect ratio for a fixed-size model (default: stretch)")
    model.add_argument("--threads", type=threads_count, default=0, metavar="N",
                       help="CPU threads for inference (default 0: half the cores for camera and "
                            "video, at least 1; every core for photos)")
    model.add_argument("--trust-model", action=argparse.BooleanOptionalAction, default=False,
                       help="allow a Keras model that contains code (Lambda layers); only for "
                            "files you trust")
    model.add_argument("--tta", nargs="?", const="scales", default="auto",
                       choices=("auto",) + TEST_TIME_MODES,
                       help="test-time augmentation: mirror averages the model's output on each "
                            "image and on its mirror image (2 passes); scales does that at three "
                            "sizes (6 passes); turns does that again with the image turned 8 "
                            "degrees either way (18 passes); off runs it once; bare --tta is "
                            "scales (default: auto, scales for --image, off for camera and video)")

    look = p.add_argument_group("look")
    look.add_argument("--background", type=given, default="blur",
                      metavar="blur|transparent|COLOR|IMAGE|VIDEO|DIR",
                      help="blur (default), transparent (RGBA PNG), a colour #rrggbb, an image "
                           "or video file, or a folder of them (live: b steps through them; "
                           "otherwise its first file)")
    look.add_argument("--blur", type=field_number(CompositeOptions, "blur_px"), default=None,
                      metavar="N",
                      help="background blur strength in pixels (default: 21, or for a frame "
                           "larger than 720p 21 * its short side / 720, so it looks alike)")
    look.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=False,
                      help="flip the output horizontally (what the call sees; the matte too)")
    look.add_argument("--light-wrap", type=field_number(CompositeOptions, "light_wrap"), nargs="?",
                      const=LIGHT_WRAP_STRENGTH, default=0.0, metavar="STRENGTH",
                      help="let the new background's light spill onto the person's edge, 0..1 "
                           f"(bare flag: {LIGHT_WRAP_STRENGTH}; default: off)")
    look.add_argument("--decontaminate", action=argparse.BooleanOptionalAction, default=False,
                      help="at the soft edge, show the person's estimated own colour instead of "
                           "the frame's, which carries the room's (a pale fringe of a bright "
                           "wall around hair); also for transparent cut-outs (default: off)")
    look.add_argument("--framing", choices=("auto", "off"), default="off",
                      help="auto: show a crop that keeps the person centred and steady; f "
                           "switches it live (default: off)")
    look.add_argument("--max-zoom", type=field_number(FramingOptions, "max_zoom", label="zoom "),
                      default=FramingOptions.max_zoom, metavar="X",
                      help=f"auto-framing zooms in at most this much (default: "
                           f"{FramingOptions.max_zoom:g})")
    look.add_argument("--no-smooth", action="store_true",
                      help="turn temporal smoothing off (video/camera)")
    look.add_argument("--smooth", type=field_number(SmoothOptions, "min_weight"),
                      default=SmoothOptions.min_weight, metavar="W",
                      help="weight of a new frame where the scene is still, 0..1; lower is "
                           f"steadier (default: {SmoothOptions.min_weight})")
    look.add_argument("--no-refine", action="store_true",
                      help="turn guided-filter edge refinement off (plain upscaling)")
    look.add_argument("--refine-radius", type=field_number(RefineOptions, "radius_px"),
                      default=RefineOptions.radius_px, metavar="PX",
                      help="guided filter radius at full resolution, "
                           f"{number_field(RefineOptions, 'radius_px')[1].says} "
                           f"(default: {RefineOptions.radius_px})")
    look.add_argument("--refine-sharpen", type=field_number(RefineOptions, "sharpen"),
                      default=RefineOptions.sharpen, metavar="K",
                      help="steepen the model's edge to sigmoid(K*logit p) before the guided "
                           "filter: less glow of the room around hair; 1 = as the model gives it "
                           f"(default: {RefineOptions.sharpen:g})")
    look.add_argument("--refine-confine", type=field_number(RefineOptions, "confine"),
                      default=None, metavar="C",
                      help="cap the guided filter's matte at the model's sharpened probability "
                           "over C, so it cannot carry the matte along an edge of the room where "
                           f"the model sees nobody; 0 = off (default: {VIDEO_CONFINE:g} for camera "
                           "and video, 0 for photos)")
    look.add_argument("--refine-guide", choices=("auto",) + get_args(Guide), default="auto",
                      help="what the guided filter follows: colour (B, G, R; keeps dark hair "
                           "beside a bright face opaque and the wall from glowing around the "
                           "head) or grey (the luma, cheaper); auto: colour")
    look.add_argument("--people", choices=("auto", "main", "all"), default="auto",
                      help="main: keep the person in front of the camera and anyone at least a "
                           "fifth their size, drop small regions apart from them (a bystander's "
                           "head at the frame's edge, a chair back); all: keep whatever the model "
                           "marks; auto (default): main for camera and video, all for photos")
    look.add_argument("--no-reuse", action="store_true",
                      help="run the model on every frame, even when the scene is still")

    config = p.add_argument_group("config file")
    config.add_argument("--config", type=given, metavar="PATH",
                        help="a TOML file of defaults for the long options (keys are their names: "
                             "blur = 30); default: $XDG_CONFIG_HOME/portrait/config.toml "
                             "(~/.config/portrait/config.toml) if it exists; the command line wins")
    config.add_argument("--print-config", action="store_true",
                        help="print the effective settings as TOML and exit")

    talk = p.add_mutually_exclusive_group()  # -q -v: one line, exit 2, not silently verbose
    talk.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    talk.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    return p


def options_from_args(args: argparse.Namespace):
    """Turn parsed arguments into the stage options (the only place that reads ``args``)."""
    capture = CaptureOptions(source=args.source, width=args.width, height=args.height,
                             fps=args.fps, realtime=args.realtime, loop=args.loop)
    segment = SegmentOptions(model=args.model or (PHOTO_MODEL if args.image else LIVE_MODEL),
                             backend=args.backend, device=args.device,
                             input_norm=args.input_norm, input_size=args.input_size,
                             letterbox=args.letterbox, threads=args.threads,
                             trust_model=args.trust_model, tta=tta_mode(args))
    smooth = SmoothOptions(enabled=not args.no_smooth, min_weight=args.smooth)
    guide = args.refine_guide if args.refine_guide != "auto" else RefineOptions.guide
    refine = RefineOptions(enabled=not args.no_refine, radius_px=args.refine_radius,
                           sharpen=args.refine_sharpen, guide=guide,
                           min_island=PHOTO_MIN_ISLAND if args.image else 0.0,
                           confine=refine_confine(args))
    composite = CompositeOptions(background=args.background, blur_px=args.blur,
                                 light_wrap=args.light_wrap, decontaminate=args.decontaminate)
    output = OutputOptions(out=args.out, matte=args.matte, preview=args.preview,
                           max_frames=args.max_frames, stats=args.stats, audio=args.audio,
                           vcam_backend=args.vcam_backend, vcam_device=args.vcam_device)
    pipeline = PipelineOptions(reuse_still=not args.no_reuse)
    framing = FramingOptions(enabled=args.framing == "auto", max_zoom=args.max_zoom)
    return capture, segment, smooth, refine, composite, output, pipeline, framing


def refine_confine(args: argparse.Namespace) -> float:
    """``--refine-confine``: as given, else :data:`VIDEO_CONFINE` for camera and video and 0 (off)
    for photos, whose path it was not measured on."""
    if args.refine_confine is not None:
        return args.refine_confine
    return 0.0 if args.image else VIDEO_CONFINE


def tta_mode(args: argparse.Namespace) -> str:
    """``--tta``: ``auto`` is ``scales`` for photos, which have no frame budget, and ``off`` for
    camera and video, which have 33 ms a frame."""
    if args.tta != "auto":
        return args.tta
    return "scales" if args.image else "off"


def subject_options_from_args(args: argparse.Namespace) -> SubjectOptions:
    """``--people``: subject selection on for camera and video unless ``all``, for photos only
    when ``main`` is asked for."""
    enabled = args.people == "main" or (args.people == "auto" and not args.image)
    return SubjectOptions(enabled=enabled)


def control_options_from_args(args: argparse.Namespace,
                              config_background: Optional[str] = None) -> ControlOptions:
    """The live controls' start. ``config_background``, the config file's ``background``, joins
    what ``b`` steps through when the command line names another kind (a folder there, a colour
    in the file, or the other way round; see :func:`portrait.controls.background_cycle`)."""
    from portrait.controls import background_kind

    extra = ()
    if (config_background is not None
            and background_kind(config_background) != background_kind(args.background)):
        extra = (config_background,)
    return ControlOptions(mirror=args.mirror, framing=args.framing == "auto",
                          backgrounds=extra)


def typed_options(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> set[str]:
    """The ``dest`` of every option given in ``argv`` itself (not by default or config file).

    ``parser`` is a fresh parser of the command: its defaults are removed here.
    """
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def command_line_options(argv: Sequence[str]) -> set[str]:
    """The app's options typed in ``argv`` (see :func:`typed_options`)."""
    return typed_options(build_parser(), argv)


def named_ignored(given: set[str], dests: Sequence[str], reason: str,
                  flags: Optional[dict[str, str]] = None) -> list[str]:
    """"--X is ignored REASON" (e.g. "with --image") for each of ``dests`` that was typed (is in
    ``given``); ``flags`` names an option whose flag is not its ``dest`` with dashes."""
    flags = flags or {}
    return [f"{flags.get(dest, '--' + dest.replace('_', '-'))} is ignored {reason}"
            for dest in dests if dest in given]


@contextlib.contextmanager
def options_by_flag(parser: argparse.ArgumentParser,
                    dests: Optional[dict[str, str]] = None) -> Iterator[None]:
    """While the block builds option dataclasses from ``parser``'s arguments, an option error
    (:class:`~portrait.option_checks.OptionValueError`, ``OptionTypeError``) names the flag the
    user typed rather than the field it set, its expected range kept: ``--average-last 1:
    expected 0 (off) or ...``, not ``TrainOptions.average_last = 1: ...``. ``dests`` maps a
    field to its argument's ``dest`` where the two differ (``min_weight`` to ``smooth``); an
    error of a field that no flag sets goes on as it is."""
    try:
        yield
    except (OptionValueError, OptionTypeError) as error:
        dest = (dests or {}).get(error.field, error.field)
        flags = [flag for action in parser._actions if action.dest == dest
                 for flag in action.option_strings if flag.startswith("--")]
        if not flags:
            raise
        raise error.named(flags[0]) from None


def _names_video(out: Optional[str]) -> bool:
    """Whether a stream's ``--out`` is a video file (:func:`portrait.sink.stream_out_kind`; an
    ``--out`` of another kind is refused later, with its own line)."""
    from portrait.sink import stream_out_kind

    try:
        return out is not None and stream_out_kind(out) == "video"
    except InputError:
        return False


def ignored_options(args: argparse.Namespace, given: set[str]) -> list[str]:
    """Options typed on the command line (``given``, see :func:`command_line_options`) that
    another option makes meaningless, each as "X is ignored with Y": the run goes on, and the
    user should know that what they asked for does nothing. A config file's values are not
    named; a file holds settings for every kind of run."""
    def named(dests, reason):
        return named_ignored(given, dests, f"with {reason}")

    from portrait.capture.camera import is_camera_index

    lines = []
    if args.image:
        lines += named(("source", "max_frames", "preview", "realtime", "width", "height", "fps",
                        "audio", "vcam_backend", "vcam_device"), "--image")
        lines += named(("loop",), "--image")
    elif not is_camera_index(str(args.source)):  # /dev/video2 too, as open_source takes it
        lines += named(("width", "height", "fps"), "a video file --source (they ask a camera)")
        if not _names_video(args.out):
            lines += named(("audio",), "no .mp4/.avi --out (only a video file holds sound)")
    else:
        lines += named(("audio",), "a camera --source (the app records no microphone)")
        lines += named(("loop",), "a camera --source (a camera does not end)")
    if not args.image and args.out is not None:
        lines += named(("vcam_backend", "vcam_device"), "--out (no virtual camera is written)")
    if args.matte:
        lines += named(("background", "blur"), "--matte")
        if args.decontaminate:
            lines += named(("decontaminate",), "--matte")
        if args.light_wrap:
            lines += named(("light_wrap",), "--matte")
    elif args.light_wrap and args.background.strip().lower() == "transparent":
        lines += named(("light_wrap",), "--background transparent")
    if args.no_smooth:
        lines += named(("smooth",), "--no-smooth")
    if args.no_refine:
        lines += named(("refine_radius", "refine_sharpen", "refine_confine", "refine_guide"),
                       "--no-refine")
    return lines


def without_config_loop(args: argparse.Namespace, typed: set[str],
                        config_path: Optional[os.PathLike] = None
                        ) -> tuple[argparse.Namespace, Optional[str]]:
    """``args`` without the config file's ``loop = true`` where it cannot apply: a video file
    --source written to an ``--out`` (it would never end, and ``--loop`` typed there is
    refused); the file holds a person's defaults for every run, and the virtual camera keeps
    it. Returns the args (``loop`` unset there: once, by the output) and the info line that
    says so, or ``args`` itself and ``None``."""
    from portrait.capture.camera import is_camera_index

    if (not args.loop or "loop" in typed or args.image or args.out is None
            or is_camera_index(str(args.source))):
        return args, None
    line = (f"loop = true in config file '{config_path}' is for the virtual camera and not "
            f"used for a file output: --out '{args.out}' gets the clip once")
    return argparse.Namespace(**{**vars(args), "loop": None}), line


def log_verbosity(args: argparse.Namespace, typed: set[str],
                  config_path: Optional[os.PathLike] = None) -> tuple[bool, bool]:
    """(verbose, quiet) for :func:`configure_logging`: the one typed on the command line
    (``typed``, see :func:`command_line_options`) wins over the other from the config file.

    Raises:
        ConfigError: both set by the config file at ``config_path`` (both typed, argparse
            refuses).
    """
    if not (args.verbose and args.quiet):
        return args.verbose, args.quiet
    if "verbose" in typed or "quiet" in typed:
        return "verbose" in typed, "quiet" in typed
    raise ConfigError(f"config file '{config_path}' sets both verbose = true and quiet = true, "
                      "which contradict each other; keep one")


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Log to stderr at INFO (DEBUG when verbose, WARNING when quiet); TensorFlow, absl and h5py
    only from ERROR up, and TensorFlow's C++ info lines hidden unless verbose."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(max(level, logging.ERROR))
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as app.py: CUDA probing errors are noise


def _print_config(text: str) -> int:
    """``--print-config``: the settings on standard output; one line and exit code 2 where it
    takes none (closed, or a full disk behind ``> config.toml``)."""
    try:
        if sys.stdout is None:
            raise OSError("it is closed")
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as error:
        print(f"error: cannot print the settings: standard output takes no more "
              f"({error.strerror or error}); redirect it to a file on a disk with free space",
              file=sys.stderr)
        return 2
    return 0


def main(argv: Optional[Sequence[str]] = None, keys: Sequence = ()) -> int:
    """Run the app; returns the process exit code.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        keys: scripted live-key sources for a stream (see :class:`portrait.controls.Controls`).
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    try:
        args, config = parse_with_config(parser, argv)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    if args.print_config:
        text = format_config(parser, args, config)
        for extra in control_options_from_args(args, config.defaults.get("background")).backgrounds:
            # Not a setting of its own, so a file made from this printout leaves it out.
            text += (f"# b also steps to {extra!r}, the config file's background (of another kind "
                     "than the one above, so both are in the cycle); a file made from this "
                     "printout holds only the one above\n")
        return _print_config(text)
    typed = command_line_options(argv)
    try:
        configure_logging(*log_verbosity(args, typed, config.path))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    if config.path is not None:
        log.debug("config file: %s", config.path)
    for line in ignored_options(args, typed):
        log.warning(line)
    args, unused_loop = without_config_loop(args, typed, config.path)
    if unused_loop is not None:
        log.info(unused_loop)

    def body() -> int:
        try:
            return run(args)
        except PortraitError as error:  # a bad value from the config file says it came from there
            note = config_origin(str(error), config, typed)
            if note:
                error.args = (f"{error}{note}",)
            raise

    def run(args: argparse.Namespace) -> int:
        # TensorFlow is imported where it is needed (portrait.segment.factory), not here: the
        # CPU path with an exported .tflite runs without it.
        options = options_from_args(args)
        controls = control_options_from_args(args, config.defaults.get("background"))
        subject = subject_options_from_args(args)
        from portrait.run import run_images, run_stream
        from portrait.segment import resolve_model_path

        resolve_model_path(options[1].model)  # a missing model answers before a camera opens

        if args.image:
            return run_images(args.image, *options, controls=controls, subject=subject)
        return run_stream(*options, controls=controls, keys=keys, subject=subject)

    # A stream replaces this handling with a graceful stop of its own.
    with stop_on_termination_signals():
        return run_command(body, traceback=args.debug)

"""The option dataclasses refuse bad values where they are built, naming the field, the value and
what it may be; the command line's checks take the same ranges."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from portrait.cli import build_parser
from portrait.errors import PortraitError, run_command
from portrait.option_checks import Range, number_field
from portrait.training import evaluate, train
from portrait.training.data import AugmentOptions
from portrait.training.evaluate import EvalOptions
from portrait.training.train import TrainOptions
from portrait.options import (
    CaptureOptions,
    CompositeOptions,
    ControlOptions,
    FramingOptions,
    OutputOptions,
    PipelineOptions,
    RefineOptions,
    SegmentOptions,
    SmoothOptions,
    SubjectOptions,
)

OPTION_CLASSES = (CaptureOptions, SegmentOptions, SmoothOptions, SubjectOptions, RefineOptions,
                  FramingOptions, CompositeOptions, OutputOptions, PipelineOptions, ControlOptions,
                  TrainOptions, AugmentOptions, EvalOptions)
# The fields without a default, and a value for each, to build a class around the field tried.
REQUIRED = {TrainOptions: {"data": ("data",)}, EvalOptions: {"data": "data"}}
NAN, INF = math.nan, math.inf
FLAG = ([True, False], [], [1, 0, "yes", None])  # a bool field: True/False, not what is truthy
TEXT = (["0", "clip.mp4"], ["", "  "], [0, None, b"x"])
MAYBE_TEXT = ([None, "x", "/dev/video2"], ["", " "], [0, b"x"])
TEXTS_OF = ([(), ("a",), ("a", "b/c.txt")], [("",), ("a", " ")], ["a", (None,), {"a"}])
PROBABILITY = ([0, 0.0, 0.5, 1.0], [-1e-9, 1.0001, NAN], ["0.5", None])
# A training zoom: each end above 0 and at most 10 (a larger one crashes the crop's resize),
# the first no larger than the second.
ZOOM = ([(0.55, 1.35), (1e-3, 10.0), (1.0, 1.0), (1, 2)],
        [(2.0, 1.0), (0.0, 1.0), (1.0, 10.5), (1.0, INF), (NAN, 1.0), (-1.0, 1.0)],
        [1.0, (1.0,), (1.0, 1.0, 1.0), "0.5,1", (1.0, "2")])
PAD = (["constant", "reflect"], ["wrap", "edge", ""], [])

# (class, field): (values that pass, the boundary ones among them; out of range -> ValueError;
# of the wrong type -> TypeError).
CASES = {
    (CaptureOptions, "source"): TEXT,
    (CaptureOptions, "width"): ([1, 4000], [0, -1], [1.5, True, "640", None]),
    (CaptureOptions, "height"): ([1, 2160], [0, -720], [720.0, "720"]),
    (CaptureOptions, "fps"): ([1e-3, 30, 60.0], [0, -30.0, INF, NAN], ["30", None]),
    (CaptureOptions, "realtime"): ([None, True, False], [], [0, "no"]),
    (CaptureOptions, "loop"): ([None, True, False], [], [1, "yes"]),
    (SegmentOptions, "model"): (["weights/unet.hdf5", "unet"], [""], [None, 3]),
    (SegmentOptions, "backend"): (["auto", "keras", "tflite", "mediapipe"], ["gpu", "TFLite", None], []),
    (SegmentOptions, "device"): (["auto", "cpu", "gpu"], ["cuda", ""], []),
    (SegmentOptions, "input_norm"): (["auto", "raw", "unit", "symmetric"], ["0..1"], []),
    # Any positive size up to 4096 (the command line also asks for multiples of 32).
    (SegmentOptions, "input_size"): ([None, (1, 1), (48, 32), [256, 256], (4096, 4096)],
                                     [(0, 10), (4097, 32), (-32, 32)],
                                     [(256,), (256, 256, 3), 256, "256x256", (256.0, 256)]),
    (SegmentOptions, "letterbox"): FLAG,
    (SegmentOptions, "threads"): ([0, 1, 64, 1024], [-1, 1025], [1.0, "2", None]),
    (SegmentOptions, "trust_model"): FLAG,
    (SegmentOptions, "frame_size"): ([None, (1, 1), (8000, 6000)], [(0, 720), (1280, -1)],
                                     [(1280,), "1280x720"]),
    (SegmentOptions, "tta"): (["off", "mirror", "scales", "turns"], ["on", "auto", None], []),
    (SmoothOptions, "enabled"): FLAG,
    (SmoothOptions, "min_weight"): ([0, 0.0, 1, 1.0, 0.5], [-1e-9, 1.0001, 1.5, NAN], ["0.5"]),
    (SmoothOptions, "change_full"): ([1e-6, 1.0], [0.0, -0.1, 1.01], [None]),
    (SubjectOptions, "enabled"): FLAG,
    (SubjectOptions, "min_ratio"): ([1e-6, 1.0], [0, 1.01], [None]),
    (SubjectOptions, "margin"): ([0.0, 0.999], [1.0, -0.01], ["0.05"]),
    (SubjectOptions, "low"): ([1e-6, 0.4999], [0.0, 0.5, 0.6], [None]),
    (RefineOptions, "enabled"): FLAG,
    (RefineOptions, "radius_px"): ([1, 64], [0, 65, -8], [8.0, None]),
    (RefineOptions, "eps"): ([1e-12, 1.0], [0.0, -1e-3, INF], [None]),
    (RefineOptions, "scale"): ([1, 16], [0, -4], [2.5, None]),
    (RefineOptions, "sharpen"): ([1e-6, 1, 3.0, 100.0], [0, -3.0, NAN], ["3"]),
    (RefineOptions, "guide"): (["grey", "colour"], ["color", "gray", ""], []),
    (RefineOptions, "min_island"): ([0, 0.0, 0.01, 0.999], [1.0, -0.01, NAN], ["0.01", None]),
    (RefineOptions, "confine"): ([0, 0.0, 0.05, 0.999], [1.0, -0.05, NAN, INF], ["0.05", None]),
    (FramingOptions, "enabled"): FLAG,
    (FramingOptions, "max_zoom"): ([1, 1.0, 10.0], [0.999, 0.5, INF], [None]),
    (FramingOptions, "fill"): ([1e-6, 1.0], [0.0, 1.01], [None]),
    (FramingOptions, "headroom"): ([0.0, 0.999], [1.0, -0.1], [None]),
    (FramingOptions, "dead_zone"): ([0.0, 0.5], [-0.01], [None]),
    (FramingOptions, "zoom_dead_zone"): ([0.0, 0.5], [-0.01], [None]),
    (FramingOptions, "glide_s"): ([1e-6, 5.0], [0.0, -0.5], [None]),
    (FramingOptions, "hold_s"): ([0.0, 60.0], [-1e-6, INF], [None]),
    (FramingOptions, "zoom_window_s"): ([0.0, 5.0, 60.0], [-1e-6, INF], [None]),
    (FramingOptions, "min_area"): ([0.0, 0.999], [1.0, -0.01], [None]),
    (CompositeOptions, "background"): (["blur", "#00ff00", "beach.jpg"], ["", " "], [None, 0]),
    (CompositeOptions, "blur_px"): ([None, 1, 1000, 10000], [0, -21, 10001], [21.5, "21"]),
    (CompositeOptions, "light_wrap"): ([0.0, 1.0, 1], [-0.1, 1.5], [None, "0.5"]),
    (CompositeOptions, "light_wrap_px"): ([1, 64], [0, -16], [16.0]),
    (CompositeOptions, "decontaminate"): FLAG,
    (OutputOptions, "out"): MAYBE_TEXT,
    (OutputOptions, "matte"): FLAG,
    (OutputOptions, "preview"): FLAG,
    (OutputOptions, "max_frames"): ([None, 1, 10 ** 9], [0, -1], [1.0, "5"]),
    (OutputOptions, "stats"): MAYBE_TEXT,
    (OutputOptions, "audio"): FLAG,
    (OutputOptions, "vcam_backend"): MAYBE_TEXT,
    (OutputOptions, "vcam_device"): MAYBE_TEXT,
    (PipelineOptions, "live"): FLAG,
    (PipelineOptions, "queue_size"): ([1, 8], [0, -2], [2.0, None]),
    (PipelineOptions, "reuse_still"): FLAG,
    (PipelineOptions, "still_threshold"): ([0, 0.0, 255.0], [-0.1, 255.5, NAN], [None]),
    (PipelineOptions, "max_reuse"): ([0, 2, 100], [-1, -3], [2.0, None]),
    (PipelineOptions, "spread_still"): FLAG,
    (PipelineOptions, "opencv_threads"): ([None, 1, 16], [0, -1], [1.5, "1"]),
    (ControlOptions, "mirror"): FLAG,
    (ControlOptions, "framing"): FLAG,
    (ControlOptions, "backgrounds"): ([(), ("beach.jpg", "#00ff00")], [("",), ("a.jpg", " ")],
                                      ["beach.jpg", (None,), {"a.jpg"}]),
    (TrainOptions, "data"): TEXTS_OF,
    (TrainOptions, "val"): TEXTS_OF,
    (TrainOptions, "val_split"): ([0, 0.05, 0.999], [1.0, -0.01, NAN], ["0.05", None]),
    (TrainOptions, "out"): (["unet.hdf5"], ["", " "], [None, 3]),
    (TrainOptions, "run_dir"): MAYBE_TEXT,
    (TrainOptions, "input_size"): ([(1, 1), (192, 192), (4096, 2176)], [(0, 192), (-32, 32)],
                                   [192, "192x192", (192.0, 192), (192,)]),
    (TrainOptions, "alpha"): ([1e-3, 0.35, 1, 1.4], [0.0, -1.0, INF, NAN], ["1.0", None]),
    (TrainOptions, "output_stride"): ([16, 32], [8, 64, 0, None], [16.0, 32.0]),
    (TrainOptions, "context"): (["none", "lraspp", "tail"], ["aspp", "", None], []),
    (TrainOptions, "backbone"): (["auto", "none", "imagenet", "b.weights.h5"], ["", " "], [None]),
    (TrainOptions, "batch"): ([1, 64], [0, -8], [8.0, "8", True]),
    (TrainOptions, "epochs"): ([1, 300], [0, -1], [2.5, None]),
    (TrainOptions, "steps_per_epoch"): ([None, 1, 1000], [0, -1], [10.0, "10"]),
    (TrainOptions, "lr"): ([1e-9, 1e-3, 1], [0.0, -1e-3, NAN, INF], ["1e-3", None]),
    (TrainOptions, "schedule"): (["cosine", "constant"], ["linear", ""], []),
    (TrainOptions, "warmup_epochs"): ([0, 0.0, 0.5, 40], [-0.5, INF, NAN], [None, "0.5"]),
    (TrainOptions, "loss"): (["dice+bce", "dice+bce+0.5*boundary"], ["", " "], [None, 1]),
    (TrainOptions, "max_items"): ([None, 1, 10 ** 6], [0, -1], [1.5, "8"]),
    (TrainOptions, "init"): MAYBE_TEXT,
    (TrainOptions, "resume"): FLAG,
    (TrainOptions, "bn_steps"): ([0, 100], [-1], [100.0, None]),
    (TrainOptions, "short_side"): ([None, 32, 192], [0, -32, 100, 31], [192.0, "192"]),
    (TrainOptions, "paste_prob"): PROBABILITY,
    (TrainOptions, "motion_prob"): PROBABILITY,
    (TrainOptions, "exposure_prob"): PROBABILITY,
    (TrainOptions, "edge_cut_prob"): PROBABILITY,
    (TrainOptions, "zoom"): ZOOM,
    (TrainOptions, "pad"): PAD,
    (TrainOptions, "teacher"): TEXTS_OF,
    (TrainOptions, "teacher_weight"): PROBABILITY,
    (TrainOptions, "average_last"): ([0, 2, 30], [-1, 1, 31], [2.0, None]),  # epochs: 30
    (TrainOptions, "seed"): ([0, 1, 2 ** 32 - 1], [-1, 2 ** 32], [1.0, "1", None]),
    (AugmentOptions, "scale_range"): ZOOM,
    (AugmentOptions, "rotation_deg"): ([0, 0.0, 15.0, 180], [-1.0, 180.5, NAN, INF], ["15", None]),
    (AugmentOptions, "flip"): FLAG,
    (AugmentOptions, "photometric"): FLAG,
    (AugmentOptions, "blur_prob"): PROBABILITY,
    (AugmentOptions, "noise_prob"): PROBABILITY,
    (AugmentOptions, "jpeg_prob"): PROBABILITY,
    (AugmentOptions, "occlusion_prob"): PROBABILITY,
    (AugmentOptions, "motion_prob"): PROBABILITY,
    (AugmentOptions, "exposure_prob"): PROBABILITY,
    (AugmentOptions, "edge_cut_prob"): PROBABILITY,
    (AugmentOptions, "paste_prob"): PROBABILITY,
    (AugmentOptions, "pad"): PAD,
    (EvalOptions, "data"): (["data", "../shared/data/eg1800"], ["", " "], [None, 0]),
    (EvalOptions, "list_file"): MAYBE_TEXT,
    (EvalOptions, "max_items"): ([None, 1, 40], [0, -1], [2.5, "40"]),
    (EvalOptions, "sheet"): MAYBE_TEXT,
    (EvalOptions, "worst"): ([1, 12, 500], [0, -1], [12.0, None]),
    (EvalOptions, "progress"): FLAG,
}


def build(cls, **values):
    """``cls`` with ``values``, and a value for each field it needs (:data:`REQUIRED`)."""
    return cls(**{**REQUIRED.get(cls, {}), **values})


def _ids(cases):
    return [f"{cls.__name__}.{name}" for cls, name in cases]


def test_every_field_of_every_option_class_has_cases():
    fields = {(cls, field.name) for cls in OPTION_CLASSES for field in dataclasses.fields(cls)}
    assert fields == set(CASES), sorted(_ids(fields ^ set(CASES)))


@pytest.mark.parametrize("cls", OPTION_CLASSES, ids=lambda cls: cls.__name__)
def test_defaults_pass_their_own_checks_and_every_number_has_a_range(cls):
    build(cls)  # checked as it is built
    for field in dataclasses.fields(cls):
        if "int" in field.type or "float" in field.type:  # sizes too: each side has a range
            assert isinstance(field.metadata.get("range"), Range), field.name


@pytest.mark.parametrize("cls, name", list(CASES), ids=_ids(CASES))
def test_values_at_the_bounds_pass(cls, name):
    good, _, _ = CASES[cls, name]
    for value in good:
        kept = getattr(build(cls, **{name: value}), name)
        if isinstance(value, list):  # a pair given as a list is kept as a tuple (hashable)
            assert type(kept) is tuple and kept == tuple(value), (value, kept)
        else:
            assert kept is value


@pytest.mark.parametrize("cls, name", list(CASES), ids=_ids(CASES))
def test_bad_values_are_refused_naming_the_field_and_the_value(cls, name):
    _, out_of_range, wrong_type = CASES[cls, name]
    for value, error, shown in ([(v, ValueError, repr(v)) for v in out_of_range]
                                + [(v, TypeError, f"{v!r} ({type(v).__name__})") for v in wrong_type]):
        with pytest.raises(error) as info:
            build(cls, **{name: value})
        message = str(info.value)
        assert message.startswith(f"{cls.__name__}.{name} = {shown}: expected "), message
        assert "\n" not in message
        assert not isinstance(info.value, TypeError if error is ValueError else ValueError)


@pytest.mark.parametrize("build, message", [
    (lambda: PipelineOptions(max_reuse=-3), "PipelineOptions.max_reuse = -3: expected a whole "
                                            "number, 0 or more"),
    (lambda: SmoothOptions(min_weight="0.5"), "SmoothOptions.min_weight = '0.5' (str): expected a "
                                              "number, from 0 to 1"),
    (lambda: SegmentOptions(backend="gpu"), "SegmentOptions.backend = 'gpu': expected one of "
                                            "'auto', 'keras', 'tflite', 'mediapipe'"),
    (lambda: OutputOptions(max_frames=0), "OutputOptions.max_frames = 0: expected None or a whole "
                                          "number, greater than 0"),
    (lambda: FramingOptions(max_zoom=0.5), "FramingOptions.max_zoom = 0.5: expected a number, at "
                                           "least 1 (1 = never zoom in)"),
    (lambda: SubjectOptions(margin=1.0), "SubjectOptions.margin = 1.0: expected a number, at least "
                                         "0 and below 1"),
    (lambda: RefineOptions(eps=math.inf), "RefineOptions.eps = inf: expected a number, greater "
                                          "than 0"),
    (lambda: ControlOptions(backgrounds="beach.jpg"), "ControlOptions.backgrounds = 'beach.jpg' "
                                                      "(str): expected a tuple of strings that "
                                                      "are not empty"),
    (lambda: SmoothOptions(enabled=1), "SmoothOptions.enabled = 1 (int): expected True or False"),
    (lambda: SegmentOptions(input_size=(0, 10)), "SegmentOptions.input_size = (0, 10): expected "
                                                 "None or (width, height), two whole numbers, "
                                                 "each from 1 to 4096"),
    (lambda: TrainOptions(data=("d",), short_side=100), "TrainOptions.short_side = 100: expected "
                                                        "None or a whole number, a multiple of "
                                                        "32, greater than 0"),
    (lambda: TrainOptions(data=("d",), epochs=3, average_last=4), "TrainOptions.average_last = 4: "
                                                                  "expected 0 (off) or a whole "
                                                                  "number from 2 to epochs (3)"),
])
def test_messages_say_what_was_given_and_what_is_expected(build, message):
    with pytest.raises((ValueError, TypeError)) as info:
        build()
    assert str(info.value) == message


def test_average_last_is_checked_against_epochs_whichever_of_them_changes():
    """A mean of the last K epochs' weights needs K from 2 to the epochs run; a library caller
    is refused as the command line is, also by ``dataclasses.replace`` of either field."""
    options = TrainOptions(data=("d",), epochs=3, average_last=3)
    with pytest.raises(ValueError, match=r"^TrainOptions.average_last = 3: expected 0 \(off\) or "
                                         r"a whole number from 2 to epochs \(2\)$"):
        dataclasses.replace(options, epochs=2)
    with pytest.raises(ValueError, match=r"^TrainOptions.average_last = 1: "):
        dataclasses.replace(options, average_last=1)
    assert dataclasses.replace(options, average_last=0, epochs=1).average_last == 0
    assert dataclasses.replace(options, average_last=2).average_last == 2


def test_paths_are_taken_as_strings():
    """A pathlib.Path (any os.PathLike) is a path where a string is: kept as its str; a list of
    them where a tuple is taken, kept as a tuple."""
    assert CompositeOptions(background=Path("beach.jpg")).background == "beach.jpg"
    assert OutputOptions(out=Path("out") / "call.mp4").out == str(Path("out") / "call.mp4")
    assert ControlOptions(backgrounds=(Path("a.jpg"), "blur")).backgrounds == ("a.jpg", "blur")
    assert ControlOptions(backgrounds=[Path("a.jpg"), "blur"]).backgrounds == ("a.jpg", "blur")
    assert ControlOptions(backgrounds=["a.jpg", "blur"]).backgrounds == ("a.jpg", "blur")
    assert ControlOptions(backgrounds=[]).backgrounds == ()
    assert dataclasses.replace(CaptureOptions(), source=Path("clip.mp4")).source == "clip.mp4"
    with pytest.raises(TypeError, match=r"^SmoothOptions.enabled = \w*Path\('x'\) "):
        SmoothOptions(enabled=Path("x"))  # only where a string is taken


def test_replace_checks_the_new_values_too():
    options = SmoothOptions(min_weight=0.5)
    assert dataclasses.replace(options, min_weight=1.0).min_weight == 1.0
    with pytest.raises(ValueError, match=r"^SmoothOptions.min_weight = 2: "):
        dataclasses.replace(options, min_weight=2)


def test_a_bad_option_reaching_a_command_is_its_one_line(capsys):
    """Built from the command line, the options take what its checks let through; should one
    differ, the command still ends in one line and exit code 2, not a traceback."""
    code = run_command(lambda: CompositeOptions(light_wrap=1.5))
    assert code == 2
    assert capsys.readouterr().err == ("error: CompositeOptions.light_wrap = 1.5: expected a "
                                       "number, from 0 to 1\n")
    with pytest.raises(PortraitError):
        SegmentOptions(tta="on")


def _field_numbers(parser):
    """(flag, options class, field) of each option of ``parser`` whose type is a field's
    (:func:`portrait.cli.field_number`)."""
    return [(action.option_strings[0], *action.type.field) for action in parser._actions
            if hasattr(action.type, "field")]


# Options of the command line that set a number field, and texts at and around their bounds.
CLI_NUMBERS = _field_numbers(build_parser())
TEXTS = ["-1", "0", "1e-9", "0.5", "0.999", "1", "1.001", "2", "63", "64", "65", "1e6", "inf", "nan"]


def test_every_number_option_of_the_app_takes_its_type_from_its_field():
    """No number option of the app checks its text by a range of its own: each one not a size
    (--input-size, WxH: below) nor a path takes its field's type, so the test below covers it."""
    from portrait.cli import given, model_size, source_spec

    text_types = {given, source_spec, model_size}
    for action in build_parser()._actions:
        if action.type is not None and action.choices is None and action.type not in text_types:
            assert hasattr(action.type, "field"), action.option_strings
    assert {flag for flag, _, _ in CLI_NUMBERS} == {
        "--width", "--height", "--fps", "--threads", "--smooth", "--refine-radius",
        "--refine-sharpen", "--refine-confine", "--blur", "--light-wrap", "--max-zoom",
        "--max-frames"}


@pytest.mark.parametrize("flag, cls, name", CLI_NUMBERS, ids=[c[0] for c in CLI_NUMBERS])
def test_the_command_line_takes_a_number_where_the_options_do(flag, cls, name, capsys):
    kind, _ = number_field(cls, name)
    taken = refused = 0
    for text in TEXTS:
        try:
            value = kind(text)
        except ValueError:
            continue  # "0.5" for a whole number: refused by both, as text
        try:
            cls(**{name: value})
            options_take = True
        except ValueError:
            options_take = False
        try:
            parsed = build_parser().parse_args([flag, text])
            command_line_takes = True
        except SystemExit:
            command_line_takes = False
        assert command_line_takes == options_take, (flag, text)
        if command_line_takes:  # taken as the field's own kind: "2" is 2 for a whole number
            given = getattr(parsed, flag[2:].replace("-", "_"))
            assert given == value and type(given) is kind, (flag, text, given)
        taken += options_take
        refused += not options_take
    assert taken and refused  # both sides of the bound were tried
    capsys.readouterr()


def _takes(parse, args) -> bool:
    try:
        parse(args)
        return True
    except SystemExit:
        return False


# The training and evaluation commands: their parser, the arguments each needs, their options.
TOOLS = [(train.build_parser, ["--data", "d"], TrainOptions),
         (evaluate.build_parser, ["--model", "m.hdf5", "--data", "d"], EvalOptions)]
# Number options whose command line asks less than the options: average_last's bound is
# epochs, another option; the options refuse it as they are built (test_train).
ASKS_LESS = {"average_last"}


@pytest.mark.parametrize("parser, needed, cls", TOOLS, ids=["train", "evaluate"])
def test_the_training_commands_take_a_number_where_their_options_do(parser, needed, cls, capsys):
    """Every option of the command that sets a number field of its options class, tried at
    and around its bounds: the command line and the options take the same values."""
    numbers = {field.name for field in dataclasses.fields(cls)
               if field.metadata.get("range") and "tuple" not in field.type} - ASKS_LESS
    flags = [(action.option_strings[0], action.dest) for action in parser()._actions
             if action.dest in numbers]
    assert {name for _, name in flags} == numbers  # each one has an option
    for flag, name in flags:
        kind, _ = number_field(cls, name)
        taken = refused = 0
        for text in TEXTS + ["4294967295", "4294967296"]:  # and the seed's bounds
            try:
                value = kind(text)
            except ValueError:
                continue
            try:
                build(cls, **{name: value})
                options_take = True
            except ValueError:
                options_take = False
            assert _takes(parser().parse_args, needed + [flag, text]) == options_take, (flag, text)
            taken += options_take
            refused += not options_take
        assert taken and refused, flag
    capsys.readouterr()


def test_train_zoom_the_command_line_takes_what_the_options_do(capsys):
    for text in ("0.55,1.35", "1,1", "0.001,10", "2,1", "0,1", "-1,1", "0.5,10.5", "0.5,inf",
                 "nan,1"):
        try:
            TrainOptions(data=("d",), zoom=tuple(float(v) for v in text.split(",")))
            options_take = True
        except ValueError:
            options_take = False
        assert _takes(train.build_parser().parse_args, ["--data", "d", "--zoom", text]) == \
            options_take, text
    capsys.readouterr()


def test_input_size_the_command_line_adds_multiples_of_32_to_the_options_range(capsys):
    def command_line_takes(text):
        try:
            build_parser().parse_args(["--input-size", text])
            return True
        except SystemExit:
            return False

    for text, size, both in (("4096x2176", (4096, 2176), True), ("4128x32", (4128, 32), False),
                             ("32x32", (32, 32), True)):
        assert command_line_takes(text) is both, text
        if both:
            assert SegmentOptions(input_size=size).input_size == size
        else:
            with pytest.raises(ValueError, match="each from 1 to 4096"):
                SegmentOptions(input_size=size)
    # A size the shipped models cannot run at: the command line refuses it, a library caller
    # with a model of its own may ask for it.
    assert not command_line_takes("48x32")
    assert SegmentOptions(input_size=(48, 32)).input_size == (48, 32)
    capsys.readouterr()


def test_a_range_in_words_and_at_its_ends():
    assert [r.says for r in (Range(0, 1), Range(0), Range(1), Range(0, low_open=True),
                             Range(0, 1, high_open=True), Range(0, 0.5, True, True),
                             Range(1, note="1 = never zoom in"), Range(high=255),
                             Range(high=1, high_open=True), Range(),
                             Range(0, low_open=True, step=32))] == [
        "from 0 to 1", "0 or more", "at least 1", "greater than 0", "at least 0 and below 1",
        "greater than 0 and below 0.5", "at least 1 (1 = never zoom in)", "at most 255",
        "below 1", "a finite number", "a multiple of 32, greater than 0"]
    sides = Range(0, low_open=True, step=32)
    assert [sides.holds(v) for v in (32, 64, 4096, 0, -32, 31, 100)] == [True] * 3 + [False] * 4
    positive = Range(0, low_open=True)
    assert positive.holds(1e-300) and not positive.holds(0.0)
    # An infinity lies past a missing bound but is no value an option takes; NaN is never in.
    assert positive.within(math.inf) and not positive.holds(math.inf)
    assert not Range(0, 1).within(math.inf)
    assert not any(r.within(math.nan) for r in (Range(), positive, Range(0, 1)))


def test_number_field_gives_the_kind_of_a_pair_s_sides_and_of_an_optional_number():
    assert number_field(SegmentOptions, "input_size") == (int, Range(1, 4096))
    assert number_field(TrainOptions, "zoom")[0] is float
    assert number_field(TrainOptions, "steps_per_epoch")[0] is int
    assert number_field(TrainOptions, "lr")[0] is float
    with pytest.raises(KeyError):
        number_field(TrainOptions, "schedule")


def test_a_pair_given_as_a_list_is_kept_as_a_tuple():
    """Options are frozen dataclasses: a (width, height) or (low, high) pair given as a list is
    kept as a tuple, so the options hash and equal those built with a tuple."""
    from portrait.training.train import TrainOptions

    listed, tupled = SegmentOptions(input_size=[256, 192]), SegmentOptions(input_size=(256, 192))
    assert listed.input_size == (256, 192) and listed == tupled and hash(listed) == hash(tupled)
    assert TrainOptions(data=('data',), zoom=[0.5, 1.0]).zoom == (0.5, 1.0)


def test_numpy_strings_and_pairs_in_a_list_are_taken_as_python_values():
    """A choice read from an array (``np.str_``) is the ``str`` a ``Literal`` takes; a pair
    given as a list of NumPy numbers (``list(np.array(...))``) is a tuple of Python ints."""
    choices = np.array(["cosine", "constant"])
    options = TrainOptions(data=("d",), schedule=choices[1], pad=np.str_("reflect"))
    assert (options.schedule, type(options.schedule)) == ("constant", str)
    assert type(options.pad) is str
    size = SegmentOptions(input_size=list(np.array([256, 192]))).input_size
    assert size == (256, 192) and [type(side) for side in size] == [int, int]


def test_a_number_field_without_a_range_is_still_finite_and_a_type_without_a_check_is_refused():
    """A class built on CheckedOptions: a number given no bounds still refuses NaN and the
    infinities; a field of a type the checks do not know fails where it is built, not passed
    unchecked."""
    from portrait.option_checks import CheckedOptions

    @dataclasses.dataclass(frozen=True)
    class Unbounded(CheckedOptions):
        gain: float = 1.0

    assert Unbounded(gain=-1e300).gain == -1e300
    for value in (NAN, INF, -INF):
        with pytest.raises(ValueError, match=r"^Unbounded.gain = \S+: expected a number$"):
            Unbounded(gain=value)

    @dataclasses.dataclass(frozen=True)
    class Unknown(CheckedOptions):
        table: dict = dataclasses.field(default_factory=dict)

    with pytest.raises(NotImplementedError, match="no check for a field of type <class 'dict'>"):
        Unknown()


def _as_numpy(value):
    """``value`` as indexing a NumPy array gives it: a number or a flag as a NumPy scalar, each
    side of a pair as one; None where ``value`` is neither."""
    if type(value) in (bool, int, float):
        return np.array([value])[0]
    if (isinstance(value, (tuple, list)) and len(value) == 2
            and all(type(side) in (int, float) for side in value)):
        return tuple(np.array(value))
    return None


@pytest.mark.parametrize("cls, name", list(CASES), ids=_ids(CASES))
def test_numpy_scalars_are_taken_as_the_python_values_they_hold(cls, name):
    """``np.bool_(True)`` where a flag is taken, ``np.int64``/``np.float64`` where a number is,
    each side of a pair: taken where the Python value is, kept as that Python value (type and
    all), and refused where it is, with the same message."""
    good, out_of_range, _ = CASES[cls, name]
    tried = 0
    for value in good:
        scalar = _as_numpy(value)
        if scalar is None:
            continue
        kept = getattr(build(cls, **{name: scalar}), name)
        expected = tuple(value) if isinstance(value, list) else value
        assert kept == expected and type(kept) is type(expected), (value, kept)
        if isinstance(kept, tuple):
            assert [type(side) for side in kept] == [type(side) for side in value], kept
        tried += 1
    for value in out_of_range:
        scalar = _as_numpy(value)
        if scalar is None:
            continue
        with pytest.raises(ValueError) as python:
            build(cls, **{name: value})
        with pytest.raises(ValueError) as numpy:
            build(cls, **{name: scalar})
        assert str(numpy.value) == str(python.value)
    field_type = dataclasses.fields(cls)[[f.name for f in dataclasses.fields(cls)].index(name)].type
    assert tried or not any(word in field_type for word in ("bool", "int", "float")), field_type


def test_a_numpy_flag_read_from_an_array_is_a_flag_and_numbers_stay_whole_or_not():
    flags = np.array([True, False])
    options = ControlOptions(mirror=flags[0], framing=flags[1])
    assert options.mirror is True and options.framing is False
    assert SmoothOptions(enabled=np.bool_(False)).enabled is False
    sizes = np.array([[640, 480]], np.int32)
    capture = CaptureOptions(width=sizes[0, 0], height=np.uint16(480), fps=np.float32(29.97))
    assert (type(capture.width), type(capture.height), type(capture.fps)) == (int, int, float)
    assert capture.fps == pytest.approx(29.97, abs=1e-5)
    assert OutputOptions(max_frames=np.int64(5)).max_frames == 5
    assert SegmentOptions(input_size=np.array([256, 192])[::-1].tolist()).input_size == (192, 256)
    assert SegmentOptions(input_size=tuple(np.array([256, 192]))).input_size == (256, 192)
    # What Python refuses stays refused: a flag or a fraction for a whole number, a number for a flag.
    for build_wrong in (lambda: CaptureOptions(width=np.bool_(True)),
                        lambda: CaptureOptions(width=np.float64(640.5)),
                        lambda: SmoothOptions(enabled=np.int64(1)),
                        lambda: TrainOptions(data=("d",), output_stride=np.float32(16))):
        with pytest.raises(TypeError):
            build_wrong()
    # Python numbers all through: the training options are written to train.json as they are.
    options = TrainOptions(data=("d",), seed=np.int64(7), lr=np.float32(0.5),
                           zoom=tuple(np.array([0.5, 2.0])), output_stride=np.int64(32))
    assert json.loads(json.dumps(dataclasses.asdict(options)))["seed"] == 7
    assert options.output_stride == 32 and type(options.output_stride) is int


def test_an_option_error_from_a_command_line_names_the_flag_with_the_fields_range():
    """Built from parsed arguments, an option the dataclass refuses is named by the flag that
    set it (or its dest's flag where the field is named otherwise), the expected range kept;
    a field no flag sets keeps its own name."""
    from portrait.cli import options_by_flag
    from portrait.option_checks import OptionTypeError, OptionValueError

    parser = train.build_parser()
    with pytest.raises(OptionValueError) as refused:
        with options_by_flag(parser):
            TrainOptions(data=("d",), epochs=3, average_last=1)
    assert str(refused.value) == ("--average-last 1: expected 0 (off) or a whole number from 2 "
                                  "to epochs (3)")
    with pytest.raises(OptionTypeError) as refused:
        with options_by_flag(parser, {"enabled": "seed"}):
            SmoothOptions(enabled=1)
    assert str(refused.value) == "--seed 1 (int): expected True or False"
    with pytest.raises(OptionValueError, match=r"^PipelineOptions.max_reuse = -3: expected"):
        with options_by_flag(parser):
            PipelineOptions(max_reuse=-3)


def test_evaluate_names_the_compare_models_options_by_their_own_flags():
    """The second model's options come from the --compare-... flags: a value its options refuse
    names that flag, not the first model's."""
    from portrait.option_checks import OptionValueError

    args = evaluate.build_parser().parse_args(["--model", "m.tflite", "--data", "d",
                                               "--compare", "p.tflite"])
    args.compare_input_size = (0, 32)  # what a check of the command line would let through
    with pytest.raises(OptionValueError) as refused:
        evaluate.options_from_args(args)
    assert str(refused.value).startswith("--compare-input-size (0, 32): expected None or ")
    args.compare_input_size, args.max_items = None, 0
    with pytest.raises(OptionValueError) as refused:
        evaluate.options_from_args(args)
    assert str(refused.value).startswith("--max-items 0: expected None or a whole number")

"""Convert a Keras model to TFLite, the way the app does: ``python -m portrait.training.export``.

The app, given a Keras model on a machine without a GPU, runs the ``.tflite`` exported beside it
when that file is fresh (:mod:`portrait.segment.exported`), else converts the Keras model once
and caches the result (:mod:`portrait.segment.convert`). This module writes that ``.tflite``, to
ship or to run elsewhere: the model is loaded with the same safety checks and Keras 2 shim,
converted by the same function, and marked with its input scaling (``portrait_input_norm``) and
with where it came from (``portrait_export``: the source file's SHA-256, the short side it runs at,
the export format), so the app reads them back from the file.

Input size (:func:`conversion_size`): a model that notes the short side it was trained for (ours,
``portrait.training.train`` and ``ensemble`` write it) keeps a dynamic height and width, so one
file serves every frame aspect, as the ``.hdf5`` does; other models get one fixed size, to which
the app stretches (or letterboxes) every frame. ``--input-size`` fixes any model's size.

Input scaling: a model that rescales pixels itself (a ``Rescaling``/``Normalization`` first
layer, as ours do) takes raw 0..255 pixels and is marked so; ``--input-norm`` names the scaling of
a model that does not, and one that contradicts the model's own is refused (the check below feeds
both models alike, so it cannot catch a wrong mark).

Every export is checked before it is written: the ``.tflite`` and the Keras model must give the
same probability (within :data:`MAX_DIFFERENCE`) on one random image at the size the app runs.
Its paths are checked before that, before TensorFlow starts (:func:`check_export_paths`).

The shipped models' files are regenerated with one command, after a ``weights/*.hdf5`` changes::

    python -m portrait.training.export --shipped
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from portrait.cli import OneLineParser, import_tensorflow_quietly, configure_logging, model_size
from portrait.errors import InputError, ModelError, run_command
from portrait.native_log import drop_model_load_noise, filtered_stderr
from portrait.segment.keras_compat import config_input_size, keras_input_norm
from portrait.options import CaptureOptions
from portrait.segment import (
    KERAS_SUFFIXES,
    SHIPPED_MODELS,
    convert_keras,
    read_short_side_hint,
    resolve_model_path,
    size_for_frame,
)
from portrait.sink.paths import _prepare_folder, names_folder, same_place

log = logging.getLogger("portrait.training.export")  # not "__main__" under python -m

INPUT_NORMS = ("auto", "raw", "unit", "symmetric")
# Largest probability difference between the export and the Keras model that passes the check.
MAX_DIFFERENCE = 1e-4


@dataclass(frozen=True)
class Conversion:
    """A converted model.

    Attributes:
        content: the ``.tflite`` file's bytes.
        input_size: (width, height) its input is fixed at; None for a dynamic input.
        input_norm: the scaling marked in the file, or None when it is unmarked (the app then
            assumes ``unit``, x/255, unless told otherwise).
        short_px: for a dynamic input, the short side the app runs it at (None otherwise).
        max_difference: the largest difference from the Keras model's probability in the check.
    """

    content: bytes
    input_size: Optional[tuple[int, int]]
    input_norm: Optional[str]
    short_px: Optional[int] = None
    max_difference: float = 0.0


def conversion_size(path: Path, config: dict, model,
                    requested: Optional[tuple[int, int]]) -> Optional[tuple[int, int]]:
    """The input size a Keras model is exported at; None keeps a dynamic height and width.

    The size the app converts the model at (:func:`portrait.segment.wrappers.keras_run_size`),
    so the app runs the export in its place: a fixed model input as is; a dynamic one
    ``requested``; else, for a model our training marked with the short side it was trained
    for, dynamic (the app runs it at each frame's aspect ratio with that short side); else
    256x256.

    Args:
        path: the model file (it may carry the short-side mark).
        config: the model file's architecture JSON (from ``keras_compat.read_model_config``).
        model: the loaded model, consulted when the config does not say plainly.
        requested: ``--input-size``; used only for a model with a dynamic input size.

    Returns:
        (width, height), or None for a dynamic input.

    Raises:
        ModelError: a model input that is not (batch, H, W, 3).
    """
    from portrait.segment.keras_compat import saved_input_size
    from portrait.segment.wrappers import keras_run_size

    fixed = saved_input_size(model)  # also refuses a non-image input
    model_input = config_input_size(config) or fixed or "dynamic"
    if model_input != "dynamic" and requested and tuple(requested) != tuple(model_input):
        log.warning("the model has a fixed %dx%d input; ignoring --input-size", *model_input)
    short_px = read_short_side_hint(path) if model_input == "dynamic" else None
    return keras_run_size(model_input, short_px, requested)  # the size the app converts it at


def convert_keras_file(path: Path, input_size: Optional[tuple[int, int]] = None,
                       input_norm: str = "auto", trust_model: bool = False) -> Conversion:
    """Convert a Keras model file to a marked, checked TFLite flatbuffer.

    Args:
        path: a ``.hdf5``/``.h5``/``.keras`` model file.
        input_size: (width, height) for a model whose input size is not fixed.
        input_norm: ``auto`` marks ``raw`` when the model rescales pixels itself (a
            ``Rescaling``/``Normalization`` first layer) and leaves other models unmarked;
            ``raw``/``unit``/``symmetric`` mark that scaling (for a model that rescales pixels
            itself only ``raw``, what it takes, is accepted).
        trust_model: allow a model with serialised code (Lambda layers).

    Returns:
        The :class:`Conversion`.

    Raises:
        ModelError: an unreadable, unsafe or unconvertible model, one whose output is no mask
            (:func:`check_mask_output`), an ``input_norm`` other than
            ``raw`` for a model that rescales pixels itself, or an export that disagrees with
            the Keras model.
        ValueError: an unknown ``input_norm``.
    """
    from portrait.segment import keras_compat, tflite_utils

    if input_norm not in INPUT_NORMS:
        raise ValueError(f"unknown input norm {input_norm!r}: expected one of {INPUT_NORMS}")
    config = keras_compat.read_model_config(path)
    model = keras_compat.load_keras_model(path, trust_model)
    check_mask_output(model)
    detected = keras_input_norm(model)
    if input_norm not in ("auto", detected) and detected:
        # Marked otherwise, the app would feed the model pixels it scales a second time (x/255
        # then its own /255: a black frame, nobody marked), and the check below, which feeds
        # both models alike, could not tell.
        raise ModelError(f"--input-norm {input_norm} contradicts '{path}': the model rescales "
                         f"pixels itself (a Rescaling/Normalization first layer), so it takes "
                         f"{detected} 0..255 pixels; leave --input-norm out")
    size = conversion_size(path, config, model, input_size)
    short_px = None if size else read_short_side_hint(path)
    if size:
        log.info("converting '%s' to TFLite at %dx%d", path, *size)
    else:
        log.info("converting '%s' to TFLite with a dynamic input (the app runs it at each frame's "
                 "aspect ratio, short side %d px)", path, short_px)
    advice = "try --input-size WxH (multiples of 32)"
    content = convert_keras(model, path, size, advice)
    if input_norm == "auto":
        norm = detected
        if norm is None:
            log.warning("the model does not rescale pixels itself; the file is left unmarked and "
                        "the app will feed x/255 unless --input-norm says otherwise")
    else:
        norm = input_norm
    if norm is not None:
        content = tflite_utils.mark_tflite_input_norm(content, norm)
    content = tflite_utils.mark_export_info(content, tflite_utils.export_info(path, short_px))
    camera = CaptureOptions()
    check_size = size or size_for_frame((camera.width, camera.height), short_px)
    difference = compare_export(model, content, check_size)
    check_difference(path, difference, check_size, advice)
    log.info("checked: the export's probability is within %.1g of the Keras model's at %dx%d",
             difference.largest, *check_size)
    return Conversion(content=content, input_size=size, input_norm=norm, short_px=short_px,
                      max_difference=difference.largest)


@dataclass(frozen=True)
class Difference:
    """What the check of an export (:func:`compare_export`) found on its random image.

    Attributes:
        largest: the largest |Keras − TFLite| probability; nan where either side gave nan,
            inf where their outputs differ in shape, 0 for a quantised export (not compared).
        keras_nan: the Keras model gave nan.
        tflite_nan: the TFLite export gave nan.
    """

    largest: float
    keras_nan: bool = False
    tflite_nan: bool = False


def check_difference(path: Path, difference: Difference, size: tuple[int, int],
                     advice: str) -> None:
    """Refuse an export that disagrees with its Keras model (more than
    :data:`MAX_DIFFERENCE`), naming the side that gave nan where one did.

    Raises:
        ModelError: nan from the Keras model (its weights are broken: no ``advice`` helps), nan
            from the TFLite export only (the conversion went wrong: ``advice``), or a larger
            difference (``advice``).
    """
    at = f"{size[0]}x{size[1]}"
    if difference.keras_nan:
        # Not a conversion that went wrong: a model that gives nan (a training run that
        # diverged) gives it in Keras, and no --input-size helps.
        sides = ("in Keras and in its TFLite export" if difference.tflite_nan
                 else "in Keras (its TFLite export gives numbers)")
        raise ModelError(f"'{path}' gives no probability (nan) on a random image at {at}, "
                         f"{sides}: its weights are broken (a training run that diverged?); "
                         "export a model that predicts")
    if difference.tflite_nan:
        raise ModelError(f"the TFLite export of '{path}' gives no probability (nan) on a random "
                         f"image at {at} where the Keras model gives one: the conversion went "
                         f"wrong, not the weights; {advice}, or run the .hdf5 itself")
    if not difference.largest <= MAX_DIFFERENCE:
        raise ModelError(f"the TFLite export of '{path}' disagrees with the Keras model by "
                         f"{difference.largest:.2g} (more than {MAX_DIFFERENCE:g}) at {at}; "
                         f"{advice}, or run the .hdf5 itself")


def check_mask_output(model) -> None:
    """Refuse, before converting, a model whose output the app refuses to read as a mask (a
    classifier's scores): its export would be written, checked and then refused by the app.

    Raises:
        ModelError: the app's own line for such an output
            (:class:`portrait.segment.model_io.OutputReader`).
    """
    from portrait.segment.model_io import OutputReader

    shape = tuple(model.outputs[0].shape) if getattr(model, "outputs", None) else ()
    OutputReader((1,) + shape[1:])


def compare_export(model, content: bytes, size: tuple[int, int]) -> Difference:
    """Largest |Keras − TFLite| output on one random RGB image at ``size`` (width, height), the
    ``.tflite`` run as the app runs it (a dynamic one fixed at that size first), and which side
    gave nan, if one did."""
    import numpy as np

    from portrait.segment import fixed_size, tflite_utils

    width, height = size
    _, signature = tflite_utils.input_shape(content)
    if tflite_utils.dynamic_image_input(signature):
        content = fixed_size.fix_input_size(content, size)
    image = np.random.default_rng(0).uniform(0, 255, (1, height, width, 3)).astype(np.float32)
    interpreter = tflite_utils.make_interpreter(content, 1)
    with filtered_stderr(drop_model_load_noise):
        interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    if detail["dtype"] != np.float32:
        return Difference(0.0)  # a quantised model cannot be compared at float precision
    norm = tflite_utils.read_tflite_input_norm(content) or "unit"
    scale, offset = {"raw": (1.0, 0.0), "unit": (1 / 255, 0.0), "symmetric": (1 / 127.5, -1.0)}[norm]
    fed = (image * scale + offset).astype(np.float32)
    interpreter.set_tensor(detail["index"], fed)
    interpreter.invoke()
    found = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    expected = model(fed, training=False)
    expected = np.asarray(expected[0] if isinstance(expected, (list, tuple)) else expected)
    keras_nan, tflite_nan = bool(np.isnan(expected).any()), bool(np.isnan(found).any())
    if found.shape != expected.shape:
        return Difference(float("inf"), keras_nan, tflite_nan)
    return Difference(float(np.abs(found - expected).max()), keras_nan, tflite_nan)


def check_export_paths(model: str, out: Optional[str] = None) -> tuple[Path, Path]:
    """Check an export's paths from the arguments alone, before TensorFlow starts: the model
    is a Keras file, ``out`` a ``.tflite`` file other than the model, that replaces no other
    model's export and no file this command did not write, in a folder that takes it.

    Args:
        model: a Keras model path; a bare name is also looked up in ``weights/``.
        out: the ``.tflite`` path to write; None: beside the model, same name.

    Returns:
        (the model's path, the path to write).

    Raises:
        ModelError: a missing or non-Keras model, or ``out`` not a ``.tflite`` path, the same
            file as the model, or a file the export must not replace (:func:`check_replaceable`).
        InputError: ``out`` is a folder, or its folder cannot be created or written.
    """
    source = resolve_model_path(model, "pass --model PATH to a Keras model (.hdf5, .h5, .keras); "
                                       "a .tflite needs no export")
    if source.suffix.lower() == ".tflite":
        raise ModelError(f"export converts Keras models (.hdf5, .h5, .keras), got '{source}'; "
                         "a .tflite model needs no export")
    if source.suffix.lower() not in KERAS_SUFFIXES:  # a photo, a text file: no model at all
        raise ModelError(f"--model '{model}' is not a model file: export converts Keras models "
                         f"(.hdf5, .h5, .keras), and its type '{source.suffix or '(none)'}' is "
                         "none of them; pass --model PATH to a Keras model")
    if out is None:
        out = str(source.with_suffix(".tflite"))
    target = Path(out)
    if target.suffix.lower() != ".tflite":
        raise ModelError(f"--out '{out}' must end in .tflite, e.g. --out {source.stem}.tflite")
    if same_place(target, source):
        raise ModelError(f"--out '{out}' is the model file itself; choose another path")
    if names_folder(out) or target.is_dir():
        raise InputError(f"--out '{out}' is a folder; give a file name, e.g. "
                         f"--out {target / source.stem}.tflite")
    check_replaceable(target, source)
    _prepare_folder(target.parent, f"model '{target}'")
    return source, target


def check_replaceable(target: Path, source: Path) -> None:
    """Refuse an ``--out`` whose writing would replace what the user did not ask to: the export
    the app runs for another Keras model (``X.tflite`` beside an ``X.hdf5``/``.h5``/``.keras``
    other than ``source``; written over, the app would refuse it there as stale at each start,
    and the shipped ``weights/unet.tflite`` and ``unet_live.tflite`` are such files), or a file
    this command did not write (a model from elsewhere, such as MediaPipe's, or any other file
    that carries no export record). An earlier export at ``target`` is replaced: that is a
    re-export.

    Raises:
        ModelError: either, naming the file and what to do.
    """
    from portrait.segment import tflite_utils

    for suffix in KERAS_SUFFIXES:
        owner = target.with_suffix(suffix)
        if owner.is_file() and not same_place(owner, source):
            raise ModelError(f"--out '{target}' is where the app looks for the export of "
                             f"'{owner}' beside it, which this export of '{source}' would replace "
                             f"(the app would then refuse it as stale); choose another --out, "
                             f"or export '{owner}' itself")
    if not target.is_file():
        return
    try:
        info = tflite_utils.read_export_info(target)
    except (OSError, ValueError, IndexError):  # not a TFLite file, or one cut short
        info = None
    if info is None:
        raise ModelError(f"--out '{target}' already holds a file that export did not write (no "
                         "export record: a model from elsewhere, or another file), which this "
                         "export would replace; choose another --out, or move that file away")


def export_model(model: str, out: str, input_size: Optional[tuple[int, int]] = None,
                 input_norm: str = "auto", trust_model: bool = False) -> Path:
    """Convert ``model`` and write the ``.tflite`` file to ``out`` (atomically).

    Args:
        model: a Keras model path; a bare name is also looked up in ``weights/``.
        out: the ``.tflite`` path to write.
        input_size, input_norm, trust_model: as :func:`convert_keras_file`.

    Returns:
        The written path.

    Raises:
        ModelError: a missing, non-Keras, unsafe or unconvertible model, or ``out`` not a
            ``.tflite`` path, or the same file as the model.
        InputError: ``out`` is a folder, or its folder cannot be created or written (checked
            before the conversion).
    """
    from portrait.segment import tflite_utils

    source, target = check_export_paths(model, out)
    conversion = convert_keras_file(source, input_size, input_norm, trust_model)
    check_replaceable(target, source)  # again: a file may have come there while converting
    try:
        umask = os.umask(0)
        os.umask(umask)
        # Whole, and readable as a file to ship or share (not a private temporary one), before
        # it takes the name: a stop or a reader never finds a part or a file it cannot open.
        tflite_utils.write_atomic(target, conversion.content, mode=0o666 & ~umask)
    except OSError as error:
        raise ModelError(f"cannot write '{target}': {error.strerror or error}; check the folder "
                         "and its permissions") from None
    if conversion.input_size:
        shape = "input %dx%d" % conversion.input_size
    else:
        shape = f"dynamic input (frame aspect, short side {conversion.short_px} px)"
    mark = f"marked input norm '{conversion.input_norm}'" if conversion.input_norm else "unmarked"
    size = len(conversion.content)
    size_text = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
    log.info("wrote %s (%s), %s, %s, made from %s", target, size_text, shape, mark, source)
    return target


def export_shipped() -> list[Path]:
    """Re-export every shipped model to the ``.tflite`` beside it (``weights/X.hdf5`` →
    ``weights/X.tflite``), the files the app runs on the CPU.

    Returns:
        The written paths.
    """
    from portrait.segment.exported import companion_path

    written = []
    for name in SHIPPED_MODELS:
        source = resolve_model_path(name)
        written.append(export_model(str(source), str(companion_path(source))))
    return written


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m portrait.training.export`` command line."""
    p = OneLineParser(
        prog="python -m portrait.training.export",
        description="Convert a Keras model (.hdf5) to TFLite, the same conversion the app uses.",
    )
    p.add_argument("--model", metavar="PATH", help=".hdf5/.h5/.keras model")
    p.add_argument("--out", metavar="PATH",
                   help="the .tflite file to write (default: beside the model, same name; the "
                        "app runs that file instead of converting the model while it is fresh)")
    p.add_argument("--shipped", action="store_true",
                   help=f"re-export each shipped model ({', '.join(SHIPPED_MODELS)}) to the "
                        ".tflite beside it; run it after a weights/*.hdf5 changes")
    p.add_argument("--input-size", type=model_size, metavar="WxH",
                   help="input size for a model whose size is not fixed, both sides multiples "
                        "of 32 (default: dynamic, run at each frame's aspect, when the model "
                        "notes its training size, else 256x256)")
    p.add_argument("--input-norm", choices=INPUT_NORMS, default="auto",
                   help="pixel scaling to mark in the file, for a model that does not rescale "
                        "pixels itself (default: raw when the model rescales pixels itself, "
                        "else unmarked)")
    p.add_argument("--trust-model", action="store_true",
                   help="allow a model with serialised code (Lambda layers)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the export; returns the process exit code."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)

    def body() -> None:
        if args.shipped:
            if args.model or args.out or args.input_size or args.input_norm != "auto":
                raise ModelError("--shipped exports the shipped models beside themselves, as "
                                 "they are; it takes no --model, --out, --input-size or "
                                 "--input-norm")
            import_tensorflow_quietly()
            export_shipped()
            return
        if not args.model:
            raise ModelError("pass --model PATH (and optionally --out PATH.tflite), or --shipped")
        # Bad paths answer before TensorFlow starts and the model loads.
        source, out = check_export_paths(args.model, args.out)
        if not args.debug:
            import_tensorflow_quietly()
        export_model(str(source), str(out), args.input_size, args.input_norm, args.trust_model)

    return run_command(body, traceback=args.debug)


if __name__ == "__main__":
    sys.exit(main())

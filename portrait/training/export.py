"""Convert a Keras model to TFLite, the way the app does: ``python -m portrait.training.export``.

The app, given a Keras model on a machine without a GPU, converts it to TFLite once and caches
the result (see :mod:`portrait.segment` and :mod:`portrait.segment.tflite_utils`). This module makes
the same file on purpose, to ship or to run elsewhere: the model is loaded with the same safety
checks and Keras 2 shim, its input is fixed at a size the app would use (see
:func:`conversion_size`), converted by the same function, and marked with its input scaling
(``portrait_input_norm``) so the app reads the scaling back from the file.

A ``.tflite`` file has one input size; the app stretches other frame shapes to it. (Given the
``.hdf5`` of a model trained by ``portrait.training.train``, the app instead converts one size per frame
aspect ratio.)
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from portrait.cli import OneLineParser, import_tensorflow_quietly, configure_logging, parse_size
from portrait.errors import ModelError, run_command
from portrait.segment.keras_compat import config_input_size, keras_input_norm
from portrait.options import CaptureOptions
from portrait.segment import (
    DEFAULT_INPUT_SIZE,
    KERAS_SUFFIXES,
    convert_keras,
    read_short_side_hint,
    resolve_model_path,
    size_for_frame,
)

log = logging.getLogger("portrait.training.export")  # not "__main__" under python -m

INPUT_NORMS = ("auto", "raw", "unit", "symmetric")


@dataclass(frozen=True)
class Conversion:
    """A converted model.

    Attributes:
        content: the ``.tflite`` file's bytes.
        input_size: (width, height) its input is fixed at.
        input_norm: the scaling marked in the file, or None when it is unmarked (the app then
            assumes ``unit``, x/255, unless told otherwise).
    """

    content: bytes
    input_size: tuple[int, int]
    input_norm: Optional[str]


def conversion_size(path: Path, config: dict, model,
                    requested: Optional[tuple[int, int]]) -> tuple[int, int]:
    """The input size the app converts a Keras model at.

    A fixed model input is used as is. A dynamic one takes ``requested``; else, for a model our
    training marked with the short side it was trained for, the size the app picks for its
    default camera frame (1280x720: that short side, the frame's aspect); else 256x256.

    Args:
        path: the model file (it may carry the short-side mark).
        config: the model file's architecture JSON (from ``keras_compat.read_model_config``).
        model: the loaded model, consulted when the config does not say plainly.
        requested: ``--input-size``; used only for a model with a dynamic input size.

    Returns:
        (width, height).

    Raises:
        ModelError: a model input that is not (batch, H, W, 3).
    """
    from portrait.segment.keras_compat import saved_input_size

    fixed = saved_input_size(model)  # also refuses a non-image input
    size = config_input_size(config)
    if size is None:
        size = fixed
    elif size == "dynamic":
        size = None
    if size is None:
        if requested:
            return tuple(requested)
        short_px = read_short_side_hint(path)
        if short_px:
            camera = CaptureOptions()
            size = size_for_frame((camera.width, camera.height), short_px)
            log.info("the model was trained at a %d px short side: exporting at %dx%d for "
                     "%dx%d frames; pass --input-size for another aspect", short_px, *size,
                     camera.width, camera.height)
            return size
        return DEFAULT_INPUT_SIZE
    if requested and tuple(requested) != tuple(size):
        log.warning("the model has a fixed %dx%d input; ignoring --input-size", *size)
    return tuple(size)


def convert_keras_file(path: Path, input_size: Optional[tuple[int, int]] = None,
                       input_norm: str = "auto", trust_model: bool = False) -> Conversion:
    """Convert a Keras model file to a marked TFLite flatbuffer, as the app's cache does.

    Args:
        path: a ``.hdf5``/``.h5``/``.keras`` model file.
        input_size: (width, height) for a model whose input size is not fixed.
        input_norm: ``auto`` marks ``raw`` when the model rescales pixels itself (a
            ``Rescaling``/``Normalization`` first layer) and leaves other models unmarked;
            ``raw``/``unit``/``symmetric`` mark that scaling.
        trust_model: allow a model with serialised code (Lambda layers).

    Returns:
        The :class:`Conversion`.

    Raises:
        ModelError: an unreadable, unsafe or unconvertible model.
        ValueError: an unknown ``input_norm``.
    """
    from portrait.segment import keras_compat, tflite_utils

    if input_norm not in INPUT_NORMS:
        raise ValueError(f"unknown input norm {input_norm!r}: expected one of {INPUT_NORMS}")
    config = keras_compat.read_model_config(path)
    model = keras_compat.load_keras_model(path, trust_model)
    size = conversion_size(path, config, model, input_size)
    log.info("converting '%s' to TFLite at %dx%d", path, *size)
    content = convert_keras(model, path, size, "try another --input-size (a multiple of 32)")
    detected = keras_input_norm(model)
    if input_norm == "auto":
        norm = detected
        if norm is None:
            log.warning("the model does not rescale pixels itself; the file is left unmarked and "
                        "the app will feed x/255 unless --input-norm says otherwise")
    else:
        norm = input_norm
        if detected and detected != norm:
            log.warning("the model rescales pixels itself (%s) but --input-norm %s was asked: "
                        "marking %s", detected, norm, norm)
    if norm is not None:
        content = tflite_utils.mark_tflite_input_norm(content, norm)
    return Conversion(content=content, input_size=size, input_norm=norm)


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
    """
    from portrait.segment import tflite_utils

    source = resolve_model_path(model)
    if source.suffix.lower() not in KERAS_SUFFIXES:
        raise ModelError(f"export converts Keras models (.hdf5, .h5, .keras), got '{source}'; "
                         "a .tflite model needs no export")
    target = Path(out)
    if target.suffix.lower() != ".tflite":
        raise ModelError(f"--out '{out}' must end in .tflite, e.g. --out {source.stem}.tflite")
    if target.exists() and target.resolve() == source.resolve():
        raise ModelError(f"--out '{out}' is the model file itself; choose another path")
    conversion = convert_keras_file(source, input_size, input_norm, trust_model)
    try:
        tflite_utils.write_atomic(target, conversion.content)
    except OSError as error:
        raise ModelError(f"cannot write '{target}': {error.strerror or error}; check the folder "
                         "and its permissions") from None
    width, height = conversion.input_size
    mark = f"marked input norm '{conversion.input_norm}'" if conversion.input_norm else "unmarked"
    size = len(conversion.content)
    size_text = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
    log.info("wrote %s (%s), input %dx%d, %s", target, size_text, width, height, mark)
    return target


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m portrait.training.export`` command line."""
    p = OneLineParser(
        prog="python -m portrait.training.export",
        description="Convert a Keras model (.hdf5) to TFLite, the same conversion the app uses.",
    )
    p.add_argument("--model", required=True, metavar="PATH", help=".hdf5/.h5/.keras model")
    p.add_argument("--out", required=True, metavar="PATH", help="the .tflite file to write")
    p.add_argument("--input-size", type=parse_size, metavar="WxH",
                   help="input size for a model whose size is not fixed (default: the size the "
                        "app uses for 1280x720 frames when the model notes its training size, "
                        "else 256x256)")
    p.add_argument("--input-norm", choices=INPUT_NORMS, default="auto",
                   help="pixel scaling to mark in the file (default: raw when the model rescales "
                        "pixels itself, else unmarked)")
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
        resolve_model_path(args.model)  # a missing file answers before TensorFlow starts
        if not args.debug:
            import_tensorflow_quietly()
        export_model(args.model, args.out, args.input_size, args.input_norm, args.trust_model)

    return run_command(body, traceback=args.debug)


if __name__ == "__main__":
    sys.exit(main())

"""Running ``.tflite`` files, and the one exported beside a Keras model: the CPU's fast start.

``python -m portrait.training.export`` writes ``weights/unet_live.tflite`` beside
``weights/unet_live.hdf5`` (``--shipped`` does both shipped models), recording in its metadata the
SHA-256 of the Keras file it was made from. Given ``--model X.hdf5`` on the CPU, the app runs
``X.tflite`` instead of converting ``X.hdf5`` (which needs TensorFlow: about 4 s to import and
20-25 s to convert on the development machine) when :func:`fresh_companion` finds that it records
this very ``X.hdf5`` and the current export recipe.

A ``.tflite`` beside it that is stale (exported from another ``X.hdf5``), unmarked (exported before
the mark existed, or by another tool), from an older export recipe, or corrupt is refused with one
warning line saying what is wrong and the command that regenerates it; the app then converts
``X.hdf5`` as it always has (cached after the first start). The user asked for ``X.hdf5``: the app
runs that model, never an older one, and still starts.

Our exports have a dynamic (1, H, W, 3) input and note the short side the model was trained
for: like the ``.hdf5``, they run at each frame's aspect ratio (:class:`AspectSegmenter`), each
size fixed once (:func:`portrait.segment.fixed_size.fix_input_size`, cached) for XNNPACK's speed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from portrait.errors import ModelError
from portrait.options import SegmentOptions
from portrait.segment import fixed_size, keras_compat, tflite_utils
from portrait.segment.base import DEFAULT_INPUT_SIZE, Segmenter, describe, one_line, resolve_norm
from portrait.segment.locate import display_path, read_short_side_hint
from portrait.segment.model_io import fixed_input
from portrait.segment.tflite_segmenter import TFLiteSegmenter
from portrait.segment.wrappers import current_runtime, keras_run_size, sized_for_frames

log = logging.getLogger(__name__)


def companion_path(keras_path: Path) -> Path:
    """Where the ``.tflite`` exported from a Keras model file lives: beside it, same stem."""
    return keras_path.with_suffix(".tflite")


def export_command(keras_path: Path, out: Optional[Path] = None) -> str:
    """The command that (re)writes ``out`` (default: the ``.tflite`` beside ``keras_path``)."""
    return (f"python -m portrait.training.export --model {display_path(keras_path)} "
            f"--out {display_path(out or companion_path(keras_path))}")


def fresh_companion(keras_path: Path, config: dict,
                    input_size: Optional[tuple[int, int]] = None) -> Optional[bytes]:
    """Return the bytes of the ``.tflite`` beside ``keras_path`` if it was exported from it.

    Fresh means: its ``portrait_export`` record names the SHA-256 of ``keras_path``'s bytes and
    the current export format, and its input is dynamic or the size the app runs the Keras
    model at (:func:`_fits`). Anything else (stale, unmarked, older recipe, unreadable) is
    logged as one warning naming what is wrong and the command that regenerates it.

    Args:
        keras_path: the Keras model file the user asked for.
        config: its architecture JSON (for its input size).
        input_size: ``--input-size``, if given.

    Returns:
        The ``.tflite`` bytes, or None when there is no fresh one.
    """
    path = companion_path(keras_path)
    if not path.is_file():
        return None
    why = None
    try:
        content = path.read_bytes()
        info = tflite_utils.read_export_info(content)
        _, signature = tflite_utils.input_shape(content)
    except Exception as error:  # a corrupt flatbuffer fails in many ways (ValueError, IndexError, ...)
        why = f"it is not a readable TFLite model ({one_line(error, 80)})"
    else:
        if info is None:
            why = f"it does not record which {keras_path.name} it was exported from"
        elif info.get("format") != tflite_utils.EXPORT_FORMAT:
            # A newer recipe's (weights exported by a later version of the app) is refused too.
            age = ("a newer" if isinstance(info.get("format"), int)
                   and info["format"] > tflite_utils.EXPORT_FORMAT else "an older")
            why = (f"it was made by {age} export recipe (format {info.get('format')}, now "
                   f"{tflite_utils.EXPORT_FORMAT})")
        else:
            recorded, actual = str(info.get("source_sha256")), tflite_utils.file_sha256(keras_path)
            if recorded != actual:
                why = (f"it is stale: exported from another {keras_path.name} (SHA-256 "
                       f"{recorded[:12]}…, this file's {actual[:12]}…)")
            elif not _fits(signature, config, keras_path, input_size):
                why = (f"its input is fixed at {signature[2]}x{signature[1]}, not the size the "
                       "model runs at here")
    if why:
        warn_refused(path, keras_path, why)
        return None
    return content


def warn_refused(path: Path, keras_path: Path, why: str) -> None:
    """The one line that says a ``.tflite`` beside a Keras model is not used, and what to do."""
    log.warning("not using %s: %s; regenerate it with '%s'. Converting %s instead (needs "
                "TensorFlow; slow on the first start, cached after)", display_path(path), why,
                export_command(keras_path), display_path(keras_path))


def _fits(signature: list[int], config: dict, keras_path: Path,
          input_size: Optional[tuple[int, int]]) -> bool:
    """Whether an export of ``signature``'s input serves the Keras model as the app runs it:
    a dynamic one always; a fixed one where it is the size the app converts the model at
    (:func:`~portrait.segment.wrappers.keras_run_size`, the conversion's own rule). A model
    whose config does not state its input (telling would load it, with TensorFlow) is taken
    as dynamic: an export of this very file at that size is right either way, since a model
    fixed at another size has no export at this one; where it is fixed at a size the rule
    would not give, the export is refused and the model converted, at its size, as before."""
    if tflite_utils.dynamic_image_input(signature):
        return True
    if len(signature) != 4:
        return False
    model_input = keras_compat.config_input_size(config) or "dynamic"
    short_px = read_short_side_hint(keras_path) if model_input == "dynamic" else None
    return keras_run_size(model_input, short_px, input_size) == (signature[2], signature[1])


def create_tflite(content: bytes, path: Path, options: SegmentOptions, source: str, norm_why: str,
                  reason: str) -> Segmenter:
    """Build the segmenter for ``.tflite`` bytes: as is, at a size, or at each frame's aspect.

    A fixed-size model runs at its size. A dynamic one runs at ``options.input_size``, else, when
    our export noted the short side the model was trained for (and no letterbox is asked), at
    each frame's aspect ratio with that short side, else at 256x256. Our own dynamic exports are
    fixed at each size they run at (:mod:`portrait.segment.fixed_size`, cached); a dynamic model
    from elsewhere is resized in the interpreter.

    Args:
        content: the ``.tflite`` bytes.
        path: the file they came from (names cache entries and errors).
        options: the segment options.
        source: how the start-up line names the model.
        norm_why: why a scaling marked in the file applies (for the start-up line).
        reason: why this runtime was chosen (for the start-up line).

    Raises:
        ModelError: bytes that are not a usable model.
    """
    try:
        info = tflite_utils.read_export_info(content)
        marked = tflite_utils.read_tflite_input_norm(content)
        _, signature = tflite_utils.input_shape(content)
    except (ValueError, IndexError) as error:
        raise ModelError(
            f"cannot read TFLite model '{path}': {one_line(error)}; the file may be truncated or "
            "corrupt, re-download or re-export it"
        ) from None
    norm, why = resolve_norm(options.input_norm, marked, norm_why)
    dynamic = tflite_utils.dynamic_image_input(signature)
    short_px = info.get("input_short_px") if dynamic and info else None

    def at(size: Optional[tuple[int, int]]) -> TFLiteSegmenter:
        body, name = content, str(path)
        if dynamic and info and size:
            try:
                body, cached, _ = fixed_size.fixed_cached(content, size, path.stem)
                name = str(cached or path)
            except ValueError as error:
                log.warning("running %s at %dx%d unfixed (slower): %s", path, *size, error)
        return TFLiteSegmenter(body, input_norm=norm, input_size=size, letterbox=options.letterbox,
                               threads=options.threads, name=name)

    if dynamic:
        size = tuple(options.input_size) if options.input_size else DEFAULT_INPUT_SIZE
    else:  # the interpreter takes the model's own size
        fixed_input((signature[2], signature[1]), options.input_size)
        size = None
    segmenter = sized_for_frames(at, short_px, size, options)
    first = current_runtime(segmenter)
    if first.input_norm != norm:
        why = "uint8 model input"
    segmenter.input_norm = first.input_norm
    segmenter.description = describe(segmenter, source, why, reason)
    return segmenter


def create_companion(keras_path: Path, content: bytes, options: SegmentOptions,
                     reason: str) -> Optional[Segmenter]:
    """Run the fresh ``.tflite`` beside ``keras_path``; None (with one warning) if it fails to load."""
    path = companion_path(keras_path)
    source = f"{display_path(path)} (exported from {display_path(keras_path)})"
    try:
        return create_tflite(content, path, options, source, "marked in the file", reason)
    except ModelError as error:
        warn_refused(path, keras_path, f"it does not load ({error})")
        return None


def warn_if_stale(path: Path, content: bytes) -> None:
    """Warn (one line) when a ``.tflite`` given as the model records another version of the Keras
    file beside it. It still runs: the user asked for this file."""
    try:
        info = tflite_utils.read_export_info(content)
    except (ValueError, IndexError):
        return
    if not info or not info.get("source"):
        return
    keras_path = path.parent / str(info["source"])
    if keras_path.suffix.lower() not in keras_compat.KERAS_SUFFIXES or not keras_path.is_file():
        return
    if tflite_utils.file_sha256(keras_path) != info.get("source_sha256"):
        log.warning("%s was exported from another version of %s beside it; running it as asked. "
                    "Regenerate it with '%s'", display_path(path), display_path(keras_path),
                    export_command(keras_path, path))

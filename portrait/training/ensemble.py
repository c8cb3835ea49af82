"""Average several models into one model file: ``python -m portrait.training.ensemble A.hdf5 B.hdf5 --out AB.hdf5``.

The new Keras model feeds its one RGB 0..255 input to every member and outputs the mean of their
person probabilities, so the app, ``evaluate`` and ``export`` treat it as any other model. Models
trained alike from different seeds make different mistakes, and their mean is more accurate than
either (see weights/README.md); it costs the sum of the members' inference time.

Members must take the same input (RGB 0..255, a ``Rescaling`` layer first, as ``portrait.training.train``
writes them), end in a sigmoid, and have been trained for the same short side.

With ``--soup`` it writes instead one model of the members' own architecture whose weights are
the members' mean (a "model soup", Wortsman et al. 2022): fine-tunes of one starting point tend
to lie in one basin, where that mean is often as accurate as the members at one member's cost.
``--calibrate DATA...`` then re-estimates its batch-norm statistics on training crops, as
``portrait.training.train`` does for its own candidates.

Before TensorFlow starts, the paths are checked (``--out``'s folder takes a new file, and it is
none of the members) and each member's file is read without loading the model (a Keras model,
no serialised code, its short side). A model already at ``--out`` is named in a warning and kept
beside the new one (:mod:`portrait.training.model_file`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from portrait.errors import InputError, ModelError, run_command
from portrait.words import counted

if TYPE_CHECKING:  # annotations only: imported quietly where used
    import keras

log = logging.getLogger("portrait.training.ensemble")  # not "__main__" under python -m


def average_models(models: Sequence) -> "keras.Model":
    """One model whose output is the mean of ``models``' sigmoid outputs on the same input.

    Args:
        models: at least two Keras models, each taking RGB 0..255 (batch, H, W, 3) with a
            ``Rescaling``/``Normalization`` layer first and ending in a 1-channel sigmoid.

    Raises:
        ModelError: fewer than two models, a member that is itself an ensemble, or a member
            whose input scaling, output or input shape differs from what is needed; the message
            names the member (1-based).
    """
    import keras

    from portrait.segment.keras_compat import keras_input_norm, keras_output_activation

    if len(models) < 2:
        raise ModelError(f"an ensemble needs at least two models, got {len(models)}")
    shape = tuple(models[0].inputs[0].shape[1:])
    for number, model in enumerate(models, 1):
        if keras_input_norm(model) != "raw":
            raise ModelError(f"model {number} does not scale its own input (no Rescaling layer "
                             "first); members must take RGB 0..255, as portrait.training.train writes them")
        if keras_output_activation(model) != "sigmoid" or model.output_shape[-1] != 1:
            raise ModelError(f"model {number} does not end in a 1-channel sigmoid (output "
                             f"{model.output_shape}); members must output a person probability")
        if any(isinstance(layer, keras.layers.Average) for layer in model.layers):
            # its members' layers would meet the others' under one name in the file
            inner = sum(isinstance(layer, keras.Model) for layer in model.layers)
            raise ModelError(f"model {number} is itself an ensemble of {counted(inner, 'model')}; pass the "
                             "files it was made from instead (each member then weighs alike)")
        if tuple(model.inputs[0].shape[1:]) != shape:
            raise ModelError(f"model {number} takes input {tuple(model.inputs[0].shape[1:])}, "
                             f"model 1 takes {shape}; members must take the same input")
    inputs = keras.Input(shape, name="image")
    outputs = []
    for number, model in enumerate(models, 1):
        model.name = f"member_{number}"  # nested models need distinct names
        outputs.append(model(inputs))
    return keras.Model(inputs, keras.layers.Average(name="mean_probability")(outputs),
                       name="ensemble")


def soup_models(models: Sequence) -> "keras.Model":
    """One model of ``models``' shared architecture whose weights are their element-wise mean.

    Batch-norm statistics are averaged too; re-estimate them afterwards
    (:func:`portrait.training.train.recalibrate_batchnorm`) where training data is at hand.

    Args:
        models: at least two Keras models of one architecture (fine-tunes of one model).

    Raises:
        ModelError: fewer than two models, or a member whose weights differ in number or shape
            from the first's; the message names the member (1-based).
    """
    from portrait.training.train import mean_weights

    if len(models) < 2:
        raise ModelError(f"a soup needs at least two models, got {len(models)}")
    shapes = [tuple(w.shape) for w in models[0].get_weights()]
    for number, model in enumerate(models[1:], 2):
        other = [tuple(w.shape) for w in model.get_weights()]
        if other != shapes:
            raise ModelError(f"model {number} has {counted(len(other), 'weight array')} of "
                             f"other shapes than model 1's {len(shapes)}; a soup needs one "
                             "architecture (fine-tunes of one model)")
    soup = models[0].__class__.from_config(models[0].get_config())
    soup.set_weights(mean_weights([model.get_weights() for model in models]))
    return soup


def calibrate_soup(model, data: Sequence[str], input_size: tuple[int, int], steps: int,
                   seed: int, batch: int = 8) -> None:
    """Re-estimate ``model``'s batch-norm statistics on lightly augmented crops of ``data``
    (training lists or folders, as ``train --data`` takes them; a list named twice counts twice)."""
    from portrait.training.data import CALIBRATION_AUGMENT, make_dataset, resolve_split
    from portrait.training.train import recalibrate_batchnorm

    by_spec = {spec: resolve_split(spec, "train") for spec in dict.fromkeys(data)}
    pairs = [pair for spec in data for pair in by_spec[spec]]
    dataset = make_dataset(pairs, input_size, batch, True, augment=CALIBRATION_AUGMENT, seed=seed)
    recalibrate_batchnorm(model, dataset, steps)
    log.info("re-estimated batch-norm statistics on %s of %s from %s",
             counted(steps, "batch", "batches"), counted(batch, "crop"),
             counted(len(pairs), "pair"))


def build_parser() -> argparse.ArgumentParser:
    from portrait.cli import OneLineParser, field_number, model_size, positive_int
    from portrait.training.train import TrainOptions

    p = OneLineParser(
        prog="python -m portrait.training.ensemble",
        description="Write one model that averages the person probabilities of several models "
                    "(e.g. the same recipe trained with different --seed).",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help=".hdf5/.h5/.keras models to average")
    p.add_argument("--out", required=True, metavar="FILE.hdf5", help="the new model file")
    p.add_argument("--short-side", type=field_number(TrainOptions, "short_side", label="short side "),
                   default=None, metavar="PX",
                   help="the short side the app runs it at, a multiple of 32 (default: the "
                        "members' own, which must then agree)")
    p.add_argument("--soup", action="store_true",
                   help="average the members' weights instead of their outputs: one model at one "
                        "member's cost (members of one architecture, fine-tuned from one model)")
    p.add_argument("--calibrate", nargs="+", default=[], metavar="DATA",
                   help="with --soup: re-estimate batch-norm statistics on crops of these training "
                        "lists or folders (as train --data takes them)")
    p.add_argument("--input-size", type=model_size, default=(192, 192), metavar="WxH",
                   help="the calibration crop size, both sides multiples of 32 (default 192x192, "
                        "train's)")
    p.add_argument("--bn-steps", type=positive_int, default=100, metavar="N",
                   help="calibration batches of 8 crops (default 100, train's)")
    p.add_argument("--seed", type=int, default=1, help="the calibration crops' seed")
    return p


def check_members(paths: Sequence[Path]) -> None:
    """Before TensorFlow starts: each member is a readable Keras model file (its architecture
    can be read) without serialised code, which ``ensemble`` never loads.

    Raises:
        ModelError: the first member that is not, named.
    """
    from portrait.segment.keras_compat import check_model_safety, read_model_config

    for path in paths:
        check_model_safety(path, read_model_config(path), trust_model=False)


def members_short_side(paths: Sequence[Path]) -> int:
    """The short side every member was trained for (``portrait.training.train`` stores it in the file).

    Raises:
        InputError: a member without one or with one that is not a multiple of 32, or members
            that disagree.
    """
    from portrait.segment import read_short_side_hint

    sides = {path: read_short_side_hint(path) for path in paths}
    missing = [str(path) for path, side in sides.items() if side is None]
    if missing:
        raise InputError(f"'{missing[0]}' does not say which short side it runs at; "
                         "pass --short-side PX")
    for path, side in sides.items():
        if side % 32:  # the app could run neither it nor the new file
            raise InputError(f"'{path}' says it runs at a short side of {side} px, not a multiple "
                             "of 32; pass --short-side PX, a multiple of 32")
    if len(set(sides.values())) > 1:
        found = ", ".join(f"{path.name}: {side}" for path, side in sides.items())
        raise InputError(f"the models run at different short sides ({found}); "
                         "pass --short-side PX")
    return next(iter(sides.values()))


def main(argv: Optional[Sequence[str]] = None) -> int:
    from portrait.cli import with_debug

    args = with_debug(build_parser()).parse_args(argv)
    from portrait.cli import configure_logging, import_tensorflow_quietly, named_ignored, typed_options

    configure_logging()
    if not args.calibrate:  # they shape the calibration crops
        for line in named_ignored(typed_options(with_debug(build_parser()), argv),
                                  ("input_size", "bn_steps", "seed"), "without --calibrate"):
            log.warning(line)

    def body() -> None:
        from portrait.segment import HDF5_SUFFIXES, KERAS_SUFFIXES, resolve_model_path
        from portrait.sink.paths import _prepare_folder, names_folder, same_place
        from portrait.training.model_file import replaced_out_note, save_model

        # Everything the arguments and the files' headers can tell, before TensorFlow starts.
        hint = "pass the Keras model files to average, e.g. runs/seed1.hdf5 runs/seed2.hdf5"
        paths = [resolve_model_path(name, hint) for name in args.models]
        out = Path(args.out)
        for number, path in enumerate(paths, 1):
            if path.suffix.lower() not in KERAS_SUFFIXES:
                raise ModelError(f"model '{path}' is not a Keras model ({path.suffix}); "
                                 f"pass {', '.join(KERAS_SUFFIXES)} files")
            for earlier, other in enumerate(paths[:number - 1], 1):
                if same_place(path, other):
                    raise InputError(f"model {number} '{path}' is model {earlier} '{other}' again; "
                                     "pass each model once")
        if out.suffix.lower() not in HDF5_SUFFIXES:
            raise InputError(f"--out '{out}' must end in .hdf5 or .h5")
        if any(same_place(out, path) for path in paths):
            raise InputError(f"--out '{out}' is one of the models; choose a new file")
        if names_folder(args.out) or out.is_dir():
            raise InputError(f"--out '{out}' is a folder; give a file name, e.g. "
                             f"--out {out / 'ensemble.hdf5'}")
        if not out.parent.is_dir():
            raise InputError(f"--out folder '{out.parent}' does not exist; create it first")
        _prepare_folder(out.parent, f"model '{out}'")
        if args.calibrate and not args.soup:
            raise InputError("--calibrate re-estimates a soup's batch-norm statistics; pass --soup "
                             "too (an output average keeps each member's own)")
        check_members(paths)
        short_px = args.short_side or members_short_side(paths)
        import_tensorflow_quietly()
        from portrait.segment.keras_compat import load_keras_model

        members = [load_keras_model(path) for path in paths]
        if args.soup:
            model = soup_models(members)
            if args.calibrate:
                calibrate_soup(model, args.calibrate, args.input_size, args.bn_steps, args.seed)
            else:
                log.warning("the soup's batch-norm statistics are the members' mean; pass "
                            "--calibrate DATA to re-estimate them for its weights")
            what = f"the weight mean of {len(paths)} models"
        else:
            model = average_models(members)
            what = f"the mean of {len(paths)} models"
        # Said only now, after every refusal: a run refused after the models load (shapes
        # that do not fit) leaves --out as it was and must not say it replaces it.
        note = replaced_out_note(out)
        if note:
            log.warning(note)
        save_model(model, out, short_px, keep_earlier=True)  # one line if it cannot be written
        log.info("wrote %s: %s (%d parameters), run at a short side of %d px",
                 out, what, model.count_params(), short_px)

    return run_command(body, traceback=args.debug)


if __name__ == "__main__":
    sys.exit(main())

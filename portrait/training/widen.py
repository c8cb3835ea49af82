"""Widen a trained model's decoder without changing what it predicts:
``python -m portrait.training.widen MODEL.hdf5 --decoder 128,64,32 --out WIDE.hdf5``.

The decoder of :func:`portrait.training.model.build_unet` squeezes the encoder's 576 channels
at 1/16 into 64, then 40 and 24 channels on the way up. A wider decoder has more room, but one
trained from the ImageNet backbone would have to repeat the whole training chain. Instead each
stage gets new channels next to its trained ones (after Net2Net, Chen et al. 2016, with the
"zero the outgoing weights" variant): every trained weight is copied, the new channels' own
weights start random, and every weight that reads a new channel starts at 0. The widened model
therefore predicts exactly what the original does, and a fine-tune (``train --init WIDE.hdf5``)
puts the new channels to use from there. A model already at ``--out`` is named in a warning
and kept beside the new one (:mod:`portrait.training.model_file`).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from portrait.errors import InputError, ModelError, run_command
from portrait.words import counted

if TYPE_CHECKING:
    import keras

log = logging.getLogger("portrait.training.widen")  # not "__main__" under python -m


def decoder_widths(model) -> list[int]:
    """The output channels of each decoder stage of a :func:`build_unet` model, 1/16 (or 1/32) up.

    Raises:
        ModelError: the model has no decoder stages named as ``build_unet`` names them.
    """
    names = {layer.name for layer in model.layers}
    widths = []
    while f"decoder{len(widths)}_conv_pw" in names:
        widths.append(int(model.get_layer(f"decoder{len(widths)}_conv_pw").kernel.shape[-1]))
    if len(widths) not in (3, 4) or "logits" not in names:
        raise ModelError(f"the model has {counted(len(widths), 'decoder stage')} named "
                         "decoder<i>_conv_pw "
                         "(expected 3 or 4 and a 'logits' layer); widen only models that "
                         "portrait.training.train built")
    return widths


def concat_index(prev_old: int, prev_new: int, skip_old: int) -> np.ndarray:
    """Where each channel of the old ``concat([x, skip])`` sits in the widened one.

    The widened ``x`` keeps its ``prev_old`` trained channels first and adds ``prev_new -
    prev_old``; the skip's trained channels follow all of ``x``'s.
    """
    return np.concatenate([np.arange(prev_old), prev_new + np.arange(skip_old)])


def widen_decoder(model, widths: Sequence[int]) -> "keras.Model":
    """A copy of ``model`` whose decoder stages have ``widths`` channels, predicting the same.

    Args:
        model: a Keras model that :func:`portrait.training.model.build_unet` built (or a soup
            or fine-tune of one), any input size.
        widths: new output channels per decoder stage, 1/16 (or 1/32) up; each at least the
            stage's present width and even (the skip projection takes half).

    Raises:
        ModelError: not a ``build_unet`` model, or widths that do not fit it.
    """
    from portrait.training.model import DEFAULT_DECODER_FILTERS

    old_widths = decoder_widths(model)
    widths = list(widths)
    if len(widths) != len(old_widths):
        raise ModelError(f"the model has {len(old_widths)} decoder stages "
                         f"({','.join(map(str, old_widths))}); got {counted(len(widths), 'width')}")
    for stage, (old, new) in enumerate(zip(old_widths, widths)):
        if new < old or new % 2:
            raise ModelError(f"decoder stage {stage} has {old} channels; its new width must be "
                             f"an even number at least as large, got {new}")
    names = {layer.name for layer in model.layers}
    context = "lraspp" if "context_proj" in names else "tail" if "context_tail" in names else "none"
    stride = 16 if len(widths) == 3 else 32
    padded = tuple(DEFAULT_DECODER_FILTERS[:4 - len(widths)]) + tuple(widths)
    wide = _rebuild(model, padded, stride, context)

    for layer in model.layers:
        if layer.weights and not layer.name.startswith(("decoder", "logits")):
            wide.get_layer(layer.name).set_weights(layer.get_weights())

    prev_old = prev_new = int(model.get_layer("decoder0_conv_dw").kernel.shape[2]
                              - model.get_layer("decoder0_skip").kernel.shape[-1])
    for stage, (old, new) in enumerate(zip(old_widths, widths)):
        name = f"decoder{stage}"
        skip_old = old // 2
        _copy_into(model, wide, f"{name}_skip", _first_channels)
        _copy_into(model, wide, f"{name}_skip_bn", _first_channels)
        index = concat_index(prev_old, prev_new, skip_old)
        _copy_into(model, wide, f"{name}_conv_dw",
                   lambda w, o: _put(w, o, (..., index, slice(None))))
        _copy_into(model, wide, f"{name}_conv_dw_bn", lambda w, o: _put(w, o, index))

        def pointwise(w, o, index=index):
            w[:, :, :, :o.shape[-1]] = 0.0  # the trained outputs read no new channel
            w[:, :, index, :o.shape[-1]] = o
            return w

        _copy_into(model, wide, f"{name}_conv_pw", pointwise)
        _copy_into(model, wide, f"{name}_conv_pw_bn", _first_channels)
        prev_old, prev_new = old, new

    def logits(w, o):
        if w.ndim == 1:  # the bias
            return o
        w[...] = 0.0
        w[:, :, :o.shape[2], :] = o
        return w

    _copy_into(model, wide, "logits", logits)
    return wide


def add_tail(model, backbone_weights: Optional[str]) -> "keras.Model":
    """A copy of a stride-16 ``model`` with the rest of the encoder added back (``context="tail"``,
    :func:`portrait.training.model._tail`), predicting the same.

    Every trained weight is copied by layer name; blocks 13 to 16 start from ``backbone_weights``
    (MobileNetV2 ImageNet weights; None: random) and their projection into the bottleneck at zero.

    Raises:
        ModelError: not a stride-16 ``build_unet`` model without a context module.
    """
    from portrait.training.model import DEFAULT_DECODER_FILTERS

    widths = decoder_widths(model)
    names = {layer.name for layer in model.layers}
    context = bool(names & {"context_proj", "context_tail"})
    if len(widths) != 3 or context:
        raise ModelError("the tail joins a stride-16 model without a context module; this one has "
                         f"{len(widths)} decoder stages" + (" and a context module" if context else ""))
    grown = _rebuild(model, tuple(DEFAULT_DECODER_FILTERS[:1]) + tuple(widths), 16, "tail",
                     backbone_weights)
    encoder = grown.get_layer("encoder")
    for layer in model.get_layer("encoder").layers:
        if layer.weights:
            encoder.get_layer(layer.name).set_weights(layer.get_weights())
    for layer in model.layers:
        if layer.weights and layer.name != "encoder":
            grown.get_layer(layer.name).set_weights(layer.get_weights())
    return grown


def _rebuild(model, filters: tuple, stride: int, context: str, backbone_weights=None):
    """``build_unet`` with ``model``'s encoder width (found by trying each width multiplier)."""
    from portrait.segment.base import one_line
    from portrait.training.model import build_unet

    encoder = {layer.name: [tuple(w.shape) for w in layer.weights]
               for layer in model.get_layer("encoder").layers if layer.weights}
    for alpha in _alphas(model.name):
        if alpha != 1.0 and backbone_weights:
            continue  # the shipped backbone is alpha 1.0
        try:
            built = build_unet((stride * 2, stride * 2), alpha, stride, filters, backbone_weights,
                               fixed_input=False, context=context)
        except ValueError as error:  # weights of another network (checked as a file already)
            if not backbone_weights:
                raise
            raise ModelError(f"backbone weights '{backbone_weights}' do not fit MobileNetV2 alpha "
                             f"1.0 ({one_line(error)}); {BACKBONE_EXPECTED}") from None
        mine = {layer.name: [tuple(w.shape) for w in layer.weights]
                for layer in built.get_layer("encoder").layers}
        if all(mine.get(name) == shapes for name, shapes in encoder.items()):
            return built
    tried = "1.0, the backbone file's" if backbone_weights else ", ".join(map(str, ALPHAS))
    raise ModelError(f"the model's encoder is not a MobileNetV2 of any width multiplier ({tried}); "
                     "grow only models that portrait.training.train built")


ALPHAS = (1.0, 0.35, 0.5, 0.75, 1.3, 1.4)
BACKBONE_EXPECTED = ("--backbone expects MobileNetV2 alpha 1.0 weights (include_top=False), as "
                     "model.save_weights writes them to a .weights.h5 file, or 'none'")


def check_backbone(path: Path, expected: str = BACKBONE_EXPECTED) -> None:
    """Before TensorFlow starts: ``path`` is a weights file that Keras can load into the encoder
    (HDF5 weights, not a whole model), so a wrong file is named before any model is built.
    ``expected`` ends each message: what the option takes (widen's ``--backbone`` by default;
    train passes its own).

    Raises:
        InputError: no such file, or one that is not HDF5, is a whole model, or holds no layer
            weights Keras reads under its name.
    """
    import h5py

    if not path.is_file():
        raise InputError(f"backbone weights '{path}' not found; pass --backbone FILE "
                         "(MobileNetV2 alpha 1.0, include_top=False) or --backbone none")
    try:
        with h5py.File(path, "r") as f:
            whole_model = "model_config" in f.attrs
            legacy = "layer_names" in f.attrs  # Keras 2's save_weights
            keras3 = "layers" in f and "vars" in f  # Keras 3's .weights.h5
    except OSError:
        raise InputError(f"backbone weights '{path}' is not an HDF5 file; {expected}") from None
    if whole_model:
        raise InputError(f"'{path}' is a whole Keras model, not backbone weights; {expected}")
    if keras3 and not legacy and not path.name.lower().endswith(".weights.h5"):
        # Keras picks the reader by the name: any other .h5 is read as Keras 2 weights.
        raise InputError(f"backbone weights '{path}' are Keras 3 weights, which Keras reads only "
                         "from a file named *.weights.h5; rename it")
    if not keras3 and not legacy:
        raise InputError(f"'{path}' holds no layer weights; {expected}")


def _alphas(name: str) -> list[float]:
    """Width multipliers to try; the one in ``build_unet``'s model name (``mobilenetv2_1_unet``)
    first."""
    match = re.fullmatch(r"mobilenetv2_([0-9.]+)_unet", name)
    named = [float(match.group(1))] if match else []
    return named + [alpha for alpha in ALPHAS if alpha not in named]


def _put(target: np.ndarray, source: np.ndarray, where) -> np.ndarray:
    target[where] = source
    return target


def _first_channels(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """The trained channels first along the last axis; the new ones keep their fresh values."""
    return _put(target, source, (..., slice(0, source.shape[-1])))


def _copy_into(model, wide, name: str, fill) -> None:
    """Set each weight of ``wide``'s layer ``name`` to ``fill(its fresh value, the old one)``."""
    fresh = wide.get_layer(name).get_weights()
    old = model.get_layer(name).get_weights()
    wide.get_layer(name).set_weights([fill(np.array(w), o) for w, o in zip(fresh, old)])


def parse_widths(text: str) -> list[int]:
    """``"128,64,32"`` -> [128, 64, 32] (argparse type)."""
    try:
        widths = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated channel counts such as "
                                         f"128,64,32, got {text!r}") from None
    if not widths or min(widths) < 2:
        raise argparse.ArgumentTypeError(f"channel counts must be at least 2, got {text!r}")
    return widths


def what_changed(before: Sequence[int], after: Sequence[int], tail: bool) -> str:
    """What widening did, for its log line: "decoder 64,40,24 -> 96,64,32 channels", "the
    encoder's tail added (blocks 13 to 16)", or both; a decoder that kept its widths (``--tail``
    alone) is not named as if it changed."""
    changes = []
    if list(after) != list(before):
        changes.append(f"decoder {','.join(map(str, before))} -> {','.join(map(str, after))} "
                       "channels")
    if tail:
        changes.append("the encoder's tail added (blocks 13 to 16)")
    return ", ".join(changes) or "nothing changed"


def build_parser() -> argparse.ArgumentParser:
    from portrait.cli import OneLineParser

    p = OneLineParser(
        prog="python -m portrait.training.widen",
        description="Write a copy of a trained model with a wider decoder that predicts the "
                    "same; fine-tune it with train --init.",
    )
    p.add_argument("model", metavar="MODEL", help="the .hdf5 model to widen")
    p.add_argument("--decoder", type=parse_widths, metavar="C1,C2,C3",
                   help="channels of each decoder stage, deepest first (the shipped files: 64,40,24)")
    p.add_argument("--tail", action="store_true",
                   help="add the rest of the encoder (blocks 13 to 16, stride 32, zero-initialised) "
                        "back to a stride-16 model, from the MobileNetV2 backbone weights")
    p.add_argument("--backbone", metavar="FILE",
                   help="with --tail: MobileNetV2 alpha 1.0 weights for the new blocks (default: "
                        "../shared/models/mobilenetv2_1.0_backbone.weights.h5), or 'none' to "
                        "start them random")
    p.add_argument("--out", required=True, metavar="FILE.hdf5", help="the new model file")
    p.add_argument("--seed", type=int, default=1, help="seed of the new channels' random weights")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from portrait.cli import with_debug

    args = with_debug(build_parser()).parse_args(argv)
    from portrait.cli import configure_logging, import_tensorflow_quietly

    configure_logging()

    def body() -> None:
        from portrait.segment import HDF5_SUFFIXES, KERAS_SUFFIXES, read_short_side_hint, resolve_model_path
        from portrait.sink.paths import _prepare_folder, names_folder, same_place
        from portrait.training.ensemble import check_members
        from portrait.training.model_file import replaced_out_note, save_model
        from portrait.training.train import DEFAULT_BACKBONE

        # Everything the arguments and the files' headers can tell, before TensorFlow starts.
        path = resolve_model_path(args.model, "pass a model that portrait.training.train wrote")
        if path.suffix.lower() not in KERAS_SUFFIXES:
            raise ModelError(f"model '{path}' is not a Keras model file ({path.suffix or 'no suffix'}); "
                             "widen a .hdf5 model that portrait.training.train wrote")
        backbone = None if args.backbone == "none" else Path(args.backbone or DEFAULT_BACKBONE)
        out = Path(args.out)
        if out.suffix.lower() not in HDF5_SUFFIXES:
            raise InputError(f"--out '{out}' must end in .hdf5 or .h5")
        if same_place(out, path):
            raise InputError(f"--out '{out}' is the model itself; choose a new file")
        if backbone is not None and same_place(out, backbone):
            raise InputError(f"--out '{out}' is the --backbone weights file; choose a new file")
        if names_folder(args.out) or out.is_dir():
            raise InputError(f"--out '{out}' is a folder; give a file name, e.g. "
                             f"--out {out / 'wide.hdf5'}")
        if not out.parent.is_dir():
            raise InputError(f"--out folder '{out.parent}' does not exist; create it first")
        _prepare_folder(out.parent, f"model '{out}'")
        if not args.decoder and not args.tail:
            raise InputError("nothing to add: pass --decoder C1,C2,C3, --tail or both")
        if args.tail and backbone is not None:
            check_backbone(backbone)
        check_members([path])
        short_px = read_short_side_hint(path)
        if short_px is None:
            raise InputError(f"'{path}' does not say which short side it runs at; widen a model "
                             "that portrait.training.train wrote")
        if short_px % 32:
            # The app runs models at sides that are multiples of 32: neither file would run.
            raise InputError(f"'{path}' says it runs at a short side of {short_px} px, not a "
                             "multiple of 32; widen a model trained with --short-side 192, 256 or "
                             "another multiple of 32")
        import_tensorflow_quietly()
        import keras

        from portrait.segment.keras_compat import load_keras_model

        keras.utils.set_random_seed(args.seed)
        model = load_keras_model(path)
        before = decoder_widths(model)
        if not args.tail and args.decoder == before:
            raise InputError(f"the model's decoder already has {','.join(map(str, before))} "
                             "channels: nothing to widen; pass wider --decoder widths or --tail")
        grown = add_tail(model, backbone and str(backbone)) if args.tail else model
        if args.decoder:
            grown = widen_decoder(grown, args.decoder)
        # Said only now, after every refusal: a run refused after the models load (shapes
        # that do not fit) leaves --out as it was and must not say it replaces it.
        note = replaced_out_note(out)
        if note:
            log.warning(note)
        save_model(grown, out, short_px, keep_earlier=True)  # one line if it cannot be written
        log.info("wrote %s: %s, %d -> %d parameters", out,
                 what_changed(before, decoder_widths(grown), args.tail),
                 model.count_params(), grown.count_params())

    return run_command(body, traceback=args.debug)


if __name__ == "__main__":
    sys.exit(main())

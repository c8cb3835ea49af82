"""Train a MobileNetV2-UNet: ``python -m portrait.training.train --data DIR [DIR|LIST ...] --out unet.hdf5``.

Keeps the best model by validation IoU, logs to TensorBoard and a CSV, and backs up the whole
training state every epoch (each file written beside itself and moved over it, so a stop while it
is written keeps the one before) so ``--resume`` continues a run that was stopped by Ctrl-C or
SIGTERM. With
``--average-last K`` it also saves the weights after each of the last K epochs and tries their
mean (stochastic weight averaging) as a third candidate beside the best and the final weights.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Literal, Optional, Sequence, get_args

from portrait.errors import (InputError, ModelError, PortraitError, StopRequested, run_command,
                             stop_name, stop_on_termination_signals, stops_held)
from portrait.option_checks import (FRACTION, NON_NEGATIVE, POSITIVE, UNIT, CheckedOptions, Range,
                                    bounded, field_error)
from portrait.options import ZOOM_FACTOR, ContextModule, PadMode
from portrait.sink.paths import _prepare_folder, remove_if_empty
from portrait.training.model_file import (free_bytes, h5_size, megabytes, replaced_out_note,
                                          save_model)
from portrait.training.overlap import warn_of_copies
from portrait.training.progress import closing_bar, make_epoch_progress
from portrait.segment.locate import SHARED_DIR
from portrait.words import counted

log = logging.getLogger("portrait.training.train")

DEFAULT_BACKBONE = SHARED_DIR / "models" / "mobilenetv2_1.0_backbone.weights.h5"


SEED_LIMIT = 2**32  # NumPy's and Keras's seeds are below this
OutputStride = Literal[16, 32]  # the encoder's deepest stride (--output-stride)
Schedule = Literal["cosine", "constant"]  # the learning rate's course (--schedule)


@dataclass(frozen=True)
class TrainOptions(CheckedOptions):
    """Everything a training run depends on (written next to the model as ``train.json``).

    The fields are the command line's options (``--val-split`` is ``val_split``; see
    :func:`build_parser` for each one's meaning), checked when built: a value of the wrong type
    or out of its range raises :class:`~portrait.option_checks.OptionTypeError` or
    :class:`~portrait.option_checks.OptionValueError` naming the field, the value and its range;
    the command line takes its number ranges from these fields. ``average_last`` within
    ``epochs`` is checked when built too (:meth:`check_together`); the crop a multiple of the
    stride, which a model given by ``init`` settles, as the run starts.
    """

    data: tuple[str, ...]
    val: tuple[str, ...] = ()
    val_split: float = bounded(0.05, FRACTION)
    out: str = "unet.hdf5"
    run_dir: Optional[str] = None
    input_size: tuple[int, int] = bounded((192, 192), POSITIVE)
    alpha: float = bounded(1.0, POSITIVE)
    output_stride: OutputStride = 16
    context: ContextModule = "none"
    backbone: str = "auto"
    batch: int = bounded(8, POSITIVE)
    epochs: int = bounded(30, POSITIVE)
    steps_per_epoch: Optional[int] = bounded(None, POSITIVE)
    lr: float = bounded(1e-3, POSITIVE)
    schedule: Schedule = "cosine"
    warmup_epochs: float = bounded(0.5, NON_NEGATIVE)
    loss: str = "dice+bce"
    max_items: Optional[int] = bounded(None, POSITIVE)
    init: Optional[str] = None
    resume: bool = False
    bn_steps: int = bounded(100, NON_NEGATIVE)
    # The app runs models at multiples of 32 (they halve their input five times).
    short_side: Optional[int] = bounded(None, Range(0, low_open=True, step=32))
    paste_prob: float = bounded(0.0, UNIT)
    motion_prob: float = bounded(0.0, UNIT)
    exposure_prob: float = bounded(0.0, UNIT)
    edge_cut_prob: float = bounded(0.0, UNIT)
    zoom: tuple[float, float] = bounded((0.55, 1.35), ZOOM_FACTOR)  # AugmentOptions.scale_range's
    pad: PadMode = "constant"
    teacher: tuple[str, ...] = ()
    teacher_weight: float = bounded(0.5, UNIT)
    average_last: int = bounded(0, NON_NEGATIVE)
    seed: int = bounded(1, Range(0, SEED_LIMIT - 1))

    def check_together(self) -> None:
        """``average_last`` is 0 (off) or from 2 (a mean needs two epochs' weights) to
        ``epochs``.

        Raises:
            OptionValueError: it is not.
        """
        if self.average_last and not 2 <= self.average_last <= self.epochs:
            raise field_error(self, "average_last", "0 (off) or a whole number from 2 to "
                                                    f"epochs ({self.epochs})")


def loss_spec(text: str) -> str:
    """``--loss``: a spec :func:`~portrait.training.losses.make_loss` builds, checked up front."""
    from portrait.native_log import import_tensorflow_quietly

    import_tensorflow_quietly()  # the losses are Keras objects
    from portrait.training.losses import make_loss

    try:
        make_loss(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    from portrait.cli import OneLineParser, field_number, given, parse_size, zoom_range
    from portrait.options import CONTEXT_MODULES, PAD_MODES

    def number(name: str, **words):  # the type, kind and range of TrainOptions' field
        return field_number(TrainOptions, name, **words)

    p = OneLineParser(
        prog="python -m portrait.training.train",
        description="Train or fine-tune a MobileNetV2-UNet portrait segmenter.",
    )
    p.add_argument("--data", type=given, nargs="+", required=True, metavar="DIR|LIST",
                   help="data folders (images/ + masks/) or list files inside them; a folder's "
                        "train.txt is used when present, test.txt never")
    p.add_argument("--val", type=given, nargs="*", default=[], metavar="DIR|LIST",
                   help="validation folders or list files (default: each --data folder's "
                        "val.txt/other.txt, else --val-split of the training pairs)")
    p.add_argument("--val-split", type=number("val_split"), default=0.05,
                   help="fraction of training pairs held out when no validation set is found (default 0.05)")
    p.add_argument("--out", type=given, default="unet.hdf5", help="where the best model is written (.hdf5; default unet.hdf5)")
    p.add_argument("--run-dir", type=given, help="logs, checkpoints and backups (default: runs/<out stem>)")
    p.add_argument("--input-size", type=parse_size, default=(192, 192), metavar="WxH",
                   help="training crop size; the saved model runs at any size whose sides are "
                        "multiples of 32 (the app: the short side set by --short-side); default 192x192")
    p.add_argument("--alpha", type=number("alpha"), default=1.0, help="MobileNetV2 width multiplier (default 1.0)")
    p.add_argument("--output-stride", type=int, default=16, choices=get_args(OutputStride),
                   help="the encoder's deepest stride (default 16)")
    p.add_argument("--context", default="none", choices=CONTEXT_MODULES,
                   help="context module between the encoder and the decoder: none, lraspp "
                        "(Lite R-ASPP: a 1x1 projection gated by the whole image's mean features) "
                        "or tail (stride 16 only: encoder blocks 13-16 at stride 32, projected "
                        "and added to the bottleneck); default none")
    p.add_argument("--backbone", type=given, default="auto",
                   help="where the encoder starts: 'imagenet' (ImageNet's MobileNetV2 weights, "
                        "downloaded once by Keras), a weights file, 'none' (random), or 'auto' "
                        "(default: the shared α=1.0 weights file when present and alpha is 1.0, "
                        "else random, with a warning)")
    p.add_argument("--batch", type=number("batch"), default=8, help="crops per step (default 8)")
    p.add_argument("--epochs", type=number("epochs"), default=30, help="default 30")
    p.add_argument("--steps-per-epoch", type=number("steps_per_epoch"),
                   help="default: one pass over the training set")
    p.add_argument("--lr", type=number("lr"), default=1e-3, help="peak learning rate (Adam; default 1e-3)")
    p.add_argument("--schedule", choices=get_args(Schedule), default="cosine",
                   help="cosine decay to 1%% after a linear warm-up (the default), or constant")
    p.add_argument("--warmup-epochs", type=number("warmup_epochs"), default=0.5,
                   help="epochs of linear warm-up (default 0.5)")
    p.add_argument("--loss", type=loss_spec, default="dice+bce",
                   help="terms joined by '+', each optionally weighted: dice, bce, focal, "
                        "boundary, far, lovasz, consistency, e.g. 'dice+bce+0.5*boundary'; "
                        "consistency trains on each crop twice, with and without the colour, "
                        "light and noise changes, so a step holds 2x --batch images (default dice+bce)")
    p.add_argument("--max-items", type=number("max_items"), help="use only this many training pairs (quick runs)")
    p.add_argument("--init", type=given, help="start from this model's weights (fine-tuning)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir from its last completed epoch")
    p.add_argument("--bn-steps", type=number("bn_steps"), default=100,
                   help="batches used to re-estimate batch-norm statistics after training (default 100)")
    p.add_argument("--short-side", type=number("short_side", label="short side "), metavar="PX",
                   help="short side the app runs the model at, a multiple of 32, stored in the "
                        "model file (default: the training crop's short side)")
    p.add_argument("--paste-prob", type=number("paste_prob"), default=0.0, metavar="P",
                   help="probability of pasting a sample's people over another training crop "
                        "(copy-paste augmentation; default 0)")
    p.add_argument("--motion-prob", type=number("motion_prob"), default=0.0, metavar="P",
                   help="probability that a crop's people are smeared along a random line over "
                        "the still background, as a waving hand is on a webcam; the label stays "
                        "sharp (default 0)")
    p.add_argument("--exposure-prob", type=number("exposure_prob"), default=0.0, metavar="P",
                   help="probability that a crop's light is scaled by a gain between 0.25 (a "
                        "dim room) and 1.8 (a window behind, highlights clipped) (default 0)")
    p.add_argument("--edge-cut-prob", type=number("edge_cut_prob"), default=0.0, metavar="P",
                   help="probability that a crop's bottom edge cuts the person 45-90 %% of the "
                        "way down, as a webcam's bottom edge cuts a person at the chest, waist or "
                        "legs (default 0)")
    p.add_argument("--zoom", type=zoom_range, default=TrainOptions.zoom, metavar="MIN,MAX",
                   help="range of the random zoom: 1 fits the photo's short side to the crop, "
                        "below 1 frames the person smaller with padding around (landscape "
                        "webcam framings), above 1 crops closer (close-ups that fill the "
                        "frame); default 0.55,1.35")
    p.add_argument("--pad", choices=PAD_MODES, default="constant",
                   help="what fills a crop where it leaves the photo: a random grey labelled "
                        "background (the default), or a mirror image (which adds mirrored people)")
    p.add_argument("--teacher", type=given, nargs="+", default=[], metavar="MODEL",
                   help="knowledge distillation: models whose mean prediction on each augmented "
                        "batch is mixed into the training target")
    p.add_argument("--teacher-weight", type=number("teacher_weight"), default=0.5, metavar="W",
                   help="the teachers' share of the target, the mask's is 1 - W (default 0.5)")
    p.add_argument("--average-last", type=number("average_last"), default=0, metavar="K",
                   help="also try the mean of the weights after each of the last K epochs "
                        "(stochastic weight averaging, K >= 2); like the best and the final "
                        "weights, it is kept if it scores highest on validation (default 0: off)")
    p.add_argument("--seed", type=number("seed"), default=1, help="0 to 2**32 - 1 (default 1)")
    return p


BACKBONE_WORDS = ("auto", "none", "imagenet")  # --backbone values that name no file


def _backbone_file(spec: str, alpha: float) -> Optional[str]:
    """The weights file ``--backbone`` names, or the shared one ``auto`` picks for alpha 1.0;
    None for ``none``, ``imagenet`` or ``auto`` without one (checked to exist up front by
    :func:`check_model_inputs`)."""
    if spec in ("none", "imagenet"):
        return None
    if spec == "auto":
        return str(DEFAULT_BACKBONE) if alpha == 1.0 and DEFAULT_BACKBONE.is_file() else None
    return spec


def _resolve_backbone(spec: str, alpha: float) -> Optional[str]:
    """What ``build_unet`` starts the encoder from: a weights file, ``"imagenet"`` or None."""
    if spec == "imagenet":
        return spec
    path = _backbone_file(spec, alpha)
    if spec == "auto" and path is None:
        reason = (f"'{DEFAULT_BACKBONE}' is not here" if alpha == 1.0
                  else f"the shared weights are for alpha 1.0, not {alpha:g}")
        log.warning("the encoder starts from random weights (%s), which needs far more data and "
                    "epochs; pass --backbone imagenet (a download) or --backbone FILE for "
                    "pretrained ones, or --backbone none to silence this", reason)
    return path


def _split(options: TrainOptions):
    import random

    from portrait.training.data import resolve_split
    from portrait.training.folders import folder_list

    by_spec = {spec: resolve_split(spec, "train") for spec in dict.fromkeys(options.data)}
    train = [pair for spec in options.data for pair in by_spec[spec]]
    val = [pair for spec in options.val for pair in resolve_split(spec, "val")]
    if not options.val:
        for spec in by_spec:
            listed = folder_list(Path(spec), "val") if Path(spec).is_dir() else None
            if listed is None:  # no list of its own: --val-split of the training pairs
                continue
            found = resolve_split(spec, "val")  # a list naming missing photos is an error
            shared = sorted(set(found) & set(train))
            if shared:
                log.warning("%s is not used for validation: %d of its pairs are training pairs "
                            "too (first: %s); validating on --val-split of the training pairs",
                            listed, len(shared), Path(shared[0][0]).stem)
                continue
            val += found
    rng = random.Random(options.seed)
    rng.shuffle(train)
    fix = "remove each copy from --data or from the validation set"
    if not val:
        fix = ("remove the duplicate photos from --data, or give --val a validation set of its "
               "own")
        photos: dict = {}  # each photo file once: a list repeated in --data to weight it
        for pair in train:  # is held out whole, not some of its repeats
            photos.setdefault(_file_key(pair[0]), pair)
        n_val = max(1, int(len(photos) * options.val_split))
        if n_val >= len(photos):  # else "no training pairs found", for a folder that has one
            raise PortraitError(f"--data holds {counted(len(photos), 'photo')} with a mask, and "
                                f"--val-split holds out {n_val} for validation, leaving none to "
                                "train on; add photos, or pass --val with a validation set of its "
                                "own")
        val = list(photos.values())[:n_val]
        held = set(list(photos)[:n_val])
        train = [pair for pair in train if _file_key(pair[0]) not in held]
    check_disjoint(train, val)  # the whole sets: --max-items must not hide a shared photo
    warn_of_copies(train, val, fix)  # copies by another name: usually a mistake, not always
    if options.max_items:
        train, val = train[: options.max_items], val[: max(1, options.max_items // 4)]
    return train, val


def _file_key(path: str):
    """What a file is, whatever the path says: its device and inode (one file by any path,
    link or hard link), else its path with links and '..' resolved."""
    try:
        stat = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return stat.st_dev, stat.st_ino


def check_disjoint(train: Sequence[tuple[str, str]], val: Sequence[tuple[str, str]]) -> None:
    """Refuse training and validation pairs that share a photo file, however each path names it.

    Raises:
        PortraitError: the number of shared photos and one of them.
    """
    val_files = {_file_key(image) for image, _ in val}
    shared = sorted({image for image, _ in train if _file_key(image) in val_files})
    if shared:
        raise PortraitError("training and validation sets share "
                            f"{counted(len(shared), 'photo')}, e.g. "
                            f"'{shared[0]}'; check --data and --val")


def best_logged(metrics_csv: Path, column: str = "val_iou") -> Optional[float]:
    """The highest ``column`` in a run's CSV log, or None when there is none yet.

    A resumed run starts its checkpoint callback afresh; without this its first epoch would
    replace ``best.h5`` even when it is worse than the best epoch before the interruption.
    """
    if not metrics_csv.is_file():
        return None
    with metrics_csv.open(newline="") as f:
        values = [float(row[column]) for row in csv.DictReader(f) if row.get(column)]
    return max(values, default=None)


DISK_MARGIN = 1024 * 1024  # the epoch's log row and TensorBoard events besides the model files


TAIL_DIR = "tail"  # in the run folder: the weights after each of the last --average-last epochs


def tail_path(run_dir: Path, epoch: int) -> Path:
    """Where the weights after ``epoch`` (1-based) are kept for averaging."""
    return run_dir / TAIL_DIR / f"epoch_{epoch:03d}.weights.h5"


def make_tail_saver(run_dir: Path, epochs: int, count: int):
    """A Keras callback saving the weights after each of the last ``count`` of ``epochs`` epochs."""
    import keras

    class TailSaver(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 > epochs - count:
                path = tail_path(run_dir, epoch + 1)
                path.parent.mkdir(parents=True, exist_ok=True)
                self.model.save_weights(path)  # one epoch's weights; a rerun of it replaces them

    return TailSaver()


def average_weights(model, paths: Sequence[Path]) -> None:
    """Set ``model``'s weights to the element-wise mean of the weight files ``paths``.

    Every variable is averaged, batch-norm statistics included; re-estimate those afterwards
    (:func:`recalibrate_batchnorm`), since the mean of the statistics does not belong to the
    mean of the weights.

    Raises:
        ValueError: no paths.
    """
    if not paths:
        raise ValueError("average_weights needs at least one weights file")
    weight_sets = []
    for path in paths:
        model.load_weights(path)
        weight_sets.append(model.get_weights())
    model.set_weights(mean_weights(weight_sets))


def mean_weights(weight_sets: Sequence[Sequence]) -> list:
    """The element-wise mean (summed in float64) of several lists of weight arrays of one
    architecture, as float32: what ``keras.Model.get_weights`` returns and ``set_weights`` takes."""
    import numpy as np

    total = None
    for weights in weight_sets:
        weights = [np.asarray(w, np.float64) for w in weights]
        total = weights if total is None else [a + b for a, b in zip(total, weights)]
    return [(w / len(weight_sets)).astype(np.float32) for w in total]


def training_forward(model):
    """``model`` run in training mode (its batch-norm layers update their moving statistics),
    traced by TensorFlow at its first call. One serves every weight set given to ``model`` in
    turn: weights are variables, so new values need no new trace."""
    import tensorflow as tf

    return tf.function(lambda images: model(images, training=True))


def recalibrate_batchnorm(model, dataset, steps: int, forward=None) -> None:
    """Re-estimate every batch-norm layer's moving statistics for the final weights.

    Runs ``steps`` batches forward in training mode (no weight update) with a fast momentum, so
    the statistics inference uses match the weights being shipped rather than a blend of
    earlier ones. ``forward``: :func:`training_forward` of ``model``, made once where several
    weight sets are recalibrated (else one is made, and traced, here).
    """
    import keras

    norms = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    saved = [l.momentum for l in norms]
    for layer in norms:
        layer.momentum = 0.9  # read when ``forward`` is traced: the same at every call
    forward = forward or training_forward(model)
    for images, _ in dataset.take(steps):
        forward(images)
    for layer, momentum in zip(norms, saved):
        layer.momentum = momentum


BACKUP_DIR = "backup"  # in the run folder: the training state after the last finished epoch
BACKUP_WEIGHTS = "latest.weights.h5"  # the two files of Keras's BackupAndRestore, by its names
BACKUP_METADATA = "training_metadata.json"
# What a run writes in its run folder (besides the backup and candidate_*.hdf5): a new run moves
# an earlier run's away (set_aside_earlier_run).
RUN_FILES = ("train.json", "metrics.csv", "result.json", "best.h5", "best.tmp.h5", TAIL_DIR,
             "tensorboard")


class TrainingDiverged(PortraitError):
    """The training loss became nan or infinite: the weights are broken."""


def make_backup(backup_dir: Path):
    """Keras's ``BackupAndRestore`` callback, with each of its files written beside itself and
    then moved over the old one, the weights before the epoch count: a stop while a backup is
    written (Ctrl-C, SIGTERM) keeps the previous epoch's backup whole, and the count never
    names an epoch the weights have not reached.

    The backup is kept when training ends (``delete_checkpoint=False``); :func:`train` removes
    it once the model is written, so a stop while the final weights are chosen can be resumed.

    Raises (when training starts):
        PortraitError: a backup whose weights do not load into the model.
    """
    import keras

    class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
        def on_train_begin(self, logs=None):
            try:
                super().on_train_begin(logs)
            except (OSError, ValueError) as error:  # h5py and Keras raise either for a bad file
                raise unusable_backup(backup_dir, error) from None

        def _save_model(self):  # Keras's own writes both files in place
            backup_dir.mkdir(parents=True, exist_ok=True)
            partial = backup_dir / f"partial.{BACKUP_WEIGHTS}"  # Keras wants .weights.h5
            partial.unlink(missing_ok=True)  # what a stop in an earlier save left
            try:
                self.model.save_weights(str(partial))
            except OSError as error:  # the disk filled meanwhile (DiskRoom checked before)
                partial.unlink(missing_ok=True)
                raise PortraitError(f"cannot write the backup '{partial}' ({_short_error(error)}); "
                                    "the epoch before stays backed up: free some space, then run "
                                    "the same command with --resume") from None
            os.replace(partial, backup_dir / BACKUP_WEIGHTS)
            partial = backup_dir / f"partial.{BACKUP_METADATA}"
            partial.write_text(json.dumps({"epoch": self._current_epoch,
                                           "batch": self._last_batch_seen}))
            os.replace(partial, backup_dir / BACKUP_METADATA)

    return AtomicBackupAndRestore(str(backup_dir), delete_checkpoint=False)


def make_room_check(run_dir: Path, checkpoint, tail_epochs: int, epochs: int):
    """A Keras callback that, at each epoch's end and before anything of it is written, checks
    that the run folder's disk takes what the epoch writes: its best checkpoint (when it beats
    the best so far), its backup and its tail weights (``--average-last``), each written beside
    the file it replaces. A full disk mid-write left HDF5's errors by the hundred, a partial
    file and a crash at exit.

    Raises (during training):
        PortraitError: too little room, with what is free and needed and how to go on; the
            epoch before stays backed up, whole.
    """
    import keras

    class DiskRoom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            score, best = (logs or {}).get(checkpoint.monitor), checkpoint.best
            improves = score is not None and (best is None or score > best)  # mode="max"
            need = h5_size(self.model) * (2 if improves else 1) + DISK_MARGIN
            if epoch + 1 > epochs - tail_epochs:
                need += h5_size(self.model, optimizer=False)
            free = free_bytes(run_dir)
            if free is None or free >= need:
                return
            done = backed_up_epochs(run_dir / BACKUP_DIR)
            then = ("run the same command with --resume to continue from the "
                    f"{counted(done, 'epoch')} backed up" if done else "run the same command again")
            raise PortraitError(f"the disk of run folder '{run_dir}' has {megabytes(free)} free, "
                                f"and epoch {epoch + 1}'s checkpoint and backup need about "
                                f"{megabytes(need)}; nothing of it was written: free some space, "
                                f"then {then}")

    return DiskRoom()


def _short_error(error: BaseException) -> str:
    from portrait.segment.keras_compat import _short

    return _short(error, 120)


def unusable_backup(backup_dir: Path, error: BaseException) -> PortraitError:
    """The one-line error for a backup that cannot be restored, and what to do about it."""
    from portrait.segment.keras_compat import _short

    return PortraitError(f"--resume: the backup in '{backup_dir}' cannot be restored "
                         f"({_short(error, 120)}); remove that folder to start the run over, or "
                         "choose another --run-dir")


def backed_up_epochs(backup_dir: Path) -> Optional[int]:
    """How many epochs the backup in ``backup_dir`` holds, or None when it records none."""
    try:
        epoch = json.loads((backup_dir / BACKUP_METADATA).read_text()).get("epoch")
    except (OSError, ValueError, AttributeError):
        return None
    return epoch if isinstance(epoch, int) else None


def check_backup(backup_dir: Path) -> None:
    """Before ``--resume`` loads anything: the backup's epoch count is readable, its weights
    file is there when the count is, and that file opens (a stop while an older version wrote
    it in place left it truncated).

    Raises:
        PortraitError: any of those, saying to remove the backup to start over.
    """
    import h5py

    weights, metadata = backup_dir / BACKUP_WEIGHTS, backup_dir / BACKUP_METADATA
    if metadata.exists():
        epochs = backed_up_epochs(backup_dir)
        if epochs is None:
            raise unusable_backup(backup_dir, ValueError(f"{BACKUP_METADATA} holds no epoch count"))
        if not weights.is_file():
            raise PortraitError(f"--resume: the backup in '{backup_dir}' records "
                                f"{counted(epochs, 'finished epoch')} but has no weights "
                                f"({BACKUP_WEIGHTS}); "
                                "remove that folder to start the run over, or choose another "
                                "--run-dir")
    if weights.exists():
        try:
            with h5py.File(weights, "r"):
                pass
        except OSError as error:
            raise unusable_backup(backup_dir, error) from None


def make_nan_stop(run_dir: Path, lr: float):
    """A Keras callback that ends training at the first batch whose loss is nan or infinite,
    before the epoch's end backs up or checkpoints the broken weights.

    Raises (during training):
        TrainingDiverged: naming the epoch and the step, and what to do.
    """
    import keras

    class StopOnNonFiniteLoss(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            loss = float((logs or {}).get("loss", 0.0))
            if math.isfinite(loss):
                return
            backup = run_dir / BACKUP_DIR
            first = (f" (remove '{backup}' first, or choose another --run-dir)"
                     if backup.exists() else "")
            raise TrainingDiverged(f"the training loss became {loss} in epoch {self.epoch + 1} "
                                   f"(step {batch + 1}), so no model was written; start the run "
                                   f"again with a lower --lr than {lr:g}{first}")

    return StopOnNonFiniteLoss()


def promote_best(best_tmp: Path, best_h5: Path, epoch: int, logs: Optional[dict]) -> bool:
    """At an epoch's end: move the checkpoint the epoch wrote (``best.tmp.h5``, only when it beat
    the best so far) over ``best.h5`` and log it by the file a user finds, where Keras's own line
    named the temporary file. ``epoch`` counts from 0, as Keras's do.

    Returns:
        Whether there was one to move.
    """
    if not best_tmp.is_file():
        return False
    best_tmp.replace(best_h5)
    log.info("epoch %d: validation IoU %.4f, the best so far, saved to %s", epoch + 1,
             float((logs or {}).get("val_iou", float("nan"))), best_h5)
    return True


def set_aside_earlier_run(run_dir: Path) -> Optional[Path]:
    """Move what an earlier run wrote in ``run_dir`` into ``run_dir/earlier-N`` (the first N
    free), so that a new run there starts its own log and checkpoints (appended to the earlier
    log, a resumed run would take the earlier run's best score as the one to beat). Logs what
    moved where.

    Returns:
        The folder the files went to, or None when there were none.
    """
    found = [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]
    found += sorted(run_dir.glob("candidate_*.hdf5"))
    if not found:
        return None
    number = 1
    while (run_dir / f"earlier-{number}").exists():
        number += 1
    earlier = run_dir / f"earlier-{number}"
    earlier.mkdir()
    for path in found:
        os.replace(path, earlier / path.name)
    log.info("run folder '%s' held an earlier run: moved its %s to '%s'", run_dir,
             ", ".join(path.name for path in found), earlier)
    return earlier


@contextlib.contextmanager
def resume_hint(run_dir: Path, epochs: int):
    """Around training: a Ctrl-C or SIGTERM (:class:`~portrait.errors.StopRequested`) logs how
    far the backup got and how to go on, and goes on up."""
    try:
        yield
    except (KeyboardInterrupt, StopRequested) as stop:
        what = stop_name(stop)
        backup = run_dir / BACKUP_DIR
        if not backup.exists():
            log.warning("%s: training stopped before its first epoch ended; nothing to resume, "
                        "run the command again to start over", what)
        else:
            done = backed_up_epochs(backup)
            log.warning("%s: training stopped with %s of %s backed up in '%s'; run the "
                        "same command with --resume to continue", what,
                        "none" if done is None else done, counted(epochs, "epoch"), backup)
        raise


def check_outputs(options: TrainOptions, out: Path) -> list[Path]:
    """Before any work: the crop fits the network, the network can be built (``--context
    tail`` at output stride 16 only), ``--out`` is no folder and no file the run reads, and its
    folder can be written (it is written only after the whole run).

    Returns:
        The folders made for ``--out`` (:func:`~portrait.sink.paths._prepare_folder`), which
        :func:`train` removes again where the run ends without its model.

    Raises:
        PortraitError: any of those.
    """
    from portrait.sink.paths import same_place

    width, height = options.input_size
    if width % options.output_stride or height % options.output_stride:
        raise PortraitError(f"--input-size {width}x{height} must be a multiple of the output "
                            f"stride {options.output_stride} on both sides, e.g. 192x192")
    if not options.init and options.context == "tail" and options.output_stride != 16:
        raise PortraitError(f"--context tail adds encoder blocks 13 to 16 to a stride-16 encoder, "
                            f"and --output-stride {options.output_stride} already runs them; pass "
                            "--output-stride 16 (the default) or another --context")
    if options.short_side is None and min(width, height) % 32:
        raise PortraitError(f"--input-size {width}x{height} would store a short side of "
                            f"{min(width, height)} px, which the app cannot run models at (a "
                            "multiple of 32); pass --short-side PX, e.g. --short-side "
                            f"{min(width, height) // 32 * 32 or 32}")
    if out.is_dir():
        raise PortraitError(f"--out '{out}' is a folder, not a model file; choose another --out, "
                            f"e.g. '{out / 'unet.hdf5'}'")
    read = [("--init", "model", options.init), *(("--teacher", "model", t) for t in options.teacher),
            ("--backbone", "weights file",
             None if options.init else _backbone_file(options.backbone, options.alpha))]
    for option, what, path in read:
        if path and same_place(out, path):
            raise PortraitError(f"--out '{out}' is the {option} {what}, which the run reads; "
                                "choose another --out")
    return _prepare_folder(out.parent, f"model '{out}'")


@contextlib.contextmanager
def model_of(option: str) -> Iterator[None]:
    """A model file that does not load in the block names the option it came from:
    ``--init: cannot read model 'x.hdf5': not a valid HDF5 file ...``, where two options
    (``--init``, ``--teacher``) name model files."""
    try:
        yield
    except ModelError as error:
        error.args = (f"{option}: {error}",)
        raise


def backbone_expected(alpha: float) -> str:
    """What ``--backbone FILE`` takes, ending the line that refuses another file."""
    return (f"--backbone expects MobileNetV2 alpha {alpha} weights (include_top=False), as "
            "model.save_weights writes them to a .weights.h5 file, or 'imagenet', 'auto' or "
            "'none'; to fine-tune a trained model, pass it as --init")


def init_short_side_note(options: TrainOptions) -> Optional[str]:
    """A warning for a fine-tune that would store another short side than its ``--init``
    model's (``weights/unet_live.hdf5`` runs at 160 px; the default crop stores 192), so the
    app would run the result at a size it was not chosen for; None where they agree, where
    ``--short-side`` was given, or where the model names none."""
    from portrait.segment.locate import read_short_side_hint

    if not options.init or options.short_side is not None:
        return None
    init_px = read_short_side_hint(Path(options.init))
    stored_px = min(options.input_size)
    if init_px is None or init_px == stored_px:
        return None
    return (f"--init '{options.init}' runs at a short side of {init_px} px, and this run stores "
            f"{stored_px} (the --input-size crop's), which the app will run the result at; pass "
            f"--short-side {init_px} to keep the model's")


def check_data_paths(options: TrainOptions) -> None:
    """Before any model loads or is built: each ``--data`` and ``--val`` entry is a folder or a
    list file of text (what :func:`portrait.training.folders.resolve_split` reads) and no test
    list, and the list it gives or its folder's list names a stem, so a video, a photo, a test
    list, an empty list or a path that is nowhere is named without waiting for the model. The
    photos they name are listed and read later, after the models.

    Raises:
        InputError: the first entry that is not, by option and path.
    """
    from portrait.capture.images import VIDEO_EXTENSIONS
    from portrait.training.folders import (data_not_found, folder_list, listed_stems,
                                           refuse_test_list)

    for option, specs in (("--data", options.data), ("--val", options.val)):
        for spec in dict.fromkeys(specs):
            path = Path(spec)
            if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
                raise InputError(f"{option} '{spec}' is a video; training takes labelled photos (a "
                                 "folder of images/ and masks/, or a list file in one): label its "
                                 "frames first with python -m portrait.training.distill --teacher "
                                 f"MODEL --video '{spec}' --out DIR, then pass {option} DIR")
            if not path.is_file() and not path.is_dir():
                raise data_not_found(spec)
            if path.is_file():
                refuse_test_list(spec)  # before it is read: an empty one is no less a test list
            listed = path if path.is_file() else folder_list(
                path, "train" if option == "--data" else "val")
            if listed is not None:
                listed_stems(listed)  # a photo (not text) or a list that names no stem


def check_model_inputs(options: TrainOptions) -> None:
    """Before any data loads: each model or weights file the run reads (``--init``,
    ``--teacher``, a ``--backbone`` file) is there and is a file, no model a TFLite one, and a
    ``--backbone`` file holds weights, not a whole model
    (:func:`portrait.training.widen.check_backbone`).

    Raises:
        ModelError: the first that is not, by option and path.
        InputError: a ``--backbone`` file that holds no weights.
    """
    from portrait.segment.locate import KERAS_SUFFIXES

    named = [("--init", options.init, "give the model file to fine-tune"),
             *(("--teacher", t, "give the teacher's model file") for t in options.teacher)]
    if not options.init and options.backbone not in BACKBONE_WORDS:
        named.append(("--backbone", options.backbone, "pass a weights file, 'imagenet', 'auto' "
                                                      "or 'none'"))
    for option, path, advice in named:
        if path is None:
            continue
        if Path(path).is_dir():
            raise ModelError(f"{option} '{path}' is a folder, not a file; {advice}")
        if not Path(path).is_file():
            raise ModelError(f"{option} '{path}' not found; {advice}")
        if option == "--backbone":  # a whole model, a photo: named before TensorFlow starts
            from portrait.training.widen import check_backbone

            check_backbone(Path(path), backbone_expected(options.alpha))
        if option != "--backbone" and Path(path).suffix.lower() == ".tflite":
            # Loaded as Keras, it was called "not a valid HDF5 file ... truncated or corrupt".
            raise ModelError(
                f"{option} '{path}' is a TFLite model, which training cannot run; " + (
                    "a teacher that runs outside Keras labels the data once instead: python -m "
                    f"portrait.training.distill --teacher {path} --data ... --out DIR, then "
                    "train on DIR" if option == "--teacher" else
                    "fine-tune the Keras model (.hdf5) it was exported from"))
        suffix = Path(path).suffix.lower()
        if option != "--backbone" and suffix not in KERAS_SUFFIXES:
            # A photo or a text file was called "not a valid HDF5 file ... truncated or corrupt".
            raise ModelError(f"{option} '{path}' is not a model file: training takes Keras "
                             f"models (.hdf5, .h5, .keras), and its type '{suffix or '(none)'}' "
                             f"is none of them; {advice}")


def check_trainable(model, option: str, path: str, input_size: tuple[int, int]) -> None:
    """Before any data loads: a model that ``--init`` fine-tunes or a ``--teacher`` runs on the
    training crops is shaped as this command writes them: it takes an RGB image of any size and
    gives a one-channel person probability of its input's size (a fixed input, a classifier's
    output or a two-channel softmax stopped ``fit`` in an unexpected error, or trained the two
    channels of a softmax towards one mask each).

    Raises:
        ModelError: the first of those it is not, naming ``option`` and ``path``.
    """
    from portrait.segment.keras_compat import saved_input_size

    advice = "use a model as python -m portrait.training.train writes them"
    fixed = saved_input_size(model)  # also refuses an input that is no image
    if fixed is not None:
        raise ModelError(f"{option} '{path}' has a fixed {fixed[0]}x{fixed[1]} input, and training "
                         f"runs it on crops and whole validation photos of other sizes; {advice}")
    width, height = input_size
    try:
        shape = tuple(model.compute_output_shape((1, height, width, 3)))
    except Exception:  # noqa: BLE001: a shape Keras cannot tell is checked when it runs
        shape = None
    if shape and isinstance(shape[0], (tuple, list)):  # several outputs: the first
        shape = tuple(shape[0])
    if shape is not None and shape != (1, height, width, 1):
        shown = "(" + ", ".join(str(v) for v in shape) + ")"
        raise ModelError(f"{option} '{path}' gives an output of shape {shown} for a {width}x"
                         f"{height} crop, where training needs a one-channel person probability "
                         f"of the crop's size, (1, {height}, {width}, 1); {advice}")


def check_rescales(model, option: str, path: str) -> None:
    """Before any data loads: a model that ``--init`` fine-tunes or a ``--teacher`` runs on the
    crops rescales pixels itself (a ``Rescaling``/``Normalization`` layer after its input, as
    :func:`build_unet` puts there), since training feeds it crops of 0..255 pixels. One that
    expects x/255 or -1..1 was trained on 0..255 without a word, and learnt the new range at the
    cost of what it knew; such a teacher labelled 0..255 crops it could not read.

    Raises:
        ModelError: a model without such a layer, naming ``option`` and ``path``.
    """
    from portrait.segment.keras_compat import keras_input_norm

    if keras_input_norm(model) is None:
        raise ModelError(f"{option} '{path}' does not rescale pixels itself (no Rescaling or "
                         "Normalization layer after its input), so it expects another range than "
                         "the 0..255 pixels training feeds it; use a model as python -m "
                         "portrait.training.train writes them")


def kept_bytes_per_sample(model, input_size: tuple[int, int]) -> int:
    """A lower bound on the bytes one training sample of ``input_size`` (width, height) holds
    from the forward pass until the backward pass: every tensor that feeds a layer with trainable
    weights (a convolution's or batch norm's weight gradient needs its input), each counted once,
    at its dtype. Nested models are followed into; their own inputs, and every tensor that feeds
    only layers without weights, are left out, so the true figure is higher, never lower
    (TensorFlow does not recompute a forward tensor to save memory).
    """
    import keras

    width, height = input_size
    return _kept_bytes(model, keras.KerasTensor((1, height, width, 3), dtype=model.inputs[0].dtype))


def _kept_bytes(model, input_spec, skip=()) -> int:
    """:func:`kept_bytes_per_sample` for a functional ``model`` given its input's spec;
    ``skip``: tensors counted by the caller (a nested model's own inputs)."""
    import keras
    import numpy as np

    kept, nested = {}, []
    for layer in model.layers:
        if not layer.trainable_weights:
            continue
        for node in getattr(layer, "_inbound_nodes", []):
            tensors = [t for t in keras.tree.flatten(node.input_tensors)
                       if not any(t is s for s in skip)]
            if isinstance(layer, keras.Model) and getattr(layer, "inputs", None):
                nested.append((layer, tensors))
            else:
                kept.update((id(t), t) for t in tensors)
    wanted = list(kept.values()) + [t for _, tensors in nested for t in tensors]
    if not wanted:
        return 0
    try:
        specs = keras.Model(model.inputs, wanted).compute_output_spec(input_spec)
    except Exception:  # noqa: BLE001: a graph Keras cannot trace this way: claim nothing
        log.debug("no memory estimate for %s", model.name, exc_info=True)
        return 0
    specs = keras.tree.flatten(specs)
    total = sum(math.prod(s.shape) * np.dtype(s.dtype).itemsize for s in specs[:len(kept)])
    at = len(kept)
    for layer, tensors in nested:
        inner = specs[at:at + len(tensors)]
        at += len(tensors)
        if len(inner) == 1 and len(layer.inputs) == 1:
            total += _kept_bytes(layer, inner[0], skip=tuple(layer.inputs))
    return total


def available_memory() -> Optional[int]:
    """The bytes this process may still take without swapping: the system's available memory
    (``MemAvailable``), or less where a cgroup limits the process's group; None where the
    system does not say (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        free = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit) as f, open(usage) as g:
                free = min(free, int(f.read()) - int(g.read()))
        except (OSError, ValueError):  # no such cgroup, or "max": no limit
            continue
    return free


def check_batch_memory(model, options: TrainOptions, views: int,
                       available: Optional[int]) -> None:
    """Before any data loads: refuse a ``--batch`` whose training step cannot fit in
    ``available`` memory even by a lower bound: the batch's samples (``views`` per crop) times
    :func:`kept_bytes_per_sample`, plus the weights, their gradients and Adam's two moments
    (four float32 copies of the trainable weights). A step that does not fit was killed by the
    system (exit 137, no line) or swapped for hours, after the data had been read.

    Raises:
        PortraitError: what the batch needs at least and what is available, and the largest
            batch that the bound allows.
    """
    if available is None:
        return
    per_sample = kept_bytes_per_sample(model, options.input_size) * views
    weights = 4 * sum(math.prod(w.shape) * 4 for w in model.trainable_weights)
    need = options.batch * per_sample + weights
    if not per_sample or need <= available:
        return
    largest = (available - weights) // per_sample
    width, height = options.input_size
    fix = (f"pass --batch {largest} or less, or a smaller --input-size" if largest >= 1
           else "pass a smaller --input-size")
    raise PortraitError(f"--batch {options.batch} at {width}x{height} needs at least "
                        f"{per_sample * options.batch / 1e9:.1f} GB for what a training step "
                        f"keeps for its backward pass ({per_sample / 1e6:.1f} MB a crop"
                        f"{', two views each' if views == 2 else ''}) and "
                        f"{weights / 1e6:.0f} MB for the weights and their optimizer, but "
                        f"{available / 1e9:.1f} GB of memory is available; {fix}")


def training_memory() -> Optional[int]:
    """The memory a training step's tensors take from: None (not checked) where TensorFlow sees
    a GPU, which holds them in its own memory, else :func:`available_memory`."""
    import tensorflow as tf

    return None if tf.config.list_physical_devices("GPU") else available_memory()


# Options that do not change what a resumed run trains: where its folder is (a moved or copied
# folder resumes) and where its model goes.
NOT_COMPARED_ON_RESUME = ("resume", "run_dir", "out")
PATH_OPTIONS = ("data", "val", "init", "teacher", "backbone")  # compared by what they name


def _same_option(key: str, saved, asked) -> bool:
    """Whether a saved ``train.json`` value and the asked one are the same option: equal, or
    paths that name the same files (one folder by another path, a link)."""
    from portrait.sink.paths import same_place

    if saved == asked:
        return True
    if key not in PATH_OPTIONS:
        return False
    if key == "backbone" and (saved in BACKBONE_WORDS or asked in BACKBONE_WORDS):
        return False
    if isinstance(saved, list) and isinstance(asked, list):
        return len(saved) == len(asked) and all(
            isinstance(a, str) and isinstance(b, str) and same_place(a, b)
            for a, b in zip(saved, asked))
    return isinstance(saved, str) and isinstance(asked, str) and same_place(saved, asked)


def check_run_dir(options: TrainOptions, run_dir: Path) -> None:
    """``--resume`` continues an interrupted run with the options it was started with (paths
    compared by the files they name; the run folder itself may have moved); without it a run
    folder holding an interrupted run is refused. Nothing in the folder is changed.

    Raises:
        PortraitError: a resume with nothing to resume, with a backup that cannot be restored
            or with other options, or a fresh run over an interrupted one.
    """
    backup = run_dir / BACKUP_DIR
    if not options.resume:
        if backup.exists():
            raise PortraitError(f"run folder '{run_dir}' already has a backup; pass --resume to "
                                f"continue it, or remove '{backup}' to start over, or choose "
                                "another --run-dir")
        return
    if not backup.exists():
        raise PortraitError(f"--resume: run folder '{run_dir}' holds no interrupted run (no "
                            "backup/; a finished run leaves none); leave out --resume to start one")
    check_backup(backup)
    saved_file = run_dir / "train.json"
    try:
        saved = json.loads(saved_file.read_text())
    except (OSError, ValueError):
        return  # nothing to compare with; the backup itself carries the run
    asked = json.loads(json.dumps(asdict(options)))  # tuples as the file has them, lists
    changed = sorted(key for key in asked if key not in NOT_COMPARED_ON_RESUME and key in saved
                     and not _same_option(key, saved[key], asked[key]))
    if changed:
        shown = ", ".join(f"{key} {saved[key]!r} -> {asked[key]!r}" for key in changed)
        raise PortraitError(f"--resume with other options than the run was started with ({shown}); "
                            f"resume with the same options, or start a new run with another "
                            "--run-dir")


def compile_for_training(model, loss, options: TrainOptions, steps: int) -> None:
    """Compile ``model`` with Adam at ``options``' learning rate and schedule (``steps`` steps an
    epoch), ``loss`` and the training metrics, and make Adam's state at once.

    A variable made while TensorFlow traces the first step (Keras leaves the optimizer to be
    built there when no distribution strategy is set) makes it trace the step a second time:
    about half of a short run's start, some 10 to 40 s of a MobileNetV2-UNet's on 2 cores.
    """
    import keras

    from portrait.training.metrics import training_metrics

    if options.schedule == "cosine":
        total_steps = steps * options.epochs
        warmup = int(options.warmup_epochs * steps)
        lr = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else options.lr, max(1, total_steps - warmup), alpha=0.01,
            warmup_target=options.lr if warmup else None, warmup_steps=warmup,
        )
    else:
        lr = options.lr
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=training_metrics())
    model.optimizer.build(model.trainable_variables)


def train(options: TrainOptions) -> Path:
    """Run a training job and write the best model to ``options.out``; return its path. A file
    already there is named in a warning before the run and kept beside the new model
    (:func:`~portrait.training.model_file.earlier_model_path`). A run that ends without its
    model (an error, a stop) leaves none of the folders made for ``--out``, where they are
    empty.

    Everything that can be checked is checked before the run folder is written: the options,
    ``--out`` and the run folder (a backup to resume) first, then the model files' and the data's
    paths (:func:`check_data_paths`), then the model files, loaded (or the model built) before
    the data is read, with the memory a step needs at ``--batch``
    (:func:`check_batch_memory`), then the data.
    """
    made: list[Path] = []
    try:
        return _train(options, made)
    except BaseException:
        remove_if_empty(made)
        raise


def augment_options(options: TrainOptions):
    """The training crops' augmentation (a :class:`portrait.training.data.AugmentOptions`) that
    ``options`` asks for (zoom, paste, motion, exposure, edge cut, pad); the rest its defaults."""
    from portrait.training.data import AugmentOptions  # TensorFlow, loaded only to train

    return AugmentOptions(scale_range=tuple(options.zoom), paste_prob=options.paste_prob,
                          motion_prob=options.motion_prob, exposure_prob=options.exposure_prob,
                          edge_cut_prob=options.edge_cut_prob, pad=options.pad)


def _train(options: TrainOptions, made: list[Path]) -> Path:
    """:func:`train`'s run; the folders it makes for ``--out`` are added to ``made`` as they
    are made, for :func:`train` to remove where the run ends without its model."""
    import keras

    from portrait.training.data import (CALIBRATION_AUGMENT, check_decodable, check_masks,
                                        make_dataset)
    from portrait.training.losses import make_loss, uses_views
    from portrait.training.model import build_unet
    from portrait.segment import HDF5_SUFFIXES

    out = Path(options.out)
    if out.suffix.lower() not in HDF5_SUFFIXES:
        raise PortraitError(f"--out '{out}' must end in .hdf5 or .h5 (a whole Keras model in HDF5)")
    loss = make_loss(options.loss)
    if options.teacher and uses_views(loss):
        raise PortraitError("--teacher with a consistency loss: the teachers would label the two "
                            "views of a crop apart; use one or the other")
    made += check_outputs(options, out)
    run_dir = Path(options.run_dir or Path("runs") / out.stem)
    try:
        os.fsencode(run_dir).decode("utf-8")
    except UnicodeDecodeError:  # TensorBoard's writer takes a path as UTF-8 text only
        raise PortraitError(f"run folder '{run_dir}': its name is not UTF-8 text, which "
                            "TensorBoard's log writer cannot take; choose a --run-dir with a "
                            "UTF-8 name") from None
    check_run_dir(options, run_dir)
    check_model_inputs(options)
    check_data_paths(options)  # cheap: before the models load or the encoder is built
    for note in (init_short_side_note(options), replaced_out_note(out)):
        if note:
            log.warning(note)
    keras.utils.set_random_seed(options.seed)

    # The models before the data: a model file that does not load is named without waiting.
    if options.init:
        from portrait.segment.keras_compat import load_keras_model

        with model_of("--init"):
            model = load_keras_model(Path(options.init))
        check_trainable(model, "--init", options.init, options.input_size)
        check_rescales(model, "--init", options.init)
    else:
        backbone = _resolve_backbone(options.backbone, options.alpha)
        try:
            model = build_unet(options.input_size, options.alpha, options.output_stride,
                               backbone_weights=backbone, fixed_input=False, context=options.context)
        except ValueError as error:  # the options fit the builder (check_outputs): the weights do not
            if backbone in (None, "imagenet"):
                raise
            from portrait.segment.base import one_line

            raise ModelError(f"backbone weights '{backbone}' do not fit MobileNetV2 alpha "
                             f"{options.alpha} ({one_line(error)}); "
                             f"{backbone_expected(options.alpha)}") from None
    if options.teacher:
        from portrait.training.distill import load_teachers, with_teachers

        with model_of("--teacher"):
            teachers = load_teachers(options.teacher)
        for path, teacher in zip(options.teacher, teachers):
            check_trainable(teacher, "--teacher", path, options.input_size)
            check_rescales(teacher, "--teacher", path)  # fed 0..255 crops, as --init
    check_batch_memory(model, options, 2 if uses_views(loss) else 1, training_memory())

    train_pairs, val_pairs = _split(options)
    check_decodable(train_pairs + val_pairs)
    check_masks(train_pairs)
    check_masks(val_pairs)
    log.info("training on %s, validating on %d", counted(len(train_pairs), "pair"),
             len(val_pairs))

    augment = augment_options(options)
    train_ds = make_dataset(train_pairs, options.input_size, options.batch, True, augment=augment,
                            seed=options.seed, views=2 if uses_views(loss) else 1)
    if options.teacher:
        train_ds = with_teachers(train_ds, teachers, options.teacher_weight)
    short_px = options.short_side or min(options.input_size)
    val_ds = make_dataset(val_pairs, options.input_size, options.batch, False, short_side=short_px)
    steps = options.steps_per_epoch or max(1, len(train_pairs) // options.batch)
    compile_for_training(model, loss, options, steps)
    _prepare_folder(run_dir, f"run folder '{run_dir}'", "--run-dir")
    if not options.resume:
        set_aside_earlier_run(run_dir)
    (run_dir / "train.json").write_text(json.dumps(asdict(options), indent=2))
    best_h5 = run_dir / "best.h5"
    best_before = best_logged(run_dir / "metrics.csv") if options.resume and best_h5.is_file() else None
    if best_before is not None:
        log.info("resuming: %s holds the best validation IoU so far, %.4f", best_h5, best_before)
    # The checkpoint is written beside best.h5 and then moved over it, so that a run stopped
    # while it writes (Ctrl-C, a session's end) keeps the best model it had.
    best_tmp = run_dir / "best.tmp.h5"
    best_tmp.unlink(missing_ok=True)
    backup = run_dir / BACKUP_DIR
    checkpoint = keras.callbacks.ModelCheckpoint(str(best_tmp), monitor="val_iou", mode="max",
                                                 save_best_only=True, verbose=0,
                                                 initial_value_threshold=best_before)
    progress = make_epoch_progress(options.epochs, steps)
    callbacks = [
        make_nan_stop(run_dir, options.lr),  # first: nan weights must reach no file
        progress,  # its epoch's line before the lines of what the epoch wrote
        make_room_check(run_dir, checkpoint, options.average_last, options.epochs),  # then: room
        checkpoint,
        keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: promote_best(best_tmp, best_h5, epoch, logs)),
        keras.callbacks.CSVLogger(str(run_dir / "metrics.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), update_freq=50),
    ]
    if options.average_last:
        callbacks.append(make_tail_saver(run_dir, options.epochs, options.average_last))
    # Last: an epoch counts as done once everything else has written it (its log row, its
    # checkpoint, its tail weights); a stop before that reruns it.
    callbacks.append(make_backup(backup))
    started = time.perf_counter()
    with resume_hint(run_dir, options.epochs):  # until the model is written
        with closing_bar(progress):  # Keras's own bar off: ours, and a line an epoch
            model.fit(train_ds, epochs=options.epochs, steps_per_epoch=steps,
                      validation_data=val_ds, callbacks=callbacks, verbose=0,
                      shuffle=False)  # the tf.data pipeline shuffles; Keras would warn it cannot
        # The best checkpoint (by validation IoU) and the final weights, each with its
        # batch-norm statistics re-estimated on lightly augmented training crops; the better on
        # validation wins.
        calibration = make_dataset(train_pairs, options.input_size, options.batch, True,
                                   augment=dataclasses.replace(CALIBRATION_AUGMENT,
                                                               pad=options.pad),
                                   seed=options.seed + 1)
        # Each candidate is a set of weights given to the trained model in turn, so that the
        # recalibration and the validation are traced once, not once a candidate.
        candidates = {"final": model.get_weights()}
        if best_h5.is_file():
            candidates["best"] = keras.models.load_model(best_h5, compile=False).get_weights()
        if options.average_last:
            tail = [tail_path(run_dir, e) for e in range(options.epochs - options.average_last + 1,
                                                          options.epochs + 1)]
            if all(path.is_file() for path in tail):
                average_weights(model, tail)
                candidates["average"] = model.get_weights()
                log.info("averaged the weights after epochs %d-%d",
                         options.epochs - len(tail) + 1, options.epochs)
            else:
                missing = ", ".join(p.name for p in tail if not p.is_file())
                log.warning("not averaging: the run folder lacks %s (were they deleted?)", missing)
        forward = training_forward(model)
        scores, calibrated = {}, {}
        for name, weights in candidates.items():
            model.set_weights(weights)
            recalibrate_batchnorm(model, calibration, options.bn_steps, forward)
            # The validation of fit(), with the training's loss and metrics, already traced.
            scores[name] = model.evaluate(val_ds, verbose=0, return_dict=True)["iou"]
            calibrated[name] = model.get_weights()
            if options.average_last:  # each candidate stays in the run folder, for comparison
                save_model(model, run_dir / f"candidate_{name}.hdf5", short_px=short_px)
        chosen = max(scores, key=scores.get)
        log.info("validation IoU after batch-norm recalibration: %s; keeping the %s weights",
                 ", ".join(f"{k} {v:.4f}" for k, v in scores.items()), chosen)
        wall_s = time.perf_counter() - started
        # ModelCheckpoint needs .h5; the app's contract is a whole model in HDF5 named as asked.
        model.set_weights(calibrated[chosen])
        # A stop from here waits: a model whole at --out with no result.json, the backup left
        # and a line saying to --resume (which a finished run is refused) said the run undone.
        with stops_held(f"the model is written to '{out}'") as stops:
            kept = save_model(model, out, short_px=short_px, keep_earlier=True)
            shutil.rmtree(backup, ignore_errors=True)  # the run is done; nothing to resume
            (run_dir / "result.json").write_text(json.dumps(
                {"wall_s": wall_s, "out": str(out), "val_iou": scores, "kept": chosen,
                 "earlier_out": None if kept is None else str(kept),
                 "stopped": stops[0] if stops else None}, indent=2))
    log.info("best model (by validation IoU) written to %s after %.0f s", out, wall_s)
    if stops:
        log.warning("%s came as the model was written; it was finished first: '%s' holds this "
                    "run's whole model and the run is done (result.json notes the stop)",
                    stops[0], out)
    return out


def ignored_options(args: argparse.Namespace, given: set[str]) -> list[str]:
    """Options typed (``given``, see :func:`portrait.cli.typed_options`) that another option
    makes meaningless, each as "--X is ignored with Y" (the run goes on)."""
    from portrait.cli import named_ignored

    lines = []
    if args.init:
        lines += named_ignored(given, ("alpha", "context", "output_stride", "backbone"),
                               "with --init (the model comes from the file)")
    if not args.teacher:
        lines += named_ignored(given, ("teacher_weight",), "without --teacher")
    if args.schedule == "constant":
        lines += named_ignored(given, ("warmup_epochs",), "with --schedule constant")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the training command; returns the process exit code (128 + the signal's number
    when SIGTERM or SIGHUP stopped it, as Ctrl-C's is 130)."""
    from portrait.cli import (
        configure_logging,
        import_tensorflow_quietly,
        options_by_flag,
        typed_options,
        with_debug,
    )

    # Before the arguments: --loss's check imports TensorFlow, which reads TF_CPP_MIN_LOG_LEVEL
    # (set here) as it loads; set after, its CUDA probe's error line came before the run's own.
    configure_logging()
    parser = with_debug(build_parser())
    args = parser.parse_args(argv)
    for line in ignored_options(args, typed_options(with_debug(build_parser()), argv)):
        log.warning(line)

    def body() -> int:
        # Built here: a value the command line let through that the options refuse is one line.
        with options_by_flag(parser):  # named by the flag typed, not the field
            options = TrainOptions(**{k: v for k, v in vars(args).items() if k != "debug"})
        import_tensorflow_quietly()
        train(options)
        return 0

    with stop_on_termination_signals():  # SIGTERM and SIGHUP stop training as Ctrl-C does
        # The run did not finish: 128 + the signal's number, not 0.
        return run_command(body, traceback=args.debug, unfinished_on_stop=True)


if __name__ == "__main__":
    sys.exit(main())

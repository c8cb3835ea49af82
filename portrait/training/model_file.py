"""A model file as the training tools write it (``train``, ``ensemble``, ``widen``): whole or
not at all, noting its short side, with room for it checked first, and a model that was at
``--out`` before named in a warning and kept beside the new one (``<stem>.earlier-N<suffix>``),
never lost."""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import Optional

from portrait.errors import InputError

log = logging.getLogger(__name__)


# HDF5 spends about 1 KB on each variable's dataset besides its values (measured: 530 KB over
# the 547 of a MobileNetV2-UNet and its Adam state); twice that, and a fixed margin, to be safe.
H5_BYTES_PER_VARIABLE = 2048
H5_BYTES_FIXED = 256 * 1024


def h5_size(model, optimizer: bool = True) -> int:
    """About how many bytes (an upper bound) an HDF5 file of ``model``'s weights takes, with
    its optimizer's state when ``optimizer`` and it has one (a checkpoint and a backup hold
    it)."""
    import numpy as np

    variables = list(model.weights)
    if optimizer and getattr(model, "optimizer", None) is not None and model.optimizer.built:
        variables += list(model.optimizer.variables)
    values = sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)
    return values + H5_BYTES_PER_VARIABLE * len(variables) + H5_BYTES_FIXED


def free_bytes(folder: Path) -> Optional[int]:
    """The bytes ``folder``'s disk takes for this user, or None where the system does not say."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"


def earlier_model_path(out: Path) -> Path:
    """Where a model file that was at ``out`` before the run is kept when the run writes its
    own there: beside it, ``<stem>.earlier-N<suffix>`` with the first N no file has."""
    number = 1
    while os.path.lexists(out.with_name(f"{out.stem}.earlier-{number}{out.suffix}")):
        number += 1
    return out.with_name(f"{out.stem}.earlier-{number}{out.suffix}")


def replaced_out_note(out: Path) -> Optional[str]:
    """A warning that ``--out`` is there already: the run replaces it and keeps it as
    :func:`earlier_model_path` says (and an export of it beside it becomes stale); None where
    there is no such file. ``train`` gives it before the run; ``ensemble`` and ``widen`` just
    before the save, once nothing can refuse the run."""
    if not os.path.lexists(out):
        return None
    export = out.with_suffix(".tflite")
    stale = (f"; its export '{export}' will be stale until you export the new model"
             if export.is_file() else "")
    return (f"--out '{out}' exists: replacing it with this run's model when the run ends; the "
            f"earlier model is kept beside it as '{earlier_model_path(out)}'{stale}")


def save_model(model, out: Path, short_px: int, keep_earlier: bool = False) -> Optional[Path]:
    """Write a whole model as HDF5 (atomically), noting the short side it was trained for.

    The app runs such a fully convolutional model at each frame's own aspect ratio with that
    short side (see ``segment.AspectSegmenter``).

    Args:
        keep_earlier: a file already at ``out`` is moved to :func:`earlier_model_path` (a
            rename in its folder, once the new model is written whole) rather than replaced.

    Returns:
        Where the earlier file went (named in an info line), or None.

    Raises:
        InputError: the file cannot be written (a full disk, a folder changed since it was
            checked), in one line; no half-written file is left.
    """
    import h5py

    from portrait.segment import SHORT_SIDE_ATTR
    from portrait.segment.base import one_line
    from portrait.sink.paths import temporary_beside

    # A name of its own beside ``out`` (an input named "<out stem>.tmp.h5" was once written
    # over and moved away); Keras picks the format by the ".h5".
    # HDF5 on a disk that fills up mid-write floods the terminal with errors it cannot
    # report, leaves a file it cannot close and crashes the process at its exit: no write
    # is started that the disk cannot take (short of another program filling it meanwhile).
    need, free = h5_size(model, optimizer=False), free_bytes(out.parent)
    if free is not None and free < need:
        raise InputError(f"cannot write model '{out}': its disk has {megabytes(free)} free, and "
                         f"the model needs about {megabytes(need)}; free some space or choose "
                         "another folder")
    tmp = temporary_beside(out, ".tmp.h5")
    try:
        # The model to run: the optimizer's state (twice the weights again, for Adam) belongs
        # in the run folder's checkpoint and backup, not here.
        model.save(tmp, include_optimizer=False)
        with h5py.File(tmp, "a") as f:
            f.attrs[SHORT_SIDE_ATTR] = int(short_px)
        kept = None
        if keep_earlier and os.path.lexists(out):
            kept = _replace_keeping(tmp, out)
        else:
            os.replace(tmp, out)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else one_line(error)
        raise InputError(f"cannot write model '{out}': {reason}; check the folder, its "
                         "permissions and the free space") from None
    finally:
        tmp.unlink(missing_ok=True)  # a failed save leaves no half-written file behind
    if kept is not None:
        log.info("the model that was at %s before is kept as %s", out, kept)
    return kept


def _replace_keeping(new: Path, out: Path) -> Path:
    """Move ``new`` to ``out``, the file there first given the name :func:`earlier_model_path`
    says: as a second name (a hard link; a link itself, not where it points) so that ``out``
    names a whole model at every moment, a stop or a failed move included; renamed where the
    disk has no hard links, and put back if the move fails. Returns the earlier file's name."""
    while True:
        kept = earlier_model_path(out)
        try:
            os.link(out, kept, follow_symlinks=False)
            linked = True
        except FileExistsError:
            continue  # another program took that name meanwhile: the next free one
        except (OSError, NotImplementedError):  # a disk without hard links (FAT, some network
            # shares), or a system whose link() cannot leave a symlink unfollowed
            os.rename(out, kept)
            linked = False
        break
    try:
        os.replace(new, out)
    except BaseException:
        if linked:
            kept.unlink(missing_ok=True)  # out still names it
        else:
            os.replace(kept, out)
        raise
    return kept

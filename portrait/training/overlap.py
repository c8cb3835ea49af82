"""Validation photos that are training photos too by content: the same bytes in another file.

``train`` refuses a photo file that both sets name (:func:`portrait.training.train.check_disjoint`,
by device and inode). A copy of a validation photo under another name or in another folder is
another file, so only its bytes tell: this module finds such copies, reading only files of a
size that the other set holds too, so sets without copies cost one ``stat`` a file.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Sequence

from portrait.segment.tflite_utils import file_sha256
from portrait.words import counted

log = logging.getLogger("portrait.training.train")  # a step of train's, logged as train's

EXAMPLES = 3  # copies named in the warning
SLOW_S = 1.0  # the comparison's time is logged from this on


def _sizes(paths: Sequence[str]) -> dict[str, int]:
    """Each readable file's size in bytes; a file that cannot be read is left out (the check
    that decodes every photo, which follows, names it)."""
    sizes = {}
    for path in paths:
        try:
            sizes[path] = os.stat(path).st_size
        except OSError:
            pass
    return sizes


def _digests(sizes: dict[str, int], wanted: set[int]) -> dict[str, str]:
    """The SHA-256 of each file whose size is in ``wanted``, by path (unreadable ones left out)."""
    digests = {}
    for path, size in sizes.items():
        if size in wanted:
            try:
                digests[path] = file_sha256(path)
            except OSError:
                pass
    return digests


def content_copies(train_images: Sequence[str],
                   val_images: Sequence[str]) -> list[tuple[str, str]]:
    """The validation images whose bytes equal a training image's.

    Args:
        train_images, val_images: image paths; a path given several times (a list repeated in
            ``--data`` to weight it) is read once, and copies within one set are not looked for.

    Returns:
        ``(validation path, training path)`` for each validation image with a copy, in the
        validation set's order, each with the first training image of its bytes.
    """
    train_sizes = _sizes(list(dict.fromkeys(train_images)))
    val_sizes = _sizes(list(dict.fromkeys(val_images)))
    shared = set(train_sizes.values()) & set(val_sizes.values())
    if not shared:
        return []
    train_by_digest: dict[str, str] = {}
    for path, digest in _digests(train_sizes, shared).items():
        train_by_digest.setdefault(digest, path)
    return [(path, train_by_digest[digest])
            for path, digest in _digests(val_sizes, shared).items() if digest in train_by_digest]


def copies_warning(copies: Sequence[tuple[str, str]], fix: str) -> str:
    """The warning for :func:`content_copies`' result: how many, up to :data:`EXAMPLES` pairs,
    and ``fix``, what to do."""
    shown = ", ".join(f"'{val}' = '{train}'" for val, train in copies[:EXAMPLES])
    more = f" and {len(copies) - EXAMPLES} more" if len(copies) > EXAMPLES else ""
    what = ("validation photo is a copy of a training photo" if len(copies) == 1 else
            "validation photos are copies of training photos")
    return (f"{len(copies)} {what} (the same bytes in another file), so the best epoch is chosen "
            f"partly on photos the model trains on (validation = training: {shown}{more}); {fix}")


def warn_of_copies(train: Sequence[tuple[str, str]], val: Sequence[tuple[str, str]],
                   fix: str) -> list[tuple[str, str]]:
    """Log a warning naming the validation pairs whose photo is a training photo's copy (a
    warning, not a refusal: see README, "Train your own"); return the copies found.

    Args:
        train, val: (image, mask) pairs.
        fix: what the user should do, ending the warning.
    """
    start = time.perf_counter()
    copies = content_copies([image for image, _ in train], [image for image, _ in val])
    took_s = time.perf_counter() - start
    if took_s >= SLOW_S:
        log.info("compared %s and %s by content in %.1f s",
                 counted(len({image for image, _ in train}), "training photo"),
                 counted(len({image for image, _ in val}), "validation photo"), took_s)
    if copies:
        log.warning(copies_warning(copies, fix))
    return copies

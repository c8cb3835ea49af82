"""Data folders on disk, without TensorFlow (``suite --training-split`` runs without it): list
files of stems, (image, mask) pairs, and claiming a folder for a data tool's output.

A data folder holds ``images/<stem>.jpg|png`` and ``masks/<stem>.png`` (0/255), and optionally
list files of stems (``train.txt``, ``val.txt``/``other.txt``, ``test.txt``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from portrait.errors import InputError

log = logging.getLogger("portrait.training.data")  # where these lived, and logged, before

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def read_stems(list_file: Path) -> list[str]:
    """Return the stems listed one per line in ``list_file`` (blank lines skipped)."""
    with open(list_file, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def find_pairs(data_dir: Path, stems: Optional[Sequence[str]] = None) -> list[tuple[str, str]]:
    """List (image path, mask path) pairs in a data folder.

    Args:
        data_dir: a folder with ``images/`` and ``masks/``.
        stems: only these stems (in this order); None means every image that has a mask.

    Raises:
        InputError: the folder layout is wrong, or a listed stem has no image or mask.
    """
    images_dir, masks_dir = data_dir / "images", data_dir / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise InputError(
            f"data folder '{data_dir}' must contain images/ and masks/; "
            "see the README's 'Train your own' section for the layout"
        )
    images = {p.stem: p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    masks = {p.stem: p for p in masks_dir.iterdir() if p.suffix.lower() == ".png"}
    if stems is None:
        stems = sorted(set(images) & set(masks))
    missing = [s for s in stems if s not in images or s not in masks]
    if missing:
        raise InputError(
            f"{len(missing)} listed stems in '{data_dir}' have no image or mask "
            f"(first: '{missing[0]}'); fix the list file or add the files"
        )
    if not stems:
        raise InputError(f"data folder '{data_dir}' has no image with a matching mask")
    return [(str(images[s]), str(masks[s])) for s in stems]


def resolve_split(spec: str, role: str) -> list[tuple[str, str]]:
    """Turn a ``--data``/``--val`` entry into pairs.

    ``spec`` is a data folder or a list file inside one (``eg1800/train.txt``). For a folder, the
    training role uses its ``train.txt`` when present and the validation role its ``val.txt`` or
    ``other.txt``; ``test.txt`` is never used for either.
    """
    path = Path(spec)
    if path.is_file():
        return find_pairs(path.parent, read_stems(path))
    if not path.is_dir():
        raise InputError(f"training data '{spec}' not found; pass a data folder or a list file")
    candidates = ["train.txt"] if role == "train" else ["val.txt", "other.txt"]
    for name in candidates:
        if (path / name).is_file():
            log.info("%s data: %s", role, path / name)
            return find_pairs(path, read_stems(path / name))
    if (path / "test.txt").is_file():
        test = set(read_stems(path / "test.txt"))
        pairs = find_pairs(path)
        return [p for p in pairs if Path(p[0]).stem not in test]
    return find_pairs(path)



def claim_data_folder(folder: Path, option: str, tool: str, create: bool = True) -> None:
    """Check that a data tool may write into ``folder``, and mark it as that tool's output.

    The folder must be new, empty, or marked by an earlier run
    (:func:`portrait.sink.paths.is_ours`), whose ``train.txt``, images and masks the new run
    replaces. A folder holding anything else is refused: the run would replace its
    ``train.txt`` and any image or mask of the same name. ``create=False`` only checks.

    Raises:
        InputError: ``folder`` is a file, or holds files that no portrait tool wrote; the
            message names ``option``.
    """
    from portrait.sink.paths import is_ours, mark_ours

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option} '{folder}' is a file; a data folder is needed, so choose a "
                         "new folder")
    if not is_ours(folder):
        raise InputError(f"{option} '{folder}' already holds files that no portrait data tool "
                         "wrote, whose train.txt, images or masks this run would replace; choose "
                         "a new or empty folder")
    if create:
        folder.mkdir(parents=True, exist_ok=True)
        mark_ours(folder, f"A training data folder (train.txt, images, masks) written by "
                          f"python -m {tool}")

"""Output path checks shared by the file sinks: create the folder, never overwrite an input."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Union

from portrait.errors import InputError

PathLike = Union[str, Path]


def _file_ids(paths: Iterable[PathLike]) -> set[tuple[int, int]]:
    ids = set()
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            continue
        ids.add((stat.st_dev, stat.st_ino))
    return ids


def _is_protected(path: Path, protected_ids: set[tuple[int, int]]) -> bool:
    try:
        stat = os.stat(path)
    except OSError:
        return False  # doesn't exist yet, so it is no input
    return (stat.st_dev, stat.st_ino) in protected_ids


def _prepare_folder(folder: Path, what: str) -> None:
    """Create ``folder`` (and parents) and check it is writable; InputError otherwise."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"cannot write {what}: '{folder}' is a file, not a folder; "
                         "choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"cannot write {what}: cannot create folder '{folder}' "
                         f"({error.strerror or error}); choose another --out") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {what}: folder '{folder}' is not writable; "
                         "choose another --out")


def _refuse_input(path: Path, protected_ids: set[tuple[int, int]]) -> None:
    if _is_protected(path, protected_ids):
        raise InputError(f"refusing to overwrite the input '{path}' with the output; "
                         "choose a different --out")

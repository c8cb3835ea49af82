"""Data folders on disk, without TensorFlow (``suite --training-split`` runs without it): list
files of stems, (image, mask) pairs, and claiming a folder for a data tool's output.

A data folder holds ``images/<stem>.jpg|png`` and ``masks/<stem>.png`` (0/255), and optionally
list files of stems (``train.txt``, ``val.txt``/``other.txt``, ``test.txt``).
"""

from __future__ import annotations

import codecs
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

from portrait.errors import InputError
from portrait.words import counted

log = logging.getLogger("portrait.training.data")  # where these lived, and logged, before

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Folders already warned about, with the images they lack masks for: train resolves a folder
# once for training and again for validation, and one warning says it.
_WARNED_UNMATCHED: set[tuple[Path, tuple[str, ...]]] = set()


COMMENT = "#"  # a list file's line that starts with it (after spaces) is a comment


def read_stems(list_file: Path) -> list[str]:
    """Return the stems listed one per line in ``list_file``: the one reader of list files
    (training, validation, distill, mine, evaluate --list, suite). Blank lines and comment lines,
    whose first character other than a space is ``#``, are skipped; a stem is the line with
    its surrounding spaces removed.

    The text is UTF-8; a byte-order mark (Windows Notepad writes one) is dropped, and bytes that
    are not UTF-8 are read as the file system names files (``os.fsdecode``), so a list written
    by ``ls`` in a folder of Latin-1 file names names those files. UTF-16 with its byte-order
    mark (what Windows PowerShell 5's ``>`` writes) is read too.

    Raises:
        InputError: the file holds NUL bytes without a UTF-16 byte-order mark (a photo or other
            binary file given as a list), which would be read as stems of garbage, or its UTF-16
            does not decode.
    """
    data = Path(list_file).read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise InputError(f"list file '{list_file}' is not valid UTF-16 text ({error.reason} "
                             f"at byte {error.start}); save it as UTF-8 text") from None
    elif b"\0" in data:
        raise InputError(f"list file '{list_file}' is not text (it holds NUL bytes, as a photo "
                         "or other binary file does); give a text file of image stems, one per "
                         "line, saved as UTF-8")
    else:
        text = data.decode("utf-8-sig", errors="surrogateescape")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [line.strip() for line in lines]
    return [line for line in lines if line and not line.startswith(COMMENT)]


def unlistable(stem: str) -> Optional[str]:
    """Why :func:`read_stems` would not read ``stem`` back from a line of its own (a phrase
    about "the stem"), or None where it would."""
    if not stem.strip():
        return "is blank, which a list file skips"
    if "\n" in stem or "\r" in stem:
        return "holds a line break, which a list file reads as two lines"
    if stem != stem.strip():
        return "starts or ends with a space, which a list file drops"
    if stem.startswith(COMMENT):
        return f"starts with '{COMMENT}', which a list file reads as a comment"
    return None


# What to do about a photo whose stem a list file cannot hold (check_listable's ``fix``).
RENAME_PHOTO = "rename the photo and its mask, or give --data a list file that leaves it out"


def data_not_found(spec: str) -> InputError:
    """The refusal of training data ``spec`` (a data folder or a list file) that is nowhere."""
    return InputError(f"training data '{spec}' not found; pass a data folder or a list file")


def check_listable(stem: str, source: str, fix: str) -> None:
    """Refuse, before a data tool does its work, a ``stem`` it would write to a ``train.txt``
    that :func:`read_stems` could not read back (:func:`unlistable`), which
    :func:`write_stems` refuses only once the work is done.

    Args:
        stem: the stem the tool would list (``#1``, ``#1_0``, ``#clip_00000``).
        source: what it comes from, for the message (``the photo 'data/images/#1.png'``).
        fix: what the user should do (``rename the photo and its mask``).

    Raises:
        InputError: naming ``source``, the stem, why and ``fix``.
    """
    why = unlistable(stem)
    if why is not None:
        raise InputError(f"cannot list {source} in train.txt as {stem!r}: the stem {why}; {fix}")


def check_photo_stems(pairs: Sequence[tuple[str, str]], *, suffix: str = "",
                      what: str = "the photo") -> None:
    """Refuse, before a data tool does its work, a photo whose stem, as the tool lists what it
    writes of it (the stem and ``suffix``: distill a photo as itself, mine its crops as
    ``<stem>_0``, ...), ``train.txt`` could not list (:func:`check_listable`), which the run would
    otherwise find only when it lists what it wrote.

    Raises:
        InputError: naming the first such photo, as ``what``.
    """
    for image_path, _ in pairs:
        check_listable(f"{Path(image_path).stem}{suffix}", f"{what} '{image_path}'", RENAME_PHOTO)


def write_stems(list_file: Path, stems: Sequence[str]) -> None:
    """Write ``stems`` one per line to ``list_file``, as :func:`read_stems` reads them: UTF-8,
    and a stem from a file name that is not UTF-8 as that name's own bytes.

    Raises:
        InputError: a stem that :func:`read_stems` would read otherwise (:func:`unlistable`:
            one that starts with ``#``, a comment there, starts or ends with a space, which it
            drops, or holds a line break), before anything is written. Data tools check their
            stems with :func:`check_listable` before their work; this is the last guard.
    """
    unreadable = next((stem for stem in stems if unlistable(stem) is not None), None)
    if unreadable is not None:
        raise InputError(f"cannot list the photo {unreadable!r} in '{list_file}': the stem "
                         f"{unlistable(unreadable)}; rename the photo and its mask")
    Path(list_file).write_text("".join(f"{stem}\n" for stem in stems), encoding="utf-8",
                               errors="surrogateescape")


def listed_stems(list_file: Path) -> list[str]:
    """The stems of a list file given as data (:func:`read_stems`).

    Raises:
        InputError: the list names no stem (it is empty or blank).
    """
    stems = read_stems(list_file)
    if not stems:
        raise InputError(f"list file '{list_file}' lists no stems; put one image stem per line")
    return stems


def _warn_once(key: tuple) -> bool:
    """Whether the warning ``key`` names is new (and note it): train resolves a folder once for
    training and again for validation, and one warning says it."""
    if key in _WARNED_UNMATCHED:
        return False
    _WARNED_UNMATCHED.add(key)
    return True


def _first_few(stems: Sequence[str]) -> str:
    return ", ".join(stems[:5]) + (", ..." if len(stems) > 5 else "")


def _other_type(folder: Path, stems: Sequence[str], suffixes: Sequence[str]) -> Optional[Path]:
    """The first file in ``folder`` named as one of ``stems`` whose type is none of
    ``suffixes`` (a mask saved as ``a.jpg``, a photo as ``a.tif``), or None."""
    wanted = set(stems)
    found = sorted(path for path in folder.iterdir()
                   if path.stem in wanted and path.suffix.lower() not in suffixes
                   and not path.name.startswith(".") and path.is_file())
    return found[0] if found else None


def _warn_unmatched(images_dir: Path, unmatched: Sequence[str], masks_dir: Path) -> None:
    """Warn, once per folder, that the images ``unmatched`` have no mask and are left out,
    naming a mask among them saved as another type than PNG."""
    if not _warn_once((images_dir.resolve(), tuple(unmatched))):
        return
    one = len(unmatched) == 1
    other = _other_type(masks_dir, unmatched, (".png",))
    why = (f" ('{other}' is a {other.suffix} file; masks are read as PNG only: save it as "
           f"{other.stem}.png)" if other else "")
    log.warning("%s in '%s' %s no mask in masks/ and %s left out (%s)%s; add "
                "masks/<stem>.png for each, or list the stems to use in a list file",
                counted(len(unmatched), "image"), images_dir, "has" if one else "have",
                "is" if one else "are", _first_few(unmatched), why)


def _warn_imageless(masks_dir: Path, imageless: Sequence[str], images_dir: Path) -> None:
    """Warn, once per folder, that the masks of ``imageless`` have no image and are left out,
    naming a photo among them of a type that is not read (a .tif, a .heic)."""
    if not _warn_once((masks_dir.resolve(), tuple(imageless))):
        return
    one = len(imageless) == 1
    other = _other_type(images_dir, imageless, IMAGE_SUFFIXES)
    why = (f" ('{other}' is a {other.suffix} file, which is not read: convert it to JPEG or "
           "PNG)" if other else "")
    log.warning("%s in '%s' %s no image in images/ and %s left out (%s)%s; add "
                "images/<stem>.jpg or .png for each, or remove the mask",
                counted(len(imageless), "mask"), masks_dir, "has" if one else "have",
                "is" if one else "are", _first_few(imageless), why)


def _lacks(stem: str, images: dict, masks: dict) -> str:
    """What a listed ``stem`` lacks ("no image", "no mask" or both), for its refusal."""
    return " and ".join(f"no {what}" for what, found in (("image", images), ("mask", masks))
                        if stem not in found)


def find_pairs(data_dir: Path, stems: Optional[Sequence[str]] = None) -> list[tuple[str, str]]:
    """List (image path, mask path) pairs in a data folder.

    Args:
        data_dir: a folder with ``images/`` and ``masks/``.
        stems: only these stems (in this order); None means every image that has a mask, with
            one warning naming the first few images that have none.

    Raises:
        InputError: the folder layout is wrong, or a listed stem has no image or mask.
    """
    images_dir, masks_dir = data_dir / "images", data_dir / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        name, parent = data_dir.resolve().name, data_dir.resolve().parent
        if name in ("images", "masks") and (parent / "images").is_dir() and (
                parent / "masks").is_dir():  # the data folder's own images/ given
            shown = data_dir.parent if data_dir.name == name else parent  # '.' named by path
            raise InputError(f"data folder '{data_dir}' is the {name}/ folder of a data folder; "
                             f"pass the folder that holds images/ and masks/, '{shown}'")
        raise InputError(
            f"data folder '{data_dir}' must contain images/ and masks/; "
            "see the README's 'Train your own' section for the layout"
        )
    images, twins = _files_by_stem(images_dir, IMAGE_SUFFIXES)
    masks, mask_twins = _files_by_stem(masks_dir, (".png",))
    if stems is None:
        stems = sorted(set(images) & set(masks))
        unmatched = sorted(set(images) - set(masks))
        if unmatched:
            _warn_unmatched(images_dir, unmatched, masks_dir)
        imageless = sorted(set(masks) - set(images))
        if imageless:
            _warn_imageless(masks_dir, imageless, images_dir)
    missing = [s for s in stems if s not in images or s not in masks]
    if missing:
        raise InputError(
            f"{counted(len(missing), 'listed stem')} in '{data_dir}' "
            f"{'has' if len(missing) == 1 else 'have'} no image or mask (first: '{missing[0]}', "
            f"which has {_lacks(missing[0], images, masks)}); "
            "fix the list file or add the files"
        )
    if not stems:
        raise InputError(f"data folder '{data_dir}' has no image with a matching mask")
    for found in (twins, mask_twins):
        shared = next((stem for stem in stems if stem in found), None)
        if shared is not None:  # which one pairs with the mask would be the file system's whim
            names = " and ".join(f"'{path.name}'" for path in sorted(found[shared]))
            raise InputError(f"'{found[shared][0].parent}' holds {names}, two files of the stem "
                             f"'{shared}', and a stem names one pair; remove or rename one")
    return [(str(images[s]), str(masks[s])) for s in stems]


def _files_by_stem(folder: Path, suffixes: Sequence[str]
                   ) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """The files in ``folder`` named with one of ``suffixes`` (any case), by stem, and the
    stems that name more than one of them, with those files. Hidden files (macOS's '._x.jpg'
    resource forks, which a folder copied from a Mac onto another disk holds beside every
    photo) and folders are left out, as the app leaves them out of a photo folder."""
    found: dict[str, list[Path]] = {}
    for path in folder.iterdir():
        if path.suffix.lower() in suffixes and not path.name.startswith(".") and path.is_file():
            found.setdefault(path.stem, []).append(path)
    return ({stem: paths[0] for stem, paths in found.items()},
            {stem: paths for stem, paths in found.items() if len(paths) > 1})


def folder_list(folder: Path, role: str) -> Optional[Path]:
    """The list file a data folder gives ``role``: ``train.txt`` for training, ``val.txt`` or
    else ``other.txt`` for validation; None where it has none."""
    candidates = ["train.txt"] if role == "train" else ["val.txt", "other.txt"]
    return next((folder / name for name in candidates if (folder / name).is_file()), None)


def refuse_test_list(spec: str) -> None:
    """Refuse ``spec`` where it names a test list (``test.txt``), which no tool trains,
    validates, distils or mines on, without reading it.

    Raises:
        InputError: it does.
    """
    if Path(spec).name == "test.txt":
        raise InputError(f"'{spec}' is a test list: a test set is never used for training, "
                         "validation, distillation or mining, or its scores would no longer "
                         "be held out; give train.txt, val.txt, other.txt or a list of your own")


def resolve_split(spec: str, role: str) -> list[tuple[str, str]]:
    """Turn a ``--data``/``--val`` entry into pairs.

    ``spec`` is a data folder or a list file inside one (``eg1800/train.txt``). For a folder, the
    training role uses its ``train.txt`` when present and the validation role its ``val.txt`` or
    ``other.txt``; ``test.txt`` is never used for either.

    Raises:
        InputError: ``spec`` is missing, is a ``test.txt`` (named as such, it is refused too), a
            list file used lists no stems or lies outside a data folder, or
            :func:`find_pairs`'s.
    """
    path = Path(spec)
    if path.is_file():
        refuse_test_list(spec)
        stems = listed_stems(path)
        if not (path.parent / "images").is_dir() or not (path.parent / "masks").is_dir():
            # find_pairs would name the folder alone ("data folder '.' must contain ..."),
            # which the user never gave.
            raise InputError(f"list file '{spec}' lies in '{path.parent}', which has no images/ "
                             "and masks/: a list names photos of the data folder it lies in; "
                             "move it into that folder, or pass the folder itself")
        return find_pairs(path.parent, stems)
    if not path.is_dir():
        raise data_not_found(spec)
    listed = folder_list(path, role)
    if listed is not None:
        log.info("%s data: %s", role, listed)
        return find_pairs(path, listed_stems(listed))
    if (path / "test.txt").is_file():
        test = set(read_stems(path / "test.txt"))
        pairs = find_pairs(path)
        return [p for p in pairs if Path(p[0]).stem not in test]
    return find_pairs(path)


def claim_data_folder(folder: Path, option: str, tool: str, create: bool = True) -> None:
    """Check that a data tool may write into ``folder``, and mark it as that tool's output.

    The folder must be new, empty, or marked by an earlier run of the same tool
    (:func:`portrait.sink.paths.is_ours`), whose ``train.txt``, images and masks the new run
    replaces. A folder holding anything else is refused: the run would replace its
    ``train.txt`` and any image or mask of the same name, and leave the rest unlisted. A mark
    that names no tool (a folder marked by hand) counts as the tool's own.
    ``create=False`` only checks.

    Raises:
        InputError: ``folder`` is a file, holds files that no portrait tool wrote, or holds
            another tool's output; the message names ``option``.
    """
    from portrait.sink.paths import OUTPUT_MARKER, is_ours, mark_ours, marked_by

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{option} '{folder}' is a file; a data folder is needed, so choose a "
                         "new folder")
    if not is_ours(folder):
        raise InputError(f"{option} '{folder}' already holds files that no portrait data tool "
                         "wrote, whose train.txt, images or masks this run would replace; choose "
                         "a new or empty folder")
    writer = marked_by(folder)
    if writer is not None and writer != f"python -m {tool}":
        raise InputError(f"{option} '{folder}' holds the output of {writer} (its {OUTPUT_MARKER} "
                         f"says so), whose train.txt this run would replace; python -m {tool} "
                         "writes only into a new or empty folder or its own earlier output, so "
                         "choose another folder")
    if create:
        folder.mkdir(parents=True, exist_ok=True)
        mark_ours(folder, f"A training data folder (train.txt, images, masks) written by "
                          f"python -m {tool}")


@contextmanager
def removed_on_failure(*folders: Optional[Path]) -> Iterator[None]:
    """Undo a data tool's partial output if the block fails: each of ``folders`` (None skipped)
    that does not exist when the block starts is removed with what the block wrote there (and
    any parent folders made for it), and each that is empty is emptied again. A folder that held
    files before (an earlier run's output) is left as it is; the block's error is raised on.
    """
    undo = []  # (folder, whether to remove the folder itself or only what it holds)
    for folder in folders:
        if folder is None:
            continue
        folder = Path(folder)
        if not folder.exists() and not folder.is_symlink():
            folder = folder.resolve()  # where it will be made ("new/../out" is "out")
            while not folder.parent.exists() and folder.parent != folder:
                folder = folder.parent  # the first folder that mkdir(parents=True) will make
            undo.append((folder, True))
        elif folder.is_dir() and not any(folder.iterdir()):
            undo.append((folder, False))
    try:
        yield
    except BaseException:  # Ctrl-C too: a folder without its train.txt is no data folder
        for folder, whole in undo:
            _remove(folder, whole)
        raise


def _remove(folder: Path, whole: bool) -> None:
    """Remove ``folder`` (``whole``) or everything in it, never following links; a file that
    cannot be removed is logged, not raised (the error that led here is the one to report)."""
    if not folder.is_dir():
        return
    entries = [folder] if whole else list(folder.iterdir())
    if not entries:
        return
    for entry in entries:
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as error:
            log.warning("could not remove '%s' after the failed run: %s", entry,
                        error.strerror or error)
            return
    log.info("removed what the failed run wrote in '%s'", folder)

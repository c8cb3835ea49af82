"""Output path checks shared by the file sinks and ``--stats``: create the folder, never
overwrite an input, write whole files atomically."""

from __future__ import annotations

import errno
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

from portrait.errors import DISK_ERRNOS, InputError, OutputFull, OutputGone, OutputRefused
from portrait.words import counted

PathLike = Union[str, Path]


OUTPUT_MARKER = "written-by-portrait.txt"
"""The file that marks a folder as portrait's output (numbered frames, a training data folder),
which a later run may replace; a folder without it is the user's, and its files are never
replaced by numbered or listed outputs."""


def is_ours(folder: PathLike, writer: Optional[str] = None) -> bool:
    """Whether an output may replace files in ``folder``: it is new, empty, or marked
    (:data:`OUTPUT_MARKER`) by an earlier run; with ``writer`` (a command, as
    :func:`marked_by` gives it), by a run of that command or a mark that names none. Anything
    in another folder is the user's."""
    folder = Path(folder)
    if not folder.is_dir():
        return True
    if (folder / OUTPUT_MARKER).is_file():
        return writer is None or marked_by(folder) in (None, writer)
    return not any(folder.iterdir())


def marked_by(folder: PathLike) -> Optional[str]:
    """The command whose output ``folder``'s mark (:data:`OUTPUT_MARKER`) says it holds
    ("python -m portrait.training.distill", "python app.py --out"), or None where there is no
    mark or it names none."""
    try:
        text = (Path(folder) / OUTPUT_MARKER).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = re.search(r"written by (python (?:-m [\w.]*\w|app\.py(?: --[\w-]+)*))", text,
                      re.IGNORECASE)
    return found.group(1) if found else None


def mark_ours(folder: PathLike, what: str) -> bool:
    """Mark ``folder`` (which exists) as holding ``what``, written by this project's tools, so
    that a later run may replace them (:func:`is_ours`).

    Returns:
        Whether the mark is new (an earlier run's was not there), for :func:`remove_unwritten`.
    """
    mark = Path(folder) / OUTPUT_MARKER
    new = not mark.is_file()
    write_atomic(mark, f"{what} by portrait. A later run into this folder replaces them.\n"
                 .encode(), "the output mark")
    return new


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
    # A path through a folder that does not exist yet (``new/../photo.png``) cannot be looked up
    # as written, but names the file its normalised form names once the folder is created.
    for candidate in (path, os.path.normpath(path)):
        try:
            stat = os.stat(candidate)
        except OSError:
            continue
        return (stat.st_dev, stat.st_ino) in protected_ids
    return False  # doesn't exist yet, so it is no input


def names_folder(path: PathLike) -> bool:
    """Whether ``path`` as typed ends with a path separator (``out/``): a folder, whatever its name."""
    text = os.fspath(path)
    return text.endswith(os.sep) or (os.altsep is not None and text.endswith(os.altsep))


def same_place(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name the same file: the same file when both exist, else the same
    normalised absolute path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def lies_in(path: PathLike, folder: PathLike) -> bool:
    """Whether ``path`` is ``folder`` or anywhere inside it, links resolved."""
    where, root = Path(path).resolve(), Path(folder).resolve()
    return where == root or root in where.parents


def _prepare_folder(folder: Path, what: str, option: str = "--out", *,
                    create: bool = True) -> list[Path]:
    """Create ``folder`` (and parents) and check it is writable; all or nothing: where it
    fails, the folders it made are removed again. Without ``create``, a folder that is not
    there is refused (one made earlier, since removed: not made again).

    Returns:
        The folders it made, the outermost first (none where ``folder`` was there), for
        :func:`remove_if_empty` where nothing comes to be written into them.

    Raises:
        OutputRefused: the folder cannot be made or takes no file (:class:`OutputFull` where
            its disk is full, over quota or read-only): every file into it would fail alike.
    """
    _refuse_file(folder, what, option)
    made: list[Path] = []
    if not create:
        if not os.path.lexists(folder):
            raise OutputRefused(f"cannot write {what}: folder '{folder}' is not there; choose "
                                f"another {option}")
    else:
        # Each folder on the way made by a mkdir of its own, so that ``made`` is what this call
        # made and nothing else: a folder reached through a ".." of one made here ("new/../mine")
        # was there before whatever its path says, and another program's made meanwhile is theirs.
        try:
            for path in (*reversed(folder.parents), folder):
                if path.name in ("", ".", ".."):
                    continue
                try:
                    os.mkdir(path)
                except FileExistsError:
                    continue  # there already (or a file in the way, which the next mkdir names)
                made.append(path)
            if not folder.is_dir():  # the last was there already, and is no folder
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(folder))
        except OSError as error:
            remove_if_empty(made)  # those above it that it made
            refusal = OutputFull if error.errno in DISK_ERRNOS else OutputRefused
            raise refusal(f"cannot write {what}: cannot create folder '{folder}' "
                          f"({why_not_writable(error)}); choose another {option}") from None
    try:
        _probe_folder(folder, what, option)
    except InputError:
        remove_if_empty(made)
        raise
    return made


def folder_identity(folder: PathLike) -> set[tuple[int, int]]:
    """``folder``'s identity (device, inode) as made or found for an output's first file, for
    :func:`refuse_if_gone` before each later one; empty where it is not there."""
    return _file_ids([folder])


def refuse_if_gone(folder: Path, identity: set[tuple[int, int]], noun: str, written: int,
                   run: str) -> None:
    """OutputGone where ``folder``, whose :func:`folder_identity` was ``identity``, is no longer
    there (removed, moved) or is another folder now: the ``written`` files (``noun``: "image",
    "frame") this ``run`` ("batch", "run") wrote went with it, and making it again would leave
    the rest in a folder without its mark (:data:`OUTPUT_MARKER`)."""
    if folder_identity(folder) == identity:
        return
    how = "removed or moved" if not os.path.lexists(folder) else "replaced by another"
    again = "run it again" if run == "run" else f"run the {run} again"
    raise OutputGone(f"cannot write {noun}s to '{folder}': the folder was {how} during the "
                     f"{run}, with {counted(written, noun)} this {run} wrote into it; {again} and "
                     "leave the folder in place until it ends")


def remove_if_empty(folders: Sequence[Path]) -> None:
    """Remove each of ``folders`` (made by :func:`_prepare_folder`, the outermost first) that is
    empty, the innermost first: a folder made for files of which none was written is not left
    behind. One that holds anything (put there by someone else meanwhile) is kept."""
    for folder in reversed(folders):
        try:
            os.rmdir(folder)
        except OSError:  # not empty, or gone
            pass


def remove_unwritten(folder: Path, made: Sequence[Path], *, marked: bool) -> None:
    """Undo what an output of which nothing was written did to ``folder``: remove the mark
    (:data:`OUTPUT_MARKER`) where it wrote it (``marked``; an earlier run's mark stays), then
    the folders it made (:func:`remove_if_empty`). A folder that was there keeps as it was."""
    if marked:
        try:
            (folder / OUTPUT_MARKER).unlink(missing_ok=True)
        except OSError:  # a disk gone read-only: the run's own error stands
            pass
    remove_if_empty(made)


def check_folder(folder: Path, what: str, option: str = "--out") -> None:
    """Check, creating nothing, that :func:`_prepare_folder` would succeed: ``folder`` is
    writable, or the nearest folder above it that is there takes new folders and the names
    to be made are short enough. For the checks made before a run loads its model, so that a
    run that fails later (a camera that won't open, a model that won't load) leaves no folder.

    Raises:
        InputError: as :func:`_prepare_folder` words it (a file in the way, permission denied,
            a read-only file system, a folder that takes no files, a name too long).
    """
    _refuse_file(folder, what, option)
    if folder.is_dir():
        _probe_folder(folder, what, option)
        return
    parent = nearest_existing(folder)
    try:
        if not parent.is_dir():  # a file where a folder would be made
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), os.fspath(folder))
        _check_name_lengths(parent, folder.relative_to(parent).parts)
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".portrait-", suffix=".tmp"))
    except OSError as error:
        raise InputError(f"cannot write {what}: cannot create folder '{folder}' "
                         f"({why_not_writable(error)}); choose another {option}") from None


def nearest_existing(path: Path) -> Path:
    """``path`` or the nearest of its parents that is there (as a link too), ``.`` at worst."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(".")


def _check_name_lengths(parent: Path, names: Iterable[str]) -> None:
    """Raise the OSError that making folders named ``names`` under ``parent`` would."""
    try:
        longest = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = NAME_MAX
    for name in names:
        if len(os.fsencode(name)) > longest:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), name)


def _refuse_file(folder: Path, what: str, option: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise OutputRefused(f"cannot write {what}: '{folder}' is a file, not a folder; "
                            f"choose another {option}")


def _probe_folder(folder: Path, what: str, option: str) -> None:
    """OutputRefused unless a file can be made in ``folder`` (OutputFull where its disk takes
    no file at all: read-only, over quota), so a batch stops at it rather than trying each
    photo left."""
    # Made and removed, not asked of os.access: that says yes to root for any folder (/proc
    # too), where a run would fail only when it writes, after its work.
    try:
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".portrait-", suffix=".tmp")
    except OSError as error:
        refusal = OutputFull if error.errno in DISK_ERRNOS else OutputRefused
        raise refusal(f"cannot write {what}: folder '{folder}' is not writable "
                      f"({why_not_writable(error)}); choose another {option}") from None
    probe.close()


def why_not_writable(error: OSError) -> str:
    """Why a file or folder could not be made, in words: the system's, except where they
    mislead. A folder that is there but takes no files (Linux's /proc) answers "No such file
    or directory", of a folder the user can see."""
    if error.errno == errno.ENOENT and error.filename is not None \
            and Path(os.path.dirname(os.fspath(error.filename)) or ".").is_dir():
        return "it takes no files: a folder of the system, not of the disk"
    return error.strerror or str(error)


def _refuse_input(path: Path, protected_ids: set[tuple[int, int]], option: str = "--out") -> None:
    if _is_protected(path, protected_ids):
        raise InputError(f"refusing to overwrite the input '{path}' with the output; "
                         f"choose a different {option}")


def check_report_file(path: PathLike, option: str, suffix: str, *, protected: Iterable[PathLike] = (),
                      outputs: Iterable[PathLike] = ()) -> Path:
    """Check, before a run starts, a file that is written when it ends (``--stats``).

    Refuses a folder, an input, the run's own output, and an existing file of another type than
    ``suffix`` (a report never replaces a photo, a video or a model), and a folder that could
    not be made. Creates nothing (:func:`check_folder`): the run may yet fail (a model that
    won't load), and :func:`write_report` makes the folder when it writes.

    Raises:
        InputError: any of those, or a folder that cannot be created or written.
    """
    if names_folder(path) or Path(path).is_dir():
        raise InputError(f"cannot write {option} '{path}': it is a folder; give a file name, "
                         f"e.g. run{suffix}")
    path = Path(path)
    _refuse_input(path, _file_ids(protected), option)
    for output in outputs:
        if same_place(path, output):
            raise InputError(f"cannot write {option} '{path}': it is the run's --out; "
                             f"choose another {option}")
    if path.exists() and path.suffix.lower() != suffix:
        raise InputError(f"refusing to replace '{path}' with the {option} report: it exists and "
                         f"is not a {suffix} file; choose another {option}")
    check_folder(path.parent, f"{option} '{path}'", option)
    return path


def write_report(path: PathLike, data: bytes, option: str) -> None:
    """Write a report checked by :func:`check_report_file`, making its folder first.

    Raises:
        OutputFull, InputError: as :func:`write_atomic`, or a folder that cannot be made.
    """
    path = Path(path)
    _prepare_folder(path.parent, f"{option} '{path}'", option)
    write_atomic(path, data, option)


NAME_MAX = 255
"""The longest file name, in bytes, that Linux and macOS file systems take."""


def hidden_prefix(path: Path, suffix: str) -> str:
    """``.<name>``, the start of the hidden names ``.<name>.<8 hex digits><suffix>`` beside
    ``path``, with ``name`` shortened where that whole would be longer than :data:`NAME_MAX`: a
    photo named up to the limit has a temporary name too (one of 245 characters stopped a batch
    with 'File name too long')."""
    room = NAME_MAX - len(os.fsencode(f"..{'0' * 8}{suffix}"))
    name = path.name
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return f".{name}"


def temporary_beside(path: Path, suffix: str = ".tmp") -> Path:
    """A hidden name of its own in ``path``'s folder for a file on its way to ``path``
    (``.<name>.<random><suffix>``, see :func:`hidden_prefix`): never a file that is there, an
    input included."""
    return path.with_name(f"{hidden_prefix(path, suffix)}.{secrets.token_hex(4)}{suffix}")


def write_atomic(path: Path, data: bytes, what: str) -> None:
    """Write ``data`` to ``path`` whole or not at all: a temporary file in the same folder, then
    ``os.replace``; the temporary file is removed whatever stops the write (a Ctrl-C too). The
    file gets the usual permissions (0666 less the umask).

    Raises:
        OutputFull: the disk is full, over quota or read-only (a subclass of InputError).
        InputError: the file cannot be written (``what`` names it in the message).
    """
    tmp = os.fspath(temporary_beside(path))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException as error:
        # Also a Ctrl-C or a kill (StopRequested) that lands mid-write leaves no half-written
        # hidden file beside the photos. Removed first thing, by a builtin on a str: a Python
        # call (Path.unlink) would first run the handler of a signal that came in the write,
        # which would raise again before the file is gone. Tried once more where a stop is
        # raised in the call itself before the file is gone (a process with an audit hook runs
        # Python code there, and a pending signal's handler with it); that stop goes on once the
        # file is gone.
        try:
            os.unlink(tmp)
            landed = None
        except OSError:  # not made (the open failed), or gone: nothing to remove
            landed = None
        except BaseException as stop:  # KeyboardInterrupt, StopRequested, before the removal
            landed = stop
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if not isinstance(error, OSError):
            raise
        if landed is not None:  # a stop in the cleanup of a failed write: the stop goes on
            raise landed
        if error.errno in DISK_ERRNOS:  # every later file on that disk fails the same way
            raise OutputFull(f"cannot write {what} '{path}': {error.strerror or error}; free "
                             "space or choose another place") from None
        raise InputError(f"cannot write {what} '{path}': {error.strerror or error}; "
                         "choose another path") from None

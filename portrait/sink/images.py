"""Image file sinks: :func:`write_image` (atomic), single files, batch folders, numbered PNGs."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Optional

import cv2
import numpy as np

from portrait.errors import InputError
from portrait.photo_metadata import NO_METADATA, PhotoMetadata
from portrait.sink.base import Sink, _check_image
from portrait.sink.encode import encode_image
from portrait.sink.paths import (PathLike, _file_ids, _prepare_folder, _refuse_input,
                                 check_folder, folder_identity, is_ours, mark_ours,
                                 refuse_if_gone, remove_if_empty, remove_unwritten, write_atomic)
from portrait.words import counted

log = logging.getLogger(__name__)

IMAGE_WRITE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
NO_ALPHA_EXTENSIONS = (".jpg", ".jpeg", ".bmp")


def write_image(path: PathLike, image: np.ndarray, *, protected: Iterable[PathLike] = (),
                metadata: PhotoMetadata = NO_METADATA, make_folder: bool = True) -> Path:
    """Write one image atomically (a temporary file in the same folder, then ``os.replace``).

    PNG, WebP and TIFF keep a BGRA image's alpha; JPEG and BMP drop it. A grey matte stays grey.
    PNG, JPEG, WebP and TIFF keep ``metadata`` (:func:`~portrait.sink.encode.encode_image`).

    Args:
        path: the output file; its extension picks the format.
        image: BGR, BGRA or grey uint8.
        protected: input files that must never be overwritten.
        metadata: what the output keeps of its photo's metadata (colour profile, date, camera).
        make_folder: make the folder (and those above it) where it is not there; else its
            absence is an error (:class:`~portrait.errors.OutputRefused`).

    Returns:
        ``path`` as a Path.

    Raises:
        InputError: an unsupported extension, an unwritable folder, or ``path`` is an input;
            a write that fails leaves none of the folders it made for ``path``.
        ValueError: an image that isn't uint8 grey/BGR/BGRA.
    """
    path = Path(path)
    _check_image(image)
    ext = _image_extension(path)
    _refuse_input(path, _file_ids(protected))
    if path.is_dir():
        raise InputError(f"cannot write image '{path}': it is a folder; give a file name")
    made = _prepare_folder(path.parent, f"image '{path}'", create=make_folder)
    try:
        if image.ndim == 3 and image.shape[2] == 4 and ext in NO_ALPHA_EXTENSIONS:
            log.warning("'%s': %s keeps no transparency; alpha dropped (use .png)", path, ext)
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        try:
            encoded = encode_image(image, ext, metadata)
        except ValueError as error:
            raise InputError(f"cannot write image '{path}': {error}; use .png") from None
        write_atomic(path, encoded, "image")
    except BaseException:
        remove_if_empty(made)  # folders made for this image alone are not left empty
        raise
    return path


def _image_extension(path: Path) -> str:
    ext = path.suffix.lower()
    types = f"{', '.join(IMAGE_WRITE_EXTENSIONS[:-1])} or {IMAGE_WRITE_EXTENSIONS[-1]}"
    if not ext:  # most likely a folder meant: --out cutouts
        raise InputError(f"cannot write image '{path}': its name has no type; end it with "
                         f"{types}, or with / for a folder")
    if ext not in IMAGE_WRITE_EXTENSIONS:
        raise InputError(f"cannot write image '{path}': unsupported type '{ext}'; expected "
                         f"{types}")
    return ext


class ImageFileSink(Sink):
    """One output image file (each write replaces it); checks the path at construction,
    creating nothing: its folder is made as the image is written, so a run that fails before
    (a model that won't load, Ctrl-C) leaves no folder behind.

    Args:
        path: the output file (``.png`` keeps transparency).
        protected: input files that must never be overwritten, e.g. the ``--image`` file.

    Raises:
        InputError: unsupported extension, unwritable folder, or the path is an input.
    """

    def __init__(self, path: PathLike, *, protected: Iterable[PathLike] = ()) -> None:
        self.path = Path(path)
        self._protected_ids = _file_ids(protected)
        _image_extension(self.path)
        _refuse_input(self.path, self._protected_ids)
        if self.path.is_dir():
            raise InputError(f"cannot write image '{self.path}': it is a folder; "
                             "give a file name")
        check_folder(self.path.parent, f"image '{self.path}'")  # made by write_image
        self.frames_written = 0

    def write(self, image: np.ndarray, name: Optional[str] = None,
              metadata: PhotoMetadata = NO_METADATA) -> None:
        """Write ``image`` to the sink's path (``name`` is ignored: there is one file), with
        what it keeps of its photo's ``metadata``. A file that was there before is replaced,
        with a warning that says so."""
        there_before = self.frames_written == 0 and os.path.lexists(self.path)
        write_image(self.path, image, protected=(), metadata=metadata)  # inputs checked above
        if there_before:
            log.warning("'%s' was there before; replaced with this run's output", self.path)
        self.frames_written += 1


BATCH_WRITER = "python app.py --image --out"
"""The command an image batch's mark names (:func:`~portrait.sink.paths.marked_by`)."""


class ImageFolderSink(Sink):
    """Batch output: ``write(image, name)`` writes ``folder/<name><ext>``.

    Refuses, per image, to overwrite an input file, an output already written in this run (two
    inputs with the same stem, or with stems the folder's disk takes for one name:
    ``IMG_1.jpg`` and ``img_1.png`` on macOS or Windows), or a file that was there before in a
    folder this app did not write (the user's own ``holiday.png``), so a batch can report the
    item and carry on. The folder is marked as this app's output
    (:func:`~portrait.sink.paths.mark_ours`): a later run into it replaces this run's images.
    A folder marked by another command (numbered frames, a data tool) is not the batch's: its
    files are the user's to it, as the frames' mark covers only the frames.
    It is checked at construction, creating nothing, and made (and marked) as the first image
    is written: a run that fails before (a model that won't load, Ctrl-C, no photo that reads)
    leaves no folder behind, and one of which no image was written (a full disk at the first)
    leaves none either: ``close()`` removes the folders it made and the mark it wrote.

    Names are compared as the disk compares them (:class:`WrittenNames`): ``IMG_1`` and
    ``img_1`` collide where the disk ignores case, and are two files where it does not (Linux,
    nothing lost).

    Args:
        folder: created if needed.
        protected: input files that must never be overwritten.
        ext: output extension, ``.png`` by default.

    Raises:
        InputError: the folder can't be created or written (construction); an input, a
            duplicate output name or a file the app did not write (``write``).
        OutputRefused: from ``write``, the folder can't be made or takes no file (made
            read-only since the check; :class:`OutputFull`: its disk is full): no later image
            would be written either; :class:`OutputGone`: the folder was removed, moved or
            replaced after the first image (it is not made again).
    """

    def __init__(self, folder: PathLike, *, protected: Iterable[PathLike] = (),
                 ext: str = ".png") -> None:
        self.folder = Path(folder)
        self.ext = _image_extension(Path("x" + ext))
        self._protected_ids = _file_ids(protected)
        self._written = WrittenNames()
        # Else the files there before are the user's. Only an image batch's mark (or one that
        # names no command) makes them ours: numbered frames written into a folder of the
        # user's mark it, and replace nothing but their own frames.
        self._ours = is_ours(self.folder, writer=BATCH_WRITER)
        check_folder(self.folder, f"images to '{self.folder}'")
        self._prepared = False  # the folder made and marked, at the first image
        self._made: list[Path] = []  # the folders made for it, removed if none is written to
        self._marked = False  # the mark written into it by this run
        self._folder_id: set = set()  # the folder's identity once made (folder_identity)
        self.frames_written = 0
        self.replaced = 0  # images of an earlier run into the folder, replaced by this one's
        self._closed = False

    def write(self, image: np.ndarray, name: Optional[str] = None,
              metadata: PhotoMetadata = NO_METADATA) -> None:
        """Write ``image`` as ``<name><ext>`` (``name`` defaults to the frame number), with what
        it keeps of its photo's ``metadata``."""
        name = name if name is not None else f"{self.frames_written:06d}"
        path = self.folder / f"{name}{self.ext}"
        earlier = self._written.replaced_by(name, path)
        if earlier == name:
            raise InputError(f"output '{path}' was already written for another input named "
                             f"'{name}'; rename one of them")
        if earlier is not None:
            how = ("ignores case" if earlier.casefold() == name.casefold()
                   else "takes them for one name")
            raise InputError(f"output '{path}' is the file already written for another input "
                             f"named '{earlier}': the disk of '{self.folder}' {how}; rename one "
                             "of them")
        _refuse_input(path, self._protected_ids)
        if not self._ours and (path.exists() or path.is_symlink()):
            raise InputError(f"'{path}' was there before and this app did not write it; move it "
                             "or choose a new --out folder")
        if not self._prepared:
            self._made += _prepare_folder(self.folder, f"images to '{self.folder}'")
            if self._ours:
                self._marked = mark_ours(self.folder, f"Images written by {BATCH_WRITER}")
            self._prepared = True
            self._folder_id = folder_identity(self.folder)
        self._refuse_if_gone()
        there_before = os.path.lexists(path)  # an earlier run's image: the folder is ours
        try:
            write_image(path, image, metadata=metadata, make_folder=False)
        except InputError:
            self._refuse_if_gone()  # removed as the photo was written: that, not its words
            raise
        self._written.add(name, path)
        self.frames_written += 1
        self.replaced += there_before
        log.debug("wrote '%s'", path)

    def _refuse_if_gone(self) -> None:
        """OutputGone where the folder made (or found) for the first image is gone or another
        (:func:`~portrait.sink.paths.refuse_if_gone`)."""
        refuse_if_gone(self.folder, self._folder_id, "image", self.frames_written, "batch")

    def close(self) -> None:
        """Say how many images of an earlier run this one replaced; where no image was written,
        remove the mark this run wrote and the folders it made (empty once it is gone); safe
        twice."""
        if self._closed:
            return
        self._closed = True
        if not self.frames_written:
            remove_unwritten(self.folder, self._made, marked=self._marked)
        if self.replaced:
            log.info("replaced %s of an earlier run in '%s'", counted(self.replaced, "image"),
                     self.folder)


def _file_id(path: Path) -> Optional[tuple[int, int]]:
    """(device, inode) of the file ``path`` leads to; ``None`` where the disk gives none (some
    network shares report inode 0) or there is no file."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino) if stat.st_ino else None


class WrittenNames:
    """The output names a batch has written, and which of them a new one would replace.

    The disk is asked, not the names compared: a new name replaces an earlier one when its path
    leads to the file written for that one. On a disk that ignores case (macOS, Windows, a FAT
    or exFAT stick, an ext4 folder with casefolding) ``img_1.png`` leads to the ``IMG_1.png``
    just written, as does any name the disk folds into another (Unicode normalisation on
    macOS); on Linux they are two files and both are kept. Trying a probe name would miss the
    foldings the probe does not use, and always folding case would refuse photos that lose
    nothing. Where the disk gives no file identity, names that differ only in case are taken
    for one, as the disks that do that (Windows shares) ignore case.
    """

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._by_file: dict[tuple[int, int], str] = {}
        self._by_folded: dict[str, str] = {}

    def add(self, name: str, path: Path) -> None:
        """Record ``name``, just written to ``path``."""
        self._names.add(name)
        identity = _file_id(path)
        if identity is not None:
            self._by_file.setdefault(identity, name)
        self._by_folded.setdefault(name.casefold(), name)

    def replaced_by(self, name: str, path: Path) -> Optional[str]:
        """The earlier name whose file writing ``name`` to ``path`` would replace: ``name``
        itself, another name the disk takes for it, or ``None``."""
        if name in self._names:
            return name
        if not os.path.lexists(path):
            return None
        identity = _file_id(path)
        if identity is not None:
            return self._by_file.get(identity)
        return self._by_folded.get(name.casefold())


class PngFolderSink(Sink):
    """Numbered PNG frames: ``folder/000000.png``, ``000001.png``, ...

    The folder is marked as this app's output (:func:`~portrait.sink.paths.mark_ours`). A
    marked folder that holds numbered frames (an earlier run) gets a new sequence: its frames are
    overwritten as this run writes, and those of the earlier run past this run's last frame are
    removed at ``close()``, so the folder never mixes two runs. A run that writes no frame (a
    full disk at the first, a stop before it) leaves an earlier run's frames as they were, and
    neither the mark it wrote nor a folder it made. Numbered frames in a folder without the
    mark are the user's own, and the folder is refused. Nothing else there is touched. Each
    frame is written whole or not at all (:func:`write_atomic`).

    Args:
        folder: the folder; created if needed.
        protected: input files never to overwrite or remove (the source, the backgrounds).

    Raises:
        InputError: the folder can't be created or written, holds numbered frames it did not
            write, or an earlier run's frame there is an input.
    """

    FRAME_GLOB = "[0-9][0-9][0-9][0-9][0-9][0-9].png"

    def __init__(self, folder: PathLike, *, protected: Iterable[PathLike] = ()) -> None:
        self.folder = Path(folder)
        self._made = _prepare_folder(self.folder, f"frames to '{self.folder}'")
        try:
            self._earlier = sorted(path.name for path in self.folder.glob(self.FRAME_GLOB))
            if self._earlier:
                if not is_ours(self.folder):
                    raise InputError(f"cannot write frames to '{self.folder}': it holds "
                                     f"numbered frames ({self._earlier[0]}, ...) that this app "
                                     "did not write; choose a new or empty folder for --out")
                protected_ids = _file_ids(protected)
                for name in self._earlier:  # each is overwritten or removed
                    _refuse_input(self.folder / name, protected_ids)
                log.warning("'%s' already holds %s of an earlier run; this run's frames "
                            "replace them", self.folder,
                            counted(len(self._earlier), "numbered frame"))
            self._marked = mark_ours(self.folder, "Numbered frames written by python app.py "
                                                  "--out")
        except BaseException:  # a full disk that takes the folder but not its mark
            remove_if_empty(self._made)
            raise
        self._folder_id = folder_identity(self.folder)
        self.frames_written = 0
        self._closed = False

    def write(self, image: np.ndarray, pts_s: Optional[float] = None) -> None:
        """Write the next numbered frame (BGRA keeps alpha, grey stays grey).

        Raises:
            OutputGone: the folder was removed, moved or replaced by another since it was
                made (:func:`~portrait.sink.paths.refuse_if_gone`): it is not made again, nor
                the rest of the frames written into the other folder, without their mark.
        """
        _check_image(image)
        path = self.folder / f"{self.frames_written:06d}.png"
        ok, encoded = cv2.imencode(".png", image)
        if not ok:
            raise ValueError(f"PNG encoding failed for a frame of shape {image.shape}")
        self._refuse_if_gone()
        try:
            write_atomic(path, encoded.tobytes(), "frame")
        except InputError:
            self._refuse_if_gone()  # removed as the frame was written: that, not its words
            raise
        self.frames_written += 1
        log.debug("wrote '%s'", path)

    def _refuse_if_gone(self) -> None:
        refuse_if_gone(self.folder, self._folder_id, "frame", self.frames_written, "run")

    def close(self) -> None:
        """Remove the earlier run's frames past this run's last, then log the count; where no
        frame was written (a full disk at the first, a stop before it), leave an earlier run's
        frames as they were and remove the mark this run wrote and the folders it made; safe
        twice. A folder removed, moved or replaced by another meanwhile is left alone: what is
        there now is not this run's to clear."""
        if self._closed:
            return
        self._closed = True
        if folder_identity(self.folder) != self._folder_id:
            return
        if not self.frames_written:  # nothing replaces the earlier run's frames
            remove_unwritten(self.folder, self._made, marked=self._marked)
            return
        stale = [name for name in self._earlier if int(name[:6]) >= self.frames_written]
        for name in stale:
            (self.folder / name).unlink(missing_ok=True)
        if stale:
            log.info("removed %s of the earlier run from '%s'", counted(len(stale), "frame"),
                     self.folder)
        if self.frames_written:
            log.info("wrote %s to '%s'", counted(self.frames_written, "frame"), self.folder)

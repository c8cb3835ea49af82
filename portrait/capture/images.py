"""Image files: :func:`read_image` decodes one with checks, :class:`ImageSource` reads one
file or a folder and carries on past bad files."""

from __future__ import annotations

import io
import logging
import os
import struct
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Union

import cv2
import numpy as np

from portrait.capture.base import Frame, Source, opencv_can_open, quiet_opencv, to_bgr_uint8
from portrait.errors import InputError
from portrait.native_log import filtered_stderr
from portrait.photo_metadata import NO_METADATA, PhotoMetadata, photo_metadata
from portrait.words import counted

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif",
                    ".avif", ".jp2", ".pbm", ".pgm", ".ppm", ".pnm")
# Named like a video: a photo path with one of these is most likely a video given to --image.
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
# Photos that OpenCV does not decode (an iPhone's default format among them): in a folder they
# are reported as photos not processed, not left out as other files are.
UNDECODED_PHOTO_FORMATS = {".heic": "HEIC", ".heif": "HEIF", ".hif": "HEIF", ".jxl": "JPEG XL"}
# Larger images are refused before decoding: 64 MP covers 48/50 MP phone photos and 8K frames,
# while a 12000x9000 photo (108 MP) would need several GB through the full-resolution stages.
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000


def _read_header(handle: BinaryIO,
                 with_metadata: bool) -> Optional[tuple[tuple[int, int], PhotoMetadata]]:
    """(width, height) and, ``with_metadata``, what an output keeps of the file's metadata
    (:func:`photo_metadata`), from the header of the open file, without decoding or reading the
    rest; ``None`` if PIL can't tell."""
    try:
        from PIL import Image
    except ImportError:  # Pillow is optional: cv2 then decodes first and checks after
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning: we apply our own limit
        try:
            image = Image.open(handle)  # a file PIL did not open stays open
        except Image.DecompressionBombError:
            # Over twice PIL's limit (~179 MP): report at least that many pixels.
            limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) + 1
            return (limit, 1), NO_METADATA
        except Exception:  # noqa: BLE001: any failure here only means "decode and see"
            return None
        with image:  # outside the try: a failure of our own is no "decode and see"
            return image.size, photo_metadata(image) if with_metadata else NO_METADATA


def read_image(path: Union[str, Path], max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
               what: str = "image", keep_alpha: bool = False) -> np.ndarray:
    """Read one image file as BGR uint8 ``(H, W, 3)``.

    EXIF orientation is applied; greyscale, RGBA (alpha dropped unless ``keep_alpha``),
    palette, 16-bit (scaled to 8 bits), float (a 32-bit float TIFF, a PFM: 0..1 scaled to 8
    bits, see :func:`_deep_to_uint8`) and CMYK images all come back as BGR uint8. Images over
    ``max_pixels`` are refused from their header, before decoding.

    Args:
        path: the image file.
        max_pixels: the largest width x height accepted.
        what: what the file is, in messages ("image", "background image").
        keep_alpha: an image with transparency (an alpha channel with a value under 255, or a
            transparent palette colour) comes back as BGRA uint8 ``(H, W, 4)``, straight
            (not premultiplied) alpha, oriented as its colours are; an opaque one as BGR.

    Returns:
        The image.

    Raises:
        InputError: missing, empty, unreadable, truncated, corrupt, not an image, too large, or
            of 32-bit integer samples (the message says so).
    """
    return _read(Path(path), max_pixels, what, keep_alpha, with_metadata=False)[0]


def read_photo(path: Union[str, Path], max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
               what: str = "image",
               keep_alpha: bool = False) -> tuple[np.ndarray, PhotoMetadata]:
    """:func:`read_image` (BGR uint8; BGRA where ``keep_alpha`` and the photo has
    transparency), and what the photo's output keeps of its metadata: its colour profile,
    capture date and camera (:func:`~portrait.photo_metadata.photo_metadata`; nothing where
    Pillow, which reads it, is not installed).

    Raises:
        InputError: as :func:`read_image`.
    """
    return _read(Path(path), max_pixels, what, keep_alpha=keep_alpha, with_metadata=True)


def _read(path: Path, max_pixels: int, what: str, keep_alpha: bool,
          with_metadata: bool) -> tuple[np.ndarray, PhotoMetadata]:
    if not path.exists():
        raise not_found(path, what)
    if not path.is_file():
        raise InputError(f"{what} '{path}' is not a file; give an image file or use a folder")
    try:
        with path.open("rb") as handle:
            # A photo over the limit is refused from its header before the whole file is read
            # (a 2.7 GB scan took 2.7 GB of memory to be refused).
            header = _read_header(handle, with_metadata)
            if header is not None:
                _check_pixels(path, header[0], max_pixels, what)
            handle.seek(0)
            data = handle.read()
    except PermissionError:
        raise InputError(
            f"cannot read {what} '{path}': permission denied; check its permissions"
        ) from None
    except OSError as error:
        raise InputError(
            f"cannot read {what} '{path}': {error.strerror or error}; check the file"
        ) from None
    if not data:
        raise InputError(f"cannot read {what} '{path}': the file is empty (0 bytes); check the file")

    # libpng prints its own complaint about a truncated PNG; spot the missing end chunk first.
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data.rfind(b"IEND") == -1:
        raise InputError(f"cannot read {what} '{path}': the PNG file is truncated; check the file")
    # libpng and libjpeg write their complaints straight to the terminal; they come back as
    # the error below, or as one warning where the photo still decoded.
    complaints: list[str] = []
    with quiet_opencv(), filtered_stderr(lambda line: complaints.append(line.strip()) or True):
        image = _decode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None or _is_pfm(data):
            # Float samples (a 32-bit float TIFF from an HDR, scientific or editing tool; a PFM)
            # and 32-bit integer ones: IMREAD_COLOR refuses them, or casts a PFM's 0..1 to 0
            # and 1 (black). Decoded at their own depth, they are scaled below.
            deep = _decode_at_own_depth(np.frombuffer(data, np.uint8))
            image = deep if deep is not None else image
    if image is None:
        if path.suffix.lower() in UNDECODED_PHOTO_FORMATS:
            raise InputError(f"cannot read {what} '{path}': {UNDECODED_PHOTO_FORMATS[path.suffix.lower()]} "
                             "photos cannot be decoded here; convert it to JPEG or PNG first")
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            raise InputError(f"cannot read {what} '{path}': it is named like a video; a video "
                             "goes to --source")
        raise InputError(
            f"cannot read {what} '{path}': not a supported image, or the file is truncated or "
            "corrupt; check the file"
        )
    _check_pixels(path, (image.shape[1], image.shape[0]), max_pixels, what)
    complaints = [line for line in complaints if line]
    if complaints:
        log.warning("%s '%s' may be damaged: its decoder reported \"%s\"", what, path,
                    complaints[0])
    if image.dtype not in (np.uint8, np.uint16):
        # Float samples only: 32-bit integer ones are refused below, whatever their alpha.
        if keep_alpha and image.dtype.kind == "f" and _alpha_is_associated(image, data):
            image = _unpremultiply(image)  # before 8 bits: a faint pixel keeps its colour
        image = _deep_to_uint8(image, _kind(data, path), path, what)
    if keep_alpha and image.ndim == 3 and image.shape[2] == 4:
        # A float RGBA image (decoded at its own depth above; Pillow cannot open it): its
        # alpha is the one OpenCV decoded with its colours, straight as OpenCV writes it (or
        # made straight above, where the TIFF says its colours are premultiplied).
        return (image if image[:, :, 3].min() < 255 else to_bgr_uint8(image),
                header[1] if header is not None else NO_METADATA)
    image = to_bgr_uint8(image)
    if keep_alpha:
        image = _with_alpha(data, image, path, what)
    return image, header[1] if header is not None else NO_METADATA


def _decode(buffer: np.ndarray, flags: int) -> Optional[np.ndarray]:
    """OpenCV's decoding of ``buffer``, or ``None`` where it fails or gives no pixels."""
    try:
        image = cv2.imdecode(buffer, flags)
    except cv2.error:
        return None
    return image if image is not None and image.size else None


def _decode_at_own_depth(buffer: np.ndarray) -> Optional[np.ndarray]:
    """An image of float or 32-bit integer samples at their own depth, EXIF orientation applied
    where OpenCV can (an RGBA float TIFF it decodes only unchanged); ``None`` for other images."""
    for flags in (cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR, cv2.IMREAD_UNCHANGED):
        image = _decode(buffer, flags)
        if image is not None and (image.dtype.kind == "f" or image.dtype.itemsize >= 4):
            return image
    return None


def _is_pfm(data: bytes) -> bool:
    """Whether ``data`` is a Portable Float Map ("PF" colour, "Pf" grey), 32-bit floats."""
    return data[:2] in (b"PF", b"Pf") and data[2:3].isspace()


def _is_tiff(data: bytes) -> bool:
    """Whether ``data`` is a TIFF (or a BigTIFF), either byte order."""
    return data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


def _alpha_is_associated(image: np.ndarray, data: bytes) -> bool:
    """Whether ``image``, decoded from ``data``, is a TIFF's colours and alpha whose colours
    are premultiplied by the alpha: its first image's ExtraSamples tag says the fourth sample
    is associated alpha (1; unassociated, straight alpha is 2). OpenCV decodes a float TIFF's
    samples as they are stored, whichever it says."""
    if image.ndim != 3 or image.shape[2] != 4 or not _is_tiff(data):
        return False
    return _tiff_extra_samples(data)[:1] == (1,)


def _tiff_extra_samples(data: bytes) -> tuple[int, ...]:
    """The ExtraSamples tag (338) of the first image of the TIFF ``data``, read by Pillow's
    TIFF tag reader (Pillow cannot decode a float RGBA TIFF, but reads its tags); empty where
    there is none, or where the directory cannot be read (the alpha is then taken as
    straight, as OpenCV decodes it)."""
    from PIL import TiffImagePlugin

    header = data[:16] if data[2:4] in (b"+\0", b"\0+") else data[:8]  # BigTIFF's is longer
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data": OpenCV decoded the image
            directory = TiffImagePlugin.ImageFileDirectory_v2(ifh=header)
            stream = io.BytesIO(data)
            stream.seek(directory.next)
            directory.load(stream)
            extra = directory.get(TiffImagePlugin.EXTRASAMPLES, ())
    except (SyntaxError, OSError, ValueError, struct.error):  # Pillow's for a bad directory
        return ()
    return tuple(extra) if isinstance(extra, tuple) else (extra,)


def _unpremultiply(image_bgra: np.ndarray, band_rows: int = 256) -> np.ndarray:
    """Divide the colours of float BGRA ``image_bgra`` by its alpha where the alpha is over
    0, in place, a band of rows at a time (a 64 MP image needs no second copy); returns it.
    Where the alpha is 0 (or NaN) the colour is left: nothing of it shows.

    Each band is multiplied by (1/a, 1/a, 1/a, 1) in one OpenCV call: 80 ms for a 12 MP
    image here, where NumPy's division of the colour channels in place took 640 ms."""
    for top in range(0, image_bgra.shape[0], band_rows):
        band = image_bgra[top:top + band_rows]
        alpha = band[:, :, 3]
        inverse = np.ones_like(alpha)
        np.divide(1, alpha, out=inverse, where=alpha > 0)
        cv2.multiply(band, cv2.merge([inverse, inverse, inverse, np.ones_like(alpha)]),
                     dst=band)
    return image_bgra


def _kind(data: bytes, path: Path) -> str:
    """What the file is, for messages: "TIFF", "PFM", else its extension's name."""
    if _is_tiff(data):
        return "TIFF"
    if _is_pfm(data):
        return "PFM"
    return f"{path.suffix[1:].upper()} image" if path.suffix else "image"


def _deep_to_uint8(image: np.ndarray, kind: str, path: Path, what: str) -> np.ndarray:
    """A float image's 0..1 values scaled to 0..255, as OpenCV reads a Radiance HDR and most
    tools take a float image; the rest clipped: under 0 to black, over 1 to white (with a
    warning that says how much), NaN to black.

    Raises:
        InputError: integer samples other than 8- and 16-bit ones, or a channel count that is
            not grey, RGB or RGBA.
    """
    bits = image.dtype.itemsize * 8
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels not in (1, 3, 4):
        raise InputError(f"cannot read {what} '{path}': it is a {kind} of {channels} channels "
                         "per pixel, not grey, RGB or RGBA; save it as an RGB image")
    if image.dtype.kind != "f":
        raise InputError(f"cannot read {what} '{path}': it is a {bits}-bit integer {kind}, "
                         "which is not read here; save it as an 8- or 16-bit image")
    values = np.nan_to_num(image.astype(np.float32, copy=False), nan=0.0, posinf=np.inf,
                           neginf=0.0)
    over = np.count_nonzero(values > 1.0)
    if over:
        log.warning("%s '%s' is a %d-bit float %s with values up to %g: float images are read "
                    "as 0..1, and %.1f %% of its values are over 1 and show as white; save it "
                    "as an 8- or 16-bit image for its own range", what, path, bits, kind,
                    float(values.max()), 100.0 * over / values.size)
    else:
        log.info("%s '%s' is a %d-bit float %s: its 0..1 values are scaled to 8 bits", what,
                 path, bits, kind)
    return np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _with_alpha(data: bytes, image_bgr: np.ndarray, path: Path, what: str) -> np.ndarray:
    """The image with its transparency: BGRA uint8 (straight alpha) as Pillow reads it, where
    it has an alpha channel (or a transparent palette colour) with a value under 255; else
    ``image_bgr``, as OpenCV decoded it.

    Pillow tells from the header whether there is an alpha (an opaque image costs no second
    decode), applies the EXIF orientation (a TIFF's own tag too) as OpenCV does to the colours,
    which OpenCV's ``IMREAD_UNCHANGED`` does not, and gives straight colours where OpenCV gives
    a TIFF's premultiplied (an 8- or 16-bit TIFF's, whichever alpha its ExtraSamples tag
    marks: Pillow divides associated alpha's colours by it, at 8 bits). Where Pillow cannot
    read the file, the image is opaque, as before transparency was read."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DecompressionBombWarning: read_image's own limit holds
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.mode not in ("RGBA", "LA", "PA", "RGBa", "La") \
                        and "transparency" not in image.info:
                    return image_bgr
                rgba = np.asarray(ImageOps.exif_transpose(image).convert("RGBA"))
        except UnidentifiedImageError:
            # A format OpenCV reads and Pillow does not (a Radiance HDR, a PFM, a PAM): only
            # where OpenCV finds an alpha channel in it is there transparency to lose.
            unchanged = _decode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            if unchanged is not None and unchanged.ndim == 3 and unchanged.shape[2] == 4:
                log.warning("%s '%s': its transparency could not be read (Pillow, which reads "
                            "transparency, does not read this format); shown opaque", what, path)
            return image_bgr
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
            # Pillow's errors for a file it cannot read: the colours decoded, the alpha is lost.
            log.warning("%s '%s': its transparency could not be read (%s); shown opaque",
                        what, path, error)
            return image_bgr
    if rgba.shape[:2] != image_bgr.shape[:2]:  # Pillow and OpenCV disagree on its orientation
        log.warning("%s '%s': its transparency is %dx%d, its colours %dx%d; shown opaque",
                    what, path, rgba.shape[1], rgba.shape[0], image_bgr.shape[1],
                    image_bgr.shape[0])
        return image_bgr
    if rgba[:, :, 3].min() == 255:
        return image_bgr
    return cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)


def not_found(path: Path, what: str = "image") -> InputError:
    """The error for a path that is not there: a missing file, or a link to one."""
    if path.is_symlink():
        return InputError(f"{what} '{path}' is a link to '{os.readlink(path)}', which is not "
                          "there; check the link (a drive not mounted?)")
    return InputError(f"{what} '{path}' not found; check the path")


def _check_pixels(path: Path, size: tuple[int, int], max_pixels: int,
                  what: str = "image") -> None:
    width, height = size
    if width * height > max_pixels:
        raise InputError(
            f"{what} '{path}' is {width}x{height} ({width * height:,} pixels), over the limit "
            f"of {max_pixels:,} ({max_pixels / 1e6:g} MP); downscale it first"
        )


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name: those named like an image
    (:data:`IMAGE_EXTENSIONS`) and any other that OpenCV recognises as one from its first bytes.
    Photos named in a format OpenCV does not decode (:data:`UNDECODED_PHOTO_FORMATS`) and links
    named like a photo whose target is missing are listed too, so that reading them reports
    them instead of leaving them out unsaid. Hidden files are skipped; the other files, and
    the subfolders (not searched), are each counted in one log line."""
    images, others, subfolders = [], [], []
    for entry in folder.iterdir():
        if entry.name.startswith("."):  # e.g. macOS "._x.jpg" forks
            continue
        named_a_photo = entry.suffix.lower() in (*IMAGE_EXTENSIONS, *UNDECODED_PHOTO_FORMATS)
        if not entry.is_file():
            if named_a_photo and entry.is_symlink() and not entry.exists():  # a dangling link
                images.append(entry)
            elif entry.is_dir():
                subfolders.append(entry.name)
            continue
        if named_a_photo or is_image_file(entry):
            images.append(entry)
        else:
            others.append(entry.name)
    if others and images:
        log.info("'%s': %s that %s skipped (first: %s)", folder, counted(len(others), "file"),
                 "is not an image" if len(others) == 1 else "are not images", min(others))
    if subfolders and images:  # photos sorted into folders by year would be missed unsaid
        log.info("'%s': %s not searched (first: %s); give a subfolder's path to process its "
                 "photos", folder, counted(len(subfolders), "subfolder"), min(subfolders))
    return sorted(images)


def is_image_file(path: Union[str, Path]) -> bool:
    """Whether ``path`` is named like an image (:data:`IMAGE_EXTENSIONS`) or OpenCV recognises
    it as one from its first bytes."""
    if Path(path).suffix.lower() in IMAGE_EXTENSIONS:
        return True
    if not opencv_can_open(path):  # a file of another name, counted with the other files
        return False
    with quiet_opencv():
        try:
            return cv2.haveImageReader(str(path))
        except cv2.error:
            return False


@dataclass(frozen=True)
class ImageItem:
    """One file of an :class:`ImageSource`: its frame, or why it couldn't be read."""

    path: Path
    frame: Optional[Frame]
    error: Optional[InputError]


class ImageSource(Source):
    """An image file, or every image in a folder (sorted; extensions in ``IMAGE_EXTENSIONS``).

    Iterating yields a :class:`Frame` per readable image (``name`` is the file stem,
    ``metadata`` what its output keeps of the file's metadata, ``alpha`` its own transparency
    where it has some). A bad file
    of a single-file source raises its :class:`InputError`; in a folder it is logged, recorded
    in ``failures`` and skipped, so a batch carries on. :meth:`items` gives every file with its
    frame or error, for callers that report as they go.

    Args:
        path: an image file or a folder.
        max_pixels: larger images are refused (see :func:`read_image`).

    Raises:
        InputError: the path doesn't exist, or the folder has no images.
    """

    def __init__(self, path: Union[str, Path], max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> None:
        self.path = Path(path)
        self.max_pixels = max_pixels
        self.failures: list[tuple[Path, InputError]] = []
        if not self.path.exists():
            raise not_found(self.path)
        self.is_folder = self.path.is_dir()
        if self.is_folder:
            self.paths = list_images(self.path)
            if not self.paths:
                raise InputError(
                    f"folder '{self.path}' has no images ({', '.join(IMAGE_EXTENSIONS)}; "
                    "subfolders are not searched); check the path or give a subfolder"
                )
            _warn_duplicate_stems(self.paths)
        else:
            self.paths = [self.path]

    def __len__(self) -> int:
        return len(self.paths)

    def items(self) -> Iterator[ImageItem]:
        """Every file in order, with its frame or its error; never raises for a bad file."""
        for index, path in enumerate(self.paths):
            started = time.perf_counter()
            try:
                image, metadata = read_photo(path, self.max_pixels, keep_alpha=True)
            except InputError as error:
                yield ImageItem(path, None, error)
                continue
            alpha = None
            if image.ndim == 3 and image.shape[2] == 4:  # the photo has transparency
                alpha = np.ascontiguousarray(image[:, :, 3])
                image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
            read_s = time.perf_counter()
            frame = Frame(image, index, read_s, name=path.stem, path=path, metadata=metadata,
                          decode_ms=(read_s - started) * 1000, alpha=alpha)
            yield ImageItem(path, frame, None)

    def __iter__(self) -> Iterator[Frame]:
        for item in self.items():
            if item.frame is not None:
                yield item.frame
            elif not self.is_folder:
                raise item.error
            else:
                log.warning("skipped: %s", item.error)
                self.failures.append((item.path, item.error))


def _warn_duplicate_stems(paths: list[Path]) -> None:
    """A warning per pair of photos whose outputs share a name (``a.jpg``, ``a.png``), or may
    (``IMG_1.jpg``, ``img_1.png``: one file on a disk that ignores case, where the batch then
    refuses the second; two elsewhere)."""
    seen: dict[str, Path] = {}
    folded: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            log.warning(
                "'%s' and '%s' have the same name; their outputs would share '%s.png'",
                seen[path.stem].name, path.name, path.stem,
            )
        elif path.stem.casefold() in folded:
            log.warning(
                "'%s' and '%s' have names that differ only in case; where the output folder's "
                "disk ignores case (macOS, Windows, a USB stick) their outputs would be one "
                "file, and the second is not written", folded[path.stem.casefold()].name,
                path.name,
            )
        seen.setdefault(path.stem, path)
        folded.setdefault(path.stem.casefold(), path)

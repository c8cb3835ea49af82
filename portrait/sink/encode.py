"""Encode an output image to the bytes of its file, keeping its photo's colour profile and
dates (:mod:`portrait.photo_metadata`).

OpenCV encodes PNG, JPEG and BMP, as before metadata was kept. Where there is metadata to
keep, OpenCV's own metadata writer (``cv2.imencodeWithMetadata``, OpenCV 4.12 and later, more
formats in each release) puts it into the same encoding, and Pillow encodes where this OpenCV
keeps none for the format (PNG and JPEG before OpenCV has them). Pillow encodes every WebP, at
a lower effort than OpenCV's fixed one (2 to 3 times as fast, up to 15 % larger), and every TIFF:
OpenCV's TIFF of a BGRA image has no ExtraSamples tag to say that its fourth channel is the
alpha, which libtiff warns about and some editors then do not take for transparency; Pillow's
marks it unassociated (straight) alpha, which the outputs' alpha is. Both libraries give the
same pixel values: Pillow encodes losslessly where OpenCV does (PNG, WebP, LZW TIFF) and with
the same JPEG settings (quality 95, 4:2:0). Pillow does not encode everything because its PNG encoder, which tries
every filter on every row, took 2 to 3.5 times as long as OpenCV's for a 12 MP photo on the
development machine (1.3-1.5 s against 0.4-0.6 s).
"""

from __future__ import annotations

import functools
import io
import logging
import zlib

import cv2
import numpy as np

from portrait.capture.base import quiet_opencv
from portrait.native_log import filtered_stderr
from portrait.photo_metadata import EXIF_HEADER, KEPT_TAGS, NO_METADATA, PhotoMetadata

log = logging.getLogger(__name__)

JPEG_QUALITY = 95
_OPENCV_PARAMS = {".jpg": [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY],
                  ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]}
TIFF_EXTENSIONS = (".tif", ".tiff")
_TIFF_PREDICTOR = 317  # the tag; 2 = horizontal differencing, as OpenCV's LZW TIFF has
# Pillow's settings for the encodings OpenCV makes: the same pixels, about the same size.
_PILLOW_FORMATS = {
    ".png": ("PNG", {"compress_level": 1, "compress_type": zlib.Z_RLE}),
    ".jpg": ("JPEG", {"quality": JPEG_QUALITY}),
    ".jpeg": ("JPEG", {"quality": JPEG_QUALITY}),
    # Lossless at a low effort: OpenCV's (libwebp's default effort) took 2.4-5.6 s for a 12 MP
    # photo on the development machine, this 1.5-2.3 s: the same size for a noisy photo or a
    # cut-out, 15 % larger for a smooth (enlarged) one. The least effort (method 0) took
    # 0.3-0.8 s but made files 18-40 % larger, a noisy photo's larger than its PNG.
    ".webp": ("WEBP", {"lossless": True, "quality": 20, "method": 1}),
    ".tif": ("TIFF", {"compression": "tiff_lzw"}),
    ".tiff": ("TIFF", {"compression": "tiff_lzw"}),
}
METADATA_EXTENSIONS = tuple(_PILLOW_FORMATS)
"""The output types that keep a colour profile and EXIF (not BMP)."""
PILLOW_EXTENSIONS = (*TIFF_EXTENSIONS, ".webp")
"""The output types Pillow always encodes: TIFF (its alpha marked), WebP (at a lower effort)."""


def encode_image(image: np.ndarray, ext: str, metadata: PhotoMetadata = NO_METADATA) -> bytes:
    """The file's bytes for ``image`` as ``ext``, with ``metadata`` where the type keeps it.

    A grey image (a matte) keeps no colour profile: the profile is the colour photo's.

    Args:
        image: BGR, BGRA or grey uint8 (BMP and JPEG: no alpha).
        ext: the output type, lower case with its dot (``.png``).
        metadata: what to keep of the photo's metadata.

    Raises:
        ValueError: the image could not be encoded (the message says which library refused).
    """
    if ext not in METADATA_EXTENSIONS:
        metadata = NO_METADATA
    elif image.ndim == 2 and metadata.icc_profile:
        metadata = PhotoMetadata(exif=metadata.exif)
    if ext in PILLOW_EXTENSIONS:
        return _encode_pillow(image, ext, metadata)
    if not metadata:
        return _encode_opencv(image, ext)
    if _opencv_keeps_metadata(ext):
        encoded = _encode_opencv_with_metadata(image, ext, metadata)
        if encoded is not None:
            return encoded
    return _encode_pillow(image, ext, metadata)


def _encode_opencv(image: np.ndarray, ext: str) -> bytes:
    ok, encoded = cv2.imencode(ext, image, _OPENCV_PARAMS.get(ext, []))
    if not ok:
        raise ValueError(f"OpenCV could not encode it as {ext}")
    return encoded.tobytes()


def _encode_opencv_with_metadata(image: np.ndarray, ext: str,
                                 metadata: PhotoMetadata) -> bytes | None:
    """OpenCV's encoding with the metadata, or ``None`` where it refused it (libpng checks a
    profile and refuses one it finds malformed; Pillow then writes it as it is, as OpenCV's JPEG
    writer would). Its complaints go to the debug log, not the terminal."""
    kinds, chunks = [], []
    if metadata.icc_profile:
        kinds.append(cv2.IMAGE_METADATA_ICCP)
        chunks.append(np.frombuffer(metadata.icc_profile, np.uint8))
    if metadata.exif:
        kinds.append(cv2.IMAGE_METADATA_EXIF)
        chunks.append(np.frombuffer(metadata.exif, np.uint8))
    complaints: list[str] = []
    with quiet_opencv(), filtered_stderr(lambda line: complaints.append(line.strip()) or True):
        try:
            ok, encoded = cv2.imencodeWithMetadata(ext, image, kinds, chunks,
                                                   _OPENCV_PARAMS.get(ext, []))
        except cv2.error:
            ok = False
    if not ok:
        log.debug("OpenCV did not encode %s with the photo's metadata (%s); Pillow encodes it",
                  ext, "; ".join(line for line in complaints if line) or "no reason given")
        return None
    return encoded.tobytes()


@functools.lru_cache(maxsize=None)
def _opencv_keeps_metadata(ext: str) -> bool:
    """Whether this OpenCV stores both a colour profile and EXIF in ``ext``: one pixel encoded
    with a sample of each and read back by Pillow. (Its metadata writer says nothing but a log
    line when a format does not take a kind, and which do grows release by release.)"""
    if not hasattr(cv2, "imencodeWithMetadata"):
        return False
    try:
        from PIL import Image, ImageCms

        sample_exif = Image.Exif()
        sample_exif[0x010F] = "portrait"  # Make
        sample = PhotoMetadata(
            icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
            exif=sample_exif.tobytes().removeprefix(EXIF_HEADER))
        encoded = _encode_opencv_with_metadata(np.zeros((1, 1, 3), np.uint8), ext, sample)
        if encoded is None:
            return False
        with Image.open(io.BytesIO(encoded)) as image:
            keeps = (image.info.get("icc_profile") == sample.icc_profile
                     and image.getexif().get(0x010F) == "portrait")
    except Exception as error:  # noqa: BLE001: any failure means "let Pillow encode"
        log.debug("OpenCV's metadata writer for %s not used: %s", ext, error)
        return False
    log.debug("OpenCV %s %s the colour profile and EXIF in %s", cv2.__version__,
              "keeps" if keeps else "does not keep", ext)
    return keeps


def _encode_pillow(image: np.ndarray, ext: str, metadata: PhotoMetadata) -> bytes:
    """Pillow's encoding, with the same pixel values as OpenCV's (see the module's text).

    A TIFF keeps the EXIF tags of its first directory (the camera, ``DateTime``) but not the
    Exif sub-directory (``DateTimeOriginal``): Pillow's compressed TIFF writer cannot write one.
    """
    from PIL import Image

    if image.ndim == 2:
        picture = Image.fromarray(image, "L")
    elif image.shape[2] == 3:
        picture = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), "RGB")
    else:
        picture = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA), "RGBA")
    kind, options = _PILLOW_FORMATS[ext]
    options = dict(options)
    if metadata.icc_profile:
        options["icc_profile"] = metadata.icc_profile
    exif = Image.Exif()
    if metadata.exif:
        exif.load(metadata.exif)
    if kind == "TIFF":
        options["tiffinfo"] = {**{tag: exif[tag] for tag in KEPT_TAGS if tag in exif},
                               _TIFF_PREDICTOR: 2}
    elif metadata.exif:
        options["exif"] = exif
    buffer = io.BytesIO()
    try:
        picture.save(buffer, format=kind, **options)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"Pillow could not encode it as {ext} ({error})") from None
    return buffer.getvalue()

"""What a photo's output keeps of its input's metadata: the ICC colour profile, and from EXIF
the capture date and time and the camera's make and model.

The profile says which colours the pixel values stand for: a Display-P3 phone photo shown
without it looks duller in a colour-managed viewer (browsers, Photos, Preview, Lightroom). The
date is what photo managers sort by. The rest of EXIF is left out, on purpose: the GPS position
(a cut-out is often shared where the original would not be), serial numbers, maker notes, the
embedded thumbnail (the uncut photo, stale once cut out) and the orientation, which is already
applied to the pixels (a viewer would turn the photo a second time). XMP and IPTC are not
carried either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

log = logging.getLogger(__name__)

# The EXIF tags kept, by number: those of the first directory (IFD0)...
KEPT_TAGS = {0x010F: "Make", 0x0110: "Model", 0x0132: "DateTime"}
EXIF_IFD = 0x8769
"""The tag that points to the Exif sub-directory, which holds the capture date."""
# ...and those of the Exif sub-directory: when the photo was taken, to the fraction of a second
# and with its time zone.
KEPT_EXIF_TAGS = {
    0x9003: "DateTimeOriginal", 0x9004: "DateTimeDigitized", 0x9010: "OffsetTime",
    0x9011: "OffsetTimeOriginal", 0x9012: "OffsetTimeDigitized", 0x9290: "SubSecTime",
    0x9291: "SubSecTimeOriginal", 0x9292: "SubSecTimeDigitized",
}
EXIF_HEADER = b"Exif\x00\x00"
"""What precedes the EXIF structure in a JPEG's APP1 segment (and in Pillow's ``Exif.tobytes``)."""
ICC_RGB = b"RGB "
"""An ICC profile's colour space (header bytes 16-19) for RGB data, the only kind the outputs hold."""


@dataclass(frozen=True)
class PhotoMetadata:
    """What an output keeps of its photo's metadata.

    Attributes:
        icc_profile: the ICC colour profile, as embedded (an RGB profile; ``None`` if none).
        exif: the kept EXIF tags (:data:`KEPT_TAGS`, :data:`KEPT_EXIF_TAGS`) as an EXIF (TIFF)
            structure without the ``Exif\\0\\0`` header; ``None`` if none of them was there.
    """

    icc_profile: Optional[bytes] = None
    exif: Optional[bytes] = None

    def __bool__(self) -> bool:
        return bool(self.icc_profile or self.exif)


NO_METADATA = PhotoMetadata()


def photo_metadata(image) -> PhotoMetadata:
    """What an output of the photo keeps of its metadata, read from its header.

    Nothing is decoded: a PNG's EXIF is taken only from an ``eXIf`` chunk before the pixels
    (where the PNG specification puts it), as looking further would decode the whole image.
    A profile of another colour space than RGB (a CMYK JPEG's, a grey photo's) is dropped: the
    output's pixels are RGB, which OpenCV converted them to. Metadata that cannot be parsed is
    dropped with a debug line; it never fails the photo.

    Args:
        image: an open ``PIL.Image.Image``.
    """
    icc = image.info.get("icc_profile") or None
    if icc is not None and icc[16:20] != ICC_RGB:
        log.debug("colour profile for %r data dropped: the output is RGB", icc[16:20])
        icc = None
    try:
        exif = _kept_exif(image)
    except Exception as error:  # noqa: BLE001: a damaged EXIF only means none is kept
        log.debug("EXIF not kept: %s", error)
        exif = None
    return PhotoMetadata(icc_profile=icc, exif=exif)


def _kept_exif(image) -> Optional[bytes]:
    from PIL import Image

    if image.format == "PNG" and "exif" not in image.info:
        return None  # Pillow would decode the whole image to look for one after the pixels
    found = image.getexif()
    kept = Image.Exif()
    for tag in KEPT_TAGS:
        if tag in found:
            kept[tag] = found[tag]
    sub = found.get_ifd(EXIF_IFD)
    kept_sub = {tag: sub[tag] for tag in KEPT_EXIF_TAGS if tag in sub}
    if kept_sub:
        kept[EXIF_IFD] = kept_sub
    if not len(kept):
        return None
    return kept.tobytes().removeprefix(EXIF_HEADER)

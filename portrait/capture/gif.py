"""Whether a GIF can show transparency, told from its blocks alone (:func:`gif_may_be_transparent`):
a background GIF that can is played with its alpha, frame by frame (see
:class:`portrait.composite.VideoBackground`), any other as an opaque video.

FFmpeg, which decodes a background GIF (:class:`portrait.capture.scaled.ScaledVideo`), composes
each frame over what the one before left, by the GIF's disposal. A pixel of its picture can be
transparent only where the screen starts transparent (the first frame names a transparent
colour, or the GIF has no global palette), or where a frame is restored to the background
(disposal 2) before the next is drawn: FFmpeg clears its area to transparent where the frame
names a transparent colour, and to the GIF's (opaque) background colour where it names none,
as it fills the screen before a first frame that names none; browsers leave both transparent,
and so does the reader, which decodes such a GIF a second time with another background colour
(:func:`with_other_background`): the pixels that differ are the background's. Elsewhere a
transparent pixel of a frame shows what is under it, which is opaque. The blocks that say all
this are read without decoding a pixel: 3.2 ms for an opaque GIF of 300 frames of 480x270
(4.3 MB) here, read to its end, which FFmpeg decodes in 0.39 s; one whose first frame is
transparent is told from that frame's block.
"""

from __future__ import annotations

import mmap
import statistics
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Optional, Union

_SIGNATURES = (b"GIF87a", b"GIF89a")
# As browsers play a GIF: a delay under 20 ms (0, "as fast as you can", or 10 ms) is shown for
# 100 ms. FFmpeg's demuxer does so for 0 only, and kept 10 ms here (FFmpeg 8); it gives a frame
# without a graphic control the delay before it, where here it has none: 100 ms.
_MIN_DELAY_S, _DEFAULT_DELAY_S = 0.02, 0.1
_EXTENSION, _IMAGE = 0x21, 0x2C
_GRAPHIC_CONTROL = 0xF9
_RESTORE_TO_BACKGROUND = 2


def frame_delay_s(delay_s: Optional[float]) -> float:
    """How long a GIF frame whose delay is ``delay_s`` (None where it has none) is shown."""
    if not delay_s or delay_s < _MIN_DELAY_S - 1e-9:  # 20 ms may come back as 0.0199...
        return _DEFAULT_DELAY_S
    return delay_s


def gif_may_be_transparent(path: Union[str, Path]) -> bool:
    """Whether a frame of the GIF at ``path`` may have a transparent pixel as FFmpeg composes it
    (see the module's note): a cheap, conservative answer from the file's blocks; False for
    any other file, or one that cannot be read (its reader then says why).

    A GIF that may be transparent can still turn out opaque (a frame that covers the area
    the one before cleared), so a reader checks each frame's alpha; one that may not never
    shows a transparent pixel."""
    return _from_blocks(path, may_be_transparent, False)


def gif_delays_s(path: Union[str, Path]) -> list[float]:
    """How long each frame of the GIF at ``path`` is shown, in order (:func:`frame_delay_s` of
    its delay), read from its blocks without decoding a pixel; empty for any other file, or one
    that cannot be read."""
    return _from_blocks(path, delays_s, [])


def rate_fps(delays_s: list[float]) -> Optional[float]:
    """The frame rate a GIF whose frames last ``delays_s`` (:func:`gif_delays_s`) plays at: one
    over their median (of an even count, the shorter middle one, a delay the GIF shows; not the
    delay most frames last: 20, 30, 40, 100, 100 ms give 25 fps), where FFmpeg's guess follows
    its raw delays (100 fps for 10 ms ones, which last 100 ms); ``None`` without delays (not a
    GIF)."""
    return 1 / statistics.median_low(delays_s) if delays_s else None


def delays_s(data: Union[bytes, mmap.mmap]) -> list[float]:
    """:func:`gif_delays_s` of a GIF's bytes; empty where ``data`` is not a GIF."""
    if len(data) < 13 or data[:6] not in _SIGNATURES:
        return []
    return [frame_delay_s(image.delay_s) for image in gif_frames(data)]


def _from_blocks(path: Union[str, Path], read: Callable[[Union[bytes, mmap.mmap]], Any],
                 otherwise: Any) -> Any:
    """``read(data)`` of the file at ``path``, mapped, not read into memory; ``otherwise``
    where it cannot be opened or is empty."""
    try:
        with open(path, "rb") as handle, \
                mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return read(data)
    except (OSError, ValueError):  # unreadable, or empty (nothing to map)
        return otherwise


def may_be_transparent(data: Union[bytes, mmap.mmap]) -> bool:
    """:func:`gif_may_be_transparent` of a GIF's bytes; False where ``data`` is not a GIF."""
    if len(data) < 13 or data[:6] not in _SIGNATURES:
        return False
    if not data[10] & 0x80:  # no global palette: FFmpeg starts from a transparent screen
        return True
    # the image before, restored to the background; at first the screen, filled with it
    restored: Optional[GifImage] = _screen(data)
    for index, image in enumerate(gif_frames(data)):
        if index == 0 and image.transparent:
            return True
        if restored is not None and _leaves_background(restored, image):
            return True  # cleared to transparent, as browsers clear it
        restored = image if image.disposal == _RESTORE_TO_BACKGROUND else None
    return False


def _screen(data: Union[bytes, mmap.mmap]) -> "GifImage":
    """The GIF's screen as an image restored to the background: FFmpeg fills it with the
    background colour before the first frame, where that frame names no transparent colour
    (browsers leave it transparent)."""
    width, height = data[6] | data[7] << 8, data[8] | data[9] << 8
    return GifImage(False, _RESTORE_TO_BACKGROUND, (0, 0, width, height))


def _leaves_background(restored: "GifImage", image: "GifImage") -> bool:
    """Whether ``image``, drawn after ``restored`` was restored to the background, may leave
    some of the background showing: it names a transparent colour, or does not cover the
    area restored."""
    left, top, width, height = restored.box
    x, y, w, h = image.box
    return image.transparent or not (x <= left and y <= top and x + w >= left + width
                                     and y + h >= top + height)


def with_other_background(data: bytes) -> Optional[bytes]:
    """A copy of the GIF ``data`` whose screen names another background colour (the first of its
    global palette that differs from the one it names; where none does, the index past the
    palette, whose colour FFmpeg takes as transparent), where a frame that names no transparent
    colour is restored to the background (disposal 2) before another is drawn that may leave
    some of it to show, or the first frame leaves some of the screen (filled with the
    background colour: it names no transparent colour): decoded beside the GIF, the pixels that
    differ show the background colour, which FFmpeg draws where browsers leave them
    transparent.

    Returns:
        ``None`` where no frame is so restored, or FFmpeg's background is transparent already
        (no global palette, or a background index past it), or its 256 colours are one.
    """
    if len(data) < 13 or data[:6] not in _SIGNATURES or not data[10] & 0x80:
        return None
    images = list(gif_frames(data))  # the last one's disposal is never seen: the GIF restarts
    if images and not images[0].transparent:  # else FFmpeg starts from a transparent screen
        images.insert(0, _screen(data))
    if not any(not before.transparent and before.disposal == _RESTORE_TO_BACKGROUND
               and _leaves_background(before, image) for before, image in zip(images, images[1:])):
        return None
    palette = data[13:13 + _palette_bytes(data[10])]
    colours = _palette_bytes(data[10]) // 3
    index = data[11]
    colour = palette[3 * index:3 * index + 3]
    if len(colour) < 3:
        return None
    other = next((i for i in range(colours) if palette[3 * i:3 * i + 3] != colour), None)
    if other is None:  # one colour throughout (a black GIF's palette is padded with black)
        if colours == 256:
            return None
        other = colours
    return bytes(data[:11]) + bytes([other]) + bytes(data[12:])


class GifImage(NamedTuple):
    """One image of a GIF, as its blocks describe it (:func:`gif_frames`)."""

    transparent: bool  #: its graphic control names a transparent colour
    disposal: int  #: its disposal method (0 where it has none)
    box: tuple[int, int, int, int]  #: left, top, width, height on the screen
    delay_s: Optional[float] = None  #: its graphic control's delay (None where it has none)


def gif_frames(data: Union[bytes, mmap.mmap]) -> Iterator[GifImage]:
    """For each image of the GIF ``data``, in order: whether its graphic control names a
    transparent colour, its disposal method (0 where it has none, as FFmpeg reads it: a
    graphic control applies to the next image only), where it lies on the screen, and its
    delay (``None`` without a graphic control). Read from
    the blocks: the pixels are skipped, not decoded. Ends at the trailer, or where the data
    ends or stops being a GIF."""
    flags = data[10]
    at = 13 + (_palette_bytes(flags) if flags & 0x80 else 0)
    transparent, disposal, delay_s = False, 0, None
    while at < len(data):
        block = data[at]
        if block == _EXTENSION:
            if at + 6 < len(data) and data[at + 1] == _GRAPHIC_CONTROL and data[at + 2] == 4:
                packed = data[at + 3]
                transparent, disposal = bool(packed & 1), (packed >> 2) & 7
                delay_s = (data[at + 4] | data[at + 5] << 8) / 100  # in hundredths of a second
            at = _after_sub_blocks(data, at + 2)
        elif block == _IMAGE:
            if at + 10 >= len(data):  # cut short in its descriptor
                return
            box = tuple(data[at + i] | data[at + i + 1] << 8 for i in (1, 3, 5, 7))
            # where its pixels are cut short too: FFmpeg draws some
            yield GifImage(transparent, disposal, box, delay_s)
            transparent, disposal, delay_s = False, 0, None
            flags = data[at + 9]
            # the descriptor, its own palette, the LZW code size, then the pixels' sub-blocks
            at = _after_sub_blocks(data, at + 11 + (_palette_bytes(flags) if flags & 0x80 else 0))
        else:  # the trailer (0x3B), or a block FFmpeg stops at too
            return


def _palette_bytes(flags: int) -> int:
    """The size of the colour table that the packed ``flags`` of a screen or an image give."""
    return 3 << ((flags & 7) + 1)


def _after_sub_blocks(data: Union[bytes, mmap.mmap], at: int) -> int:
    """Where the sub-blocks that start at ``at`` end (past their empty one); past ``len(data)``
    where the data ends first."""
    end = len(data)
    while at < end and data[at]:
        at += data[at] + 1
    return at + 1

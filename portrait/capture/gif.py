"""Whether a GIF can show transparency, told from its blocks alone (:func:`gif_may_be_transparent`):
a background GIF that can is played with its alpha, frame by frame (see
:class:`portrait.composite.VideoBackground`), any other as an opaque video.

FFmpeg, which decodes a background GIF (:class:`portrait.capture.scaled.ScaledVideo`), composes
each frame over what the one before left, by the GIF's disposal. A pixel of its picture can be
transparent only where the screen starts transparent (the first frame names a transparent
colour, or the GIF has no global palette), or where a frame that names one is restored to the
background (disposal 2) before the next is drawn: FFmpeg clears its area to transparent then,
and to the (opaque) background colour where the frame names none. Elsewhere a transparent pixel
of a frame shows what is under it, which is opaque. The blocks that say all this are read
without decoding a pixel: 3.2 ms for an opaque GIF of 300 frames of 480x270 (4.3 MB) here,
read to its end, which FFmpeg decodes in 0.39 s; one whose first frame is transparent is told
from that frame's block.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Iterator, Optional, Union

_SIGNATURES = (b"GIF87a", b"GIF89a")
# As browsers play a GIF: a delay under 20 ms (0, "as fast as you can", or 10 ms) is shown for
# 100 ms. FFmpeg's demuxer does so for 0 only, and kept 10 ms here (FFmpeg 8).
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
    try:
        with open(path, "rb") as handle, \
                mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return may_be_transparent(data)
    except (OSError, ValueError):  # unreadable, or empty (nothing to map)
        return False


def may_be_transparent(data: Union[bytes, mmap.mmap]) -> bool:
    """:func:`gif_may_be_transparent` of a GIF's bytes; False where ``data`` is not a GIF."""
    if len(data) < 13 or data[:6] not in _SIGNATURES:
        return False
    if not data[10] & 0x80:  # no global palette: FFmpeg starts from a transparent screen
        return True
    cleared = False  # the frame before left its area transparent
    for index, (transparent, disposal) in enumerate(gif_frames(data)):
        if cleared or (index == 0 and transparent):
            return True
        cleared = transparent and disposal == _RESTORE_TO_BACKGROUND
    return False


def gif_frames(data: Union[bytes, mmap.mmap]) -> Iterator[tuple[bool, int]]:
    """For each image of the GIF ``data``, in order: whether its graphic control names a
    transparent colour, and its disposal method (0 where it has none, as FFmpeg reads it: a
    graphic control applies to the next image only). Read from the blocks: the pixels are
    skipped, not decoded. Ends at the trailer, or where the data ends or stops being a GIF."""
    flags = data[10]
    at = 13 + (_palette_bytes(flags) if flags & 0x80 else 0)
    transparent, disposal = False, 0
    while at < len(data):
        block = data[at]
        if block == _EXTENSION:
            if at + 6 < len(data) and data[at + 1] == _GRAPHIC_CONTROL and data[at + 2] == 4:
                packed = data[at + 3]
                transparent, disposal = bool(packed & 1), (packed >> 2) & 7
            at = _after_sub_blocks(data, at + 2)
        elif block == _IMAGE:
            if at + 10 >= len(data):  # cut short in its descriptor
                return
            yield transparent, disposal  # where its pixels are cut short too: FFmpeg draws some
            transparent, disposal = False, 0
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

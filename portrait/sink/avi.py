"""The .avi container of a recording cut short: :func:`trim_to_whole_chunks` cuts it after its
last whole chunk (a frame or a piece of its sound), so every frame left decodes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# An .avi is a RIFF file: chunks of a four-letter type, a 32-bit little-endian size and the
# data, padded to an even length. The frames and sound are chunks in a ``LIST movi``; past 1 GB
# the recording goes on in a second ``RIFF AVIX`` holding another. Their sizes are written when
# the muxer closes them, so a recording cut short holds placeholders (0xFFFFFFFF): the walk
# steps into them rather than over them.


def trim_to_whole_chunks(path: Path) -> None:
    """Cut a recorded .avi after its last whole chunk: a frame the disk cut short (which
    players count, and fail to decode or show half of) goes, and so do the headers of a list
    whose chunks never followed. A file that is not a RIFF file is left as it is."""
    try:
        size = path.stat().st_size
        keep, offset = 0, 0
        with open(path, "rb") as file:
            if file.read(4) != b"RIFF":
                return
            while offset + 8 <= size:
                file.seek(offset)
                header = file.read(12)
                kind, length = header[:4], int.from_bytes(header[4:8], "little")
                if kind == b"RIFF" or (kind == b"LIST" and header[8:12] == b"movi"):
                    offset += 12  # its header is kept only with a whole chunk of what it holds
                    continue
                if offset + 8 + length > size:  # cut short (a missing pad byte is no loss)
                    break
                offset += 8 + length + length % 2
                keep = min(offset, size)
        if keep < size:
            os.truncate(path, keep)
    except OSError as error:  # the file stays as it is: its last frame may not show
        log.debug("'%s' not trimmed: %s", path, error)

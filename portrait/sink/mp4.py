"""The .mp4 container around the video sink's frames: how a recording is written so that it
survives its process, and the copy with the index first that a finished one becomes.

* :data:`RECORDING_OPTIONS`: the muxer's options while recording (fragments for an ``.mp4``).
* :func:`remux_faststart` copies a recording, packet for packet, into the final file.
* :func:`trim_to_whole_boxes` cuts a recording that stopped short after its last whole fragment;
  :func:`playable` says how much of it plays.
"""

from __future__ import annotations

import collections
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

# An .mp4 keeps each frame's own time on MPEG's 90 kHz clock, which holds 24, 25, 30, 50 and 60
# fps and their 1000/1001 rates exactly; an .avi has one frame rate, on whose grid frames are
# repeated or dropped.
TICKS = 90000
# An .mp4 is recorded as fragments (each with its own index, moof + mdat), cut at each keyframe
# and at least every FRAGMENT_S, so whatever stops the recording (a full disk, SIGKILL, a power
# cut) leaves a file that plays up to its last whole fragment; delay_moov writes the header once
# the first fragment is known, so a first frame after 0 and B-frames keep their times. A normal
# close copies the packets (no new encoding) into the final file with its index at the front.
FRAGMENT_S = 1.0
RECORDING_OPTIONS = {
    "mp4": {"movflags": "frag_keyframe+empty_moov+delay_moov+default_base_moof",
            "frag_duration": str(round(FRAGMENT_S * 1e6)), "movie_timescale": str(TICKS),
            # Each fragment goes to the disk when it is cut, not when 32 KB have gathered: a
            # killed run loses no finished fragment, and a write the disk refuses is raised
            # then (the fragmenting muxer reports none otherwise).
            "flush_packets": "1"},
    "avi": {},  # an .avi cut short reads up to where it stops
}
# The final .mp4's index goes before the frames, so a browser plays it while it downloads; its
# movie clock is 90 kHz too (not 1 kHz), so a first frame after 0 keeps its exact time.
FINAL_MP4_OPTIONS = {"movflags": "+faststart", "movie_timescale": str(TICKS)}
REORDER_DEPTH = 16  # H.264 shows a frame at most 16 frames after it is decoded


def remux_faststart(source: Path, target: Path, picture_end_s: Optional[Fraction] = None) -> int:
    """Copy the sound and picture of the .mp4 ``source`` (a fragmented one) into the new .mp4
    ``target`` with its index at the front, packet for packet: the same frames, times, durations
    and sound, nothing encoded again.

    Args:
        source: the recorded file.
        target: the file to write.
        picture_end_s: where the picture ends (the last frame's time and length), which the
            packets read back do not tell: with B-frames each packet's length is the step to
            the next one in decoding order, and the last frame shown would end early. ``None``:
            where the packets end.

    Returns:
        The number of frames (video packets) copied.

    Raises:
        av.FFmpegError, OSError: ``source`` cannot be read or ``target`` written (a full disk).
    """
    import av

    frames = 0
    with av.open(str(source)) as recording:
        with av.open(str(target), mode="w", format="mp4",
                     options=dict(FINAL_MP4_OPTIONS)) as final:
            tracks = [s for s in recording.streams if s.type in ("video", "audio")]
            copies = {}
            for track in tracks:
                copy = final.add_stream_from_template(track)
                copy.time_base = track.time_base
                copy.disposition = track.disposition
                copies[track.index] = copy
            # The last few frames wait, so the one shown last can be given its length.
            last_frames: collections.deque = collections.deque()
            for packet in recording.demux(tracks):
                if packet.dts is None and not packet.size:  # the demuxer's end-of-track marker
                    continue
                video = packet.stream.type == "video"
                frames += video
                packet.stream = copies[packet.stream.index]
                if not (video and picture_end_s is not None):
                    final.mux(packet)
                    continue
                last_frames.append(packet)
                if len(last_frames) > REORDER_DEPTH:
                    final.mux(last_frames.popleft())
            if last_frames:
                shown_last = max(last_frames, key=lambda p: -1 if p.pts is None else p.pts)
                if shown_last.pts is not None:
                    end = round(picture_end_s / shown_last.time_base)
                    shown_last.duration = max(shown_last.duration or 0, end - shown_last.pts)
                final.mux(list(last_frames))
    return frames


def trim_to_whole_boxes(path: Path) -> None:
    """Cut a recorded .mp4 (``ftyp``, ``moov``, then ``moof`` + ``mdat`` per fragment) after its
    last whole fragment: a box the disk cut short, and a ``moof`` whose frames never followed,
    go. Players need not guess where the file stops making sense, and the space comes back."""
    try:
        size = path.stat().st_size
        keep, offset = 0, 0
        with open(path, "rb") as file:
            while offset + 8 <= size:
                file.seek(offset)
                header = file.read(16)
                length, kind = int.from_bytes(header[:4], "big"), header[4:8]
                if length == 1 and len(header) == 16:  # a 64-bit size follows the type
                    length = int.from_bytes(header[8:16], "big")
                if length < 8 or offset + length > size:  # cut short (0: its size never came)
                    break
                offset += length
                if kind != b"moof":  # a fragment's index is kept only with its frames
                    keep = offset
        if keep < size:
            os.truncate(path, keep)
    except OSError as error:  # the file stays as it is: players stop at the cut anyway
        log.debug("'%s' not trimmed: %s", path, error)


def playable(av, path: Path) -> tuple[int, float]:
    """How many whole frames ``path`` holds from its start, read by packet (none decoded), and
    the seconds of picture they show; (0, 0.0) where nothing reads."""
    errors = (av.FFmpegError, OSError, ValueError, IndexError)
    frames, end = 0, None
    try:
        with av.open(str(path)) as container:
            for packet in container.demux(container.streams.video[0]):
                # A packet the file's end cut short (a partial .avi's last frame) does not play.
                if packet.size and packet.pts is not None and not packet.is_corrupt:
                    frames += 1
                    last = (packet.pts + (packet.duration or 0)) * packet.time_base
                    end = last if end is None else max(end, last)
    except errors:  # a cut file: what read before the cut counts
        pass
    return frames, 0.0 if end is None else max(0.0, float(end))

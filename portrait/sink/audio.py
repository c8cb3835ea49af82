"""A source video's sound, carried into the video file the app writes (PyAV).

The app writes every frame of a video file in order (without ``--realtime``), at the source's
frame rate, so frame ``i`` of the output is at ``i / fps`` seconds as it was in the source, and
the source's sound fits the new picture as it is. :class:`SourceAudio` reads the source's first
audio stream and hands its packets to the output as the frames reach them, so the two stay
interleaved; at the end the sound is cut where the picture ends (``--max-frames``, Ctrl-C).

Packets are copied as they are where the output's container holds their codec (AAC, MP3, Opus,
AC-3 in ``.mp4``; MP3, AC-3, PCM in ``.avi``); otherwise (Vorbis from a ``.webm`` into ``.mp4``,
AAC into ``.avi``) they are decoded and encoded again (AAC for ``.mp4``, MP3 for ``.avi``).

A source whose sound cannot be read costs the output its sound, never its picture: the reason is
logged once as a warning and the video goes on without it (:attr:`SourceAudio.problem`).
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)

# Codecs each container takes as they are; anything else is encoded again as the second item.
COPY_CODECS = {
    "mp4": (frozenset({"aac", "mp3", "opus", "ac3", "eac3", "alac"}), "aac"),
    "avi": (frozenset({"mp3", "mp2", "ac3", "pcm_s16le", "pcm_u8"}), "libmp3lame"),
}


def audio_codec(path: str | Path) -> Optional[str]:
    """The codec of ``path``'s first audio stream (``"aac"``), or ``None``: no sound, or a file
    PyAV cannot open (the video reader says what is wrong with such a file)."""
    import av  # PyAV loads only where a video file is written

    try:
        with av.open(str(path)) as container:
            streams = container.streams.audio
            return streams[0].codec_context.codec.canonical_name if streams else None
    except (av.FFmpegError, OSError, ValueError):
        return None


class SourceAudio:
    """The first audio stream of ``source``, to be muxed into ``output`` (an open PyAV container
    of ``container_format``) beside its video.

    Call :meth:`until` after each video frame with the time the next frame starts, and
    :meth:`finish` once, with the time the picture ends, before the output closes.

    Args:
        source: the source video file.
        output: the output container, not yet written to (its streams are being added).
        container_format: ``"mp4"`` or ``"avi"`` (see :data:`COPY_CODECS`).

    Raises:
        ValueError: ``source`` has no audio stream.
        av.FFmpegError, OSError: ``source`` cannot be opened.
    """

    def __init__(self, source: str | Path, output: av.container.OutputContainer,
                 container_format: str) -> None:
        import av

        self._errors = (av.FFmpegError, OSError)
        self.source = Path(source)
        self._input = av.open(str(source))
        try:
            if not self._input.streams.audio:
                raise ValueError(f"'{source}' has no audio stream")
            self._stream = self._input.streams.audio[0]
            self.codec = self._stream.codec_context.codec.canonical_name  # mp3, not mp3float
            copyable, encoder = COPY_CODECS[container_format]
            self.copied = self.codec in copyable
            if self.copied:
                self._out = output.add_stream_from_template(self._stream)
            else:
                self._out = output.add_stream(encoder, rate=self._stream.rate or 48000)
            self.output_codec = self._out.codec_context.codec.canonical_name  # what it holds
            # The output's picture starts at 0: the sound keeps its place against the source's
            # first frame.
            video = self._input.streams.video
            self._offset = (Fraction(video[0].start_time) * video[0].time_base
                            if video and video[0].start_time is not None else Fraction(0))
        except BaseException:
            self._input.close()
            raise
        self._output = output
        self._packets: Iterator = self._input.demux(self._stream)
        self._pending = None
        self._done = False
        self.problem: Optional[str] = None

    def _time(self, packet) -> Optional[Fraction]:
        """When ``packet`` starts on the output's clock, or ``None`` if it does not say."""
        if packet.pts is None:
            return None
        return Fraction(packet.pts) * packet.time_base - self._offset

    def _next(self):
        """The next packet with data, or ``None`` at the end (or after a read error, logged)."""
        if self._pending is None and not self._done:
            try:
                while True:
                    packet = next(self._packets, None)
                    if packet is None or packet.size:
                        break
            except self._errors as error:
                self._stop(f"reading it failed ({error})")
                packet = None
            if packet is None:
                self._done = True
            self._pending = packet
        return self._pending

    def _stop(self, reason: str) -> None:
        self._done = True
        if self.problem is None:
            self.problem = reason
            log.warning("the sound of '%s' stops here: %s; the video goes on without it",
                        self.source, reason)

    def until(self, end: Fraction) -> None:
        """Mux every source packet that starts before ``end`` seconds.

        Raises:
            av.FFmpegError, OSError: writing the output failed (a full disk).
        """
        while (packet := self._next()) is not None:
            start = self._time(packet)
            if start is not None and start >= end:
                return
            self._pending = None
            duration = (Fraction(packet.duration) * packet.time_base
                        if packet.duration else Fraction(0))
            if start is not None and start + duration <= 0:
                continue  # sound from before the first frame
            self._mux(packet, start)

    def _mux(self, packet, start: Optional[Fraction]) -> None:
        if self.copied:
            if self._offset:
                shift = round(self._offset / packet.time_base)
                packet.pts = None if packet.pts is None else packet.pts - shift
                packet.dts = None if packet.dts is None else packet.dts - shift
            packet.stream = self._out
            self._output.mux(packet)
            return
        try:
            frames = packet.decode()
        except (*self._errors, ValueError) as error:
            self._stop(f"decoding it failed ({error})")
            return
        for frame in frames:
            frame.pts = None  # the encoder counts samples from the first one it is given
            self._output.mux(self._out.encode(frame))

    def finish(self, end: Fraction) -> None:
        """Mux the sound up to ``end`` seconds (the end of the picture) and flush the encoder.

        Raises:
            av.FFmpegError, OSError: writing the output failed.
        """
        self.until(end)
        if not self.copied:
            self._output.mux(self._out.encode(None))
        self._done = True

    def close(self) -> None:
        """Close the source; safe twice."""
        self._input.close()

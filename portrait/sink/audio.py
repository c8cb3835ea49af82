"""A source video's sound, carried into the video file the app writes (PyAV).

The app writes each frame of a video file at its time in the source (``capture.Frame.pts_s``,
counted from the start of the source's video; with ``--realtime`` the frames it drops leave
their time to the frame before), so the source's sound fits the new picture as it is.
:class:`SourceAudio` reads one audio track of the source (the one marked default, else the
first) and hands it to the output as the frames reach it, so the two stay interleaved; at the
end the sound is cut where the picture ends (``--max-frames``, Ctrl-C).

- Into ``.mp4``, AAC, MP3 and Opus (what browsers and phones play) are copied packet for packet
  (each is decoded too, only so that damaged sound is named in a warning; it is copied as it is).
  The copy starts :data:`PREROLL_S` before the first frame, at negative times, which the muxer's
  edit list has players decode but not play: a packet decodes whole only after those before it
  (AAC's frames overlap their predecessor's, so the encoder's priming packet at -1024 samples
  carries half of the first 1024 samples; MP3 borrows bits from earlier frames; Opus settles in
  80 ms), and without them the first 20-80 ms of sound are garbled.
- Anything else (AC-3, Vorbis, FLAC, PCM into ``.mp4``; every codec into ``.avi``) is decoded
  and encoded again, as AAC for ``.mp4`` and as 16-bit PCM for ``.avi`` (the editing format:
  no encoder delay, every sample where it was). Re-encoded sound is placed sample by sample on
  the picture's clock: silence where the source's sound starts late or has a gap, samples from
  before the first frame dropped, the end cut at the last frame's end.

A source whose sound cannot be read or encoded costs the output its sound (from there on), never
its picture: the reason is logged once as a warning (:attr:`SourceAudio.problem`). Only writing
the output can fail the video (a full disk).
"""

from __future__ import annotations

import collections
import errno
import logging
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import numpy as np

from portrait.errors import DISK_ERRNOS

if TYPE_CHECKING:
    import av

log = logging.getLogger(__name__)

# Codecs each container takes as they are; anything else is encoded again with ENCODERS'.
COPY_CODECS = {"mp4": frozenset({"aac", "mp3", "opus"}), "avi": frozenset()}
ENCODERS = {"mp4": "aac", "avi": "pcm_s16le"}
WRITE_ERRNOS = DISK_ERRNOS | {errno.EFBIG, errno.EIO}  # the disk's, not the sound's
PREROLL_S = Fraction(80, 1000)  # RFC 7845's pre-roll for Opus; AAC needs 21 ms, MP3 about 50
CONTIGUOUS_S = 0.002  # a jump in the source's timestamps smaller than this is rounding, not a gap


def audio_codec(path: str | Path) -> Optional[str]:
    """The codec of the audio track :class:`SourceAudio` would take from ``path`` (``"aac"``),
    or ``None``: no sound, or a file PyAV cannot open (the video reader says what is wrong)."""
    import av  # PyAV loads only where a video file is written

    try:
        with av.open(str(path)) as container:
            stream = _sound_track(container)
            return None if stream is None else stream.codec_context.codec.canonical_name
    except (av.FFmpegError, OSError, ValueError):
        return None


def _sound_track(container):
    """The audio track a player would play: the one marked default, else the first; or None."""
    import av

    tracks = list(container.streams.audio)
    marked = [t for t in tracks if t.disposition & av.stream.Disposition.default]
    return (marked or tracks or [None])[0]


class NoSound(ValueError):
    """The source has no audio track: nothing to carry, and nothing to warn about."""


def _time(value, time_base) -> Optional[Fraction]:
    return None if value is None or time_base is None else Fraction(value) * time_base


class SourceAudio:
    """The sound of ``source``, to be muxed into ``output`` (an open PyAV container of
    ``container_format``) beside its video.

    Call :meth:`until` after each video frame with the time the next frame starts, and
    :meth:`finish` once, with the time the picture ends, before the output closes.

    Args:
        source: the source video file.
        output: the output container, not yet written to (its streams are being added).
        container_format: ``"mp4"`` or ``"avi"`` (see :data:`COPY_CODECS`).

    Raises:
        NoSound: ``source`` has no audio track.
        av.FFmpegError, OSError, ValueError: ``source`` cannot be opened, or its sound cannot
            be set up for the output.
    """

    def __init__(self, source: str | Path, output: av.container.OutputContainer,
                 container_format: str) -> None:
        import av

        self._av = av
        self._read_errors = (av.FFmpegError, OSError, ValueError)
        self.source = Path(source)
        self._input = av.open(str(source))
        try:
            self._stream = _sound_track(self._input)
            if self._stream is None:
                raise NoSound(f"'{source}' has no audio track")
            tracks = len(self._input.streams.audio)
            if tracks > 1:
                log.info("'%s' has %d sound tracks: keeping track %d, the %s", source, tracks,
                         self._input.streams.audio.index(self._stream) + 1,
                         "default one" if self._stream.disposition & av.stream.Disposition.default
                         else "first")
            self.codec = self._stream.codec_context.codec.canonical_name  # mp3, not mp3float
            self.copied = self.codec in COPY_CODECS[container_format]
            if self.copied:
                self._out = output.add_stream_from_template(self._stream)
            else:
                encoder, rate, layout = _encoder_settings(av, ENCODERS[container_format],
                                                          self._stream)
                self._out = output.add_stream(encoder.name, rate=rate, layout=layout)
                self._resampler = av.AudioResampler(format=encoder.audio_formats[0].name,
                                                    layout=layout, rate=rate)
            self.output_codec = self._out.codec_context.codec.canonical_name  # what it holds
            # The output's picture starts at 0: the sound keeps its place against the source's
            # first frame.
            video = self._input.streams.video
            self._offset = (_time(video[0].start_time, video[0].time_base) or Fraction(0)
                            if video else Fraction(0))
        except BaseException:
            self._input.close()
            raise
        self._output = output
        self._packets: Iterator = self._input.demux(self._stream)
        self._pending_packet = None
        self._preroll: collections.deque = collections.deque()  # copied: (start, packet)
        self._done = False
        self._samples: list[np.ndarray] = []  # decoded sound placed but not yet encoded
        self._next = 0  # the output sample the next decoded one goes to
        self._encoded = 0  # output samples encoded so far
        self.packets = 0  # packets muxed
        self._given_up = False
        self._damaged = False  # copied sound that did not decode was named
        self.problem: Optional[str] = None

    # ------------------------------------------------------------------ reading the source

    def _next_packet(self):
        """The next packet with data, or ``None`` at the end (or after a read error, logged)."""
        if self._pending_packet is None and not self._done:
            try:
                while True:
                    packet = next(self._packets, None)
                    if packet is None or packet.size:
                        break
            except self._read_errors as error:
                self._stop(f"reading it failed ({error})")
                packet = None
            if packet is None:
                self._done = True
            self._pending_packet = packet
        return self._pending_packet

    def _stop(self, reason: str) -> None:
        self._done = True
        if self.problem is None:
            self.problem = reason
            log.warning("the sound of '%s' stops here: %s; the video goes on without it",
                        self.source, reason)

    def until(self, end: Fraction) -> None:
        """Mux the sound up to ``end`` seconds of the output.

        Raises:
            av.FFmpegError, OSError: writing the output failed (a full disk).
        """
        while (packet := self._next_packet()) is not None:
            start = _time(packet.pts, packet.time_base)
            if start is not None and start - self._offset >= end:
                break
            self._pending_packet = None
            if self.copied:
                self._copy(packet, start)
            else:
                self._decode(packet)
        if not self.copied:
            self._encode_until(round(end * self._out.rate))

    # ------------------------------------------------------------------ copying

    def _copy(self, packet, start: Optional[Fraction]) -> None:
        duration = _time(packet.duration, packet.time_base) or Fraction(0)
        if start is not None and start - self._offset + duration <= 0:
            # Sound from before the first frame: kept while it lies within PREROLL_S of it.
            self._preroll.append((start, packet))
            while (len(self._preroll) > 1
                   and self._preroll[1][0] <= self._offset - PREROLL_S):
                self._preroll.popleft()
            return
        while self._preroll:
            self._shift_and_mux(self._preroll.popleft()[1])
        self._check_decodes(packet, start)
        self._shift_and_mux(packet)

    def _shift_and_mux(self, packet) -> None:
        """Mux a copied packet at its time against the output's first frame."""
        if self._offset:
            shift = round(self._offset / packet.time_base)
            packet.pts = None if packet.pts is None else packet.pts - shift
            packet.dts = None if packet.dts is None else packet.dts - shift
        packet.stream = self._out
        self._mux([packet])

    def _check_decodes(self, packet, start: Optional[Fraction]) -> None:
        """Decode a packet that is copied as it is (AAC costs about 20 µs a packet), so damaged
        sound is named once rather than copied in silence."""
        if self._damaged:
            return
        try:
            packet.decode()
        except self._read_errors as error:
            self._damaged = True
            at = "" if start is None else f" at {float(start - self._offset):.2f} s"
            log.warning("the sound of '%s' is damaged%s (%s); it is copied as it is, so players "
                        "may skip or click there", self.source, at, error)

    # ------------------------------------------------------------------ encoding again

    def _decode(self, packet) -> None:
        """Decode ``packet`` and place its samples on the output's clock."""
        try:
            for frame in packet.decode():
                start = _time(frame.pts, frame.time_base)
                for converted in self._resampler.resample(frame):
                    self._place(converted, start)
                    start = None  # the resampler's further frames follow on
        except self._read_errors as error:
            self._stop(f"decoding it failed ({error})")

    def _place(self, frame, start: Optional[Fraction]) -> None:
        """Queue ``frame``'s samples where ``start`` (source seconds) puts them: after silence
        where the sound skips ahead, without the samples that fall before the last placed one
        (or before the first frame)."""
        samples = _channels_first(frame)
        if start is not None:
            at = round((start - self._offset) * self._out.rate)
            if abs(at - self._next) > CONTIGUOUS_S * self._out.rate:
                if at > self._next:
                    self._samples.append(np.zeros((samples.shape[0], at - self._next),
                                                  samples.dtype))
                    self._next = at
                else:
                    samples = samples[:, self._next - at:]
        if samples.shape[1]:
            self._samples.append(samples)
            self._next += samples.shape[1]

    def _encode_until(self, limit: int) -> None:
        """Encode the queued samples up to output sample ``limit``; keep the rest queued."""
        queued = sum(chunk.shape[1] for chunk in self._samples)
        count = min(queued, limit - self._encoded)
        if count <= 0:
            return
        joined = np.concatenate(self._samples, axis=1)
        self._samples = [joined[:, count:]] if count < joined.shape[1] else []
        frame = _frame_of(self._av, joined[:, :count], self._resampler, self._out.rate)
        frame.pts = self._encoded
        self._encoded += count
        self._encode(frame)

    def _encode(self, frame) -> None:
        """Encode ``frame`` (None: flush the encoder) and mux what comes out; an encoder that
        fails ends the sound."""
        if self._given_up:
            return
        try:
            packets = self._out.encode(frame)
        except self._read_errors as error:
            self._given_up = True
            self._stop(f"encoding it as {self.output_codec} failed ({error})")
            return
        self._mux(packets)

    def _mux(self, packets) -> None:
        """Write ``packets``; a packet the muxer refuses (timestamps out of order) ends the
        sound, while a write the system refuses (a full disk) is raised: it ends the video."""
        try:
            self._output.mux(packets)
        except self._read_errors as error:
            if getattr(error, "errno", None) in WRITE_ERRNOS:
                raise
            self._given_up = True  # nothing more of it goes in
            self._stop(f"the output refused its packets ({error})")
            return
        self.packets += len(packets)

    def finish(self, end: Fraction) -> None:
        """Mux the sound up to ``end`` seconds (the end of the picture) and flush the encoder.

        Raises:
            av.FFmpegError, OSError: writing the output failed.
        """
        self.until(end)
        self._done = True
        if not self.copied:
            self._encode(None)

    def close(self) -> None:
        """Close the source; safe twice."""
        self._input.close()


def _encoder_settings(av, name: str, stream) -> tuple:
    """(codec, sample rate, layout name) that the encoder ``name`` opens with for ``stream``'s
    sound: its own rate where the encoder takes it (else 48 kHz: AAC stops at 96 kHz), its own
    layout where the encoder takes it (an AVI's "1 channels" is mono; else stereo). Tried on a
    codec context of its own, since a stream added to the output cannot be taken back.

    Raises:
        ValueError: no setting opens the encoder.
    """
    codec = av.codec.Codec(name, "w")
    rate = stream.rate or 48000
    if codec.audio_rates and rate not in codec.audio_rates:
        rate = 48000
    channels = len(stream.layout.channels) if stream.layout else 2
    named = {1: "mono", 2: "stereo"}.get(channels)
    tried = []
    for layout in dict.fromkeys(l for l in (stream.layout and stream.layout.name, named, "stereo")
                                if l):
        context = av.CodecContext.create(codec.name, "w")
        try:
            context.sample_rate, context.format = rate, codec.audio_formats[0].name
            context.layout = layout
            context.open()
            return codec, rate, layout
        except (av.FFmpegError, ValueError) as error:
            tried.append(f"{layout}: {error}")
    raise ValueError(f"the {codec.name} encoder takes none of its layouts at {rate} Hz "
                     f"({'; '.join(tried)})")


def _channels_first(frame) -> np.ndarray:
    """An audio frame's samples as (channels, samples), planar or packed."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        return data.reshape(channels, -1)
    return data.reshape(-1, channels).T


def _frame_of(av, samples: np.ndarray, resampler, rate: int):
    """(channels, samples) back into an audio frame of the resampler's format and layout."""
    layout, fmt = resampler.layout, resampler.format
    data = (np.ascontiguousarray(samples) if fmt.is_planar
            else np.ascontiguousarray(samples.T).reshape(1, -1))
    frame = av.AudioFrame.from_ndarray(data, format=fmt.name, layout=layout.name)
    frame.sample_rate = rate
    frame.time_base = Fraction(1, rate)
    return frame

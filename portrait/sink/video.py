"""The video file sink: ``.mp4`` (H.264) or ``.avi`` (MJPEG) through PyAV, with the source's
sound where there is one (:mod:`portrait.sink.audio`)."""

from __future__ import annotations

import errno
import glob
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, NoReturn, Optional

import numpy as np

from portrait.errors import DISK_ERRNOS, InputError, OutputFull, ran_out_of_memory
from portrait.sink.avi import trim_to_whole_chunks
from portrait.sink.base import Sink, _check_image, to_bgr
from portrait.sink.mp4 import (RECORDING_OPTIONS, TICKS, playable, remux_faststart,
                               trim_to_whole_boxes)
from portrait.sink.paths import (PathLike, _file_ids, _is_protected, _prepare_folder,
                                 _refuse_input, check_folder, hidden_prefix, remove_if_empty,
                                 temporary_beside)
from portrait.words import counted

if TYPE_CHECKING:
    from portrait.sink.audio import SourceAudio

try:
    import fcntl  # POSIX: a writer's lock on its partial file tells a live run from a dead one
except ImportError:  # Windows keeps an open file from being removed anyway
    fcntl = None

log = logging.getLogger(__name__)

# Extension → (container, encoder, pixel format, encoder options). H.264 plays in every browser
# and phone; MJPEG keeps every frame a still picture (for editing). At 1280x720 on the
# development machine, x264's superfast preset at CRF 23 took 10 ms of CPU a frame and 1.25 MB
# for 150 frames at 39.2 dB PSNR, where OpenCV's mp4v writer took 4.9 ms and 1.8 MB at 39.0 dB
# (veryfast: 16 ms; ultrafast: 7.5 ms and 1.8 MB).
VIDEO_FORMATS = {
    ".mp4": ("mp4", "libx264", "yuv420p", {"crf": "23", "preset": "superfast"}),
    ".avi": ("avi", "mjpeg", "yuvj420p", {}),
}
VIDEO_CODECS = {".mp4": "H.264", ".avi": "MJPEG"}  # what each extension stores, by name
# The .mp4 copy with the index first is written as ``.<name>.<token>.finishing.mp4`` beside the
# final file and renamed over it only once it reads back whole: a run stopped while copying
# leaves the final file as it was. A half-written copy never plays (its index comes last), so
# the next run into the same file removes one that no running writer holds.
FINISHING = ".finishing"
MJPEG_QUALITY = 3  # qscale: 2 (best) .. 31; about OpenCV's MJPG file size, a sharper picture
# The write errors that more free space or another disk would mend; any other is the file's own.
SPACE_ERRNOS = DISK_ERRNOS | {errno.EFBIG}
SPACE_ADVICE = "free space or choose another --out"
MEMORY_ADVICE = "close other programs or raise this run's memory limit (ulimit -v), and run again"


class _EncoderRefused(Exception):
    """The encoder refused a frame (an FFmpeg error from encoding, which writes nothing): not
    the disk's fault, so not reported as the disk's."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


class VideoFileSink(Sink):
    """A video file: ``.mp4`` (H.264) or ``.avi`` (MJPEG), written with PyAV.

    The file opens on the first frame, at ``size`` or else the first frame's size (each side
    made even, as the codecs need: an odd last row or column is left out, with a warning);
    later frames of another size are resized to it.

    Each frame is shown at the time it is written with (``write(image, pts_s)``), as in its
    source: a ``.mp4`` stores those times as they are (a variable frame rate stays variable),
    a ``.avi`` holds ``fps`` by repeating a frame where the source skips ahead (a camera's
    stall, a frame a live run dropped) and dropping one that falls where another already went.
    Frames written without a time follow each other at ``fps``.

    The frames go to a hidden file beside ``path`` (``.<name>.<token>.partial<ext>``; for a
    ``.mp4``, a fragmented MP4 that plays up to its last whole fragment, about a second, however
    the run ends). ``close()`` finishes it (a ``.mp4`` copied, packet for packet, into a second
    hidden file with its index at the front, ``.<name>.<token>.finishing.mp4``), reads it back,
    and only then moves it over ``path``: an earlier file of that name stays whole until the new
    one is. A copy that fails or is interrupted is removed and the recording kept whole as the
    partial file; one a killed run left is removed by the next run into ``path``. The first
    write the disk refuses (full, over quota, read-only) ends the video at once: the partial
    file is finished as far as it goes and named in the error raised, never passed off as the
    output. A folder made for the video that ends up holding none of it (no frame came, the
    encoder refused the first, or nothing of the partial file plays) is removed on the way out.

    Args:
        path: the output file; its folder is created.
        fps: the nominal frame rate: a ``.avi``'s rate, a ``.mp4``'s step for frames written
            without a time and for the last frame's length.
        size: (width, height), or ``None`` to take the first frame's.
        protected: input files that must never be overwritten (the source video).
        audio_from: a video file whose sound to carry over (see :mod:`portrait.sink.audio`),
            the frames written here with their times in it (``write(image, pts_s)``); ``None``
            for none.

    Raises:
        InputError: another extension, an unwritable folder, the path is an input, or the
            file cannot be opened; from ``write()``, a write that failed (:class:`OutputFull`
            where the disk is full, over quota or read-only); from ``close()``, the same, or a
            file that does not read back whole.
    """

    def __init__(self, path: PathLike, fps: float, size: Optional[tuple[int, int]] = None, *,
                 protected: Iterable[PathLike] = (), audio_from: Optional[PathLike] = None) -> None:
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in VIDEO_FORMATS:
            raise InputError(f"cannot write video '{self.path}': unsupported type "
                             f"'{ext or 'none'}'; use .mp4 or .avi")
        if not (fps and 0 < fps <= 1000):
            log.warning("video '%s': frame rate %s is not usable; writing at 30 fps",
                        self.path, fps)
            fps = 30.0
        self._protected = _file_ids(protected)
        # The folders made for it, removed where no file of the video is left in them.
        self._made = check_video_out(self.path, self._protected, create=True)
        self.fps = float(fps)
        self._rate = Fraction(self.fps).limit_denominator(1001)  # 29.97 is 30000/1001
        self.size = tuple(size) if size is not None else None
        self._format = VIDEO_FORMATS[ext]
        self._timed = self._format[0] == "mp4"  # each frame's own time; else a grid at fps
        self._codec = VIDEO_CODECS[ext]
        self.audio_from = Path(audio_from) if audio_from is not None else None
        # An --out that is a link is finished where it points, as the writer used to write.
        self._final = Path(os.path.realpath(self.path))
        self._partial = temporary_beside(self._final, f".partial{ext}")
        self._claim: Optional[int] = None  # the descriptor that holds the partial file's lock
        self._copy_claim: Optional[int] = None  # .mp4: the same for its copy, until moved
        self._container = None
        self._stream = None
        self._audio: Optional[SourceAudio] = None
        self._stored_size: Optional[tuple[int, int]] = None
        self._buffer: Optional[np.ndarray] = None
        self._closed = False
        self.frames_written = 0  # frames given to write()
        self.frames_repeated = 0  # .avi: frames stored again to fill a skip in time
        self.frames_dropped = 0  # .avi: frames that fell where another already went
        self._stored = 0  # frames in the file
        self._last_ticks: Optional[int] = None  # .mp4: the last frame's time
        self._end = Fraction(0)  # where the picture ends, in seconds
        self._held = None  # .mp4: the last packet, whose duration is set once the end is known
        self._first_dts: Optional[int] = None
        self._picture_bytes = 0  # .mp4: the encoded frames' bytes given to the muxer
        self._previous = None  # .avi: the last frame stored, to repeat

    def _open(self, size: tuple[int, int]) -> None:
        import av  # PyAV loads only where a video file is written

        from portrait.sink.audio import NoSound, SourceAudio

        self._av = av
        self._write_errors = (av.FFmpegError, OSError)
        container_format, encoder, pixel_format, options = self._format
        width, height = size[0] - size[0] % 2, size[1] - size[1] % 2
        if not (width and height):
            raise InputError(f"cannot write video '{self.path}': frames of {size[0]}x{size[1]} "
                             "are too small for a video; write PNG frames (--out DIR/)")
        if self._timed:
            self._remove_abandoned_copies()
        for earlier in abandoned_partials(self._final, self._partial.suffix):
            log.warning("'%s' (%s) is an unfinished video that an earlier run into '%s' left "
                        "behind (killed, its machine stopped, or its disk full); nothing will "
                        "finish it: remove it once you no longer need it", earlier,
                        _size_text(earlier), self.path)
        try:
            self._claim = _claim(self._partial)
            self._container = av.open(str(self._partial), mode="w", format=container_format,
                                      options=dict(RECORDING_OPTIONS[container_format]))
        except self._write_errors as error:
            self._release()
            self._partial.unlink(missing_ok=True)
            raise InputError(f"cannot write video '{self.path}': {_reason(error)}; check the "
                             "folder and the free space, or choose another --out") from None
        if encoder == "mjpeg":
            # qmin = qmax holds the quantiser at MJPEG_QUALITY: with qscale and global_quality
            # alone (below) FFmpeg's MJPEG encoder took each frame's own quality, 0 from PyAV,
            # and wrote every frame at the best, 2 (1280x720 asl_help: 3.45 MB for 60 frames at
            # 43.4 dB PSNR; at 3, 2.74 MB at 42.9 dB; OpenCV's MJPG writer 2.49 MB at 42.6 dB).
            options = {**options, "qmin": str(MJPEG_QUALITY), "qmax": str(MJPEG_QUALITY)}
        stream = self._container.add_stream(encoder, rate=self._rate, options=dict(options))
        stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
        if encoder == "libx264":
            # Name the matrix the BGR frames are converted with (swscale's default: BT.601,
            # limited range). Untagged, a player guesses, most of them BT.709 for HD: a
            # webcam's 720p .mp4 showed the person's colours shifted (CIELAB dE 2.8 on average
            # over an orange top and skin). MJPEG's JPEG frames name theirs already.
            from av.video.reformatter import ColorRange, Colorspace
            stream.codec_context.colorspace = Colorspace.ITU601
            stream.codec_context.color_range = ColorRange.MPEG
        if encoder == "mjpeg":
            stream.codec_context.flags |= av.codec.context.Flags.qscale
            stream.codec_context.global_quality = MJPEG_QUALITY * 118  # FF_QP2LAMBDA
        if self._timed:
            stream.codec_context.time_base = Fraction(1, TICKS)
        self._stream, self._stored_size = stream, (width, height)
        if self.audio_from is not None:
            try:
                self._audio = SourceAudio(self.audio_from, self._container, container_format)
            except NoSound:  # a silent source: nothing to carry
                pass
            except (*self._write_errors, ValueError) as error:
                log.warning("video '%s' is written without sound: the sound of '%s' cannot be "
                            "carried over (%s)", self.path, self.audio_from, _reason(error))
        sound = ""
        if self._audio is not None:
            sound = (f", the sound of '{self.audio_from}' ({self._audio.codec}"
                     f"{'' if self._audio.copied else ' as ' + self._audio.output_codec})")
        log.info("writing video '%s' (%s, %dx%d at %g fps%s)", self.path, self._codec, width,
                 height, self.fps, sound)

    def _remove_abandoned_copies(self) -> None:
        """Remove the copies with the index first that killed runs into ``path`` left: half
        written, they never play (the index comes last), and each one's recording is beside it
        as its partial file. An input of this run is left alone, whatever its name."""
        for copy in abandoned_partials(self._final, self._partial.suffix, FINISHING):
            if _is_protected(copy, self._protected):
                continue
            size = _size_text(copy)
            try:
                copy.unlink()
            except OSError as error:
                log.debug("'%s' not removed: %s", copy, error)
                continue
            log.warning("removed '%s' (%s): a half-written copy with the index first that an "
                        "earlier run into '%s' left when it was stopped while finishing; the "
                        "recording it copied is that run's partial file", copy, size, self.path)

    def write(self, image: np.ndarray, pts_s: Optional[float] = None) -> None:
        """Append one frame (grey and BGRA are stored as BGR), shown at ``pts_s`` seconds
        (``None``: one frame after the last)."""
        if self._closed:
            raise ValueError("write() after close()")
        _check_image(image)
        if self._container is None:
            self.size = self.size or (image.shape[1], image.shape[0])
            self._open(self.size)
        frame = to_bgr(image, self.size, out=self._buffer)
        if frame.shape[:2] != image.shape[:2]:
            if self._buffer is None:
                log.warning("video '%s': frames of %dx%d resized to %dx%d", self.path,
                            image.shape[1], image.shape[0], *self.size)
            self._buffer = frame
        self.frames_written += 1
        width, height = self._stored_size
        picture = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]),
                                                   format="bgr24")
        try:
            if self._timed:
                self._write_timed(picture, pts_s)
            else:
                self._write_on_grid(picture, pts_s)
            if self._audio is not None:
                self._audio.until(self._end)
        except _EncoderRefused as refusal:
            self._give_up(refusal.error, refused=True)
        except self._write_errors as error:
            self._give_up(error)

    def _write_timed(self, picture, pts_s: Optional[float]) -> None:
        """.mp4: the frame at its own time, on the 90 kHz clock (after the last one)."""
        step = round(TICKS / self._rate)
        if pts_s is None:
            ticks = 0 if self._last_ticks is None else self._last_ticks + step
        else:
            ticks = max(0, round(pts_s * TICKS))
            if self._last_ticks is not None and ticks <= self._last_ticks:
                ticks = self._last_ticks + 1
        picture.pts, picture.time_base = ticks, Fraction(1, TICKS)
        self._last_ticks = ticks
        self._end = Fraction(ticks + step, TICKS)
        self._mux_held(self._container, self._encode(picture))
        self._stored += 1

    def _mux_held(self, container, packets) -> None:
        """Mux all but the newest packet, which waits for the next (or for close)."""
        for packet in packets:
            self._picture_bytes += packet.size
            if self._first_dts is None:
                self._first_dts = packet.dts
            if self._held is not None:
                container.mux(self._held)
            self._held = packet

    def _mux_last(self, container) -> None:
        """Mux the held last packet with the duration that ends the track where the picture
        ends. The muxer takes the track's length from the packets' decoding times; with
        B-frames and a variable frame rate the last of those lies before the last frame's
        time, and the file would claim to end early."""
        if self._held is None:
            return
        held, self._held = self._held, None
        if held.dts is not None and self._first_dts is not None:
            end = round(self._end * TICKS)
            held.duration = max(held.duration or 0, end + self._first_dts - held.dts)
        container.mux(held)

    def _write_on_grid(self, picture, pts_s: Optional[float]) -> None:
        """.avi: the frame in the slot its time falls in at ``fps``: slots it skipped get the
        frame before again (or this one, at the start); a slot already written drops it."""
        slot = self._stored if pts_s is None else max(0, round(pts_s * self._rate))
        if slot < self._stored:
            self.frames_dropped += 1
            return
        filler = self._previous if self._previous is not None else picture
        while self._stored < slot:
            self._encode_slot(filler)
            self.frames_repeated += 1
        self._encode_slot(picture)
        self._previous = picture

    def _encode(self, picture):
        """The encoder's packets for ``picture`` (``None``: those it still holds).

        Raises:
            _EncoderRefused: the encoder refused it (a frame larger than the codec takes: the
                encoder opens on the first frame).
        """
        try:
            return self._stream.encode(picture)
        except self._av.FFmpegError as error:
            raise _EncoderRefused(error) from None

    def _encode_slot(self, picture) -> None:
        picture.pts, picture.time_base = self._stored, 1 / self._rate
        self._container.mux(self._encode(picture))
        self._stored += 1
        self._end = Fraction(self._stored) / self._rate

    def close(self) -> None:
        """Finish the file, check it reads back whole, and move it to ``path``; safe twice.

        Raises:
            InputError: a write failed (:class:`OutputFull`: the disk is full, over quota or
                read-only), or the file does not read back whole: the partial file is kept
                where some of it plays (else removed), and an earlier file at ``path`` is kept;
                or memory ran out finishing it: the partial file is kept as written.
        """
        if self._closed:
            return
        self._closed = True
        if self._container is None:  # no frame came, or the file could not be opened
            remove_if_empty(self._made)
            return
        try:
            if self._timed:
                self._mux_held(self._container, self._encode(None))
                self._mux_last(self._container)
            else:
                self._container.mux(self._encode(None))
            if self._audio is not None:
                self._audio.finish(self._end)
            self._close_container()
        except _EncoderRefused as refusal:
            self._give_up(refusal.error, refused=True)
        except self._write_errors as error:
            self._give_up(error)
        try:
            self._finish()
        finally:
            self._release()  # moved, or reported: no longer a run's work in progress

    def _close_container(self) -> None:
        """Close the source's sound and the output (its trailer: the last fragment, the index);
        a write error is raised once both are closed."""
        container, self._container = self._container, None
        try:
            if self._audio is not None:
                self._audio.close()
        finally:
            container.close()

    def _give_up(self, error: BaseException, refused: bool = False) -> NoReturn:
        """A write failed: every later one would too (a full disk, an encoder that refuses the
        frame size) or the file is broken, so the recording ends here, with the partial file
        finished as far as it goes.

        Args:
            error: the write's error.
            refused: it was the encoder's, which refused the frame (see :meth:`_encode`).

        Raises:
            OutputFull: the disk is full, over quota or read-only.
            InputError: the encoder refused a frame (its size and codec, and what to write
                instead), or another write error.
        """
        self._closed = True
        if self._container is not None:
            try:
                self._close_container()
            except self._write_errors:
                pass  # the same disk refuses the rest: what is there is what there is
        if refused:
            width, height = self._stored_size
            other = ".avi" if self._timed else ".mp4"
            self._report_partial(
                f"the {self._codec} encoder refused frame {self.frames_written}, {width}x{height} "
                f"pixels ({_reason(error)})", full=False,
                advice=f"use smaller frames, or write a {other} or PNG frames (--out DIR/)")
        code = getattr(error, "errno", None)
        self._report_partial(f"{_reason(error)} after {self.frames_written} frames",
                             code in DISK_ERRNOS,
                             advice=SPACE_ADVICE if code in SPACE_ERRNOS else "choose another --out")

    def _report_partial(self, why: str, full: bool, advice: str = "") -> NoReturn:
        """Keep the partial file where some of it plays (a .mp4 cut after its last whole
        fragment, a .avi after its last whole chunk), else remove it, and raise the error that
        names it, ending with ``advice`` (:data:`SPACE_ADVICE` where none is given)."""
        try:
            (trim_to_whole_boxes if self._timed else trim_to_whole_chunks)(self._partial)
            seconds = playable(self._av, self._partial)[1]
            if seconds:
                kept = f"the partial file '{self._partial}' plays its first {seconds:.1f} s"
            else:  # it would only keep the disk full
                self._partial.unlink(missing_ok=True)
                kept = "nothing of it plays, so it was removed"
        finally:
            self._release()
            remove_if_empty(self._made)  # where nothing of it is kept
        raise (OutputFull if full else InputError)(
            f"cannot write video '{self.path}': {why}; {kept}; {advice or SPACE_ADVICE}") from None

    def _finish(self) -> None:
        """Check the closed partial file (a .mp4: its copy with the index first) and move it
        over ``path``, or report it."""
        finished = self._copy_with_index_first() if self._timed else self._partial
        try:
            whole, width, height = self._read_back(finished)
        except (*self._write_errors, MemoryError) as error:  # memory ran out: not checked
            if finished != self._partial:  # the recording itself holds every frame: keep it
                finished.unlink(missing_ok=True)
            self._report_no_memory("reading it back to check it", error)
        if not whole:
            if finished != self._partial:  # the recording itself holds every frame: keep it
                finished.unlink(missing_ok=True)
                raise InputError(f"cannot finish video '{self.path}': its copy with the index "
                                 f"first does not read back whole (is the disk full?); the whole "
                                 f"recording is '{self._partial}' (a fragmented .mp4, which "
                                 "plays); free space or choose another --out")
            self._report_partial(f"it does not read back whole ({self.frames_written} frames "
                                 "given; is the disk full?)", full=False)
        try:
            os.replace(finished, self._final)
        except OSError as error:
            whole = f"the whole file is '{finished}'"
            if finished != self._partial:  # the recording holds every frame: keep that one
                finished.unlink(missing_ok=True)
                whole = (f"the whole recording is '{self._partial}' (a fragmented .mp4, which "
                         "plays)")
            raise InputError(f"cannot finish video '{self.path}': {error.strerror or error}; "
                             f"{whole}") from None
        if finished != self._partial:
            self._partial.unlink(missing_ok=True)
        if (width, height) != tuple(self.size):
            log.warning("video '%s': %dx%d frames were stored as %dx%d (%s keeps even sizes); "
                        "write PNG frames (--out DIR/) to keep every pixel", self.path,
                        *self.size, width, height, self._codec)
        sound = self._audio is not None and self._audio.packets
        log.info("wrote %s to '%s'%s", counted(self.frames_written, "frame"), self.path,
                 "" if not sound else " with sound" if self._audio.problem is None
                 else " with part of its sound")
        if self.frames_repeated or self.frames_dropped:
            log.info("video '%s' holds %g fps: %s shown again where the source skipped "
                     "ahead, %d dropped where two fell in one frame's time (a .mp4 keeps each "
                     "frame's own time)", self.path, self.fps,
                     counted(self.frames_repeated, "frame"),
                     self.frames_dropped)

    def _report_no_memory(self, doing: str, error: BaseException) -> NoReturn:
        """Memory ran out while the closed recording was copied or read back (a cap such as
        ``ulimit -v``): the recording is as whole as it was written, only not checked, so it
        is kept as it is and named, neither trimmed nor judged by a read that memory cut short
        (which would take it for a file of which nothing plays, and remove it)."""
        kept = (f"the whole recording is '{self._partial}' (a fragmented .mp4, which plays)"
                if self._timed else f"the file is kept, not checked, as '{self._partial}'")
        raise InputError(f"cannot finish video '{self.path}': memory ran out while {doing} "
                         f"({_reason(error)}); {kept}; {MEMORY_ADVICE}") from None

    def _copy_with_index_first(self) -> Path:
        """The recorded (fragmented) .mp4 copied, packet for packet, into a second hidden file
        with its index at the front; that file's path. It stays locked until ``_release()``
        (after it is moved), so no other run into the same file takes it for a killed run's.

        Raises:
            OutputFull, InputError: the recording lacks frames (its muxer reports no failed
                write of a fragment at its close: they are counted here; OutputFull where its
                disk has no room for the bytes missing), and is kept as far as it plays; or the copy cannot be written: it is removed, and the recording,
                whole, is kept and named; or memory runs out copying it: the recording is
                kept as written and named (:meth:`_report_no_memory`).
            Whatever else stops the copy (Ctrl-C, SIGTERM): the copy is removed and the
                recording, whole, is kept and named in a warning.
        """
        copy = temporary_beside(self._final, FINISHING + self._partial.suffix)
        failure, copied = None, 0
        try:
            self._copy_claim = _claim(copy)  # the next run removes it if this one is killed
            copied = remux_faststart(self._partial, copy, self._end)
        except (*self._write_errors, MemoryError) as error:
            failure = error
        except BaseException:
            self._drop_copy(copy)
            log.warning("video '%s' was not finished: stopped while copying it with its index "
                        "first; the whole recording is '%s' (a fragmented .mp4, which plays)",
                        self.path, self._partial)
            raise
        if failure is not None and ran_out_of_memory(failure):
            self._drop_copy(copy)
            self._report_no_memory("copying it with its index first", failure)
        if failure is not None or copied != self._stored:
            self._drop_copy(copy)
            recorded = copied if failure is None else playable(self._av, self._partial)[0]
            if recorded != self._stored:
                if self._out_of_space():
                    self._report_partial(f"{os.strerror(errno.ENOSPC)} after "
                                         f"{self.frames_written} frames ({recorded} of the "
                                         f"{self._stored} stored reached the disk)", full=True)
                self._report_partial(f"{recorded} of the {self._stored} frames stored reached "
                                     "the disk (is it full?)", full=False)
            code = getattr(failure, "errno", None)
            raise (OutputFull if code in DISK_ERRNOS else InputError)(
                f"cannot finish video '{self.path}': its copy with the index first cannot be "
                f"written ({_reason(failure)}); the whole recording is '{self._partial}' (a "
                "fragmented .mp4, which plays); "
                f"{SPACE_ADVICE if code in SPACE_ERRNOS else 'choose another --out'}")
        return copy

    def _out_of_space(self) -> bool:
        """Whether the recording lacks frames for want of space (a fragmenting muxer reports
        no failed write): it is smaller than the encoded frames given to the muxer, and its
        disk has less room left than the bytes missing (none, where the disk filled up)."""
        try:
            missing = self._picture_bytes - self._partial.stat().st_size
            disk = os.statvfs(self._partial.parent)
        except (OSError, AttributeError):  # gone, or no statvfs (Windows): not known to be full
            return False
        return missing > 0 and disk.f_bavail * disk.f_frsize < missing

    def _drop_copy(self, copy: Path) -> None:
        """Remove the copy with the index first, then let go of its lock."""
        copy.unlink(missing_ok=True)
        if self._copy_claim is not None:
            os.close(self._copy_claim)
            self._copy_claim = None

    def _read_back(self, path: Path) -> tuple[bool, int, int]:
        """Whether the finished file ``path`` holds every frame stored (the count its header
        gives) and its last frame decodes at the last frame's time (a writer cut short by a
        full disk may still record the full count), and the frame size it stores. Read with
        PyAV by time, as written: a seek by frame number lands wrong where the times have gaps.

        Raises:
            MemoryError, av.FFmpegError, OSError: memory ran out (:func:`ran_out_of_memory`),
                which says nothing of the file: it is not taken for one that does not read.
        """
        av = self._av
        errors = (av.FFmpegError, OSError, ValueError, IndexError)
        try:
            container = av.open(str(path))
        except errors as error:
            _raise_if_memory(error)
            return False, 0, 0  # nothing of it reads
        with container:
            try:
                stream = container.streams.video[0]
                size = stream.codec_context.width, stream.codec_context.height
            except errors as error:
                _raise_if_memory(error)
                return False, 0, 0
            if stream.frames != self._stored or self._stored == 0:
                return False, *size
            last_s = (Fraction(self._last_ticks, TICKS) if self._timed
                      else Fraction(self._stored - 1) / self._rate)
            shown = None
            try:
                container.seek(int(last_s / stream.time_base), stream=stream, backward=True)
                for picture in container.decode(stream):
                    shown = picture.time
            except errors as error:  # a cut file: what reads before the cut may be salvaged
                _raise_if_memory(error)
                return False, *size
        return shown is not None and abs(shown - float(last_s)) < 0.5 / self.fps, *size

    def _release(self) -> None:
        for name in ("_claim", "_copy_claim"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)  # closing the descriptor releases its lock
                setattr(self, name, None)


def check_video_out(path: Path, protected_ids: set[tuple[int, int]], *,
                    create: bool = False) -> list[Path]:
    """Whether a video may be written to ``path``: no input (by its ``protected_ids``), no
    folder, and a folder that is there or can be made, and takes files.

    Args:
        create: make the video's folder (the sink, as it opens); else nothing is made (the
            check before the model loads, whose run may yet fail).

    Returns:
        The folders made (:func:`~portrait.sink.paths._prepare_folder`); none without
        ``create``.

    Raises:
        InputError: what stands in the way, in one line.
    """
    _refuse_input(path, protected_ids)
    if path.is_dir():
        raise InputError(f"cannot write video '{path}': it is a folder; give a file name")
    if create:
        return _prepare_folder(path.parent, f"video '{path}'")
    check_folder(path.parent, f"video '{path}'")
    return []


def _claim(path: Path) -> Optional[int]:
    """Create ``path`` and hold a lock on it while this process writes it (the system releases
    it when the process ends, however it ends); ``None`` where there are no such locks."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    if fcntl is None:
        os.close(fd)
        return None
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else holds it
    return fd


def abandoned_partials(final: Path, ext: str, kind: str = ".partial") -> list[Path]:
    """The partial files (``.NAME.TOKEN.partial<ext>``; with ``kind`` :data:`FINISHING`, the
    copies with the index first, ``.NAME.TOKEN.finishing<ext>``) beside ``final`` that no
    running writer holds: those of runs that were killed (SIGKILL, the out-of-memory killer) or
    whose machine stopped, which nothing could finish or remove. Empty where there are no locks
    to tell (Windows)."""
    if fcntl is None:
        return []
    prefix = hidden_prefix(final, f"{kind}{ext}")  # as temporary_beside names them
    pattern = f"{glob.escape(prefix)}.{'[0-9a-f]' * 8}{kind}{glob.escape(ext)}"
    found = []
    for candidate in sorted(final.parent.glob(pattern)):
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            found.append(candidate)
        except OSError:  # a run is writing it now
            pass
        finally:
            os.close(fd)
    return found


def _size_text(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError:
        return "size unknown"
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size} bytes"


def _raise_if_memory(error: BaseException) -> None:
    """Raise ``error`` again where it says memory ran out (:func:`ran_out_of_memory`)."""
    if ran_out_of_memory(error):
        raise error


def _reason(error: BaseException) -> str:
    """An OS or FFmpeg error as a short reason ("File too large")."""
    return getattr(error, "strerror", None) or str(error) or type(error).__name__

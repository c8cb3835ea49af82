"""Every frame of a video file, in order, optionally paced to its frame rate
(:class:`VideoFileSource`)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Union

import cv2
import numpy as np

from portrait.capture.base import (WALL_CLOCK, Clock, Frame, Source, opencv_can_open, quiet_opencv,
                                   to_bgr_uint8)
from portrait.capture.gif import gif_delays_s, rate_fps
from portrait.capture.images import IMAGE_EXTENSIONS, not_found, read_image
from portrait.errors import InputError
from portrait.words import counted

log = logging.getLogger(__name__)

# Containers estimate their frame count (Matroska from the duration): a frame or two short is
# normal, more than this is reported as truncation.
_FRAME_COUNT_SLACK = 2


def _presentation_s(pos_ms: float, previous_s: Optional[float], fps: float) -> float:
    """A frame's presentation time from the reader's ``CAP_PROP_POS_MSEC`` (counted from the
    start of the file's video, as the sound's place is), in seconds; one frame after the
    previous one where the container's time does not move forward (none, or out of order)."""
    pts_s = pos_ms / 1000 if pos_ms == pos_ms else -1.0  # NaN: no time
    if previous_s is None:
        return max(0.0, pts_s)
    return pts_s if pts_s > previous_s else previous_s + 1 / fps


class _Probed(NamedTuple):
    """What :func:`_probe` reads of a video file."""

    fps: Optional[float] = None  # as FFmpeg guesses it, or None
    video_start_s: float = 0.0  # on the file's timeline; 0 where unknown
    video_end_s: Optional[float] = None  # on the file's timeline (_video_end_s), or None
    matroska: bool = False  # a Matroska (or WebM) file: its frame count is from its length
    listed_frames: int = 0  # the video's frames as the container lists them; 0: not listed


def _probe(path: Path) -> _Probed:
    """What OpenCV's reader does not say, from PyAV: the video's frame rate as FFmpeg guesses it
    (its base rate, which a variable rate keeps: 25 for a 25 fps clip with a pause, where the
    average OpenCV reports may be 8), or ``None``; when the video starts on the file's
    timeline, in seconds (0 where unknown); where it ends there (:func:`_video_end_s`), or
    ``None``; whether the file is Matroska; and the frames its container lists (0 where it
    lists none: then OpenCV estimates its count from the file's length). Matroska's frame count, which OpenCV estimates
    from the file's length, counts from 0 to the end of its longest track: a video that starts
    after its sound, a file whose times all start late, or one whose sound goes on after the
    picture holds fewer frames. A file PyAV cannot read gives :class:`_Probed`'s defaults."""
    import av  # the reader is OpenCV's; PyAV only for what OpenCV does not say

    try:
        with av.open(str(path)) as container:
            matroska = "matroska" in container.format.name
            if not container.streams.video:
                return _Probed(matroska=matroska)
            video = container.streams.video[0]
            rate = video.guessed_rate
            start = video.start_time
            return _Probed(float(rate) if rate and 0 < rate <= 1000 else None,
                           max(0.0, float(start * video.time_base)) if start is not None else 0.0,
                           _video_end_s(video), matroska, max(0, video.frames or 0))
    except (av.FFmpegError, OSError, ValueError):
        return _Probed()


def _riff_cut_short(path: Path) -> bool:
    """Whether ``path`` is a RIFF file (an AVI) shorter than its header says: cut short (a
    recording that stopped with a crash, a copy broken off), so that the frame count its header
    lists, written as it was finished, is more than the file holds. From its first 8 bytes."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            size = os.fstat(handle.fileno()).st_size
    except OSError:
        return False
    return (len(head) == 8 and head[:4] == b"RIFF"
            and size < 8 + int.from_bytes(head[4:], "little"))


def _video_end_s(video) -> Optional[float]:
    """Where the video track ends on the file's timeline, in seconds, by Matroska's per-track
    ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``, which FFmpeg's muxer writes as it finishes the
    file, so a file cut short keeps its whole length there); ``None`` without one (then
    :func:`_picture_end_s`, only where frames are missing). Not the stream's duration: FFmpeg
    estimates that from what a file cut short still holds, and gives none for Matroska."""
    hours, _, rest = video.metadata.get("DURATION", "").partition(":")
    minutes, _, seconds = rest.partition(":")
    try:
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _picture_end_s(path: Path, file_end_s: float) -> Optional[float]:
    """Where the video track of a Matroska file (:func:`_probe` says which are; other
    containers count the video's own frames, not a file length's) ends on the file's timeline,
    in seconds, from its last packets: for a file without a ``DURATION`` tag
    (:func:`_video_end_s`), as mkvmerge may write one.
    The file is sought to its last video keyframe (from Matroska's cues, which a file cut short
    lacks: then read from its start), and its packets read from there, not decoded. Only a
    file whole to ``file_end_s`` (where its packets, any track's, reach that far) says where
    its picture ends: in a file cut short, the last video packet is where the cut is.

    Returns:
        The end of the last video packet, or ``None``: the file ends before ``file_end_s``,
        has no video packet after its last keyframe, or cannot be read.
    """
    import av

    try:
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            end_s = ((container.start_time or 0) + (container.duration or 0)) / av.time_base
            container.seek(int(end_s / video.time_base), backward=True, stream=video)
            picture_end_s, data_end_s = None, 0.0
            for packet in container.demux():
                if packet.pts is None:
                    continue
                packet_end_s = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                data_end_s = max(data_end_s, packet_end_s)
                if packet.stream.index == video.index:
                    picture_end_s = max(picture_end_s or 0.0, packet_end_s)
    except (av.FFmpegError, OSError, ValueError, IndexError):
        return None
    return picture_end_s if data_end_s >= file_end_s else None


def why_no_frame(path: Path, reader: str = "OpenCV") -> str:
    """Why a file gave ``reader`` no frame, and what to do: PyAV tells a file with no picture
    (only sound) from one it cannot decode."""
    import av

    generic = (f"not a video {reader} can decode, or the file is truncated or corrupt; check "
               "the file or re-encode it")
    try:
        if path.stat().st_size == 0:  # as a photo's reader says it
            return "the file is empty (0 bytes); check the file"
    except OSError:
        pass
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams})
                has = f"only {' and '.join(kinds)}" if kinds else "no streams"
                return f"it has no video stream ({has}); give a file with a picture"
    except (av.FFmpegError, OSError, ValueError):
        pass
    return generic


def file_identity(path: Path) -> Optional[tuple[int, int, int, int]]:
    """What tells the file on disk from another or an altered one: device, inode, size and
    modification time; ``None`` where it is gone."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


class FileSource(Source):
    """What each reader of one video file shares (:class:`VideoFileSource`,
    :class:`portrait.capture.scaled.ScaledVideo`): the path, refused where no file is there;
    whether the file is kept open at its end for a rewind; what the file on disk was as it was
    opened (:meth:`unchanged` tells a rewind whether it may seek in the open file); and the
    event that :meth:`close` sets.

    Args:
        path: the video file.
        rewindable: kept open at its end, for a rewind.

    Raises:
        InputError: nothing at ``path`` (a missing file, or a link to one), or a folder there.
    """

    def __init__(self, path: Union[str, Path], *, rewindable: bool) -> None:
        self.path = Path(path)
        self.rewindable = rewindable
        self._identity = file_identity(self.path)  # before opening: a change after it shows
        self._closed = threading.Event()
        if not self.path.exists():
            raise not_found(self.path, "video")
        if not self.path.is_file():
            raise InputError(f"video '{self.path}' is not a file; give a video file")

    def unchanged(self) -> bool:
        """Whether the file on disk is the one opened, as it was (not deleted, cut short,
        rewritten or replaced since)."""
        return self._identity is not None and file_identity(self.path) == self._identity


# FFmpeg's decoders of text art (its "tty" reader takes any text file: .txt, .nfo, .asc, ...):
# they draw the file's characters as a picture, so notes or a licence read as a video of text.
_TEXT_ART_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})


def refuse_text_file(path: Path) -> None:
    """Refuse ``path`` where FFmpeg reads it only as text drawn as a picture (:func:`_is_text_art`):
    each reader of video files (this module's, :class:`portrait.capture.scaled.ScaledVideo`).

    Raises:
        InputError: it is a text file, in one line.
    """
    if _is_text_art(path):
        raise InputError(f"cannot read video '{path}': it is a text file, which the video reader "
                         "would show as a picture of its text; give a video file")


def _is_text_art(path: Path) -> bool:
    """Whether FFmpeg reads ``path`` only as text drawn as a picture (a text file, not a video)."""
    import av

    try:
        with av.open(str(path)) as container:
            # A stream FFmpeg knows no decoder for (a damaged file's) has no codec context.
            return any(stream.codec_context is not None
                       and stream.codec_context.name in _TEXT_ART_CODECS
                       for stream in container.streams.video)
    except (av.FFmpegError, OSError, ValueError):
        return False


def _shown_size(capture: cv2.VideoCapture, size: tuple[int, int]) -> Optional[tuple[int, int]]:
    """The (w, h) players show a video at, where its pixels are not square (a sample aspect
    ratio other than 1:1, as DV, HDV and DVDs store the picture), from ``size``, the (w, h)
    of the frames OpenCV gives: the stored width stretched by it, which is the frames' height
    where OpenCV turned them a quarter by the rotation metadata. ``None`` for square pixels,
    or none named (FFmpeg's 0:1)."""
    num, den = capture.get(cv2.CAP_PROP_SAR_NUM), capture.get(cv2.CAP_PROP_SAR_DEN)
    if not (num > 0 and den > 0) or num == den:
        return None
    turned = (capture.get(cv2.CAP_PROP_ORIENTATION_AUTO) != 0
              and round(capture.get(cv2.CAP_PROP_ORIENTATION_META) / 90) % 2 == 1)
    stored_w, stored_h = (size[1], size[0]) if turned else size
    shown_w = max(1, round(stored_w * num / den))
    if shown_w == stored_w:
        return None
    return (size[0], shown_w) if turned else (shown_w, size[1])


def _open_video(path: Path) -> cv2.VideoCapture:
    # FFmpeg by name: CAP_ANY would also try the image-sequence reader on names with '%'.
    api = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
    return cv2.VideoCapture(str(path), api)


# What the app's --source makes of a photo (VideoFileSource's photo_note).
PHOTO_AS_SOURCE = "as --source it is a video of one frame; --image cuts out photos"


class VideoFileSource(FileSource):
    """Every frame of a video file, in order.

    Args:
        path: the video file.
        realtime: pace delivery to the file's timestamps, as a camera would (a frame is due
            its presentation time after the first); a slow consumer still gets every frame, in
            order.
        quiet: no info line on opening and no note on a file that ends short: for a file read
            again, which its first reading reported (a background video at each loop).
        rewindable: keep the file open at its end, for :meth:`rewind` (then :meth:`close` it).
        photo_note: what the warning for a photo given as a video says of it, after "'<path>' is
            a photo: " (by default the app's: a video of one frame as ``--source``, ``--image``
            for photos); a tool that takes videos otherwise says what a photo is to it. Quiet,
            it is a debug line.
        clock: what frames are timed and paced by (the wall's; tests give one that moves
            only when waited on).

    Each frame carries its presentation time (``Frame.pts_s``), so a frame rate that varies
    keeps its timing in a video file written from it; a GIF's frames their delays too
    (``Frame.duration_s``, read from its blocks, as viewers show them: under 20 ms, 100 ms),
    which set each frame's time after the first and its last frame's end (a
    :class:`portrait.capture.looping.LoopedSource` starts its next pass after it).

    Raises:
        InputError: missing file, or not a video OpenCV can decode.
    """

    def __init__(self, path: Union[str, Path], realtime: bool = False, *,
                 quiet: bool = False, rewindable: bool = False,
                 photo_note: str = PHOTO_AS_SOURCE, clock: Clock = WALL_CLOCK) -> None:
        self._capture: Optional[cv2.VideoCapture] = None
        self._clock = clock
        super().__init__(path, rewindable=rewindable)
        self.realtime = realtime
        self.quiet = quiet
        if not opencv_can_open(self.path):
            raise InputError(f"cannot read video '{self.path}': its name is not UTF-8 text, which "
                             "the video reader cannot open; rename the file")
        refuse_text_file(self.path)
        with quiet_opencv():
            capture = _open_video(self.path)
            started = self._clock.now()
            ok, image = capture.read() if capture.isOpened() else (False, None)
            self._first_decode_ms = (self._clock.now() - started) * 1000
            self._first_pts_s = _presentation_s(capture.get(cv2.CAP_PROP_POS_MSEC), None, 30.0)
        if not ok or image is None:
            capture.release()
            raise InputError(f"cannot read video '{self.path}': {why_no_frame(self.path)}")
        self._capture = capture
        self._first: Optional[np.ndarray] = to_bgr_uint8(image)
        self._size = (self._first.shape[1], self._first.shape[0])
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self._frame_count = count if count > 0 else None
        fps = capture.get(cv2.CAP_PROP_FPS)
        # Matroska: a frame count from the file's length; an AVI's or MP4's is its own frames'.
        probed = _probe(self.path)
        guessed, self._video_start_s, self._video_end_s, self._matroska = probed[:4]
        # OpenCV's count is the container's list where there is one, else the file's length
        # times the frame rate: a frame more or less than decode (74 of a clip of 73). An AVI
        # cut short lists the frames it had: the count is not what it holds.
        self._frame_count_listed = (self._frame_count == probed.listed_frames
                                    and not _riff_cut_short(self.path))
        if not (fps and 0 < fps <= 1000):
            fps = guessed
            if fps is None:
                log.log(logging.DEBUG if quiet else logging.WARNING,
                        "video '%s' reports no usable frame rate (%s); assuming 30 fps", self.path,
                        capture.get(cv2.CAP_PROP_FPS))
                fps = 30.0
        self._counted_fps = float(fps)  # the rate OpenCV's frame count is estimated with
        photo = self.path.suffix.lower() in IMAGE_EXTENSIONS and self.path.suffix.lower() != ".gif"
        # A GIF's frames each last their own delay (Frame.duration_s), as viewers show it (under
        # 20 ms: 100 ms), and each follows the one before when its delay is over: OpenCV's
        # times (FFmpeg's) keep a 10 ms delay, and end where the last frame begins.
        self._delays_s = [] if photo else gif_delays_s(self.path)
        # Its rate is its delays' (FFmpeg guesses 100 fps from 10 ms ones, shown for 100 ms).
        self._fps = rate_fps(self._delays_s) or guessed or float(fps)
        if photo:
            log.log(logging.DEBUG if quiet else logging.WARNING, "'%s' is a photo: %s", self.path,
                    photo_note)
            # Read as --image reads it: upright by its EXIF orientation, which FFmpeg ignores.
            self._first = read_image(self.path)
            self._size = (self._first.shape[1], self._first.shape[0])
            self.rewindable = False  # read again as a photo, not as FFmpeg decodes it
        # None: square pixels, as stored (a photo is read as --image reads it, as stored)
        self._shown = None if photo else _shown_size(capture, self._size)
        if self._shown is not None:
            log.log(logging.DEBUG if quiet else logging.INFO,
                    "video '%s' stores its %dx%d picture with pixels that are not square (%g:%g):"
                    " its frames are read at %dx%d, the shape players show", self.path,
                    *self._size, capture.get(cv2.CAP_PROP_SAR_NUM),
                    capture.get(cv2.CAP_PROP_SAR_DEN), *self._shown)
            self._size = self._shown
        log.log(
            logging.DEBUG if quiet else logging.INFO, "video '%s': %dx%d at %g fps, %s",
            self.path, *self._size, self._fps, self._described_count(),
        )

    @property
    def fps(self) -> float:
        """The file's frame rate: a GIF's from its delays as shown (:func:`rate_fps`); else its
        base rate as FFmpeg guesses it, which a variable rate keeps (else what OpenCV reports,
        else 30)."""
        return self._fps

    @property
    def frame_count(self) -> Optional[int]:
        """Frames the container claims (an estimate for some formats), or ``None``."""
        return self._frame_count

    def _described_count(self) -> str:
        """The frame count as the log says it: ``"30 frames"`` where the container lists its
        frames, ``"about 74 frames"`` where the count is estimated from the file's length
        (Matroska, WebM) or listed by an AVI that is cut short (:func:`_riff_cut_short`),
        ``"unknown frames"`` without one."""
        if self._frame_count is None:
            return "unknown frames"
        count = counted(self._frame_count, "frame")
        return count if self._frame_count_listed else f"about {count}"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the first frame."""
        return self._size

    def __iter__(self) -> Iterator[Frame]:
        if self._capture is None or self._first is None:
            raise ValueError("a VideoFileSource can be iterated once (again after rewind()), "
                             "before close()")
        capture, image = self._capture, self._first
        self._first = None
        index = 0
        start = self._clock.now()
        decode_ms = self._first_decode_ms
        pts_s = self._first_pts_s
        while not self._closed.is_set():
            converted = self._clock.now()
            image = to_bgr_uint8(image)
            if self._shown is not None:
                enlarged = self._shown[0] * self._shown[1] > image.shape[0] * image.shape[1]
                image = cv2.resize(image, self._shown, interpolation=(
                    cv2.INTER_LINEAR if enlarged else cv2.INTER_AREA))
            decode_ms += (self._clock.now() - converted) * 1000
            wait_ms = None
            if self.realtime:  # waiting for the frame to be due is not decoding
                waiting = self._clock.now()
                due_s = start + (pts_s - self._first_pts_s) - waiting
                if due_s > 0 and self._clock.wait(self._closed, due_s):
                    break
                wait_ms = (self._clock.now() - waiting) * 1000
            yield Frame(image=image, index=index, time_s=self._clock.now(), decode_ms=decode_ms,
                        pts_s=pts_s, wait_ms=wait_ms, duration_s=(
                            self._delays_s[index] if index < len(self._delays_s) else None))
            if index == 0:  # the clock starts when the reader comes back for more: the app
                start = self._clock.now()  # takes the first frame, then loads the model
            index += 1
            if self._closed.is_set():
                break
            started = self._clock.now()
            with quiet_opencv():
                ok, image = capture.read()
            decode_ms = (self._clock.now() - started) * 1000
            if not ok or image is None:
                self._warn_if_short(index, pts_s)
                if self.rewindable:
                    return  # open, for rewind()
                break
            if index <= len(self._delays_s):  # a GIF's frame: when the one before is over
                pts_s += self._delays_s[index - 1]
            else:
                pts_s = _presentation_s(capture.get(cv2.CAP_PROP_POS_MSEC), pts_s, self._fps)
        self.close()

    def rewind(self) -> bool:
        """Make the next iteration play the file again from its first frame, by seeking in the
        file already open (a source made ``rewindable``, iterated to its end): for a 4K clip
        0.26 s where opening it again takes 0.66 s, and the same frames at the same times.

        Returns:
            True when rewound; False, the source closed, where seeking could not give what
            opening the file again would: the file changed on disk since it was opened
            (:meth:`unchanged`; opening it again says why it fails), or the first frame is not
            found at its time.
        """
        capture = self._capture
        if capture is None or not self.rewindable or not self.unchanged():
            self.close()
            return False
        with quiet_opencv():
            started = self._clock.now()
            ok = capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = capture.read() if ok else (False, None)
            decode_ms = (self._clock.now() - started) * 1000
            pts_s = _presentation_s(capture.get(cv2.CAP_PROP_POS_MSEC), None, 30.0)
        if not ok or image is None or pts_s != self._first_pts_s:
            log.debug("video '%s' could not be rewound (first frame at %s s, expected %s s)",
                      self.path, pts_s if ok else None, self._first_pts_s)
            self.close()
            return False
        self._first, self._first_decode_ms = image, decode_ms
        return True

    def _warn_if_short(self, frames_read: int, last_pts_s: float) -> None:
        """Say why fewer frames came than the container claims: a file cut short, or (when
        the frames reached the claimed length in time) a frame rate that varies, which is only
        noted: each frame keeps its time."""
        if (self.quiet or self._frame_count is None
                or frames_read >= self._frame_count - _FRAME_COUNT_SLACK):
            return
        # The count may be estimated from the file's timeline from 0 (see _probe), and the
        # frames' times count from the video's start.
        late_s = self._video_start_s
        counted = self._frame_count - round(late_s * self._counted_fps)
        if frames_read >= counted - _FRAME_COUNT_SLACK:
            return
        length_s = self._frame_count / self._counted_fps
        claimed = self._frame_count
        reached_s = late_s + last_pts_s + 1 / self._counted_fps
        video_end_s = self._video_end_s
        if video_end_s is None and self._matroska and self.unchanged():  # no DURATION tag
            video_end_s = _picture_end_s(self.path,
                                         length_s - _FRAME_COUNT_SLACK / self._counted_fps)
        if video_end_s is not None and video_end_s < 0.95 * length_s:
            # The count is the file's, whose sound goes on after the picture: the picture's
            # own end is the one to reach, and its frames are the ones it claims.
            length_s = video_end_s
            claimed = round((length_s - late_s) * self._counted_fps)
            if frames_read >= claimed - _FRAME_COUNT_SLACK:
                return
        if reached_s >= 0.95 * length_s:
            log.info("video '%s' has a variable frame rate: %d frames over %.1f s; a video file "
                     "written from it keeps each frame's time", self.path, frames_read, reached_s)
        else:
            log.warning(
                "video '%s' ended after %d of the %d frames it claims (%.1f of %.1f s): the file "
                "may be truncated", self.path, frames_read, claimed, reached_s, length_s,
            )

    def close(self) -> None:
        """Stop iteration and release the file; safe twice."""
        self._closed.set()
        if self._capture is not None:
            self._capture.release()
            self._capture = None

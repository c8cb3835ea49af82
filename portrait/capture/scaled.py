"""A video file decoded by PyAV and converted only at the size it is shown at
(:class:`ScaledVideo`, :func:`cover_picture`): a background video's reader.

OpenCV's reader converts each frame to BGR at its own size, and :func:`portrait.composite.cover`
then scales it down (INTER_AREA: 19 ms of CPU for a 4K frame to 720p here). FFmpeg's swscale
scales the YUV planes and converts only the pixels shown: a background reader behind 720p made
a 4K H.264 clip's frames at 33.9 fps instead of 16.3 (28 ms of CPU a frame instead of 50), a
1080p one's at 79 instead of 36 (10 ms instead of 22); medians of 5 interleaved runs on 2 busy
cores. The pictures differ from OpenCV's scaling by about 1 grey level on average. PyAV also
opens a file whose name is not UTF-8, which OpenCV's reader cannot.

A VP8 or VP9 video with alpha is decoded by libvpx, which gives its alpha where FFmpeg's own
decoder drops it (:mod:`portrait.capture.alpha`). A GIF that restores a frame to its background
colour is shown as browsers show it, the area left transparent
(:func:`portrait.capture.gif.with_other_background`).
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np

from portrait.capture.alpha import alpha_of
from portrait.capture.base import Frame
from portrait.capture.gif import delays_s, frame_delay_s, rate_fps, with_other_background
from portrait.capture.video import FileSource, refuse_text_file, why_no_frame
from portrait.errors import InputError

log = logging.getLogger(__name__)

# Past this many times the output's pixels, the frame is converted whole and cover() crops
# only the part in view (a panorama's proportions would otherwise make a huge frame).
_SCALED_AT_MOST = 4


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """``image`` turned by the video's display rotation (degrees counter-clockwise, as FFmpeg
    gives it), as OpenCV's reader and players show it."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def display_size(picture) -> tuple[int, int]:
    """The (w, h) a decoded frame is shown at before its rotation: its width stretched by its
    pixels' aspect (``sample_aspect``, which :class:`ScaledVideo` attaches where the video's
    pixels are not square: DV, HDV, a DVD), as players show it."""
    aspect = getattr(picture, "sample_aspect", 1.0)
    return max(1, round(picture.width * aspect)), picture.height


def shown_size(picture) -> tuple[int, int]:
    """The (w, h) players show a decoded frame at: its :func:`display_size`, turned a quarter
    where its display rotation says so."""
    width, height = display_size(picture)
    return (height, width) if round(picture.rotation / 90) % 2 == 1 else (width, height)


def described_size(stored: tuple[int, int], shown: tuple[int, int]) -> str:
    """``"WxH"`` of the size a video is shown at, with the size it is stored at where that
    differs (pixels that are not square, a rotation): ``"720x480 shown as 853x480"``."""
    if stored == shown:
        return f"{shown[0]}x{shown[1]}"
    return f"{stored[0]}x{stored[1]} shown as {shown[0]}x{shown[1]}"


def display_array(picture, format: str) -> np.ndarray:
    """A decoded frame converted to ``format`` at its :func:`display_size`, not turned: the
    decoder's own buffer where that is the frame's size and format."""
    width, height = display_size(picture)
    if (width, height) == (picture.width, picture.height):
        return picture.to_ndarray(format=format)
    return picture.to_ndarray(width=width, height=height, format=format, interpolation="AREA")


def cover_picture(picture, size: tuple[int, int]) -> np.ndarray:
    """:func:`portrait.composite.cover` of a decoded frame (an ``av.VideoFrame``), upright by
    its display rotation and at its pixels' aspect (:func:`display_size`): converted to BGR
    straight at the size that covers ``size`` (w, h), then centre-cropped."""
    from portrait.composite import cover

    width, height = size
    turned = round(picture.rotation / 90) % 2 == 1
    src_w, src_h = shown_size(picture)
    scale = max(width / src_w, height / src_h)
    scaled_w, scaled_h = max(width, round(src_w * scale)), max(height, round(src_h * scale))
    if scaled_w * scaled_h > _SCALED_AT_MOST * width * height:
        return cover(upright(display_array(picture, "bgr24"), picture.rotation), size)
    convert_w, convert_h = (scaled_h, scaled_w) if turned else (scaled_w, scaled_h)
    image = upright(picture.to_ndarray(width=convert_w, height=convert_h, format="bgr24",
                                        interpolation="AREA"), picture.rotation)
    left, top = (scaled_w - width) // 2, (scaled_h - height) // 2
    return np.ascontiguousarray(image[top:top + height, left:left + width])


class ScaledVideo(FileSource):
    """Every frame of a video file as FFmpeg decodes it (``Frame.image`` an ``av.VideoFrame``,
    for :func:`cover_picture`), with its time from the video's start.

    PyAV's own threading (slices only) is kept: frame threading (``thread_type = "AUTO"``)
    decoded a 4K H.264 clip no faster here (27.3 vs 26.3 fps, medians of 7 interleaved runs on
    2 busy cores) for 4 % more CPU a frame, taken from the live pipeline.

    Args:
        path: the video file.
        quiet: no info line on opening (a file read again).
        rewindable: kept open at its end, for :meth:`rewind`.

    Raises:
        InputError: a missing file, or one with no video FFmpeg can decode.
    """

    def __init__(self, path: Union[str, Path], *, quiet: bool = False,
                 rewindable: bool = False) -> None:
        import av

        self._container = None
        self._decoder = None  # the stream's own, or one that gives its alpha (libvpx's)
        self._rotation = 0  # what that one does not attach to its frames
        self._other = None  # a GIF with another background colour, decoded beside it
        self._delays_s: list[float] = []  # a GIF's, from its blocks (gif.delays_s)
        super().__init__(path, rewindable=rewindable)
        refuse_text_file(self.path)  # FFmpeg would draw its text as the picture
        try:
            self._container = av.open(str(self.path))
            self._stream = self._container.streams.video[0]
            decoder = alpha_of(self._stream).decoder
            if decoder is not None:
                self._rotation = self._own_rotation()
                self._decoder = av.CodecContext.create(decoder, "r")
            if self._container.format.name == "gif":
                data = self.path.read_bytes()
                self._delays_s = delays_s(data)
                other = with_other_background(data)
                if other is not None:
                    self._other = av.open(io.BytesIO(other))
            self._first: Optional[object] = self._decode_first()
        except (av.FFmpegError, OSError, ValueError, IndexError, StopIteration):
            self.close()
            raise InputError(f"cannot read video '{self.path}': "
                             f"{why_no_frame(self.path, 'FFmpeg')}") from None
        # A GIF's frames each last their own delay, as browsers show it (frame_delay_s); a
        # video's last frame lasts one frame at its rate.
        self._own_durations = self._container.format.name == "gif"
        rate = self._stream.guessed_rate
        self._fps = float(rate) if rate and 0 < rate <= 1000 else 30.0
        if self._own_durations:
            self._fps = rate_fps(self._delays_s) or 1 / self._duration_s(self._first, 0)
        self._first_pts_s = self._time_s(self._first, None)
        # The size the user sees the video at, not only the one it is stored at.
        log.log(logging.DEBUG if quiet else logging.INFO, "video '%s': %s at %g fps", self.path,
                described_size((self._first.width, self._first.height), shown_size(self._first)),
                self._fps)

    @property
    def fps(self) -> float:
        """The video's frame rate as FFmpeg guesses it (else 30); a GIF's from its delays as shown
        (:func:`portrait.capture.gif.rate_fps`), as a GIF ``--source``'s."""
        return self._fps

    def _decode_first(self):
        if self._other is not None:
            self._frames = (_cleared(picture, beside) for picture, beside in
                            zip(self._container.decode(self._stream), self._other.decode(video=0)))
        elif self._decoder is None:
            self._frames = self._container.decode(self._stream)
        else:
            self._frames = (_Turned(picture, self._rotation) if self._rotation else picture
                            for packet in self._container.demux(self._stream)
                            for picture in self._decoder.decode(packet))
        aspect = self._stream.sample_aspect_ratio
        if aspect and aspect != 1:  # pixels that are not square: shown wider or narrower
            frames = self._frames
            self._frames = (_Turned(picture, picture.rotation, float(aspect)) for picture in frames)
        return next(self._frames)

    def _own_rotation(self) -> int:
        """The display rotation that the stream's own decoder gives its first frame (from the
        file's display matrix, which a decoder made apart from the file is not given), the file
        then sought back to its start; 0 where it gives none."""
        rotation = next((picture.rotation for picture in self._container.decode(self._stream)), 0)
        self._container.seek(0, stream=self._stream)
        return rotation

    def _time_s(self, picture, previous_s: Optional[float]) -> float:
        """Seconds from the video's start; one frame after the previous where time does not
        move forward (none, or out of order), as :class:`VideoFileSource` counts."""
        start = self._stream.start_time or 0
        if picture.pts is None:
            pts_s = -1.0
        else:
            pts_s = float((picture.pts - start) * self._stream.time_base)
        if previous_s is None:
            return max(0.0, pts_s)
        return pts_s if pts_s > previous_s else previous_s + 1 / self._fps

    def _duration_s(self, picture, index: int) -> Optional[float]:
        """How long a GIF's frame, the ``index``-th, is shown, by its delay as its blocks give
        it (:func:`portrait.capture.gif.delays_s`: under 20 ms, 100 ms; without a graphic
        control of its own, 100 ms, where FFmpeg gives it the delay before), else as FFmpeg
        gives it (:func:`frame_delay_s`); ``None`` for a video's frame."""
        if not self._own_durations:
            return None
        if index < len(self._delays_s):
            return self._delays_s[index]
        return frame_delay_s(float(picture.duration * self._stream.time_base)
                             if picture.duration else None)

    def __iter__(self) -> Iterator[Frame]:
        import av

        if self._first is None or self._closed.is_set():
            raise ValueError("a ScaledVideo can be iterated once (again after rewind()), "
                             "before close()")
        picture, self._first = self._first, None
        index, pts_s = 0, self._first_pts_s
        while True:
            duration_s = self._duration_s(picture, index)
            yield Frame(image=picture, index=index, time_s=time.perf_counter(),
                        pts_s=pts_s - self._first_pts_s, duration_s=duration_s)
            if self._closed.is_set():
                return
            try:
                picture = next(self._frames)
            except (StopIteration, av.FFmpegError, OSError):  # the end, or a file cut short
                break
            index += 1
            # A GIF's frame follows the one before when its delay as shown is over, where
            # FFmpeg's timestamp may be sooner (a delay under 20 ms).
            pts_s = pts_s + duration_s if self._own_durations else self._time_s(picture, pts_s)
        if not self.rewindable:
            self.close()

    def rewind(self) -> bool:
        """Make the next iteration start again at the first frame, seeking in the open file;
        False (closed) where the file changed on disk or its first frame is not found at its
        time."""
        import av

        if self._closed.is_set() or not self.rewindable or not self.unchanged():
            self.close()
            return False
        try:
            self._container.seek(0, stream=self._stream)
            if self._decoder is not None:  # the seek flushes the stream's own only
                self._decoder.flush_buffers()
            if self._other is not None:
                self._other.seek(0, stream=self._other.streams.video[0])
            first = self._decode_first()
        except (av.FFmpegError, OSError, StopIteration):
            first = None
        if first is None or self._time_s(first, None) != self._first_pts_s:
            self.close()
            return False
        self._first = first
        return True

    def close(self) -> None:
        """Release the file; safe twice."""
        self._closed.set()
        self._decoder = None
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._other is not None:
            self._other.close()
            self._other = None


def _cleared(picture, beside):
    """A GIF's frame as browsers show it: transparent where it shows the GIF's background
    colour, which is where it differs from ``beside``, the same frame decoded with another
    background colour (:func:`portrait.capture.gif.with_other_background`); ``picture`` itself
    where no pixel does."""
    import av

    bgra = picture.to_ndarray(format="bgra")  # the decoder's buffer: not ours
    # a pixel as one 32-bit word: a quarter of the comparisons, none to reduce over colours
    background = (bgra.view(np.uint32) != beside.to_ndarray(format="bgra").view(np.uint32))[..., 0]
    if not background.any():
        return picture
    bgra = bgra.copy()
    bgra[background, 3] = 0
    cleared = av.VideoFrame.from_ndarray(bgra, format="bgra")
    cleared.pts, cleared.duration, cleared.time_base = (picture.pts, picture.duration,
                                                        picture.time_base)
    return cleared


class _Turned:
    """A decoded frame (an ``av.VideoFrame``) with what its decoder did not attach, as
    :func:`cover_picture` reads it: the display rotation (``rotation``) and the pixels' aspect
    (``sample_aspect``, width to height; PyAV's frames have none); otherwise the frame itself."""

    __slots__ = ("_picture", "rotation", "sample_aspect")

    def __init__(self, picture, rotation: int, sample_aspect: float = 1.0) -> None:
        self._picture = picture
        self.rotation = rotation
        self.sample_aspect = sample_aspect

    def __getattr__(self, name: str):
        return getattr(self._picture, name)

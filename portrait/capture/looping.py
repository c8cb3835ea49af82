"""A video file played in a loop at its own rate: :class:`LoopingVideo` decodes it ahead in a
thread of its own, and :class:`PlayClock` says how far it has played (a background video);
:class:`LoopedSource` is a ``--source`` video that starts again when it ends (``--loop``)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

from portrait.capture.base import WALL_CLOCK, Clock, Frame, Source
from portrait.capture.video import VideoFileSource
from portrait.errors import InputError

log = logging.getLogger(__name__)

#: ``prepare(image, size)``: a decoded frame made ready for use at ``size`` (w, h), in any form
#: the user of :class:`LoopingVideo` wants (a scaled image; with the decoded one beside it).
Prepare = Callable[[np.ndarray, tuple[int, int]], Any]


class PlayClock:
    """Seconds played since the first call, on the stream's clock where there is one.

    ``advance(time_s)`` takes the frame's time (``Frame.pts_s``: a video file's own, so that a
    file-to-file run is the same every time) or ``None`` (then a monotonic clock). The first
    call is 0. Time never goes back: a clock that does (or a switch between the two clocks)
    continues from where it was.
    """

    def __init__(self) -> None:
        self.elapsed_s = 0.0
        self._origin: Optional[float] = None
        self._on_stream: Optional[bool] = None

    def advance(self, time_s: Optional[float] = None) -> float:
        """The seconds played at ``time_s`` (``None``: now, by the monotonic clock)."""
        on_stream = time_s is not None
        now = time_s if on_stream else time.monotonic()
        if self._origin is None or on_stream != self._on_stream:
            self._origin, self._on_stream = now - self.elapsed_s, on_stream
        self.elapsed_s = max(self.elapsed_s, now - self._origin)
        return self.elapsed_s


class LoopingVideo:
    """A video file decoded in a loop, ahead, in a daemon thread, each frame ``prepare``\\ d
    there (scaled to the output), so that whoever shows it only picks the frame due.

    Frames are placed on one timeline: seconds from the first frame, by the file's own
    timestamps (:class:`VideoFileSource`), each loop following the last (its last frame lasts
    its ``duration_s`` where the reader gives one, a GIF's own delay; else one frame at the
    file's rate). At most ``ahead`` prepared frames wait; the thread then
    sleeps until one is taken. Whole loops that fell due meanwhile (after a pause) are skipped,
    not decoded; while the frame due is waited for (a file run), a frame that is already late
    (the next one is due too) is not prepared either. Live, it is: a reader slower than the
    clock (a 4K clip on a busy machine) then shows the newest frame it could, not none.

    Each loop costs the reader no wait: while one pass plays, the next is made ready beside it
    (:class:`_NextPass`; two open readers take turns, each rewound in the file it has open), so
    its first frame is decoded by the time it is due (opening the file again there had held a
    4K clip for 0.3-0.7 s each loop; the second reader's memory is the price: about 155 MiB for
    a 4K H.264 clip read by OpenCV, 100 by :class:`portrait.capture.scaled.ScaledVideo`). A
    video of one frame is read once: it is a still. Where the file changed on disk (deleted or
    cut short while it played), it is opened again; when that fails, one warning names the file
    and the thread ends: the last frame stays.

    Args:
        path: the video file.
        size: the size (w, h) given to ``prepare``; :attr:`size` may change it later.
        prepare: ``prepare(image, size)``, called in the thread.
        ahead: how many prepared frames may wait.
        reader: what reads the file, called as ``reader(path, quiet=True, rewindable=True)``:
            a :class:`VideoFileSource` unless given (a
            :class:`portrait.capture.scaled.ScaledVideo` gives FFmpeg's decoded frames).

    Raises:
        InputError: the file gives no frame (from :class:`VideoFileSource`).
    """

    def __init__(self, path: Union[str, Path], size: tuple[int, int], prepare: Prepare,
                 ahead: int = 2, *, reader: Optional[Callable[..., Source]] = None):
        if ahead < 1:
            raise ValueError(f"ahead must be at least 1, got {ahead}")
        self.path = Path(path)
        self.size = size
        self._prepare = prepare
        self._ahead = ahead
        self._reader = reader
        source = self._open()
        frames = iter(source)
        first = next(frames)
        #: The first frame, prepared at ``size``, at time 0.
        self.first: Any = prepare(first.image, size)
        # A video's frame is picked nearest its time; a GIF's (one that lasts its own delay,
        # Frame.duration_s) from its time until the next one's, as viewers show it: half its
        # first frame's delay early had shown a 20 ms frame after 100 ms ones 50 ms early, or
        # not at all. Its times, sums of hundredths, may fall short of one by a float's rounding.
        self._half_frame_s = 1e-6 if first.duration_s is not None else 0.5 / source.fps
        self._ready: deque = deque()  # (time_s, next frame's time_s, prepared), oldest first
        self._until_s = 0.0  # when the frame taken last ends: the next one's time, once known
        self._changed = threading.Condition()
        self._due_s = 0.0  # the latest time due: frames before it are late
        self._waited_for = True  # the last frame_at waited: late frames can be dropped
        self._stopping = False
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(source, frames, first.pts_s),
                                        name="background-video", daemon=True)
        self._thread.start()

    def frame_at(self, time_s: float, wait: bool = True) -> Optional[Any]:
        """The frame nearest ``time_s`` (seconds on the timeline): the newest that starts at
        most half a frame (of the file's rate) after it; or ``None`` when that is the one
        returned last. Nearest, not the last begun: times rounded to the millisecond (as
        Matroska stores them) fall just short of frames of another rate, and a 60 fps
        background behind 30 fps showed frames 0, 1, 4, 6, 7, 10 instead of 0, 2, 4, 6, 8.
        A GIF's frames, each of its own delay, are shown as viewers show them: the last begun.

        Args:
            time_s: seconds from the first frame; not less than the last call's.
            wait: wait until the frame due is prepared (or the file ended for good), so the
                same times give the same frames every run; else take what the thread has
                prepared by now (live: never wait for the decoder).
        """
        picked = None
        due_s = time_s + self._half_frame_s
        with self._changed:
            self._due_s = max(self._due_s, due_s)
            self._waited_for = wait
            while True:
                if self._ready and self._ready[0][0] <= due_s:
                    _, self._until_s, picked = self._ready.popleft()
                    self._changed.notify_all()
                elif (wait and not self._ready and self._until_s <= due_s
                      and not self._done):
                    self._changed.wait()  # the frame due is still being decoded
                else:
                    break
        return picked

    def close(self) -> None:
        """Stop the thread and release the file; safe twice."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)  # at most one frame's decoding

    # --- the thread ------------------------------------------------------------------------

    def _run(self, source: VideoFileSource, frames: Iterator, first_pts_s: Optional[float]) -> None:
        held: Optional[tuple[float, np.ndarray]] = None  # decoded, not prepared yet
        loop_start_s, first_pts = 0.0, first_pts_s or 0.0  # this loop's place on the timeline
        last_s, last_lasts_s = 0.0, 1 / source.fps
        count = 1  # frames of this loop: the first was read with the file
        next_pass: Optional[_NextPass] = None
        try:
            while True:
                for frame in frames:
                    if first_pts is None:
                        first_pts = frame.pts_s or 0.0
                    time_s = loop_start_s + (frame.pts_s or 0.0) - first_pts
                    if held is not None and not self._hand_over(held, time_s):
                        return
                    held, last_s = (time_s, frame.image), time_s
                    last_lasts_s = frame.duration_s or 1 / source.fps
                    count += 1
                    if next_pass is None:  # not a still: the second reader opens, beside
                        next_pass = _NextPass(self._open)
                    if self._stopping:
                        return
                if self._stopping or count == 1:  # stopped, or a still: nothing more to read
                    return
                # The last frame lasts its own time; loops that fell due meanwhile are skipped.
                loop_s = last_s - loop_start_s + last_lasts_s
                loop_start_s += loop_s
                with self._changed:
                    late_s = self._due_s - loop_start_s
                if late_s >= loop_s:
                    loop_start_s += math.floor(late_s / loop_s) * loop_s
                # Its successor is the next loop's first frame: hand it over before taking the
                # next pass, which a file run would otherwise wait for if it is not ready yet.
                if held is not None and not self._hand_over(held, loop_start_s):
                    return
                held = None
                again = next_pass.take() if next_pass is not None else None
                if again is None or not again.unchanged():  # the file changed: open it again
                    if again is not None:
                        again.close()
                    again = self._reopen()
                    if again is None:
                        return
                # The pass that ended is rewound beside the next one, for the one after.
                next_pass = _NextPass(lambda ended=source: _rewound(ended))
                source, frames, first_pts, count = again, iter(again), None, 0
        except Exception as error:  # noqa: BLE001: said once, with its kind; the last frame stays
            self._warn_stopped(f"{type(error).__name__}: {error}")
            held = None  # it may be the frame that failed to be prepared: not tried again
        finally:
            try:
                source.close()
                if next_pass is not None:
                    next_pass.close()
                if held is not None:  # the last frame: nothing follows it
                    self._hand_over(held, math.inf)
            finally:
                with self._changed:
                    self._done = True
                    self._changed.notify_all()

    def _open(self) -> Source:
        return (self._reader or VideoFileSource)(self.path, quiet=True, rewindable=True)

    def _reopen(self) -> Optional[Source]:
        try:
            return self._open()
        except InputError as error:
            self._warn_stopped(str(error))
            return None

    def _warn_stopped(self, why: str) -> None:
        log.warning("background video '%s' cannot be read any more (%s): its last frame stays "
                    "as the background", self.path, why)

    def _hand_over(self, held: tuple[float, np.ndarray], next_s: float) -> bool:
        """Prepare ``held`` and queue it, waiting for room; while frames are waited for, one
        whose successor (at ``next_s``) is due already is dropped unprepared. False once
        stopping."""
        with self._changed:
            if self._stopping:
                return False
            if next_s <= self._due_s and self._waited_for:
                return True
        prepared = self._prepare(held[1], self.size)
        with self._changed:
            while len(self._ready) >= self._ahead and not self._stopping:
                self._changed.wait()
            if self._stopping:
                return False
            self._ready.append((held[0], next_s, prepared))
            self._changed.notify_all()
        return True


def _rewound(source: VideoFileSource) -> Optional[VideoFileSource]:
    """``source`` rewound to its first frame, or ``None`` (and closed) where it is not, however
    its rewind fails: an error of any kind closes it too, not left open until collected."""
    rewound = False
    try:
        rewound = source.rewind()
    finally:
        if not rewound:
            source.close()
    return source if rewound else None


class _NextPass:
    """The next pass of a looping video made ready in a thread of its own while the current one
    plays: ``make()`` gives a :class:`VideoFileSource` at its first frame, decoded, or ``None``
    (it could not; then the reader opens the file itself, and says why that fails)."""

    def __init__(self, make: Callable[[], Optional[VideoFileSource]]):
        self._source: Optional[VideoFileSource] = None
        self._thread = threading.Thread(target=self._make, args=(make,),
                                        name="background-video-next", daemon=True)
        self._thread.start()

    def _make(self, make: Callable[[], Optional[VideoFileSource]]) -> None:
        try:
            self._source = make()
        except InputError as error:  # the reader opens it again, and says so if that fails
            log.debug("the next pass of a background video is not ready: %s", error)
        except Exception as error:  # noqa: BLE001: the reader opens the file again all the same
            log.debug("the next pass of a background video is not ready: %s: %s",
                      type(error).__name__, error)

    def take(self) -> Optional[VideoFileSource]:
        """The source made ready (waiting for it), or ``None``; given once."""
        self._thread.join()
        source, self._source = self._source, None
        return source

    def close(self) -> None:
        """Wait for the thread, and close the source it made if nobody took it."""
        source = self.take()
        if source is not None:
            source.close()


class LoopedSource(Source):
    """A video file as a source that does not end (``--loop``): its frames again and again, as
    a camera's would go on, on one timeline.

    Each pass continues the last one's times (``Frame.pts_s``): its first frame comes when the
    last frame's time is over (its ``duration_s``, else one frame at the file's rate), and
    paced (``realtime``), is delivered then, so what reads the times (a background video, a
    sink, the pace) sees a clip one pass long after another. ``Frame.index`` counts on too.
    The first frame of each pass after the first is marked ``cut``: a looped clip jumps from
    its last frame to its first, and the pipeline starts its smoothing and framing afresh there.
    Each pass after the first seeks back in the file already open
    (:meth:`VideoFileSource.rewind`), or opens it again where that fails (the file changed);
    a file that cannot be read again ends the source, with a warning that names it. A file of
    one frame (a photo) is read once and its frame repeated.

    Args:
        path: the video file.
        realtime: pace frames to their times, as :class:`VideoFileSource`'s ``realtime``.
        clock: what frames are timed and paced by (tests give one that moves only when waited
            on).

    Raises:
        InputError: the file is missing or no video (from :class:`VideoFileSource`).
    """

    def __init__(self, path: Union[str, Path], realtime: bool = False, *,
                 clock: Clock = WALL_CLOCK) -> None:
        self._realtime, self._clock = realtime, clock
        self._source: Optional[VideoFileSource] = VideoFileSource(
            path, realtime=realtime, rewindable=True, clock=clock)
        self.path = self._source.path
        self._fps = self._source.fps
        self._size = self._source.size
        self._closed = threading.Event()

    @property
    def fps(self) -> float:
        """The file's frame rate (:attr:`VideoFileSource.fps`)."""
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the first frame."""
        return self._size

    def __iter__(self) -> Iterator[Frame]:
        index, offset_s, end_s = 0, 0.0, None  # end_s: when the last pass's last frame ends
        last: Optional[Frame] = None
        still: Optional[Frame] = None  # the one frame of a file of one frame
        while not self._closed.is_set():
            wait_ms = None
            if last is not None and self._realtime:  # the last frame lasts its time
                waiting = self._clock.now()
                due_s = last.time_s + (last.duration_s or 1 / self._fps) - waiting
                if due_s > 0 and self._clock.wait(self._closed, due_s):
                    return
                wait_ms = (self._clock.now() - waiting) * 1000
            count = 0
            frames = iter(self._source) if still is None else iter(
                [replace(still, time_s=self._clock.now(), decode_ms=0.0)])
            for frame in frames:
                pts_s = frame.pts_s or 0.0
                if count == 0 and end_s is not None:
                    offset_s = end_s - pts_s
                first_of_pass = count == 0 and last is not None
                last = replace(frame, index=index, pts_s=pts_s + offset_s,
                               cut=first_of_pass and still is None,
                               wait_ms=wait_ms if first_of_pass else frame.wait_ms)
                yield last
                index += 1
                count += 1
            if last is None or self._closed.is_set():
                return
            end_s = last.pts_s + (last.duration_s or 1 / self._fps)
            if count == 1 and still is None:
                still = last
                self._close_source()
            elif still is None and not self._next_pass():
                return

    def _next_pass(self) -> bool:
        """Make :attr:`_source` give the file again from its first frame; False where it
        cannot (said in a warning)."""
        source, self._source = self._source, None
        rewound = _rewound(source) if source is not None else None
        if rewound is not None:
            self._source = rewound
            return True
        try:
            self._source = VideoFileSource(self.path, realtime=self._realtime, quiet=True,
                                           rewindable=True, clock=self._clock)
        except InputError as error:
            log.warning("--loop: video '%s' cannot be read again (%s); the stream ends with it",
                        self.path, error)
            return False
        return True

    def _close_source(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            source.close()

    def close(self) -> None:
        """Stop iteration and release the file; safe twice."""
        self._closed.set()
        self._close_source()

"""A video file played in a loop at its own rate: :class:`LoopingVideo` decodes it ahead in a
thread of its own, and :class:`PlayClock` says how far it has played (a background video)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

from portrait.capture.base import Source
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
        self._half_frame_s = 0.5 / source.fps
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

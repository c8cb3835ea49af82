"""Wires the stages: source → segment → smooth → refine → composite → frame → sink.

Two ways to run them:

* :class:`FrameProcessor` does the per-frame work for one frame; image mode calls it directly.
* :class:`StreamPipeline` overlaps the stages across threads for video and cameras::

      reader ──q──▶ segment ──q──▶ smooth·refine·composite·frame ──q──▶ output (caller's thread)

  OpenCV and TFLite release the GIL, so decode, inference and compositing of consecutive frames
  run on both cores at once. The queues are bounded. In live mode the reader drops the oldest
  waiting frame when the queue is full, so latency never builds up; in file mode nothing is
  dropped and frames come out in order (each stage has one worker and FIFO queues).

  Each of the three threads also calls OpenCV, whose own thread pool would otherwise use every
  core per call: while a stream runs, the pool is sized to the cores shared out among the stages
  (:func:`stream_opencv_threads`; one thread on a 2-core machine) and restored afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import cv2
import numpy as np

from portrait.capture.base import WALL_CLOCK, Clock
from portrait.composite import TransparentBackground
from portrait.controls import Controls, LiveBackground, LiveState
from portrait.options import PipelineOptions
from portrait.stats import WAIT, RunStats

log = logging.getLogger(__name__)

_END = object()  # flows down the queues after the last frame

#: Threads of a :class:`StreamPipeline` that call OpenCV at once: reader, segment, finish.
STREAM_STAGES = 3


def stream_opencv_threads(cores: Optional[int] = None, stages: int = STREAM_STAGES) -> int:
    """OpenCV's pool size while ``stages`` threads call it at once: ``cores // stages``, at least 1."""
    if stages < 1:
        raise ValueError(f"stages must be at least 1, got {stages}")
    return max(1, (cores or os.cpu_count() or 1) // stages)


def stream_inference_threads(threads: int = 0, cores: Optional[int] = None) -> int:
    """The interpreter's threads for a camera or video stream: ``threads`` as given (``--threads
    N``), or for 0 half the cores, at least 1. The model runs beside the reader and the finish
    stage, so a second interpreter thread on 2 cores mostly spins: one thread cut the paced CPU
    against the peer from 0.69 to 0.62 at the same latency (weights/HISTORY.md, "Live cost
    studies"). Photos keep every core (``threads`` 0 there is every core)."""
    if threads < 0:
        raise ValueError(f"threads must be 0 (auto) or more, got {threads}")
    return threads or max(1, (cores or os.cpu_count() or 1) // 2)


@contextlib.contextmanager
def opencv_threads(count: int):
    """Set OpenCV's (process-wide) thread pool to ``count`` threads; restore it on exit."""
    if count < 1:
        raise ValueError(f"OpenCV threads must be at least 1, got {count}")
    previous = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


@dataclass
class Packet:
    """One frame on its way through the stages, with what each stage made of it."""

    image: np.ndarray
    index: int
    time_s: float
    lost: bool = False  # a camera-lost marker: shown, not segmented, not counted as a frame
    pts_s: Optional[float] = None  # when the frame is shown (capture.Frame.pts_s)
    cut: bool = False  # the first frame of another shot (capture.Frame.cut): a looped clip
    # The live controls this frame is made with (effect, background, blur, mirror, and the
    # framing flag that auto-framing reads), read once as it enters ``segment``.
    state: Optional[LiveState] = None
    prob: Optional[np.ndarray] = None
    reused: bool = False  # ``prob`` is the last frame's mask, reused (counted once output)
    span: int = 1  # frames the smoother spreads ``prob``'s step over (FrameProcessor.segment)
    output: Optional[np.ndarray] = None
    ms: dict[str, float] = field(default_factory=dict)
    # A photo's own transparency (capture.Frame.alpha): what it shows of the person.
    photo_alpha: Optional[np.ndarray] = None


class StillDetector:
    """Says whether a frame barely differs from the last one that was segmented, by their grey
    thumbnails (:meth:`thumbnail`): the caller makes a frame's thumbnail once and hands it to
    both the test and :meth:`remember` (at 720p it is an area average of 20×20 blocks, about
    1 ms of CPU, and was made twice on each segmented frame)."""

    def __init__(self, threshold: float, size: tuple[int, int] = (64, 36)):
        self.threshold = threshold
        self.size = size
        self._reference: Optional[np.ndarray] = None

    def thumbnail(self, image: np.ndarray) -> np.ndarray:
        """The grey thumbnail of a BGR frame that the test compares."""
        return cv2.cvtColor(cv2.resize(image, self.size, interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2GRAY)

    def __call__(self, thumb: np.ndarray) -> bool:
        """Whether the frame of ``thumb`` (:meth:`thumbnail`) is still against the reference."""
        return self._reference is not None and float(
            cv2.norm(thumb, self._reference, cv2.NORM_L1)) / thumb.size < self.threshold

    def remember(self, thumb: np.ndarray) -> None:
        """Make the frame of ``thumb`` (:meth:`thumbnail`) the reference (call after
        segmenting it)."""
        self._reference = thumb

    def reset(self) -> None:
        self._reference = None


class BufferRing:
    """Output buffers allocated once and handed out in turn.

    A buffer comes back after ``count`` more requests, so ``count`` must exceed the number of
    outputs that can be alive at once (queued between stages or being written).
    """

    def __init__(self, count: int):
        self.count = count
        self._buffers: list[Optional[np.ndarray]] = [None] * count
        self._next = 0

    def get(self, shape: tuple, dtype=np.uint8) -> np.ndarray:
        i = self._next
        self._next = (i + 1) % self.count
        buffer = self._buffers[i]
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = self._buffers[i] = np.empty(shape, dtype)
        return buffer


class FrameProcessor:
    """The per-frame work of every stage, with the state that carries from frame to frame.

    Args:
        segmenter: a :class:`portrait.segment.Segmenter`.
        smoother: a :class:`portrait.smooth.TemporalSmoother`, or None (single images).
        refiner: a :class:`portrait.refine.Refiner`.
        background: from :func:`portrait.composite.make_background`, or a
            :class:`portrait.controls.LiveBackground` that follows the live state; ignored when
            ``matte``.
        matte: output the alpha matte (uint8 grey) instead of a composite.
        options: reuse of masks on still scenes.
        lost_frame: ``lost_frame(width, height)`` gives the image shown while a camera is lost.
        controls: live controls, polled once per frame as it enters ``segment`` (effect off
            skips the model and sends the frame; mirror flips the output; framing switches
            ``framer``); None: effect on.
        framer: a :class:`portrait.framing.AutoFramer`, or None. It frames the output (the
            composite, or the matte), so person, blur and background move together as under a
            real camera's zoom, with one warp of a buffer just written (see README); timed by
            each packet's ``pts_s``, so the frames a live run drops take their time with them.
        light_wrap: a :class:`portrait.lightwrap.LightWrap` for the composite, or None.
        foreground: a :class:`portrait.foreground.ForegroundEstimator` (the person's own colour
            at the soft edge), used while the live state's ``decontaminate`` is on (``e``), or
            on every frame without controls; None: the frame's colours.
        subject: a :class:`portrait.subject.SubjectSelector`, run on the smoothed probability
            (drops small regions apart from the person: a bystander's head at the frame's
            edge, a chair back), or None (keep everything; photos).
    """

    def __init__(self, segmenter, smoother, refiner, background, matte: bool = False,
                 options: PipelineOptions = PipelineOptions(),
                 lost_frame: Optional[Callable[[int, int], np.ndarray]] = None,
                 controls: Optional[Controls] = None, framer=None, light_wrap=None,
                 subject=None, foreground=None):
        self.segmenter = segmenter
        self.smoother = smoother
        self.refiner = refiner
        self.background = background
        self.matte = matte
        self.options = options
        self.lost_frame = lost_frame
        self.controls = controls
        self.framer = framer
        self.light_wrap = light_wrap
        self.subject = subject
        self.foreground = foreground
        self._alphas: Optional[BufferRing] = None
        self._framed: Optional[BufferRing] = None
        self._outputs: Optional[BufferRing] = None
        self._mirrored: Optional[BufferRing] = None
        self._still = StillDetector(options.still_threshold)
        self._last_prob: Optional[np.ndarray] = None
        self._reused = 0

    def reuse_buffers(self, in_flight: int) -> None:
        """Write alphas and outputs into rings of preallocated buffers instead of new arrays.

        Args:
            in_flight: how many outputs can be alive at once downstream of ``finish``; each
                returned array is overwritten that many frames later.
        """
        self._alphas = BufferRing(in_flight + 1)
        self._framed = BufferRing(in_flight + 1)
        self._outputs = BufferRing(in_flight + 1)
        self._mirrored = BufferRing(in_flight + 1)

    def reset(self) -> None:
        """Forget everything carried between frames (new source or scene)."""
        self._forget_last_mask()
        self._reused = 0
        self._forget_masks()
        if self.framer is not None:
            self.framer.reset()

    def _forget_last_mask(self) -> None:
        """The next frame runs the model: its scene is not the one the last mask was made of."""
        self._last_prob = None
        self._still.reset()

    def _forget_masks(self) -> None:
        """Start smoothing and subject selection afresh: the next mask blends with none before."""
        if self.smoother is not None:
            self.smoother.reset()
        if self.subject is not None:
            self.subject.reset()

    def segment(self, packet: Packet, behind: bool = False) -> bool:
        """Fill ``packet.prob``; returns True when the last mask was reused.

        The last mask is reused while the scene is still (at most ``max_reuse`` frames in a
        row), and on every other frame while ``behind`` (a live pipeline that is dropping
        frames): the model then runs at half the frame rate, while refinement still follows
        each new frame, instead of the output falling behind the camera. On a still scene
        ``packet.span`` tells the smoother that the mask stands for ``max_reuse + 1`` frames
        (``PipelineOptions.spread_still``).

        The live controls are read here, once per frame, into ``packet.state``; with the effect
        off the model does not run.
        """
        if self.controls is not None:
            height, width = packet.image.shape[:2]
            packet.state = self.controls.poll((width, height))
        if packet.lost or (packet.state is not None and not packet.state.effect):
            self._forget_last_mask()  # the scene after a reconnect or a pause is new
            return False
        if packet.cut:  # another shot: its first frame's mask is its own, not the last one's
            self._forget_last_mask()
        started = time.perf_counter()
        thumb = None  # the still test's thumbnail of this frame, made at most once
        still = False
        if self.options.reuse_still and self.options.max_reuse > 0 and self._last_prob is not None:
            thumb = self._still.thumbnail(packet.image)
            still = self._still(thumb)
        reuse = self._last_prob is not None and (
            (behind and self._reused < 1) or (still and self._reused < self.options.max_reuse))
        # On a still scene each mask is shown for up to max_reuse + 1 frames; the smoother
        # spreads its step over them, or the matte would jump each time the model runs again.
        packet.span = self.options.max_reuse + 1 if still and self.options.spread_still else 1
        if reuse:
            packet.prob = self._last_prob
            self._reused += 1
        else:
            packet.prob = self.segmenter.segment(packet.image)
            self._last_prob = packet.prob
            self._reused = 0
            if self.options.reuse_still:
                self._still.remember(thumb if thumb is not None
                                     else self._still.thumbnail(packet.image))
        packet.ms["segment"] = (time.perf_counter() - started) * 1000
        return reuse

    def finish(self, packet: Packet) -> None:
        """Smooth, refine, composite and frame (then mirror, if the state says so): fill
        ``packet.output``."""
        state = packet.state
        if packet.lost or (state is not None and not state.effect):
            # The scene after a reconnect or a pause is new: don't blend it with older masks.
            self._forget_masks()
            if packet.cut and self.framer is not None:
                # A seam while paused: the frame the effect comes back on is another shot's
                # all the same, to be framed at once, not glided to from the last shot's crop
                # and sized by its window.
                self.framer.cut()
            height, width = packet.image.shape[:2]
            if packet.lost:
                packet.output = (self.lost_frame(width, height) if self.lost_frame is not None
                                 else packet.image)
            else:
                packet.output = self._mirror(packet.image, state)
            return
        if packet.cut:
            # A looped clip jumps from its last frame to its first: blending the masks across
            # the jump would leave the last frame's person as a ghost over the first frames,
            # and the framing is cut to the new shot's person, not glided there.
            self._forget_masks()
            if self.framer is not None:
                self.framer.cut()
        t0 = time.perf_counter()
        prob = (self.smoother(packet.prob, packet.span) if self.smoother is not None
                else packet.prob)
        t_smooth = time.perf_counter()
        if self.subject is not None:
            prob = self.subject(prob)
        t1 = time.perf_counter()
        height, width = packet.image.shape[:2]
        alpha_out = self._alphas.get((height, width)) if self._alphas is not None else None
        alpha = self.refiner(packet.image, prob, out=alpha_out)
        if packet.photo_alpha is not None:
            # What the photo shows is all there is of the person: where it is transparent, its
            # hidden colours must not come back in a cut-out, matte or composite.
            cv2.multiply(alpha, packet.photo_alpha, dst=alpha, scale=1 / 255)
        t2 = time.perf_counter()
        if self.matte:
            output = alpha
        else:
            background = self.background
            if isinstance(background, LiveBackground):
                background = background.for_state(state or LiveState())
            out = None
            if self._outputs is not None:
                channels = 4 if isinstance(background, TransparentBackground) else 3
                out = self._outputs.get((height, width, channels))
            foreground = self.foreground if state is None or state.decontaminate else None
            # The frame's own time: a video background plays at its rate, the same every run
            # of a file; a live stream never waits for its decoder.
            # A picture behind the person is laid in flipped where the output is mirrored
            # below, so that it reads the right way round (its text, a logo).
            output = background.render(packet.image, alpha, out=out, light_wrap=self.light_wrap,
                                       foreground=foreground, time_s=packet.pts_s,
                                       live=self.options.live,
                                       mirrored=state is not None and state.mirror)
        t3 = time.perf_counter()
        if self.framer is not None:
            if state is not None:
                self.framer.enabled = state.framing  # the f key
            self.framer.update(alpha, packet.pts_s)  # the frame's own time: see framing.py
            if not self.framer.whole:
                out = self._framed.get(output.shape) if self._framed is not None else None
                output = self.framer.apply(output, out=out)
            if self.framer.enabled or not self.framer.whole:
                packet.ms["framing"] = (time.perf_counter() - t3) * 1000
        packet.output = self._mirror(output, state)
        if self.smoother is not None:
            packet.ms["smooth"] = (t_smooth - t0) * 1000
        if self.subject is not None:
            packet.ms["subject"] = (t1 - t_smooth) * 1000
        packet.ms["refine"] = (t2 - t1) * 1000
        packet.ms["composite"] = (t3 - t2) * 1000

    def _mirror(self, image: np.ndarray, state: Optional[LiveState]) -> np.ndarray:
        if state is None or not state.mirror:
            return image
        out = self._mirrored.get(image.shape) if self._mirrored is not None else None
        return cv2.flip(image, 1, dst=out)

    def process(self, image: np.ndarray, pts_s: Optional[float] = None,
                ms: Optional[dict[str, float]] = None,
                photo_alpha: Optional[np.ndarray] = None) -> np.ndarray:
        """All stages on one frame, in this thread; returns the output image. ``pts_s``: the
        frame's time (``None``: a video background goes by a monotonic clock). ``ms``: where
        given, each stage's milliseconds for this frame are put in it (``segment``,
        ``refine``, ``composite``, ...), as a stream's :class:`Packet` records them.
        ``photo_alpha``: a photo's own transparency (uint8, the image's size), which the
        person's alpha is multiplied by: what is transparent in the photo stays out of the
        person."""
        packet = Packet(image=image, index=0, time_s=time.perf_counter(), pts_s=pts_s,
                        photo_alpha=photo_alpha)
        self.segment(packet)
        self.finish(packet)
        if ms is not None:
            ms.update(packet.ms)
        return packet.output


class _Handoff(queue.Queue):
    """A queue whose producer can wait until its consumer has taken everything, woken by the
    ``get`` itself (the queue's own ``not_full`` condition), not by polling."""

    def wait_taken(self, abort: threading.Event) -> bool:
        """Wait until the queue is empty; False once ``abort`` is set."""
        with self.not_full:
            while self._qsize() and not abort.is_set():
                self.not_full.wait(0.1)
        return not abort.is_set()


class _Worker(threading.Thread):
    """Takes packets from ``inbox``, applies ``work``, puts them in ``outbox``; passes _END on.

    With an ``outbox`` that is a :class:`_Handoff` (live streams), it takes a packet only once
    the last one it made has been taken: a later stage slower than this one then finds one
    packet waiting, made from the newest frame the reader kept, not a queue of older ones.
    """

    def __init__(self, name: str, work: Callable[[Packet], None], inbox: queue.Queue,
                 outbox: queue.Queue, abort: threading.Event):
        super().__init__(name=name, daemon=True)
        self.work, self.inbox, self.outbox, self.abort = work, inbox, outbox, abort
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            while True:
                if isinstance(self.outbox, _Handoff) and not self.outbox.wait_taken(self.abort):
                    break
                item = _get(self.inbox, self.abort)
                if item is _END or item is None:
                    break
                self.work(item)
                if not _put(self.outbox, item, self.abort):
                    return
        except BaseException as error:  # handed to the caller's thread, which re-raises it
            self.error = error
            self.abort.set()
        _put(self.outbox, _END, self.abort)


def _get(q: queue.Queue, abort: threading.Event):
    """Blocking get that gives up (returns None) once ``abort`` is set."""
    while not abort.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return None


def _put(q: queue.Queue, item, abort: threading.Event) -> bool:
    """Blocking put that gives up (returns False) once ``abort`` is set."""
    while not abort.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _put_latest(q: queue.Queue, packet: Packet) -> int:
    """Put without blocking, dropping the oldest waiting packets; returns how many were dropped.
    A dropped packet's ``cut`` passes to ``packet``: the seam lies between the last frame
    processed and this one all the same."""
    dropped = 0
    while True:
        try:
            q.put_nowait(packet)
            return dropped
        except queue.Full:
            try:
                stale = q.get_nowait()
            except queue.Empty:
                continue
            dropped += 1
            packet.cut = packet.cut or stale.cut


class StreamPipeline:
    """Runs a frame source through a :class:`FrameProcessor` into a sink, stages in threads.

    Args:
        frames: an iterable of frames with ``image``, ``index``, ``time_s`` (capture.Frame).
        processor: the per-frame work.
        emit: called in the caller's thread with each output image and its frame's time
            (``capture.Frame.pts_s``, ``None`` where the frames carry none), in order.
        options: live (drop stale frames) or file (keep all), and queue sizes.
        max_frames: stop after this many output frames.
        stats: where timings go; by default a :class:`RunStats` timed by ``clock``.
        wanted: ``wanted()`` False means nobody needs output now (no application reads the
            virtual camera): the reader stops reading and processing until it is True again.
        clock: the clock the frames' ``time_s`` was read on (the source's
            :class:`portrait.capture.base.Clock`): a frame's latency is the time from it to the
            end of its output on this clock, and the output's time and the run's length are
            timed by it too. The wall's by default, as the sources'; a test gives the source and
            the pipeline one clock of its own.
    """

    def __init__(self, frames: Iterable, processor: FrameProcessor,
                 emit: Callable[[np.ndarray, Optional[float]], None], options: PipelineOptions,
                 max_frames: Optional[int] = None, stats: Optional[RunStats] = None,
                 wanted: Optional[Callable[[], bool]] = None, *, clock: Clock = WALL_CLOCK):
        self.frames = frames
        self.clock = clock
        self.processor = processor
        self.emit = emit
        self.options = options
        self.max_frames = max_frames
        self.stats = stats or RunStats(clock=clock)
        self.wanted = wanted
        self.stop_event = threading.Event()  # graceful: read no more, finish what is in flight
        self._abort = threading.Event()  # an error: drop everything
        self._reader_error: Optional[BaseException] = None
        self._dropped_seen = 0
        self._behind_until = 0.0

    def stop(self) -> None:
        """Ask the pipeline to finish: no new frames are read; frames in flight are output."""
        self.stop_event.set()

    def abandon(self) -> None:
        """Stop at once: the frames in flight are dropped, not output (the sink still closes;
        for a stop that an output device holds up)."""
        self.stop_event.set()
        self._abort.set()

    def _read(self, inbox: queue.Queue) -> None:
        try:
            iterator = iter(self.frames)
            idle = False
            while not self.stop_event.is_set() and not self._abort.is_set():
                if self.wanted is not None and idle != (not self.wanted()):
                    idle = not idle
                    log.info("%s", "nobody reads the output: idling" if idle
                             else "output wanted again: resuming")
                if idle:
                    self.stop_event.wait(0.2)
                    continue
                started = time.perf_counter()
                frame = next(iterator, None)
                if frame is None:
                    break
                packet = Packet(image=frame.image, index=frame.index, time_s=frame.time_s,
                                lost=getattr(frame, "lost", False),
                                pts_s=getattr(frame, "pts_s", None),
                                cut=getattr(frame, "cut", False))
                # A camera and a paced file tell decoding from waiting for the frame (the
                # sensor's next frame, the file's next due time): only decoding is work.
                decode_ms = getattr(frame, "decode_ms", None)
                packet.ms["decode"] = (decode_ms if decode_ms is not None
                                       else (time.perf_counter() - started) * 1000)
                wait_ms = getattr(frame, "wait_ms", None)
                if wait_ms is not None:
                    packet.ms[WAIT] = wait_ms
                if self.options.live:
                    self.stats.dropped += _put_latest(inbox, packet)
                elif not _put(inbox, packet, self._abort):
                    return
        except BaseException as error:
            self._reader_error = error
            self._abort.set()
        _put(inbox, _END, self._abort)

    def _segment(self, packet: Packet) -> None:
        # Frames dropped in the last second mean the pipeline can't keep up with the source.
        now = time.perf_counter()
        if self.options.live and self.stats.dropped != self._dropped_seen:
            self._dropped_seen = self.stats.dropped
            self._behind_until = now + 1.0
        packet.reused = self.processor.segment(packet, behind=now < self._behind_until)

    def run(self) -> RunStats:
        """Process until the source ends, ``stop()`` is called or ``max_frames`` is reached.

        Raises:
            Whatever a stage raised (after all threads have stopped).
        """
        threads = self.options.opencv_threads or stream_opencv_threads()
        with opencv_threads(threads):
            return self._run()

    def _run(self) -> RunStats:
        size = self.options.queue_size
        if self.options.live:  # the newest frame waits, and each stage hands one packet on
            decoded, segmented, finished = queue.Queue(1), _Handoff(size), _Handoff(size)
        else:
            decoded, segmented, finished = (queue.Queue(size) for _ in range(3))
        self.processor.reset()
        # Alive at once after ``finish``: a full output queue, one being written, one being made.
        self.processor.reuse_buffers(size + 2)
        reader = threading.Thread(target=self._read, args=(decoded,), name="reader", daemon=True)
        workers = [
            _Worker("segment", self._segment, decoded, segmented, self._abort),
            _Worker("finish", self.processor.finish, segmented, finished, self._abort),
        ]
        reader.start()
        for worker in workers:
            worker.start()
        try:
            self._drain(finished)
        finally:
            self.stop_event.set()
            self._abort.set()
            reader.join(timeout=5)
            for worker in workers:
                worker.join(timeout=5)
        for error in [self._reader_error] + [w.error for w in workers]:
            if error is not None:
                raise error
        return self.stats

    def _drain(self, finished: queue.Queue) -> None:
        while True:
            packet = _get(finished, self._abort)
            if packet is _END or packet is None:
                return
            if self.max_frames is not None and self.stats.frames >= self.max_frames:
                continue  # in flight when the limit was reached: not output
            started = self.clock.now()
            self.emit(packet.output, packet.pts_s)
            done = self.clock.now()  # on the clock the frame's time_s was read on
            if packet.lost:
                continue
            packet.ms["output"] = (done - started) * 1000
            for stage, ms in packet.ms.items():
                self.stats.add(stage, ms)
            self.stats.add("latency", (done - packet.time_s) * 1000)
            self.stats.frames += 1
            self.stats.reused += packet.reused  # of the frames output, as ``frames`` counts
            if self.max_frames is not None and self.stats.frames >= self.max_frames:
                self.stop()

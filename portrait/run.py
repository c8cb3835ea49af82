"""The app's two modes, built from the stage options: image mode and stream mode.

Everything that can fail on bad input (source, background, output path, model) is opened before
the first frame is processed, so a mistake costs no camera time and leaves nothing half-written.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from portrait.capture import ImageItem, ImageSource, camera_index, open_source
from portrait.composite import make_background
from portrait.controls import (
    KEY_HELP,
    MATTE_INERT_KEYS,
    MATTE_KEY_HELP,
    Controls,
    LiveBackground,
    TerminalKeys,
    background_files,
    describe_output,
    initial_state,
    stdin_is_terminal,
)
from portrait.errors import (TERMINATION_SIGNALS, InputError, OutputFull, OutputGone,
                             OutputRefused, StopRequested, signal_exit_code)
from portrait.foreground import ForegroundEstimator
from portrait.framing import AutoFramer
from portrait.lightwrap import LightWrap
from portrait.options import (
    CaptureOptions,
    CompositeOptions,
    ControlOptions,
    FramingOptions,
    OutputOptions,
    PipelineOptions,
    RefineOptions,
    SegmentOptions,
    SmoothOptions,
    SubjectOptions,
)
from portrait.photo_metadata import NO_METADATA
from portrait.pipeline import FrameProcessor, StreamPipeline, stream_inference_threads
from portrait.refine import Refiner
from portrait.segment import create_segmenter
from portrait.segment.locate import resolve_model_path
from portrait.sink import (PreviewSink, camera_lost_frame, check_backend, check_stream_out,
                           open_image_sink, open_sink, stream_out_kind)
from portrait.sink.images import NO_ALPHA_EXTENSIONS
from portrait.sink.paths import check_report_file, names_folder, same_place
from portrait.smooth import TemporalSmoother
from portrait.subject import SubjectSelector
from portrait.stats import RunStats, summary_line
from portrait.words import counted

log = logging.getLogger(__name__)


def default_image_out(image_path: Path, batch: bool) -> Path:
    """Where ``--image`` writes without ``--out``: ``<stem>_portrait.png`` or ``<folder>_portrait/``,
    beside the input as named (``.`` and ``..`` name the folders they stand for).

    Raises:
        InputError: the input has no name to derive one from (the file system's root).
    """
    image_path = Path(os.path.normpath(os.path.abspath(image_path)))
    if not image_path.name:
        raise InputError(f"cannot name an output for '{image_path}'; give --out")
    if batch:
        return image_path.with_name(image_path.name + "_portrait")
    return image_path.with_name(image_path.stem + "_portrait.png")


def _say_if_stopped(stop: Optional[BaseException], stats: RunStats, total: int, out) -> None:
    """At the end of an image run: how far a Ctrl-C, a kill, a full disk or an output folder
    that takes no file (or is gone) let it get (each photo written is whole)."""
    if total <= 1:
        return
    refused = isinstance(stop, OutputRefused)
    what = "the output's disk" if isinstance(stop, OutputFull) else "the output folder"
    if isinstance(stop, (KeyboardInterrupt, StopRequested, OutputRefused)) and not stats.frames:
        # No photo written: nothing is in ``out``, which is made with the first one.
        log.warning("%s before any of the %d images was written%s",
                    "stopped" if refused else "interrupted", total,
                    f": {what} takes none" if refused else "")
    elif isinstance(stop, (KeyboardInterrupt, StopRequested)):
        log.warning("interrupted after %d of %d images; those are in %s", stats.frames, total, out)
    elif isinstance(stop, OutputGone):
        log.warning("stopped after %d of %d images: the output folder %s was removed, moved or "
                    "replaced, with those in it", stats.frames, total, out)
    elif refused:
        log.warning("stopped after %d of %d images: %s takes no more; those are in %s",
                    stats.frames, total, what, out)


def _write_stats_after_stop(stats: RunStats, path: Optional[str]) -> None:
    """``--stats`` for a run that a Ctrl-C, a kill or a full disk ended: what was done, written
    if it can be (a full disk may refuse it too: a warning, and the run's own error stands)."""
    try:
        stats.write(path)
    except InputError as error:
        log.warning("--stats not written: %s", error)


def _stats_after_error(kind: Optional[type], stream, path: Optional[str]) -> bool:
    """An exit callback: ``--stats`` for a stream that an error ended (never suppresses it)."""
    if kind is not None and stream is not None and path:
        _write_stats_after_stop(stream.stats, path)
    return False


def run_inputs(sources: Iterable, segment: SegmentOptions, controls: ControlOptions,
               background: str) -> list[Path]:
    """Every file a run reads, which no output may overwrite: the photos or the video, the
    background files (the one in use and those ``b`` steps through) and the model."""
    return [*(Path(source) for source in sources),
            *background_files([background, *controls.backgrounds]),
            resolve_model_path(segment.model)]


def run_images(
    image: str,
    capture: CaptureOptions,
    segment: SegmentOptions,
    smooth: SmoothOptions,
    refine: RefineOptions,
    composite: CompositeOptions,
    output: OutputOptions,
    pipeline: PipelineOptions,
    framing: FramingOptions = FramingOptions(),
    controls: ControlOptions = ControlOptions(),
    subject: SubjectOptions = SubjectOptions(enabled=False),
) -> int:
    """``--image``: one file, or every image in a folder (with a progress bar).

    ``controls``: ``mirror`` flips each result; a ``--background`` folder gives its first file.
    With ``framing.enabled`` each photo is framed on its own (no glide). ``subject``: off by
    default, a group photo keeps everyone (``--people main`` turns it on).

    Returns 0, or 1 when some files of a batch could not be processed (each is reported), or
    128 + the signal's number when SIGTERM or SIGHUP stopped it before every photo was written
    (Ctrl-C raises KeyboardInterrupt: 130). Raises InputError/ModelError for problems that stop
    the whole run: OutputRefused (an output folder that cannot be made or takes no file;
    OutputFull, a full disk) at the first photo it refuses. ``--stats`` is written also after
    a stop.
    """
    source = ImageSource(image)
    # As typed: a trailing "/" names a folder, which a Path would forget.
    out = output.out if output.out else default_image_out(source.path, source.is_folder)
    stats = RunStats()
    state = initial_state(controls, composite)
    if (state.background.strip().lower() == "transparent" and not output.matte
            and not source.is_folder and Path(out).suffix.lower() in NO_ALPHA_EXTENSIONS):
        raise InputError(f"--background transparent needs an output that keeps transparency, "
                         f"not {Path(out).suffix}: use a .png, .webp or .tif --out")
    if source.is_folder and same_place(out, source.path):
        raise InputError(f"cannot write the batch into its own folder '{source.path}': the "
                         "cut-outs would mix with the photos; choose another --out folder")
    protected = run_inputs(source.paths, segment, controls, state.background)
    if output.stats:
        check_report_file(output.stats, "--stats", ".json", protected=protected, outputs=[out])
    try:
        failures = _process_images(source, out, protected, stats, state, segment, refine,
                                   composite, output, framing, subject)
    except StopRequested as stop:  # SIGTERM or SIGHUP: a stop, but the photos are not all done
        log.info("%s: stopped", stop)
        _write_stats_after_stop(stats, output.stats)
        return signal_exit_code(stop)
    except (KeyboardInterrupt, OutputRefused):
        _write_stats_after_stop(stats, output.stats)
        raise
    stats.write(output.stats)
    if stats.frames:
        log.info("wrote %s to %s", counted(stats.frames, "image"), out)
    elif os.path.lexists(out):  # a folder that was there before
        log.info("wrote no image to %s", out)
    else:  # made with the first image, and removed where none was written: nothing to see
        log.info("wrote no image, and left no %s", out)
    if failures:
        names = ", ".join(str(path.name) for path, _ in failures[:10])
        more = f" and {len(failures) - 10} more" if len(failures) > 10 else ""
        log.error("%d of %d images could not be processed: %s%s (see the warnings above)",
                  len(failures), len(source), names, more)
        return 1
    return 0


def _process_images(source: ImageSource, out, protected: list[Path], stats: RunStats, state,
                    segment: SegmentOptions, refine: RefineOptions, composite: CompositeOptions,
                    output: OutputOptions, framing: FramingOptions,
                    subject: SubjectOptions) -> list[tuple[Path, Exception]]:
    """:func:`run_images`' loop: each photo through the processor into the sink, counted in
    ``stats``; returns the batch's files that could not be processed, with why."""
    items = source.items()
    # Read before the model loads (seconds on a cold cache), so a photo that cannot be read
    # costs no wait: a single one ends the run, a folder's are skipped as below.
    head = _up_to_first_photo(items)
    if head and head[0].error is not None and not source.is_folder:
        raise head[0].error
    items = itertools.chain(head, items)
    with ExitStack() as stack:
        background = None if output.matte else stack.enter_context(
            make_background(replace(composite, background=state.background)))
        sink = stack.enter_context(
            open_image_sink(out, batch=source.is_folder, protected=protected))
        if head and head[-1].error is None:  # prepare the model for its shape
            height, width = head[-1].frame.image.shape[:2]
            segment = replace(segment, frame_size=(width, height))
        # A folder of which no photo reads needs no model: each is reported below.
        segmenter = (stack.enter_context(create_segmenter(segment))
                     if head and head[-1].error is None else None)
        framer = AutoFramer(framing, fps=None) if framing.enabled else None
        processor = FrameProcessor(segmenter, None, Refiner(refine), background, output.matte,
                                   PipelineOptions(reuse_still=False), controls=Controls(state),
                                   framer=framer, light_wrap=LightWrap.from_options(composite),
                                   subject=SubjectSelector(subject) if subject.enabled else None,
                                   foreground=ForegroundEstimator())  # as the state says
        failures: list[tuple[Path, Exception]] = []
        if source.is_folder:  # a bar on a terminal, unless -q asked for warnings only
            items = tqdm(items, total=len(source), unit="image", desc="images",
                         disable=not (sys.stderr.isatty() and log.isEnabledFor(logging.INFO)))
            stack.enter_context(logging_redirect_tqdm())  # log lines above the bar, not inside it
        stack.push(lambda _type, stop, _tb: _say_if_stopped(stop, stats, len(source), out))
        for item in items:
            if item.error is not None:
                if not source.is_folder:
                    raise item.error
                log.warning("skipped: %s", item.error)
                failures.append((item.path, item.error))
                continue
            try:
                processor.reset()  # each photo is a scene of its own (subject, framing)
                # A photo has no time: a video background gives each its first frame.
                ms = {"decode": item.frame.decode_ms}
                result = processor.process(item.frame.image, pts_s=0.0, ms=ms,
                                           photo_alpha=item.frame.alpha)
                started = time.perf_counter()
                # The colour profile and date go with the colours: a matte is data, not colour.
                sink.write(result, name=item.frame.name,
                           metadata=NO_METADATA if output.matte else item.frame.metadata)
                ms["output"] = (time.perf_counter() - started) * 1000
            except OutputRefused:  # no photo after this one would be written either
                raise
            except InputError as error:
                if not source.is_folder:
                    raise
                log.warning("skipped '%s': %s", item.path, error)
                failures.append((item.path, error))
                continue
            for stage, stage_ms in ms.items():  # --stats: a photo's stages, as a stream's
                stats.add(stage, stage_ms)
            stats.frames += 1
    return failures


def _up_to_first_photo(items: Iterator[ImageItem]) -> list[ImageItem]:
    """The items of ``items`` up to and including the first photo that reads (every item where
    none does); ``items`` goes on after them."""
    head = []
    for item in items:
        head.append(item)
        if item.error is None:
            break
    return head


@contextmanager
def _stop_on_signals(stop: Callable[[], None], abandon: Callable[[], None]):
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP finish the run cleanly instead of killing it
    mid-write: the first lets the frames in flight out, a second drops them (``abandon``), for
    an output that holds the first one up; the output is finalised either way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, *TERMINATION_SIGNALS)}
    received = []

    def handler(signum, _frame):
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            log.info("%s: finishing", name)
            stop()
        else:
            log.warning("%s again: dropping the frames in flight and finalising the output", name)
            abandon()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def sound_source(capture: CaptureOptions, output: OutputOptions) -> Optional[str]:
    """The video file whose sound goes into the output video, or ``None``: a camera, no video
    file ``--out``, or ``--no-audio``. With ``--realtime`` too: the frames it drops leave their
    time to the frame before, so the sound stays with the picture."""
    if (not output.audio or camera_index(capture.source) is not None or output.out is None
            or stream_out_kind(output.out) != "video"):
        return None
    return capture.source


def run_stream(
    capture: CaptureOptions,
    segment: SegmentOptions,
    smooth: SmoothOptions,
    refine: RefineOptions,
    composite: CompositeOptions,
    output: OutputOptions,
    pipeline: PipelineOptions,
    framing: FramingOptions = FramingOptions(),
    controls: ControlOptions = ControlOptions(),
    keys: Sequence[Iterable] = (),
    subject: SubjectOptions = SubjectOptions(),
) -> int:
    """Camera or video file → pipeline → virtual camera, video file or PNG frames.

    Live keys (:mod:`portrait.controls`) come from the preview window, the terminal when stdin
    is one, and ``keys``.

    Args:
        framing: auto-framing; the framer is made even when it is off, so it can be switched
            on while running (``processor.framer.enabled``).
        controls: how the live controls start (mirror, framing, the backgrounds ``b`` steps
            through).
        keys: scripted key sources, one item per frame (see :class:`portrait.controls.Controls`).
        subject: subject selection (:mod:`portrait.subject`), on by default.

    Returns 0 when the source ended, ``--max-frames`` was reached, or the user stopped it.
    """
    is_camera = camera_index(capture.source) is not None
    if output.out is not None:
        stream_out_kind(output.out)  # a .mkv or .png is refused before the model loads
    elif output.vcam_backend is not None:
        check_backend(output.vcam_backend)  # likewise a backend that is not there
    if composite.background.strip().lower() == "transparent" and not output.matte:
        if output.out is None or (Path(output.out).suffix and not names_folder(output.out)):
            raise InputError("--background transparent needs --image mode or --out FOLDER "
                             "(RGBA PNG frames); a video or virtual camera has no alpha")
    state = initial_state(controls, composite)
    protected = run_inputs([] if is_camera else [capture.source], segment, controls, state.background)
    if output.out is not None:
        check_stream_out(output.out, protected)  # writable, before the model loads
    if output.stats:
        check_report_file(output.stats, "--stats", ".json", protected=protected,
                          outputs=[output.out] if output.out else [])
    if capture.loop and output.out is not None and not is_camera:
        raise InputError(f"--loop is for the virtual camera: in --out '{output.out}' the picture "
                         "would repeat while the clip's sound plays once, and without --max-frames "
                         "never end; give --no-loop to write it once, or leave out --out to loop "
                         "it into the virtual camera")
    if capture.loop is None:
        # A clip standing in for a camera should not end the call's picture when it ends, as a
        # camera does not; written to a file, it is played once (its length, with its sound).
        capture = replace(capture, loop=output.out is None and not is_camera)
        if capture.loop:
            log.info("a video file to the virtual camera starts again when it ends, as a camera "
                     "goes on (as --loop; --no-loop ends the stream with the clip)")
    elif is_camera:
        capture = replace(capture, loop=False)
    if capture.realtime is None:
        # A call shows what the device gets as it comes: unpaced, a clip plays at the speed of
        # the pipeline (75 fps for a 30 fps clip). A file keeps every frame.
        paced = output.out is None and not is_camera
        if paced:
            log.info("a video file to the virtual camera plays at its own pace (as --realtime;"
                     " --no-realtime sends every frame as fast as possible)")
        capture = replace(capture, realtime=paced)
    live = is_camera or capture.realtime
    options = replace(pipeline, live=live)  # the caller's otherwise, spread_still too
    stream: Optional[StreamPipeline] = None
    with ExitStack() as stack:
        # Last out: after an error anywhere, the sink's close too (a full disk, a device), the
        # frames done are still reported.
        stack.push(lambda kind, _error, _tb: _stats_after_error(kind, stream, output.stats))
        live_controls = Controls(state, scripts=keys,
                                 inert=MATTE_INERT_KEYS if output.matte else (),
                                 inert_reason="with --matte")
        # First, so a machine without a display says so before a camera or the model opens.
        preview = (stack.enter_context(PreviewSink(on_key=live_controls.press))
                   if output.preview else None)
        background = None if output.matte else stack.enter_context(
            LiveBackground(composite, state, (capture.width, capture.height)))
        source = stack.enter_context(open_source(capture))
        # A camera also yields "lost" markers while unplugged, so the output stays fed.
        frames = source.frames(lost_markers=True) if is_camera else iter(source)
        first = next(frames, None)
        if first is None:
            raise InputError(f"source '{capture.source}' gave no frames; check the file or camera")
        height, width = first.image.shape[:2]
        fps = source.fps or capture.fps

        def open_output():
            return stack.enter_context(open_sink(output.out, fps=fps, size=(width, height),
                                                 backend=output.vcam_backend,
                                                 device=output.vcam_device, protected=protected,
                                                 audio_from=sound_source(capture, output)))

        # The virtual camera before the model (seconds where TensorFlow starts): a missing
        # device is the first thing a new user meets. A file or folder is made only after the
        # model loads, so a model that fails leaves nothing behind.
        sink = open_output() if output.out is None else None
        segmenter = stack.enter_context(
            create_segmenter(replace(segment, frame_size=(width, height),
                                     threads=stream_inference_threads(segment.threads))))
        if sink is None:
            sink = open_output()
        processor = FrameProcessor(
            segmenter, TemporalSmoother(smooth), Refiner(refine), background, output.matte, options,
            lost_frame=camera_lost_frame, controls=live_controls,
            framer=AutoFramer(framing, fps=fps if fps > 0 else 30.0),
            light_wrap=LightWrap.from_options(composite),
            subject=SubjectSelector(subject) if subject.enabled else None,
            foreground=ForegroundEstimator())  # while the state says so (e)

        def emit(image, pts_s):
            sink.write(image, pts_s)
            if preview is not None:
                preview.write(image)
                if preview.quit_requested:
                    stream.stop()

        wanted = (getattr(sink, "has_consumer", None)
                  if output.out is None and not output.preview else None)
        stream = StreamPipeline(itertools.chain([first], frames), processor, emit, options,
                                max_frames=output.max_frames, wanted=wanted)
        live_controls.on_quit = stream.stop
        log.info("%s %dx%d at %g fps → %s", "camera" if is_camera else "video", width, height,
                 fps, output.out or "virtual camera")
        log.info("%s", describe_output(state, (width, height),
                                       background.current if background is not None else None,
                                       output.matte))
        # Last in, so the terminal's mode is restored first, also when something fails.
        terminal = (stack.enter_context(TerminalKeys(live_controls.press))
                    if stdin_is_terminal() else None)
        places = [name for name, there in (("the preview window", preview is not None),
                                           ("this terminal", terminal is not None)) if there]
        if places:
            log.info("keys in %s: %s", " and ".join(places),
                     MATTE_KEY_HELP if output.matte else KEY_HELP)
        else:  # a user who presses keys that nothing reads should know why
            log.info("no live keys: standard input is not a terminal in the foreground "
                     "(redirected, or a background job); --preview opens a window that takes "
                     "them; Ctrl-C (in the foreground) or a kill stops the run cleanly")
        with _stop_on_signals(stream.stop, stream.abandon):
            stats = stream.run()
    log.info("%s", summary_line(stats.write(output.stats)))
    return 0

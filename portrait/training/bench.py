"""Benchmark: our pipeline against a MediaPipe-based peer on the same clip, in one run.

``python -m portrait.bench --source clip.mkv --size 1280x720 [--json out.json]``

The peer path is written from the published behaviour of the webcam background projects people
use today (MediaPipe selfie segmentation plus OpenCV post-processing, single thread): confidence
mask thresholded at 0.75, dilated 5×5, box-blurred 10×10, background Gaussian-blurred with k=21,
blended with ``cv2.blendLinear``. It has no edge refinement and no temporal smoothing.

Both read the clip (looped to ``--frames``), resized to ``--size``, and discard the output.
Measured: throughput (as fast as possible), CPU use and latency when paced like a 30 fps camera,
and resident memory over a long run (``--soak N``: after frame 1000 and after frame N, so N
is 0 for none or more than 1001).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np
import psutil

from portrait.capture import Frame, VideoFileSource
from portrait.errors import ModelError, PortraitError, run_command
from portrait.native_log import drop_model_load_noise, filtered_stderr, import_mediapipe_quietly
from portrait.options import (
    LIVE_MODEL,
    CompositeOptions,
    PipelineOptions,
    RefineOptions,
    SegmentOptions,
    SmoothOptions,
    SubjectOptions,
)
from portrait.segment.locate import SHARED_DIR, resolve_model_path
from portrait.stats import RunStats
from portrait.words import counted

log = logging.getLogger("portrait.training.bench")

PEER_MODEL = SHARED_DIR / "models" / "selfie_segmentation.tflite"
PEER_HINT = "pass --peer-model PATH to a MediaPipe selfie model, e.g. selfie_segmentation.tflite"
PACED_S = 10  # the paced run's length at --camera-fps (fewer frames when --frames is fewer)
SOAK_MARK = 1000  # the soak's first memory sample is taken as frame 1000 (counted from 0) arrives


# What a photo given as --source is to the benchmark (the capture's warning, where it is said of
# the app's --source).
PHOTO_AS_CLIP = ("as --source it is a clip of one still frame, looped (the file opened again for "
                 "each frame), so decode times are a file's opening and ours reuses its mask "
                 "unless --no-reuse; time a video clip for a webcam's load")


def check_source(path: str) -> None:
    """Open ``--source`` once, before anything is built: a file that is no video is refused, and
    a photo is named in a warning with what it is to the benchmark (:data:`PHOTO_AS_CLIP`);
    :func:`clip_frames` reads it quietly after.

    Raises:
        InputError: a missing file or one OpenCV cannot decode.
    """
    VideoFileSource(path, photo_note=PHOTO_AS_CLIP).close()


def clip_frames(path: str, size: tuple[int, int], count: int) -> Iterator[Frame]:
    """Decode ``path`` in a loop, resized to ``size``, until ``count`` frames were given.

    Each reading is quiet (:func:`check_source` reports the file once): a photo, a clip of one
    frame, is read again for every frame, and named each time.
    """
    index = 0
    while index < count:
        with VideoFileSource(path, quiet=True, photo_note=PHOTO_AS_CLIP) as source:
            produced = False
            for frame in source:
                image = cv2.resize(frame.image, size, interpolation=cv2.INTER_LINEAR)
                yield Frame(image, index, time.perf_counter())
                produced = True
                index += 1
                if index >= count:
                    return
            if not produced:
                raise PortraitError(f"clip '{path}' gave no frames; check the file")


def paced(frames: Iterator[Frame], fps: Optional[float]) -> Iterator[Frame]:
    """Deliver frames no faster than ``fps`` (like a camera); ``time_s`` is the delivery time."""
    if not fps:
        yield from frames
        return
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        delay = start + i / fps - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield dataclasses.replace(frame, time_s=time.perf_counter())


def check_peer_model(path: Path) -> None:
    """Raise :class:`ModelError` unless ``path`` is a file and not a Keras model, which
    MediaPipe cannot load (what it can load is only known once it has loaded it)."""
    from portrait.segment.locate import KERAS_SUFFIXES

    if Path(path).is_dir():
        raise ModelError(f"peer model '{path}' is a folder, not a model file; {PEER_HINT}")
    if not Path(path).is_file():
        raise ModelError(f"peer model '{path}' not found; {PEER_HINT}")
    if Path(path).suffix.lower() in KERAS_SUFFIXES:
        # MediaPipe took it, after our model had loaded, for "not a valid Flatbuffer buffer".
        raise ModelError(f"peer model '{path}' is a Keras model, which the peer's MediaPipe "
                         f"cannot run (our model goes in --model); {PEER_HINT}")


class PeerPipeline:
    """The peer's per-frame path: MediaPipe selfie mask → threshold/dilate/box → blend over blur."""

    def __init__(self, model_path: Path):
        check_peer_model(model_path)  # before MediaPipe's import
        import_mediapipe_quietly()
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        from portrait.segment.base import one_line

        self._mp = mp
        options = vision.ImageSegmenterOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.IMAGE,
            output_confidence_masks=True,
            output_category_mask=False,
        )
        try:
            with filtered_stderr(drop_model_load_noise):
                self.segmenter = vision.ImageSegmenter.create_from_options(options)
        except (ValueError, RuntimeError, OSError) as error:  # MediaPipe's FileNotFoundError
            # also means "no metadata": say what it is, not a missing file.
            raise ModelError(f"MediaPipe cannot load the peer model '{model_path}': "
                             f"{one_line(error).rstrip('.')}; {PEER_HINT}") from None
        self.kernel = np.ones((5, 5), np.uint8)

    def process(self, frame_bgr: np.ndarray, stats: RunStats) -> np.ndarray:
        t0 = time.perf_counter()
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        result = self.segmenter.segment(self._mp.Image(image_format=self._mp.ImageFormat.SRGB,
                                                       data=rgb))
        confidence = result.confidence_masks[-1].numpy_view()
        t1 = time.perf_counter()
        mask = (confidence > 0.75).astype(np.float32)
        mask = cv2.dilate(mask, self.kernel, iterations=1)
        mask = cv2.blur(mask, (10, 10))
        t2 = time.perf_counter()
        background = cv2.GaussianBlur(frame_bgr, (21, 21), 0)
        output = cv2.blendLinear(frame_bgr, background, mask, 1.0 - mask)
        t3 = time.perf_counter()
        stats.add("segment", (t1 - t0) * 1000)
        stats.add("refine", (t2 - t1) * 1000)
        stats.add("composite", (t3 - t2) * 1000)
        return output

    def run(self, frames: Iterator[Frame]) -> RunStats:
        """Single thread: read, process, discard; the peer's loop."""
        stats = RunStats()
        iterator = iter(frames)
        while True:
            started = time.perf_counter()
            frame = next(iterator, None)
            if frame is None:
                break
            stats.add("decode", (time.perf_counter() - started) * 1000)
            self.process(frame.image, stats)
            stats.add("latency", (time.perf_counter() - frame.time_s) * 1000)
            stats.frames += 1
        return stats

    def close(self) -> None:
        self.segmenter.close()


class OurPipeline:
    """Our threaded pipeline with the given model and the app's video defaults (smoothing,
    subject selection, refinement), blur background; with ``decontaminate``, the person's own
    colour at the soft edge on every frame (``--decontaminate``)."""

    def __init__(self, segment: SegmentOptions, blur_px: int, reuse_still: bool,
                 decontaminate: bool = False):
        from portrait.composite import make_background
        from portrait.foreground import ForegroundEstimator
        from portrait.pipeline import FrameProcessor, stream_inference_threads
        from portrait.refine import Refiner
        from portrait.segment import create_segmenter
        from portrait.smooth import TemporalSmoother
        from portrait.subject import SubjectSelector

        # As the app runs a stream: --threads 0 is half the cores there.
        self.segmenter = create_segmenter(
            dataclasses.replace(segment, threads=stream_inference_threads(segment.threads)))
        try:
            self.background = make_background(CompositeOptions(background="blur", blur_px=blur_px))
        except BaseException:
            self.segmenter.close()
            raise
        self.reuse_still = reuse_still
        self.processor = FrameProcessor(self.segmenter, TemporalSmoother(SmoothOptions()),
                                        Refiner(RefineOptions()), self.background,
                                        subject=SubjectSelector(SubjectOptions()),
                                        foreground=ForegroundEstimator() if decontaminate else None)

    def run(self, frames: Iterator[Frame], live: bool) -> RunStats:
        from portrait.pipeline import StreamPipeline

        options = PipelineOptions(live=live, reuse_still=self.reuse_still)
        self.processor.options = options
        return StreamPipeline(frames, self.processor, lambda image, pts_s: None, options).run()

    def close(self) -> None:
        self.background.close()
        self.segmenter.close()


def _timed(run) -> dict:
    """Run, and return its stats summary with CPU measured over exactly this run."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    stats = run()
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    summary = stats.summary()
    summary["cpu_percent"] = round(100 * cpu_s / wall_s, 1)
    return summary


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def camera_rate(text: str) -> float:
    """``--camera-fps``: a rate that paces at least one frame in the paced run (a run of no
    frames has no CPU use or latency to report)."""
    from portrait.cli import positive_float

    value = positive_float(text)
    if int(value * PACED_S) < 1:
        raise argparse.ArgumentTypeError(
            f"'{text}' paces no frame in the {PACED_S} s paced run; give at least "
            f"{1 / PACED_S:g} (a camera's rate, e.g. 30)")
    return value


def soak_frames(text: str) -> int:
    """``--soak N``: 0 (no soak) or more than ``SOAK_MARK + 1`` frames, so that the last frame
    comes after the first memory sample and the growth between them means something."""
    from portrait.cli import non_negative_int

    value = non_negative_int(text)
    if 0 < value <= SOAK_MARK + 1:
        raise argparse.ArgumentTypeError(
            f"'{text}' is too short a soak: memory is sampled at frame {SOAK_MARK} and at the "
            f"last, so give more than {SOAK_MARK + 1} frames (e.g. 5000), or 0 for none")
    return value


def memory_report(marks: dict[int, float], soak: int) -> dict:
    """The soak's resident memory (MB) at frame ``SOAK_MARK`` and at frame ``soak - 1``, and
    the growth between them; a sample that was not taken is None, and so is the growth then
    (a missing sample is no measure of 0 MB)."""
    first, last = marks.get(SOAK_MARK), marks.get(soak - 1)
    return {f"rss_mb_after_{SOAK_MARK}": None if first is None else round(first, 1),
            f"rss_mb_after_{soak}": None if last is None else round(last, 1),
            "growth_mb": None if first is None or last is None else round(last - first, 1)}


def bench(source: str, size: tuple[int, int], frames: int, segment: SegmentOptions,
          peer_model: Path, camera_fps: float, blur_px: int, reuse_still: bool,
          soak: int = 0, decontaminate: bool = False) -> dict:
    """Run both pipelines on the same clip; return a dict of results (see the module doc).

    Whatever was built is closed on every path, an error in building the second included.
    """
    if soak and soak <= SOAK_MARK + 1:
        raise ValueError(f"soak {soak} must be 0 or more than {SOAK_MARK + 1} frames")
    with contextlib.ExitStack() as built:
        peer = PeerPipeline(peer_model)
        built.callback(peer.close)
        ours = OurPipeline(segment, blur_px, reuse_still, decontaminate)
        built.callback(ours.close)
        # Warm up both (first inferences, allocations) so neither pays start-up in its numbers.
        peer.run(clip_frames(source, size, 10))
        ours.run(clip_frames(source, size, 10), live=False)
        results = {"source": source, "size": f"{size[0]}x{size[1]}", "frames": frames,
                   "model": segment.model, "runtime": ours.segmenter.runtime,
                   "decontaminate": decontaminate,
                   "peer_model": str(peer_model)}
        results["throughput"] = {
            "peer": _timed(lambda: peer.run(clip_frames(source, size, frames))),
            "ours": _timed(lambda: ours.run(clip_frames(source, size, frames), live=False)),
        }
        paced_frames = min(frames, int(camera_fps * PACED_S))
        results["paced"] = {
            "fps": camera_fps,
            "peer": _timed(lambda: peer.run(paced(clip_frames(source, size, paced_frames),
                                                  camera_fps))),
            "ours": _timed(lambda: ours.run(paced(clip_frames(source, size, paced_frames),
                                                  camera_fps), live=True)),
        }
        if soak:
            marks = {}

            def sample(frame_iter):
                for frame in frame_iter:
                    if frame.index in (SOAK_MARK, soak - 1):
                        marks[frame.index] = _rss_mb()
                    yield frame

            ours.run(sample(clip_frames(source, size, soak)), live=False)
            results["memory"] = memory_report(marks, soak)
    tp, pc = results["throughput"], results["paced"]
    results["ratios"] = {
        "throughput_fps_ours_over_peer": round(tp["ours"]["fps"] / tp["peer"]["fps"], 3),
        "paced_cpu_ours_over_peer": round(pc["ours"]["cpu_percent"] / max(pc["peer"]["cpu_percent"], 1e-9), 3),
    }
    return results


def format_table(results: dict) -> str:
    """A human-readable table of the results."""
    tp, pc = results["throughput"], results["paced"]
    lines = [
        f"clip {results['source']} at {results['size']}, {counted(results['frames'], 'frame')}; "
        f"ours: {results['model']} ({results.get('runtime', '?')})"
        f"{' with --decontaminate' if results.get('decontaminate') else ''}; "
        "peer: MediaPipe selfie + OpenCV (single thread)",
        "",
        f"{'':34}{'ours':>12}{'peer':>12}",
        f"{'throughput fps (as fast as possible)':34}{tp['ours']['fps']:>12.1f}{tp['peer']['fps']:>12.1f}",
    ]
    for stage in ("decode", "segment", "smooth", "subject", "refine", "composite", "output"):
        ours_ms = tp["ours"]["stage_ms"].get(stage)
        peer_ms = tp["peer"]["stage_ms"].get(stage)
        if ours_ms is None and peer_ms is None:
            continue
        fmt = lambda v: f"{v:>12.2f}" if v is not None else f"{'-':>12}"
        lines.append(f"{'  ' + stage + ' ms (mean)':34}{fmt(ours_ms)}{fmt(peer_ms)}")
    lines += [
        f"{'CPU % of one core at ' + format(pc['fps'], 'g') + ' fps':34}"
        f"{pc['ours']['cpu_percent']:>12.1f}{pc['peer']['cpu_percent']:>12.1f}",
        f"{'fps delivered at that pacing':34}{pc['ours']['fps']:>12.1f}{pc['peer']['fps']:>12.1f}",
        f"{'latency ms, median (paced)':34}{pc['ours']['latency_ms']['median']:>12.1f}"
        f"{pc['peer']['latency_ms']['median']:>12.1f}",
        f"{'latency ms, p95 (paced)':34}{pc['ours']['latency_ms']['p95']:>12.1f}"
        f"{pc['peer']['latency_ms']['p95']:>12.1f}",
        f"{'dropped frames (paced)':34}{pc['ours']['dropped_frames']:>12}{'-':>12}",
        "",
        f"throughput ratio ours/peer: {results['ratios']['throughput_fps_ours_over_peer']:.2f}x "
        f"(target >= 1.0); paced CPU ratio ours/peer: "
        f"{results['ratios']['paced_cpu_ours_over_peer']:.2f} (target <= 0.8)",
    ]
    if "memory" in results:
        memory = results["memory"]
        lines.append(f"memory: {json.dumps(memory)} (target growth <= 50 MB)")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from portrait.cli import (OneLineParser, configure_logging, field_number,
                              import_tensorflow_quietly, parse_size, positive_int,
                              threads_as_stream, with_debug)
    from portrait.sink.paths import check_report_file, write_report

    p = OneLineParser(prog="python -m portrait.bench", description=__doc__.split("\n")[0])
    p.add_argument("--source", required=True, help="video clip (looped as needed)")
    p.add_argument("--size", type=parse_size, default=(1280, 720), metavar="WxH",
                   help="both pipelines get the clip resized to this; N alone means NxN, as the "
                        "app's --input-size (default 1280x720)")
    p.add_argument("--frames", type=positive_int, default=600, help="frames per throughput run (default 600)")
    p.add_argument("--model", default=LIVE_MODEL,
                   help=f"our model (default: the app's default for camera and video, {LIVE_MODEL})")
    p.add_argument("--peer-model", type=Path, default=PEER_MODEL,
                   help=f"MediaPipe selfie model for the peer path (default {PEER_MODEL})")
    p.add_argument("--camera-fps", type=camera_rate, default=30.0,
                   help=f"pacing of the CPU/latency run ({PACED_S} s, at most --frames frames; "
                        "default 30)")
    p.add_argument("--blur", type=field_number(CompositeOptions, "blur_px"), metavar="N",
                   default=CompositeOptions.blur_px,
                   help="our blur strength in px (default: by the frame's size, as the app's: "
                        "21 up to 720p, 32 at 1080p)")
    p.add_argument("--no-reuse", action="store_true", help="our model on every frame")
    p.add_argument("--threads", type=threads_as_stream, default=0, metavar="N",
                   help="our model's inference threads, as the app's --threads (default: 0, "
                        "as the app runs a stream: half the cores, at least 1)")
    p.add_argument("--decontaminate", action="store_true",
                   help="ours with the app's --decontaminate (the person's own colour at the soft "
                        "edge)")
    p.add_argument("--soak", type=soak_frames, default=0, metavar="N",
                   help=f"also run N frames (more than {SOAK_MARK + 1}) and report resident "
                        f"memory after {SOAK_MARK} and N")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = with_debug(p).parse_args(argv)
    configure_logging(quiet=True)

    def body() -> None:
        # Everything the arguments can tell answers before TensorFlow, MediaPipe and minutes of
        # benchmarking, not after.
        check_source(args.source)
        resolve_model_path(args.model)
        check_peer_model(args.peer_model)
        if args.json:
            check_report_file(args.json, "--json", ".json",
                              protected=[args.source, args.model, args.peer_model])
        import_tensorflow_quietly()
        segment = SegmentOptions(model=args.model, threads=args.threads)
        results = bench(args.source, args.size, args.frames, segment,
                        args.peer_model, args.camera_fps, args.blur, not args.no_reuse, args.soak,
                        args.decontaminate)
        print(format_table(results))
        if args.json:
            write_report(args.json, (json.dumps(results, indent=2) + "\n").encode(), "--json")

    return run_command(body, traceback=args.debug)


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: what light wrap, auto-framing and the edge's colour estimate cost per frame, in the
app's own per-frame path.

``python -m portrait.training.bench_effects --source ../shared/data/videos/asl_help.mkv``

The clip is resized to ``--size`` (default 1280x720) and run, frame by frame and in order,
through the app's path (the camera model, temporal smoothing, guided filter, framing,
composite), so each effect meets frames and mattes as it would live, caches included. Timed
alone, per frame:

* light wrap (strength 0.5) over the blurred background and over a colour;
* the person's own colour at the soft edge (``--decontaminate``, :mod:`portrait.foreground`)
  over the blurred background and over a colour;
* auto-framing of the composite and of the matte alone (``--matte``),
  on the clip as it is and on a synthetic pan across it (a window of 80 % of the frame sliding
  from the left edge to the right and scaled back up, so the signer drifts across the picture
  and the crop keeps moving).

Also printed: the whole composite stage with and without light wrap. Prints median and p95
milliseconds; the machine is shared, so run it twice.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Optional, Sequence

import cv2
import numpy as np

from portrait.errors import run_command
from portrait.options import (
    LIVE_MODEL,
    CompositeOptions,
    FramingOptions,
    PipelineOptions,
    RefineOptions,
    SegmentOptions,
    SmoothOptions,
)

log = logging.getLogger("portrait.training.bench_effects")


def pan(images: list[np.ndarray], window: float = 0.8) -> list[np.ndarray]:
    """A synthetic camera pan: a window ``window`` of the frame slides from the left edge to the
    right edge over the clip, each view scaled back to the frame size."""
    height, width = images[0].shape[:2]
    crop_w, crop_h = round(width * window), round(height * window)
    top = (height - crop_h) // 2
    views = []
    for i, image in enumerate(images):
        left = round((width - crop_w) * i / max(1, len(images) - 1))
        views.append(cv2.resize(image[top:top + crop_h, left:left + crop_w], (width, height),
                                interpolation=cv2.INTER_LINEAR))
    return views


class _Timed:
    """Wraps a callable (a LightWrap, a ForegroundEstimator) and records how long each call took."""

    def __init__(self, inner):
        self.inner, self.times_s = inner, []

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        result = self.inner(*args, **kwargs)
        self.times_s.append(time.perf_counter() - started)
        return result


def _stats(times_s: list[float]) -> dict:
    ms = np.array(times_s) * 1000
    return {"median_ms": round(float(np.median(ms)), 3),
            "p95_ms": round(float(np.percentile(ms, 95)), 3), "n": len(ms)}


def run_effect(images, segmenter, background, *, light_wrap: float = 0.0,
               framing: bool = False, matte: bool = False, decontaminate: bool = False,
               passes: int = 2) -> dict:
    """The app's per-frame path (model, smoothing, guided filter, framing, composite) over
    ``images``, in order, ``passes`` times; returns the effect's own time per frame."""
    from portrait.foreground import ForegroundEstimator
    from portrait.framing import AutoFramer
    from portrait.lightwrap import LightWrap
    from portrait.pipeline import FrameProcessor, Packet
    from portrait.refine import Refiner
    from portrait.smooth import TemporalSmoother

    wrap = _Timed(LightWrap(light_wrap)) if light_wrap > 0 else None
    framer = AutoFramer(FramingOptions(enabled=True), fps=30.0) if framing else None
    foreground = _Timed(ForegroundEstimator()) if decontaminate else None
    processor = FrameProcessor(segmenter, TemporalSmoother(SmoothOptions()),
                               Refiner(RefineOptions()), background, matte=matte,
                               options=PipelineOptions(reuse_still=False), framer=framer,
                               light_wrap=wrap, foreground=foreground)
    processor.reuse_buffers(4)
    framing_s, composite_s, zooms = [], [], []
    for _ in range(passes):
        processor.reset()
        for index, image in enumerate(images):
            packet = Packet(image=image, index=index, time_s=time.perf_counter())
            processor.segment(packet)
            processor.finish(packet)
            if framer is not None:
                framing_s.append(packet.ms["framing"] / 1000)
                zooms.append(framer.zoom)
            if not matte:
                composite_s.append(packet.ms["composite"] / 1000)
    result = {}
    if wrap is not None:
        result["light_wrap"] = _stats(wrap.times_s)
    if foreground is not None:
        result["decontaminate"] = _stats(foreground.times_s)
    if framer is not None:
        result["framing"] = _stats(framing_s)
        result["zoom_mean"] = round(float(np.mean(zooms)), 3)
        result["zoom_max"] = round(float(np.max(zooms)), 3)
    if composite_s:
        result["composite_stage"] = _stats(composite_s)
    return result


# What a photo given as --source is to this benchmark (the capture's warning, where it is said
# of the app's --source).
PHOTO_AS_CLIP = ("as --source it is a clip of one frame, so each effect is timed on that frame "
                 "alone and the synthetic pan stands still; time a video clip for a webcam's frames")


def read_clip(source: str, size: tuple[int, int]) -> list[np.ndarray]:
    """Every frame of ``source``, resized to ``size``; a photo is one frame, named in a warning
    with what it is to this benchmark (:data:`PHOTO_AS_CLIP`).

    Raises:
        InputError: a missing file or one OpenCV cannot decode.
    """
    from portrait.capture import VideoFileSource

    with VideoFileSource(source, photo_note=PHOTO_AS_CLIP) as clip:
        return [cv2.resize(frame.image, size, interpolation=cv2.INTER_LINEAR) for frame in clip]


def bench_effects(images: Sequence[np.ndarray], model: str, passes: int) -> dict:
    """Time light wrap, auto-framing and the colour estimate in the app's per-frame path on
    ``images``, the frames of a clip (:func:`read_clip`), all of one size."""
    from portrait.composite import ColourBackground, make_background
    from portrait.segment import create_segmenter

    images = list(images)
    height, width = images[0].shape[:2]
    size = (width, height)
    panned = pan(images)
    results = {"frames": len(images), "size": f"{size[0]}x{size[1]}"}
    with create_segmenter(SegmentOptions(model=model, frame_size=size)) as segmenter, \
            make_background(CompositeOptions(background="blur")) as blur:
        colour = ColourBackground("#3080e0", size)
        runs = {
            "plain (blur)": dict(background=blur),
            "light wrap 0.5 (blur)": dict(background=blur, light_wrap=0.5),
            "light wrap 0.5 (colour)": dict(background=colour, light_wrap=0.5),
            "decontaminate (blur)": dict(background=blur, decontaminate=True),
            "decontaminate (colour)": dict(background=colour, decontaminate=True),
            "framing (blur)": dict(background=blur, framing=True),
            "framing (--matte)": dict(background=None, framing=True, matte=True),
        }
        for name, kwargs in runs.items():
            results[name] = run_effect(images, segmenter, passes=passes, **kwargs)
        results["framing, synthetic pan (blur)"] = run_effect(
            panned, segmenter, background=blur, framing=True, passes=passes)
    return results


def main(argv: Optional[Sequence[str]] = None) -> int:
    from portrait.cli import (OneLineParser, configure_logging, import_tensorflow_quietly,
                              parse_size, positive_int, with_debug)

    p = OneLineParser(prog="python -m portrait.training.bench_effects",
                      description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--source", required=True, help="video clip")
    p.add_argument("--size", type=parse_size, default=(1280, 720), metavar="WxH",
                   help="the clip and its mattes are resized to this; N alone means NxN, as "
                        "the app's --input-size (default 1280x720)")
    p.add_argument("--model", default=LIVE_MODEL, help=f"model for the mattes ({LIVE_MODEL})")
    p.add_argument("--passes", type=positive_int, default=2, help="timed passes over the clip (default 2)")
    args = with_debug(p).parse_args(argv)
    configure_logging(quiet=True)

    def body() -> None:
        from portrait.segment import resolve_model_path

        # What the arguments can tell answers before TensorFlow starts and the model is built.
        resolve_model_path(args.model)
        images = read_clip(args.source, args.size)
        import_tensorflow_quietly()
        results = bench_effects(images, args.model, args.passes)
        for name, value in results.items():
            print(f"{name:26s} {value}")

    return run_command(body, traceback=args.debug)


if __name__ == "__main__":
    sys.exit(main())

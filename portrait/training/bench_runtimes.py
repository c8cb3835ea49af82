"""Benchmark: the segmenter's milliseconds per frame, on each way the app has run a Keras model.

``python -m portrait.training.bench_runtimes [--model weights/unet_live.hdf5] [--size 1280x720]``

In one process, on the same frame, calls interleaved round-robin (so a busy machine slows all of
them alike), it times ``segment()`` of:

* ``tf.lite, converted``: the app before the exported ``.tflite`` (the ``.hdf5`` converted at the
  frame's aspect and cached, run by ``tf.lite.Interpreter``);
* ``LiteRT, converted``: the same file in LiteRT's interpreter;
* ``LiteRT, exported + fixed``: what the app runs now (the ``.tflite`` beside the model, its
  dynamic input fixed at that size);
* ``LiteRT, exported, resized``: the same export only resized in the interpreter, which is why
  the app fixes the size first (:mod:`portrait.segment.fixed_size`).

Prints one JSON line: the input size and, per way, the median and 90th percentile ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from portrait.cli import (OneLineParser, configure_logging, import_tensorflow_quietly, parse_size,
                          positive_int, threads_all_cores)
from portrait.errors import ModelError, run_command
from portrait.options import LIVE_MODEL, SegmentOptions

log = logging.getLogger("portrait.training.bench_runtimes")


def sample_frame(size: tuple[int, int], source: Optional[str]) -> np.ndarray:
    """The first frame of ``source`` (a video, or a photo: the frame itself, read upright as the
    app reads a photo, with no warning, since one frame is all this benchmark takes) resized to
    ``size``, or a smooth random image without one.

    Raises:
        InputError: a missing file, or one that is no photo or video OpenCV can decode.
    """
    import cv2

    if source:
        from portrait.capture import VideoFileSource, read_image
        from portrait.capture.images import IMAGE_EXTENSIONS

        suffix = Path(source).suffix.lower()
        if suffix in IMAGE_EXTENSIONS and suffix != ".gif":  # a GIF may move: read as a video
            image = read_image(source)
            log.info("frame: photo '%s', %dx%d", source, image.shape[1], image.shape[0])
            return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        with VideoFileSource(source) as clip:
            for frame in clip:
                return cv2.resize(frame.image, size, interpolation=cv2.INTER_LINEAR)
    noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 5)


def keras_model(model: str) -> Path:
    """``--model``: the Keras model file, found as the app finds one.

    Raises:
        ModelError: no such file, or not a Keras model (its ``.tflite`` export is one of the
            ways timed, found beside it; it cannot stand for the model).
    """
    from portrait.segment import KERAS_SUFFIXES, resolve_model_path

    hint = f"pass --model PATH to a Keras model with its export beside it, e.g. {LIVE_MODEL}"
    path = resolve_model_path(model, hint)
    if path.suffix.lower() not in KERAS_SUFFIXES:
        # The Keras model an export was made from, where it lies beside it; else ours (a
        # MediaPipe model has none, and naming one that is not there sent users looking).
        source = path.with_suffix(".hdf5")
        example = source if path.suffix.lower() == ".tflite" and source.is_file() else LIVE_MODEL
        raise ModelError(f"--model '{model}' is not a Keras model ({path.suffix or 'no suffix'}): "
                         "--model takes the Keras model (.hdf5) whose exported .tflite lies "
                         f"beside it, e.g. --model {example}")
    return path


def segmenters(model: str, size: tuple[int, int], threads: int) -> dict:
    """The four ways to run ``model`` on frames of ``size`` (see the module docstring); the
    caller closes them. Whatever was built is closed when an error stops this half-way."""
    from portrait.segment import AspectSegmenter, create_segmenter, exported
    from portrait.segment.tflite_segmenter import TFLiteSegmenter

    path = keras_model(model)
    companion = exported.companion_path(path)
    if not companion.is_file():
        raise ModelError(f"no exported {companion.name} beside {path}; make it with "
                         f"'{exported.export_command(path)}'")
    with contextlib.ExitStack() as built:
        fast = create_segmenter(SegmentOptions(model=str(path), device="cpu", threads=threads,
                                               frame_size=size))
        built.callback(fast.close)
        if "(exported from" not in fast.description:
            raise ModelError(f"{companion} is not used (see the warning above); regenerate it "
                             f"with '{exported.export_command(path)}'")
        model_size = fast.input_size
        with tempfile.TemporaryDirectory() as folder:  # no export beside the copy: the app converts
            copy = Path(folder) / path.name
            shutil.copy(path, copy)
            import_tensorflow_quietly()
            converted = create_segmenter(SegmentOptions(model=str(copy), device="cpu",
                                                        threads=threads, frame_size=size))
        with converted:
            content = (converted.current.cache_path.read_bytes()
                       if isinstance(converted, AspectSegmenter) else None)
            if content is None or converted.input_size != model_size:
                raise ModelError(f"'{model}' is not a model the app runs at the frame's aspect")
        raw = companion.read_bytes()
        norm = fast.input_norm
        tf_lite = built.enter_context(TFLiteSegmenter(content, norm, threads=threads,
                                                      interpreter="tf.lite"))
        lite_rt = built.enter_context(TFLiteSegmenter(content, norm, threads=threads,
                                                      interpreter="LiteRT"))
        resized = built.enter_context(TFLiteSegmenter(raw, norm, input_size=model_size,
                                                      threads=threads, interpreter="LiteRT"))
        built.pop_all()  # all built: the caller closes them now
    return {
        "tf.lite, converted": tf_lite,
        "LiteRT, converted": lite_rt,
        "LiteRT, exported + fixed": fast,
        "LiteRT, exported, resized": resized,
    }


def bench(ways: dict, frame: np.ndarray, calls: int, warmup: int = 20) -> dict:
    """Median and 90th percentile ms of ``segment(frame)`` per way, calls interleaved."""
    times = {name: [] for name in ways}
    reference = None
    for name, segmenter in ways.items():
        for _ in range(warmup):
            result = segmenter.segment(frame)
        if reference is None:
            reference = result
        elif float(np.abs(result - reference).max()) > 1e-3:
            raise ModelError(f"'{name}' disagrees with the first way by "
                             f"{float(np.abs(result - reference).max()):.2g}")
    for _ in range(calls):
        for name, segmenter in ways.items():
            started = time.perf_counter()
            segmenter.segment(frame)
            times[name].append((time.perf_counter() - started) * 1e3)
    return {name: {"median_ms": round(statistics.median(values), 2),
                   "p90_ms": round(float(np.percentile(values, 90)), 2)}
            for name, values in times.items()}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m portrait.training.bench_runtimes",
                      description="Segmenter ms per frame: converted .hdf5 in tf.lite vs LiteRT "
                                  "vs the exported .tflite.")
    p.add_argument("--model", default=LIVE_MODEL, help=f"Keras model with its export beside it "
                                                       f"(default: {LIVE_MODEL})")
    p.add_argument("--size", type=parse_size, default=(1280, 720), metavar="WxH",
                   help="frame size; N alone means NxN, as the app's --input-size "
                        "(default: 1280x720)")
    p.add_argument("--source", help="video whose first frame is used, or a photo (default: a "
                                    "random image)")
    p.add_argument("--calls", type=positive_int, default=300,
                   help="timed calls per way (default: 300)")
    p.add_argument("--threads", type=threads_all_cores, default=0,
                   help="interpreter threads (default: all cores)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from portrait.cli import with_debug

    args = with_debug(build_parser()).parse_args(argv)
    configure_logging(args.verbose)

    def body() -> None:
        # What the arguments can tell answers before TensorFlow starts and models are built.
        keras_model(args.model)
        frame = sample_frame(tuple(args.size), args.source)
        ways = segmenters(args.model, tuple(args.size), args.threads)
        try:
            results = bench(ways, frame, args.calls)
        finally:
            for segmenter in ways.values():
                segmenter.close()
        print(json.dumps({"model": args.model, "frame": "%dx%d" % tuple(args.size),
                          "input": "%dx%d" % ways["LiteRT, exported + fixed"].input_size,
                          "calls": args.calls, "ms": results}))

    return run_command(body, traceback=args.debug)


if __name__ == "__main__":
    sys.exit(main())

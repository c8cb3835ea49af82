"""Issue 5 end to end: fuzzed images and videos, a 5,000-frame soak into a virtual camera, clean
shutdown on SIGTERM/SIGINT, frame size changes mid-stream, a virtual-camera consumer that comes
and goes, and the command line on bad files and unsafe models."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from conftest import ROOT, FakeCameraBackend, ManualClock, fake_camera, write_video
from portrait.capture import Frame, ImageSource, VideoFileSource, read_image
from portrait.errors import InputError, StopRequested, run_command

# --- helpers -------------------------------------------------------------------------------------


def call_with_timeout(function, timeout_s: float, what: str):
    """``function()`` in a thread; returns (value, exception); fails the test on a hang."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001: judged by the caller
            outcome["error"] = error

    thread = threading.Thread(target=target, name="fuzz-case", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        pytest.fail(f"{what}: still running after {timeout_s} s (a hang)")
    return outcome.get("value"), outcome.get("error")


def is_bgr_image(image) -> bool:
    return (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.shape[0] >= 1 and image.shape[1] >= 1)


def mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One random mutation of ``data``: its kind and the result."""
    kind = ("random", "flip", "flip-header", "truncate", "delete", "insert")[rng.integers(6)]
    buf = bytearray(data)
    if kind == "random":
        body = rng.bytes(int(rng.integers(0, 4096)))
        return kind, (data[:8] if rng.random() < 0.5 else b"") + body  # half keep the magic
    if kind in ("flip", "flip-header"):
        span = min(len(buf), 64) if kind == "flip-header" else len(buf)  # sizes live up front
        for _ in range(int(rng.integers(1, 9))):
            buf[int(rng.integers(span))] ^= 1 << int(rng.integers(8))
        return kind, bytes(buf)
    if kind == "truncate":
        return kind, data[:int(rng.integers(0, len(data)))]
    start = int(rng.integers(0, len(data)))
    if kind == "delete":
        return kind, data[:start] + data[start + int(rng.integers(1, 512)):]
    return kind, data[:start] + rng.bytes(int(rng.integers(1, 512))) + data[start:]


def sample_image(width=96, height=64) -> np.ndarray:
    """Gradients and a block: enough structure for real entropy-coded data."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    image = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
                      (x + y) / 2], axis=2).astype(np.uint8)
    image[8:24, 16:32] = (20, 200, 90)
    return image


def encoded(ext: str, image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


# --- 1. fuzz -------------------------------------------------------------------------------------

IMAGE_CASES = 200
VIDEO_CASES = 30
CASE_TIMEOUT_S = 10.0  # generous on a shared, busy machine; a hang is forever


def image_fuzz_cases(tmp_path: Path) -> list[tuple[Path, str]]:
    rng = np.random.default_rng(2024)
    bases = {".jpg": encoded(".jpg", sample_image()), ".png": encoded(".png", sample_image()),
             ".webp": encoded(".webp", sample_image())}
    bases[".tif"] = encoded(".tiff", sample_image())
    folder = tmp_path / "fuzz-images"
    folder.mkdir()
    cases = []
    exts = list(bases)
    for i in range(IMAGE_CASES):
        ext = exts[i % len(exts)]
        kind, data = mutate(bases[ext], rng)
        path = folder / f"case{i:03d}{ext}"
        path.write_bytes(data)
        cases.append((path, kind))
    return cases


def test_fuzzed_images_give_an_image_or_input_error(tmp_path):
    cases = image_fuzz_cases(tmp_path)
    outcomes = {"image": 0, "InputError": 0}
    wrong = []
    for path, kind in cases:
        image, error = call_with_timeout(lambda: read_image(path), CASE_TIMEOUT_S,
                                         f"read_image({path.name}, {kind})")
        if error is None and is_bgr_image(image):
            outcomes["image"] += 1
        elif isinstance(error, InputError):
            outcomes["InputError"] += 1
            assert "\n" not in str(error) and path.name in str(error)
        else:
            wrong.append(f"{path.name} ({kind}): {error!r} / {getattr(image, 'shape', image)}")
    assert not wrong, "\n".join(wrong)
    # Both outcomes occur: the mutations reach the decoder, not only the header checks.
    assert outcomes["image"] >= 10 and outcomes["InputError"] >= 50, outcomes


def test_fuzzed_folder_reports_each_bad_file_and_yields_the_rest(tmp_path):
    cases = image_fuzz_cases(tmp_path)
    source = ImageSource(cases[0][0].parent)
    assert len(source) == IMAGE_CASES

    def consume():
        return list(source)

    frames, error = call_with_timeout(consume, CASE_TIMEOUT_S * 5, "ImageSource over the folder")
    assert error is None, repr(error)
    assert all(is_bgr_image(frame.image) for frame in frames)
    assert len(frames) + len(source.failures) == IMAGE_CASES
    assert all(isinstance(e, InputError) for _, e in source.failures)
    assert {f.name for f in frames}.isdisjoint(p.stem for p, _ in source.failures)


def read_all_frames(path: Path) -> tuple[list[np.ndarray], int | None]:
    """Every frame ``VideoFileSource`` gives, and the frame count the file claims."""
    with VideoFileSource(path) as source:
        frames = []
        for frame in source:
            frames.append(frame.image)
            if len(frames) > 1000:  # the base clip has 20: a runaway reader
                raise RuntimeError("more than 1000 frames from a 20-frame clip")
        return frames, source.frame_count


def test_fuzzed_videos_give_frames_or_input_error(tmp_path, caplog):
    rng = np.random.default_rng(7)
    bases = {}
    for ext, codec in ((".avi", "MJPG"), (".mp4", "mp4v")):
        path = tmp_path / f"base{ext}"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 30.0, (64, 48))
        for i in range(20):
            image = np.full((48, 64, 3), 30, np.uint8)
            image[8:40, 2 + 2 * i:26 + 2 * i] = 220
            writer.write(image)
        writer.release()
        bases[ext] = path.read_bytes()
    exts = list(bases)
    outcomes = {"frames": 0, "short": 0, "InputError": 0}
    wrong = []
    for i in range(VIDEO_CASES):
        ext = exts[i % len(exts)]
        kind, data = mutate(bases[ext], rng)
        path = tmp_path / f"case{i:02d}{ext}"
        path.write_bytes(data)
        caplog.clear()
        result, error = call_with_timeout(lambda: read_all_frames(path), CASE_TIMEOUT_S,
                                          f"VideoFileSource({path.name}, {kind})")
        frames, claimed = result or ([], None)
        if error is None and frames and all(is_bgr_image(f) for f in frames):
            outcomes["frames"] += 1
            if claimed and len(frames) < claimed - 2:  # cut short: the frames, then a message
                outcomes["short"] += 1
                assert any(path.name in r.getMessage() and "truncated" in r.getMessage()
                           for r in caplog.records), f"{path.name}: no truncation warning"
        elif isinstance(error, InputError):
            outcomes["InputError"] += 1
            assert "\n" not in str(error) and path.name in str(error)
        else:
            wrong.append(f"{path.name} ({kind}): {error!r}, {len(frames)} frames")
    assert not wrong, "\n".join(wrong)
    assert outcomes["frames"] >= 3 and outcomes["short"] >= 1 and outcomes["InputError"] >= 3, \
        outcomes


# --- 2. soak -------------------------------------------------------------------------------------


class CountingBackend(FakeCameraBackend):
    """Counts frames and keeps only the last one."""

    instances: list["CountingBackend"] = []
    on_send = None  # optional hook(count) called after each frame

    def __init__(self, **kw):
        super().__init__(**kw)
        self.last: np.ndarray | None = None

    def send(self, frame: np.ndarray) -> None:
        super().send(frame)
        self.last = frame
        if CountingBackend.on_send is not None:
            CountingBackend.on_send(self.count)


@pytest.fixture
def counting_camera():
    CountingBackend.on_send = None
    with fake_camera("portrait-robustness-counting", CountingBackend):
        yield "portrait-robustness-counting"
    CountingBackend.on_send = None


class StallingBackend(FakeCameraBackend):
    """A device that takes 0.8 s a frame (a driver or consumer holding each write up)."""

    instances: list = []
    on_send = None

    def send(self, frame: np.ndarray) -> None:
        time.sleep(0.8)
        super().send(frame)
        if StallingBackend.on_send is not None:
            StallingBackend.on_send(self.count)


def test_a_second_ctrl_c_drops_the_frames_a_stalled_device_holds_up(
        brightness_model, tmp_path, caplog):
    """The first Ctrl-C lets the frames in flight out, at 0.8 s each; a second one drops them
    and the run ends after the write in progress. The writes are counted, not timed: the
    output is written in the caller's thread, where the handler runs as the signal is sent, so
    the write the second Ctrl-C came in is the last; and no stage's thread is left running."""
    from portrait.cli import main

    video = write_video(tmp_path / "in.avi", frames=300, size=(96, 64))

    def on_send(count):
        if count <= 2:
            os.kill(os.getpid(), signal.SIGINT)

    StallingBackend.on_send = on_send
    try:
        with fake_camera("portrait-robustness-stalling", StallingBackend):
            assert main(["--model", str(brightness_model), "--source", str(video)]) == 0
            (camera,) = StallingBackend.instances
    finally:
        StallingBackend.on_send = None
    # Two writes, then close (before, each frame in flight was written, at 0.8 s each).
    assert camera.count == 2 and camera.closed == 1
    assert not [t for t in threading.enumerate() if t.name in ("reader", "segment", "finish")]
    messages = [r.getMessage() for r in caplog.records]
    assert "SIGINT again: dropping the frames in flight and finalising the output" in messages


def moving_frames(count: int, size=(160, 96), start: int = 0):
    """Frames of a bright block sliding over a dark textured background (a new array each)."""
    width, height = size
    rng = np.random.default_rng(3)
    texture = rng.integers(0, 50, (height, width, 3), np.uint8)
    for i in range(start, start + count):
        image = texture.copy()
        x = (i * 2) % (width - 40)
        image[height // 4:height - 8, x:x + 40] = 225
        yield Frame(image, i, time.perf_counter())


def full_processor(segmenter, size, options=None):
    from portrait.composite import make_background
    from portrait.options import CompositeOptions, PipelineOptions, RefineOptions, SmoothOptions
    from portrait.pipeline import FrameProcessor
    from portrait.refine import Refiner
    from portrait.smooth import TemporalSmoother

    background = make_background(CompositeOptions(background="blur", blur_px=9), size)
    return FrameProcessor(segmenter, TemporalSmoother(SmoothOptions()), Refiner(RefineOptions()),
                          background, matte=False, options=options or PipelineOptions())


@pytest.fixture(scope="module")
def segmenter(brightness_model):
    from portrait.options import SegmentOptions
    from portrait.segment import create_segmenter

    with create_segmenter(SegmentOptions(model=str(brightness_model))) as seg:
        yield seg


SOAK_FRAMES = 5000


@pytest.mark.slow
def test_soak_5000_frames_into_a_virtual_camera_with_bounded_memory(segmenter, counting_camera):
    import psutil

    from portrait.options import PipelineOptions
    from portrait.pipeline import StreamPipeline
    from portrait.sink import VirtualCameraSink

    process = psutil.Process()
    rss_mb: dict[int, float] = {}

    def record(count):
        if count in (1000, SOAK_FRAMES):
            rss_mb[count] = process.memory_info().rss / 2**20

    CountingBackend.on_send = record
    size = (160, 96)
    options = PipelineOptions(live=False)
    started = time.perf_counter()
    with VirtualCameraSink(*size, 30.0, backend=counting_camera) as sink:
        stream = StreamPipeline(moving_frames(SOAK_FRAMES, size), full_processor(segmenter, size),
                                sink.write, options)
        stats = stream.run()
        written, dropped = sink.frames_written, sink.frames_dropped
    elapsed_s = time.perf_counter() - started
    (camera,) = CountingBackend.instances
    assert stats.frames == SOAK_FRAMES and stats.dropped == 0
    assert camera.count == SOAK_FRAMES and written == SOAK_FRAMES and dropped == 0
    assert camera.closed == 1
    growth_mb = rss_mb[SOAK_FRAMES] - rss_mb[1000]
    assert growth_mb < 30, f"RSS grew {growth_mb:.1f} MB from frame 1000 to {SOAK_FRAMES}: {rss_mb}"
    # The last frame is a real composite: the block (person) sharp, the texture blurred away.
    last = camera.last.reshape(96, 160, 3)
    x = ((SOAK_FRAMES - 1) * 2) % (160 - 40)
    assert last[50, x + 20].min() > 200
    assert stats.reused < SOAK_FRAMES // 2  # the block moves: most frames were segmented
    print(f"soak: {SOAK_FRAMES} frames in {elapsed_s:.1f} s, RSS {rss_mb}")


# --- 4. frame size change mid-stream -------------------------------------------------------------


@pytest.fixture(scope="module")
def aspect_model(tmp_path_factory) -> Path:
    """A fully convolutional brightness model marked with a 64 px training short side, so the
    app runs it at each frame's aspect ratio (a new TFLite conversion per frame shape)."""
    import h5py
    import keras

    from portrait.segment import SHORT_SIDE_ATTR

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inputs, conv(x))
    conv.set_weights([np.full((1, 1, 3, 1), 4.0, np.float32), np.zeros(1, np.float32)])
    path = tmp_path_factory.mktemp("models") / "bright_fcn.hdf5"
    model.save(path)
    with h5py.File(path, "a") as f:
        f.attrs[SHORT_SIDE_ATTR] = 64
    return path


@pytest.mark.parametrize("model_kind, matte", [("fixed", False), ("fixed", True),
                                               ("aspect", False)])
def test_frame_size_change_mid_stream_reaches_every_sink_at_its_size(
        request, tmp_path, counting_camera, model_kind, matte):
    from portrait.options import PipelineOptions, SegmentOptions
    from portrait.pipeline import StreamPipeline
    from portrait.segment import create_segmenter
    from portrait.sink import VideoFileSink, VirtualCameraSink

    if model_kind == "fixed":
        segmenter = request.getfixturevalue("segmenter")
    else:
        segmenter = create_segmenter(SegmentOptions(
            model=str(request.getfixturevalue("aspect_model"))))
        request.addfinalizer(segmenter.close)

    def frames():  # 160x96 landscape, then 128x128 square, then back
        yield from moving_frames(30, (160, 96))
        yield from moving_frames(30, (128, 128), start=30)
        yield from moving_frames(10, (160, 96), start=60)

    processor = full_processor(segmenter, (160, 96))
    if matte:
        processor.matte = True
    shapes = []
    video_path = tmp_path / "out.avi"
    with VirtualCameraSink(160, 96, 30.0, backend=counting_camera) as camera, \
            VideoFileSink(video_path, 30.0) as video:
        def emit(image, _pts):
            shapes.append(image.shape)
            camera.write(image)
            video.write(image)

        stats = StreamPipeline(frames(), processor, emit, PipelineOptions()).run()
    assert stats.frames == 70
    # The stages adapted: each output has its own frame's size ...
    expected = [(96, 160), (128, 128), (96, 160)]
    runs = [shapes[0][:2]] + [b[:2] for a, b in zip(shapes, shapes[1:]) if a[:2] != b[:2]]
    assert runs == expected
    assert all(len(s) == (2 if matte else 3) for s in shapes)
    # ... and both sinks got every frame at theirs.
    assert CountingBackend.instances[0].count == 70
    capture = cv2.VideoCapture(str(video_path))
    sizes = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        sizes.append(image.shape)
    capture.release()
    assert sizes == [(96, 160, 3)] * 70
    if model_kind == "aspect":  # a model per frame shape, re-used on the way back
        assert {(96, 64), (64, 64)} <= set(segmenter._by_size)


# --- 5. a virtual-camera consumer opening and closing the device ---------------------------------


class FlakyBackend(FakeCameraBackend):
    """A virtual camera whose device disappears while ``available`` is False (a consumer app
    reopening it, a driver hiccup): sends fail and opening it fails, until it comes back."""

    instances: list["FlakyBackend"] = []
    available = True

    def __init__(self, **kw):
        if not FlakyBackend.available:
            raise RuntimeError("device busy")
        super().__init__(**kw)

    def send(self, frame: np.ndarray) -> None:
        if not FlakyBackend.available:
            raise RuntimeError("write failed: No such device")
        super().send(frame)


@pytest.fixture
def flaky_camera():
    FlakyBackend.available = True
    with fake_camera("portrait-robustness-flaky", FlakyBackend):
        yield "portrait-robustness-flaky"
    FlakyBackend.available = True


def test_virtual_camera_consumer_coming_and_going_neither_stalls_nor_crashes(
        segmenter, flaky_camera, caplog):
    """A live pipeline into a virtual camera whose consumer goes away twice, 0.3 s each time.

    The sink's back-off runs on a :class:`ManualClock` that the output moves by 5 ms a frame
    (a 200 fps camera), in the one thread that writes: an outage ends 60 frames after it
    began, and every count below is the same however loaded the machine (nothing is timed)."""
    from portrait.options import PipelineOptions
    from portrait.pipeline import StreamPipeline
    from portrait.sink import VirtualCameraSink

    frame_s, outage_s = 0.005, 0.3
    clock = ManualClock()
    done = threading.Event()

    def camera_frames():  # a live camera, until the test has seen enough
        for frame in moving_frames(1_000_000):
            if done.is_set():
                return
            time.sleep(frame_s)  # paces the source only; nothing below is timed
            yield frame

    emitted, write_clock_s = 0, []
    outages: list[float] = []  # when each began, on the clock

    def emit(image, _pts):
        nonlocal emitted
        emitted += 1
        before = clock.now()
        sink.write(image)
        write_clock_s.append(clock.now() - before)
        clock.advance(frame_s)
        if not FlakyBackend.available and clock.now() >= outages[-1] + outage_s:
            FlakyBackend.available = True  # the consumer is back
        current = FlakyBackend.instances[-1]
        # Once each camera instance has taken 30 frames, its consumer goes away for a while.
        if current.count >= 30 and len(outages) < len(FlakyBackend.instances):
            if len(outages) == 2:
                done.set()  # two outages survived and frames flow again: enough
                return
            outages.append(clock.now())
            FlakyBackend.available = False

    options = PipelineOptions(live=True)
    with VirtualCameraSink(160, 96, 30.0, backend=flaky_camera, clock=clock) as sink:
        stream = StreamPipeline(camera_frames(), full_processor(segmenter, (160, 96), options),
                                emit, options)
        stats, error = call_with_timeout(stream.run, 120, "live pipeline with a flaky camera")
        written, dropped = sink.frames_written, sink.frames_dropped
    assert error is None, repr(error)
    assert done.is_set(), (f"frames did not flow again: {len(outages)} outages, "
                           f"{[c.count for c in FlakyBackend.instances]} frames per instance")
    assert len(FlakyBackend.instances) == 3 and all(c.count >= 30 for c in FlakyBackend.instances)
    assert stats.frames == emitted == written + dropped  # every frame output was sent or dropped
    assert written == sum(c.count for c in FlakyBackend.instances)
    # Frames kept coming during the outages (60 each, 5 ms apart) and the sink dropped them
    # (124 here): one that waited out its back-off in write dropped 6.
    frames_per_outage = round(outage_s / frame_s)
    assert dropped >= 2 * frames_per_outage, dropped
    # write never waited for the device: no time passed on the sink's clock inside it.
    assert write_clock_s == [0.0] * emitted
    messages = [r.getMessage() for r in caplog.records]
    assert sum("stopped accepting" in m for m in messages) == 2
    assert sum("is back" in m for m in messages) == 2


# --- 3. clean shutdown on SIGTERM and Ctrl-C -----------------------------------------------------


def count_video_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


@contextmanager
def app_process(*args) -> Iterator[subprocess.Popen]:
    """``python app.py ARGS`` in a subprocess (unbuffered, piped); killed if the block leaves it
    running."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Ctrl-C as in a terminal's foreground: tests run as a background job (CI) inherit SIGINT
    # ignored, and Python then raises no KeyboardInterrupt.
    process = subprocess.Popen([sys.executable, "app.py", *map(str, args)], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.parametrize("suffix, limit", [(".mp4", 8000), (".avi", 100_000)])
def test_a_video_cut_short_by_a_full_disk_is_reported_and_the_earlier_file_kept(
        brightness_model, tmp_path, suffix, limit):
    """A file-size limit (RLIMIT_FSIZE) fails the writes as a full disk does: the first write
    refused ends the run there (not after every frame left), with one line and exit 2; the
    earlier output is intact and the partial file plays the frames written before it."""
    import resource

    video = write_video(tmp_path / "in.avi", frames=300, size=(320, 240))
    out = tmp_path / f"out{suffix}"
    out.write_bytes(b"an earlier output")

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # about a third of it

    # Keras runs the model as it is; the TFLite backend would write its converted file first.
    result = subprocess.run([sys.executable, "app.py", "--model", str(brightness_model),
                             "--backend", "keras", "--source", str(video), "--out", str(out)],
                            cwd=ROOT,
                            capture_output=True, text=True, preexec_fn=small_disk, timeout=300)
    (partial,) = tmp_path.glob(f".out{suffix}.*.partial{suffix}")
    given, shown = stopped_with_a_playable_partial(result, out, partial, "File too large")
    assert given < 200  # stopped at the refused write, not at the end
    assert out.read_bytes() == b"an earlier output"
    assert 0 < shown < given


def stopped_with_a_playable_partial(done: subprocess.CompletedProcess, out: Path, partial: Path,
                                    reason: str) -> tuple[int, int]:
    """Check that a video run stopped on a refused write with exit code 2 and one line naming
    ``reason``, the partial file and how long it plays, and that every frame of the partial
    decodes, to that time. Returns (frames given, frames the partial plays)."""
    import av

    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(errors) == 1, done.stderr
    match = re.fullmatch(rf"error: cannot write video '{re.escape(str(out))}': {reason} after "
                         rf"(\d+) frames; the partial file '{re.escape(str(partial))}' plays its "
                         r"first ([\d.]+) s; free space or choose another --out", errors[0])
    assert match, errors[0]
    given, seconds = int(match[1]), float(match[2])
    with av.open(str(partial)) as container:
        shown = [float(frame.time) for frame in container.decode(video=0)]
    assert shown and abs(shown[-1] + 1 / 30 - seconds) < 0.06, (len(shown), seconds, given)
    return given, len(shown)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_signal_stops_the_app_cleanly_and_finalises_the_video(brightness_model, tmp_path, signum):
    """Ctrl-C, a kill and a closed terminal each finish the video: it reads to its end and
    replaces an earlier file of that name only then (the frames go to a hidden partial file)."""
    video = write_video(tmp_path / "long.avi", frames=900)  # 30 s at its own 30 fps
    out, stats = tmp_path / "out.mp4", tmp_path / "s.json"
    out.write_bytes(b"an earlier output")
    with app_process("--model", brightness_model, "--source", video, "--realtime", "--out", out,
                     "--stats", stats) as process:
        deadline = time.perf_counter() + 90  # TensorFlow start-up on a busy machine

        def partial():
            return next(tmp_path.glob(".out.mp4.*.partial.mp4"), None)

        while partial() is None and process.poll() is None and time.perf_counter() < deadline:
            time.sleep(0.1)
        assert process.poll() is None, f"the app ended early: {process.communicate()}"
        assert partial() is not None, "no output after 90 s"
        time.sleep(1.0)  # some frames written
        assert out.read_bytes() == b"an earlier output"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
    assert partial() is None
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert not [line for line in stderr.splitlines() if line.lower().startswith("error")], stderr
    assert f"{signal.Signals(signum).name}: finishing" in stderr
    written = count_video_frames(out)  # finalised: readable to the end
    assert 1 <= written < 900
    assert json.loads(stats.read_text())["frames"] == written  # every frame output was kept


def wait_until_caught(process: subprocess.Popen, signum: int, timeout_s: float = 60) -> None:
    """Wait until ``process`` has a handler for ``signum`` (its SigCgt in /proc), or has ended."""
    status = Path(f"/proc/{process.pid}/status")
    if not status.exists():
        pytest.skip("no /proc/PID/status here to tell when a signal handler is installed")
    deadline = time.perf_counter() + timeout_s
    while process.poll() is None and time.perf_counter() < deadline:
        caught = next(line for line in status.read_text().splitlines() if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) >> (signum - 1) & 1:
            return
        time.sleep(0.01)
    assert process.poll() is None, f"the app ended before it caught {signum}: {process.communicate()}"
    raise AssertionError(f"the app did not catch signal {signum} within {timeout_s} s")


def test_sigterm_during_start_up_exits_cleanly(brightness_model, tmp_path):
    """Before the stream runs (TensorFlow still importing), SIGTERM ends the app at once: exit 0,
    one log line, no traceback (the -15 death of an unhandled SIGTERM was the old behaviour)."""
    video = write_video(tmp_path / "clip.avi", frames=30)
    with app_process("--model", brightness_model, "--source", video,
                     "--out", tmp_path / "out.mp4") as process:
        # Once the app catches SIGTERM, about when TensorFlow's import (seconds) starts. A fixed
        # 0.8 s was sometimes before Python had started, with tests run beside each other.
        wait_until_caught(process, signal.SIGTERM)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert "SIGTERM: stopped" in stderr or "SIGTERM: finishing" in stderr, stderr


def _import_failed_from(stop: BaseException):
    """What a pybind11 module's import raises when a signal handler's exception escapes its
    initialisation (TensorFlow's, for one): ``raise_from(e, PyExc_ImportError, ...)``."""
    def body():
        raise ImportError("initialization failed") from stop
    return body


@pytest.mark.parametrize("stop, code, line", [(StopRequested("SIGTERM"), 0, "SIGTERM: stopped"),
                                              (KeyboardInterrupt(), 130, "interrupted")],
                         ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_inside_an_extension_import_is_the_stop_not_an_error(stop, code, line, caplog, capsys):
    with caplog.at_level("INFO", logger="portrait"):
        assert run_command(_import_failed_from(stop)) == code
    assert line in caplog.text
    assert capsys.readouterr().err == ""  # no "error: unexpected ImportError" line


@pytest.mark.parametrize("stop, code", [(StopRequested("SIGTERM"), 143),
                                        (StopRequested("SIGHUP"), 129), (KeyboardInterrupt(), 130)],
                         ids=["SIGTERM", "SIGHUP", "Ctrl-C"])
def test_a_stop_that_leaves_the_work_undone_exits_128_plus_its_signal(stop, code, caplog, capsys):
    """A command whose work a stop leaves undone (train, evaluate: ``unfinished_on_stop``) exits
    128 + the signal's number for SIGTERM and SIGHUP, and 130 for Ctrl-C, whether the stop is
    raised in its body or comes back as the cause of an extension's import error; without it,
    SIGTERM and SIGHUP exit 0. No error line either way."""
    def raised():
        raise stop

    with caplog.at_level("INFO", logger="portrait"):
        for body in (raised, _import_failed_from(stop)):
            assert run_command(body, unfinished_on_stop=True) == code
            assert run_command(body) == (130 if code == 130 else 0)
    assert capsys.readouterr().err == ""


def test_a_stop_that_lands_while_an_error_is_handled_is_the_stop(caplog, capsys):
    """Ctrl-C inside an ``except`` block (a clean-up that another error started) comes back as
    the later error's context, not its cause: still a stop, exit 130, no error line."""
    def body():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ImportError("initialization failed")  # no "from": a context, not a cause

    with caplog.at_level("INFO", logger="portrait"):
        assert run_command(body) == 130
    assert "interrupted" in caplog.text and capsys.readouterr().err == ""


def test_a_users_mistake_is_one_line_and_exit_2_apart_from_a_bugs_1(capsys):
    """Scripts tell bad input (2, as argparse) from a crash (1) by the exit code."""
    def body():
        raise InputError("cannot read image 'x.png'; check the path")

    assert run_command(body) == 2
    assert capsys.readouterr().err == "error: cannot read image 'x.png'; check the path\n"


def test_a_system_error_without_a_file_is_an_unexpected_error_not_a_file_to_check(capsys):
    """Only an OSError that names a file is the user's to fix; one without (a socket, a
    broken pipe) is reported as unexpected, not as "cannot use 'None'"."""
    def body():
        raise ConnectionResetError(104, "Connection reset by peer")

    assert run_command(body) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected ConnectionResetError: ") and "None" not in err, err


def test_termination_signals_are_left_alone_off_the_main_thread():
    """A program that runs a command in a thread of its own: Python sets signal handlers on
    the main thread only, so the block runs without them rather than failing."""
    from portrait.errors import stop_on_termination_signals

    before = signal.getsignal(signal.SIGTERM)
    failures, seen = [], []

    def body():
        try:
            with stop_on_termination_signals():
                seen.append(signal.getsignal(signal.SIGTERM))
        except Exception as error:  # noqa: BLE001: what the thread met is the result
            failures.append(error)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert failures == [] and seen == [before]
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.fixture
def python_ctrl_c():
    """Ctrl-C as Python sets it in a terminal (KeyboardInterrupt): a test run started as a
    background job (CI, nohup) inherits SIGINT ignored, which stops_held then rightly gives back."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_stops_held_notes_real_signals_and_gives_the_stop_back_after(python_ctrl_c):
    """Inside stops_held, a real SIGTERM and a real SIGINT stop nothing and are noted by name,
    in order; after it, SIGTERM raises StopRequested again (stop_on_termination_signals's
    handler is back) and SIGINT is Python's KeyboardInterrupt again."""
    import os

    from portrait.errors import StopRequested, stop_on_termination_signals, stops_held

    with stop_on_termination_signals():
        with stops_held() as stops:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            reached = True  # the block went on past both
        assert reached and stops == ["SIGTERM", "Ctrl-C"]
        with pytest.raises(StopRequested, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.getsignal(signal.SIGTERM)  # a bytecode for the handler to run at
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        signal.getsignal(signal.SIGINT)


def test_stops_held_gives_ctrl_c_back_when_a_stop_lands_as_it_begins(python_ctrl_c):
    """A real SIGTERM sent the moment stops_held has set Ctrl-C's handler, before its own (a
    profile hook sends it): the stop comes through, before the block, and Ctrl-C is Python's
    KeyboardInterrupt again. It was left noted and ignored for the rest of the process."""
    from portrait.errors import StopRequested, stop_on_termination_signals, stops_held

    def send_at_the_first_change(_frame, event, arg):
        if event == "c_return" and getattr(arg, "__name__", "") == "signal":
            sys.setprofile(None)
            os.kill(os.getpid(), signal.SIGTERM)

    ran = False
    with stop_on_termination_signals():
        sys.setprofile(send_at_the_first_change)
        try:
            with pytest.raises(StopRequested, match="SIGTERM"):
                with stops_held():
                    ran = True
        finally:
            sys.setprofile(None)
    assert not ran and signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("sent, raised", [("SIGINT", KeyboardInterrupt),
                                          ("SIGTERM", StopRequested)])
def test_stops_held_gives_every_handler_back_when_a_stop_lands_as_they_come_back(python_ctrl_c,
                                                                                 sent, raised):
    """A real stop sent the moment stops_held has given Ctrl-C's handler back, before SIGTERM's
    (a profile hook sends it, after the block): it comes through once every handler is back,
    raised out of the block, not noted, and after it SIGTERM, SIGHUP and Ctrl-C each stop as
    before. A Ctrl-C there left SIGTERM and SIGHUP noted and ignored for the rest of the
    process; a SIGTERM there was noted after the block, and stopped nothing."""
    from portrait.errors import TERMINATION_SIGNALS, stop_on_termination_signals, stops_held

    def send_at_the_first_change_back(_frame, event, arg):
        if event == "c_return" and getattr(arg, "__name__", "") == "signal":
            sys.setprofile(None)
            os.kill(os.getpid(), getattr(signal, sent))

    with stop_on_termination_signals():
        termination = {sig: signal.getsignal(sig) for sig in TERMINATION_SIGNALS}
        try:
            with pytest.raises(raised):
                with stops_held() as stops:
                    sys.setprofile(send_at_the_first_change_back)
        finally:
            sys.setprofile(None)
        assert stops == []
        assert {sig: signal.getsignal(sig) for sig in TERMINATION_SIGNALS} == termination
        for sig in TERMINATION_SIGNALS:
            with pytest.raises(StopRequested, match=signal.Signals(sig).name):
                os.kill(os.getpid(), sig)
                signal.getsignal(sig)  # a bytecode for the handler to run at
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        signal.getsignal(signal.SIGINT)


def test_a_sigterm_that_lands_as_stops_held_gives_back_its_default_ends_the_process():
    """Where SIGTERM has the system's default (a script, not the app), a real SIGTERM sent as
    stops_held gives the handlers back, before SIGTERM's, ends the process as SIGTERM does
    (killed by it), once every handler is back. It was noted after the block, and the
    process went on as if no SIGTERM had come."""
    code = ("import os, signal, sys\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "from portrait.errors import stops_held\n"
            "def send(_frame, event, arg):\n"
            "    if event == 'c_return' and getattr(arg, '__name__', '') == 'signal':\n"
            "        sys.setprofile(None)\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "with stops_held() as stops:\n"
            "    sys.setprofile(send)\n"
            "print('went on; noted:', stops)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == -signal.SIGTERM, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""


def test_each_stop_held_is_said_at_once_in_a_line(python_ctrl_c, caplog):
    """A real Ctrl-C, then a real SIGTERM, inside stops_held each log one line as it comes,
    before the block goes on (the work held may take seconds, which a terminal showed as
    nothing at all after Ctrl-C), naming the stop and what it waits for."""
    from portrait.errors import stops_held

    caplog.set_level(logging.WARNING, logger="portrait")
    said = []
    with stops_held("the model is written to 'm.hdf5'") as stops:
        for sig in (signal.SIGINT, signal.SIGTERM):
            os.kill(os.getpid(), sig)
            signal.getsignal(sig)  # a bytecode for the handler to run at
            said.append([(r.levelname, r.getMessage()) for r in caplog.records])
    assert stops == ["Ctrl-C", "SIGTERM"]
    ctrl_c = ("WARNING", "Ctrl-C: stopping once the model is written to 'm.hdf5'...")
    assert said == [[ctrl_c],
                    [ctrl_c, ("WARNING", "SIGTERM: stopping once the model is written to "
                                         "'m.hdf5'...")]]


def test_stops_held_off_the_main_thread_holds_nothing():
    """In a thread, where no handler can be set, the block runs with an empty list."""
    from portrait.errors import stops_held

    seen = []

    def body():
        try:
            with stops_held() as stops:
                seen.append(list(stops))
        except Exception as error:  # the thread's failure, for the assertion below
            seen.append(error)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [[]]


def test_a_file_the_system_refuses_is_one_line_not_an_unexpected_error(capsys):
    def body():
        raise PermissionError(13, "Permission denied", "/somewhere/out.tmp.h5")

    assert run_command(body) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: cannot use '/somewhere/out.tmp.h5': Permission denied; check the path, "
                   "its permissions and the free space"]


def test_an_import_error_without_a_stop_behind_it_stays_an_error(capsys):
    def body():
        try:
            raise ValueError("a bad value")
        except ValueError as cause:
            raise ImportError("initialization failed") from cause

    assert run_command(body) == 1
    assert "error: unexpected ImportError: initialization failed" in capsys.readouterr().err


# --- 6. command-line acceptance ------------------------------------------------------------------


def run_app(*args, timeout=120):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, "app.py", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stderr


def person_image(path: Path, size=(160, 120)) -> Path:
    width, height = size
    image = np.random.default_rng(1).integers(0, 60, (height, width, 3), np.uint8)
    image[height // 4:height - 10, width // 3:2 * width // 3] = 230
    assert cv2.imwrite(str(path), image)
    return path


def test_batch_with_one_bad_file_names_it_and_ends_with_a_summary(brightness_model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    person_image(folder / "a.jpg")
    person_image(folder / "c.png")
    (folder / "b_broken.jpg").write_bytes(encoded(".jpg", sample_image())[:300])  # truncated
    out = tmp_path / "out"
    code, stderr = run_app("--model", brightness_model, "--image", folder, "--out", out)
    assert code != 0 and "Traceback" not in stderr
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "c.png"]
    # The warning is a line of its own, not appended to the progress bar's line.
    lines = stderr.replace("\r", "\n").splitlines()
    assert any(line.startswith("WARNING portrait.run: skipped: ") and "b_broken.jpg" in line
               for line in lines), stderr
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert "1 of 3 images could not be processed: b_broken.jpg" in last, stderr


def test_a_batch_takes_every_image_kind_a_single_photo_takes_and_decoders_stay_quiet(
        brightness_model, tmp_path):
    """GIF, JPEG 2000, AVIF, .jpe and PPM photos are in the batch as they are one at a time;
    a PNG whose data libpng rejects is one warning, without libpng's own line."""
    folder = tmp_path / "photos"
    folder.mkdir()
    image = cv2.imread(str(person_image(tmp_path / "me.png")))
    kinds = [".gif", ".jp2", ".avif", ".jpe", ".ppm"]
    for ext in kinds:
        assert cv2.imwrite(str(folder / f"p{ext[1:]}{ext}"), image), ext
    (folder / "notes.txt").write_text("not a photo")
    png = bytearray(encoded(".png", np.random.default_rng(0).integers(0, 255, (120, 160, 3),
                                                                     np.uint8)))
    start = png.find(b"IDAT") + 204
    png[start:start + 100] = bytes(100)  # libpng: "IDAT: CRC error"
    (folder / "zbroken.png").write_bytes(bytes(png))
    out = tmp_path / "out"
    code, stderr = run_app("--model", brightness_model, "--image", folder, "--out", out)
    assert code == 1 and "Traceback" not in stderr, stderr
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"p{ext[1:]}.png" for ext in kinds)
    assert "libpng" not in stderr, stderr
    assert "1 of 6 images could not be processed: zbroken.png" in stderr.splitlines()[-1], stderr


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_batch_says_how_far_it_got(brightness_model, tmp_path, signum, code):
    """Ctrl-C or a kill mid-batch: each photo written is whole, the log and --stats say how many,
    and the exit code says the batch is not done (128 + the signal's number)."""
    folder, out, stats = tmp_path / "photos", tmp_path / "out", tmp_path / "stats.json"
    folder.mkdir()
    # Large photos (each about 0.2 s to decode, refine and write here), as links to one file:
    # the run must still be going when the signal comes.
    first = person_image(folder / "p000.jpg", size=(2400, 1800))
    for i in range(1, 150):
        os.link(first, folder / f"p{i:03d}.jpg")
    with app_process("--model", brightness_model, "--image", folder, "--out", out,
                     "--stats", stats) as process:
        deadline = time.perf_counter() + 90
        while (not out.is_dir() or len(list(out.glob("*.png"))) < 3) and process.poll() is None \
                and time.perf_counter() < deadline:
            time.sleep(0.02)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
    written = len(list(out.glob("*.png")))
    assert process.returncode == code and 3 <= written < 150, (written, stderr)
    assert "Traceback" not in stderr and "error:" not in stderr, stderr
    assert f"WARNING portrait.run: interrupted after {written} of 150 images; those are in {out}" \
        in stderr.splitlines(), stderr
    assert all(cv2.imread(str(path)) is not None for path in out.glob("*.png"))  # each whole
    assert json.loads(stats.read_text())["frames"] == written


def test_a_single_photo_stopped_says_nothing_of_images_done(caplog):
    """"interrupted after 0 of 1 images; those are in me_portrait.png" would name a file that
    was never written: the count is for batches, of two images or more. A batch stopped before
    its first photo names no folder either (it is made with the first photo)."""
    from portrait.errors import OutputFull, OutputRefused
    from portrait.run import _say_if_stopped
    from portrait.stats import RunStats

    done = RunStats()
    done.frames = 1
    with caplog.at_level("WARNING", logger="portrait.run"):
        _say_if_stopped(KeyboardInterrupt(), RunStats(), 1, "me_portrait.png")
        _say_if_stopped(StopRequested("SIGTERM"), RunStats(), 2, "out")
        _say_if_stopped(OutputFull("full"), RunStats(), 3, "out")
        _say_if_stopped(StopRequested("SIGTERM"), done, 2, "out")
        _say_if_stopped(OutputRefused("read-only"), done, 3, "out")
        _say_if_stopped(OutputFull("full"), done, 3, "out")
    assert [record.getMessage() for record in caplog.records] == [
        "interrupted before any of the 2 images was written",
        "stopped before any of the 3 images was written: the output's disk takes none",
        "interrupted after 1 of 2 images; those are in out",
        "stopped after 1 of 3 images: the output folder takes no more; those are in out",
        "stopped after 1 of 3 images: the output's disk takes no more; those are in out"]


def app_on_a_small_disk(disk: Path, size: str, *args) -> subprocess.CompletedProcess:
    """``python app.py ARGS`` with a real disk of ``size`` (``"200k"``) that fills up: a tmpfs
    mounted on the folder ``disk`` in a user namespace of its own (no root needed). The tmpfs
    starts with what ``disk`` holds, and what it holds at the end replaces that (the tmpfs
    goes with the namespace). Skips the test where the system allows no such mount."""
    held = disk.with_name(disk.name + ".held")  # on the real disk, beside it
    held.mkdir()
    script = ('cp -a "$1"/. "$3"/ && mount -t tmpfs -o size="$2" tmpfs "$1" && cp -a "$3"/. "$1"/ '
              '|| exit 99; disk=$1 held=$3; shift 3; "$@"; code=$?; '
              'rm -rf "$held" && mkdir "$held" && cp -a "$disk"/. "$held"/; exit $code')
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script,
                           "sh", str(disk), size, str(held), sys.executable, "app.py",
                           *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"))
    if done.returncode == 99 or "unshare:" in done.stderr:
        pytest.skip(f"no tmpfs in a user namespace here: {done.stderr.strip()[:200]}")
    shutil.rmtree(disk)
    held.rename(disk)
    return done


def test_a_full_disk_stops_a_batch_at_the_first_photo_it_refuses(brightness_model, tmp_path):
    """A real full disk (a 200 KB tmpfs, mounted in a user namespace of its own): the batch
    stops there with one line and exit code 2, instead of trying and skipping every photo left;
    --stats (on another disk) counts the photos written, and the log says how far it got."""
    folder, disk, stats = tmp_path / "photos", tmp_path / "disk", tmp_path / "stats.json"
    folder.mkdir()
    disk.mkdir()
    for i in range(30):  # sensor noise: about 40 KB a PNG, so a few fit
        person_image(folder / f"p{i:02d}.jpg")
    done = app_on_a_small_disk(disk, "200k", "--model", brightness_model, "--image", folder,
                               "--out", str(disk / "out") + "/", "--stats", stats)
    stderr = done.stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in stderr, stderr
    assert len(errors) == 1 and "No space left on device; free space or choose another place" \
        in errors[0], stderr
    assert "skipped" not in stderr, stderr
    written = json.loads(stats.read_text())["frames"]
    assert 1 <= written < 30, stderr
    assert f"stopped after {written} of 30 images: the output's disk takes no more" in stderr


def test_a_batch_a_full_disk_takes_no_photo_of_leaves_no_folder(brightness_model, tmp_path):
    """A real disk with room for the output folders and their mark but not for the first photo
    (a tmpfs of one 4 KB page, the mark's, mounted in a user namespace of its own): the batch
    stops with one line and exit code 2, and the folders it made (two levels) and its mark
    are removed on the way out: nothing is left on the disk."""
    folder, disk = tmp_path / "photos", tmp_path / "disk"
    folder.mkdir()
    disk.mkdir()
    for i in range(3):
        person_image(folder / f"p{i}.jpg")
    done = app_on_a_small_disk(disk, "4k", "--model", brightness_model, "--image", folder,
                               "--out", str(disk / "new" / "cutouts") + "/")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot write image '{disk}/new/"
                                                     "cutouts/p0.png': No space left on device")
    assert "stopped before any of the 3 images was written: the output's disk takes none" \
        in done.stderr, done.stderr
    assert list(disk.iterdir()) == []


def test_a_stream_stopped_by_a_full_disk_still_writes_its_stats(brightness_model, tmp_path):
    """PNG frames onto a real full disk (a 200 KB tmpfs): the stream stops with one line and
    exit code 2, and --stats (on another disk) counts the frames written before it."""
    video = write_video(tmp_path / "in.avi", frames=60, size=(320, 240))
    disk, stats = tmp_path / "disk", tmp_path / "stats.json"
    disk.mkdir()
    done = app_on_a_small_disk(disk, "200k", "--model", brightness_model, "--backend", "keras",
                               "--source", video, "--out", str(disk / "frames") + "/",
                               "--stats", stats)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(errors) == 1 and "No space left on device" in errors[0], done.stderr
    assert "--stats not written" not in done.stderr, done.stderr
    assert 0 <= json.loads(stats.read_text())["frames"] < 60


@pytest.mark.parametrize("out, said", [
    ("new/frames/", "No space left on device"),
    # The muxer reports no failed fragment: the count read back and the free space tell.
    ("new/talk.mp4", "No space left on device after 30 frames (0 of the 30 stored reached the "
                     "disk); nothing of it plays, so it was removed")])
def test_a_stream_a_full_disk_takes_no_frame_of_leaves_no_folder(brightness_model, tmp_path, out,
                                                                 said):
    """A real disk with room for the output's folders (and the frames' mark) but for no frame
    (a tmpfs of one 4 KB page, mounted in a user namespace of its own; grainy frames): the
    stream stops with one line and exit code 2, and the folders it made, the mark and the
    partial video, of which nothing plays, are removed on the way out: nothing is left."""
    video, disk = noisy_video(tmp_path / "in.avi", frames=30), tmp_path / "disk"
    disk.mkdir()
    done = app_on_a_small_disk(disk, "4k", "--model", brightness_model, "--backend", "keras",
                               "--source", video, "--out", f"{disk}/{out}")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert len(errors) == 1 and said in errors[0], done.stderr
    assert list(disk.iterdir()) == []


def noisy_video(path: Path, frames: int, size=(320, 240)) -> Path:
    """A bright, grainy square moving over a dark, grainy background: with the brightness
    model, about 135 KB of .mp4 a second (a plain square takes 2 KB)."""
    width, height = size
    rng = np.random.default_rng(2)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    for i in range(frames):
        image = rng.integers(0, 60, (height, width, 3), np.uint8)
        x = 8 + (i * 3) % (width - 88)
        image[40:height - 40, x:x + 80] = 170 + rng.integers(0, 60, (height - 80, 80, 3), np.uint8)
        writer.write(image)
    writer.release()
    return path


def test_a_full_disk_stops_a_video_at_once_and_leaves_what_it_recorded(brightness_model,
                                                                        tmp_path):
    """A real full disk (a 512 KB tmpfs) under a 10 s recording (about 1.4 MB): the first write
    it refuses ends the run (not the last frame), with one line and exit code 2; the earlier
    file of that name is kept, and the partial file, cut after its last whole fragment, plays
    to its end."""
    video, disk = noisy_video(tmp_path / "in.avi", frames=300), tmp_path / "disk"
    disk.mkdir()
    out = disk / "talk.mp4"
    out.write_bytes(b"an earlier recording")
    done = app_on_a_small_disk(disk, "512k", "--model", brightness_model, "--backend", "keras",
                               "--source", video, "--out", out)
    (partial,) = disk.glob(".talk.mp4.*.partial.mp4")
    assert sorted(p.name for p in disk.iterdir()) == [partial.name, "talk.mp4"]
    assert out.read_bytes() == b"an earlier recording"
    given, shown = stopped_with_a_playable_partial(done, out, partial, "No space left on device")
    assert given < 200, given  # stopped where the disk filled, not after all 300 frames
    assert 30 <= shown < given
    data = partial.read_bytes()
    kinds, offset = [], 0
    while offset < len(data):
        kinds.append(data[offset + 4:offset + 8])
        offset += int.from_bytes(data[offset:offset + 4], "big")
    assert offset == len(data) and kinds[:2] == [b"ftyp", b"moov"] and kinds[-1] == b"mdat"


def test_a_full_disk_that_takes_the_recording_but_not_its_copy_keeps_the_recording(
        brightness_model, tmp_path):
    """The copy with the index first needs the recording's size again: on a disk with room for
    the recording alone (about 280 KB of 400 KB), the run ends with one line and exit code 2
    naming the whole recording (a fragmented MP4 that plays every frame), and no half-written
    copy is left."""
    video, disk = noisy_video(tmp_path / "in.avi", frames=60), tmp_path / "disk"
    disk.mkdir()
    out = disk / "talk.mp4"
    done = app_on_a_small_disk(disk, "400k", "--model", brightness_model, "--backend", "keras",
                               "--source", video, "--out", out)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (partial,) = disk.glob(".talk.mp4.*.partial.mp4")
    assert sorted(p.name for p in disk.iterdir()) == [partial.name]
    assert errors == [
        f"error: cannot finish video '{out}': its copy with the index first cannot be written (No "
        f"space left on device); the whole recording is '{partial}' (a fragmented .mp4, which "
        "plays); free space or choose another --out"], done.stderr
    assert count_video_frames(partial) == 60


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory) -> Path:
    """A legacy .h5 model with a Lambda layer: loading it would run the Lambda's bytecode.
    The Lambda negates the brightness model, so its output shows whether the code ran."""
    import keras

    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Lambda(lambda t: -t, name="negate")(x)
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inputs, conv(x))
    conv.set_weights([np.full((1, 1, 3, 1), 4.0, np.float32), np.zeros(1, np.float32)])
    path = tmp_path_factory.mktemp("models") / "model_with_lambda.h5"
    model.save(path)
    return path


def test_model_with_a_lambda_layer_is_refused_with_why_and_how_to_opt_in(lambda_model, tmp_path):
    image = person_image(tmp_path / "x.jpg")
    code, stderr = run_app("--model", lambda_model, "--image", image)
    assert code != 0 and "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "model_with_lambda.h5" in errors[0] and "Lambda layer 'negate'" in errors[0]
    assert "run Python code" in errors[0] and "--trust-model" in errors[0]
    assert not (tmp_path / "x_portrait.png").exists()


def test_model_with_a_lambda_layer_runs_with_trust_model(lambda_model, tmp_path, caplog):
    from portrait.cli import main

    image = person_image(tmp_path / "x.jpg")
    out = tmp_path / "matte.png"
    assert main(["--model", str(lambda_model), "--image", str(image), "--out", str(out),
                 "--matte", "--trust-model", "-q"]) == 0
    matte = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    assert matte.shape == (120, 160)
    assert matte[70, 80] < 50 and matte[5, 5] > 200  # the Lambda ran: the matte is inverted
    # once: the check before the load had said it too
    assert sum("--trust-model was given" in r.getMessage() for r in caplog.records) == 1


# --- 7. odd images in a batch --------------------------------------------------------------------


def odd_images(folder: Path) -> dict[str, tuple[int, int] | None]:
    """Write one file per odd kind; returns stem -> expected output (width, height), or None
    for the one that must be refused."""
    from PIL import Image

    folder.mkdir()
    base = cv2.cvtColor(cv2.imread(str(person_image(folder / "plain.png"))),
                        cv2.COLOR_BGR2RGB)  # 160x120
    pil = Image.fromarray(base)
    pil.convert("L").save(folder / "grey.png")
    rgba = pil.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.full((120, 160), 128, np.uint8)))
    rgba.save(folder / "rgba.png")
    pil.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(folder / "palette.png")
    Image.fromarray((np.asarray(pil.convert("L")).astype(np.uint16) * 257)).save(
        folder / "sixteen_bit.png")
    pil.convert("CMYK").save(folder / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    pil.save(folder / "exif_rotated.jpg", exif=exif)
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(folder / "one_pixel.png")
    Image.new("1", (12000, 9000)).save(folder / "huge.png")  # 108 MP; a few kB on disk
    return {"plain": (160, 120), "grey": (160, 120), "rgba": (160, 120), "palette": (160, 120),
            "sixteen_bit": (160, 120), "cmyk": (160, 120), "exif_rotated": (120, 160),
            "one_pixel": (1, 1), "huge": None}


@pytest.mark.parametrize("extra", [["--matte"], []], ids=["matte", "blur"])
def test_odd_images_in_a_batch(brightness_model, tmp_path, caplog, extra):
    from PIL import Image

    from portrait.cli import main

    folder = tmp_path / "odd"
    expected = odd_images(folder)
    assert (folder / "huge.png").stat().st_size < 100_000
    with Image.open(folder / "sixteen_bit.png") as check:
        assert check.mode.startswith("I")  # really 16-bit
    with Image.open(folder / "cmyk.jpg") as check:
        assert check.mode == "CMYK"
    out = tmp_path / "out"
    code = main(["--model", str(brightness_model), "--image", str(folder), "--out", str(out),
                 *extra])
    assert code == 1  # only because of the huge one:
    messages = [r.getMessage() for r in caplog.records]
    summary = [m for m in messages if "could not be processed" in m]
    assert summary == [f"1 of {len(expected)} images could not be processed: huge.png "
                       "(see the warnings above)"]
    assert any("huge.png" in m and "12000x9000" in m and "limit" in m for m in messages)
    written = {p.stem: p for p in out.glob("*.png")}
    assert set(written) == {stem for stem, size in expected.items() if size is not None}
    for stem, path in written.items():
        result = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert (result.shape[1], result.shape[0]) == expected[stem], stem
        assert result.ndim == (2 if extra else 3), stem
    # The rotated photo was turned upright: its person block runs along the other axis.
    upright = cv2.imread(str(out / "exif_rotated.png"), cv2.IMREAD_UNCHANGED)
    plain = cv2.imread(str(out / "plain.png"), cv2.IMREAD_UNCHANGED)
    assert np.abs(upright.astype(int) - cv2.rotate(plain, cv2.ROTATE_90_CLOCKWISE)).mean() < 8

"""The stream pipeline's scheduling: order, dropping in live mode, bounded queues, shutdown."""

import itertools
import threading
import time

import cv2
import numpy as np
import pytest

from portrait.capture import Frame
from portrait.options import (PipelineOptions, RefineOptions, SegmentOptions, SmoothOptions,
                              SubjectOptions)
from portrait.pipeline import (FrameProcessor, StillDetector, StreamPipeline,
                               stream_inference_threads, stream_opencv_threads)
from portrait.refine import Refiner
from portrait.segment import create_segmenter
from portrait.smooth import TemporalSmoother
from portrait.subject import SubjectSelector


@pytest.fixture(scope="module")
def segmenter(brightness_model):
    with create_segmenter(SegmentOptions(model=str(brightness_model))) as seg:
        yield seg


def frames(count, delay_s=0.0):
    """Uniform frames whose brightness rises with the index, so outputs can be told apart."""
    for i in range(count):
        if delay_s:
            time.sleep(delay_s)
        value = 20 + (200 * i) // max(count - 1, 1)
        yield Frame(np.full((48, 64, 3), value, np.uint8), i, time.perf_counter())


def matte_processor(segmenter, options=PipelineOptions(reuse_still=False)):
    return FrameProcessor(segmenter, None, Refiner(RefineOptions(enabled=False)), None,
                          matte=True, options=options)


def test_file_mode_keeps_every_frame_in_order(segmenter):
    means = []
    stream = StreamPipeline(frames(40), matte_processor(segmenter),
                            lambda alpha, _pts: means.append(float(alpha.mean())), PipelineOptions())
    stats = stream.run()
    assert stats.frames == 40 and stats.dropped == 0
    assert len(means) == 40
    assert all(b >= a for a, b in zip(means, means[1:])), "outputs out of order"
    assert means[-1] > means[0] + 100


def test_live_mode_drops_stale_frames_instead_of_lagging(segmenter):
    means = []

    def slow_output(alpha, _pts):
        time.sleep(0.02)  # a consumer slower than the source
        means.append(float(alpha.mean()))

    options = PipelineOptions(live=True, queue_size=1, reuse_still=False)
    stream = StreamPipeline(frames(200, delay_s=0.002), matte_processor(segmenter, options),
                            slow_output, options)
    stats = stream.run()
    assert stats.dropped > 0
    assert stats.frames + stats.dropped == 200
    assert all(b >= a for a, b in zip(means, means[1:]))
    # That no backlog waits in the queues (the latency it would make: (20 - 2) ms x 200 = 3.6 s
    # behind) is checked step by step, not by a time, in the test that follows.


def test_live_latency_is_one_frame_per_stage_when_the_matte_stage_is_the_slowest(segmenter):
    """A finish stage (refine, composite) slower than the source: each stage takes a packet
    only when the one it made last has been taken, so the frame finish gets is the newest the
    reader kept, not one that waited in two queues (at 1080p on a machine busy with other work,
    where the matte stages could not keep up: 50-214 ms median before, 61-98 after).

    Checked step by step, not by times: finish holds its first packet while the reader reads
    20 frames more; segment makes one packet meanwhile, the one that waits for finish (which
    keeps finish busy), and no more. With the reader paused after frame ``last`` and finish let
    go, finish takes the waiting packet and then ``last`` itself: every other frame read was
    dropped, none waited in a queue."""
    read, segmented, finished = [], [], []
    held, release, second_made = threading.Event(), threading.Event(), threading.Event()
    pause_at = [None]  # the frame the reader pauses at, once the test has seen enough
    paused, resume, third = threading.Event(), threading.Event(), threading.Event()

    def source():
        for i in itertools.count():  # endless: however long the test takes to pause it
            if pause_at[0] is not None and i >= pause_at[0] and not resume.is_set():
                paused.set()  # frames 0 .. i - 1 are read and handed on
                resume.wait(30)
            read.append(i)
            yield Frame(np.full((48, 64, 3), 20 + i % 200, np.uint8), i, time.perf_counter())

    class Watched(FrameProcessor):
        def segment(self, packet, behind=False):
            reused = super().segment(packet, behind)
            segmented.append(packet.index)
            if len(segmented) == 2:
                second_made.set()
            return reused

        def finish(self, packet):
            finished.append((packet.index, stream.stats.dropped))
            if len(finished) == 1:
                held.set()
                release.wait(30)  # the matte stages of a large frame, as long as the test likes
            elif len(finished) == 3:
                third.set()
            super().finish(packet)

    options = PipelineOptions(live=True, reuse_still=False)  # the app's queue size
    processor = Watched(segmenter, None, Refiner(RefineOptions(enabled=False)), None,
                        matte=True, options=options)
    stream = StreamPipeline(source(), processor, lambda alpha, _pts: None, options, max_frames=5)
    runner = threading.Thread(target=stream.run)
    runner.start()
    try:
        assert held.wait(30) and second_made.wait(30)
        pause_at[0] = len(read) + 20
        assert paused.wait(30)
        last = read[-1]
        assert len(segmented) == 2, segmented  # the one held and one waiting; none more
        release.set()
        assert third.wait(30)
    finally:
        release.set()
        resume.set()
        runner.join(30)
    assert not runner.is_alive()
    assert [index for index, _ in finished[:3]] == segmented[:2] + [last]
    assert finished[2][1] == last + 1 - 3  # every frame read but the three it got was dropped
    assert stream.stats.frames == 5


def test_queues_are_bounded_in_file_mode(segmenter):
    read = []

    def source():
        for frame in frames(30):
            read.append(frame.index)
            yield frame

    written = []
    gate = threading.Event()

    def blocked_output(alpha, _pts):
        gate.wait(5)
        written.append(alpha)

    options = PipelineOptions(queue_size=2, reuse_still=False)
    stream = StreamPipeline(source(), matte_processor(segmenter, options), blocked_output, options)
    runner = threading.Thread(target=stream.run)
    runner.start()
    time.sleep(0.5)
    # Output blocked: at most the frames that fit in three queues plus one in each stage.
    in_flight = len(read)
    gate.set()
    runner.join(10)
    assert not runner.is_alive()
    assert in_flight <= 3 * 2 + 4
    assert len(written) == 30


def test_stop_finishes_cleanly_and_max_frames_limits_output(segmenter):
    """The 25th output ends the run: the reader reads no more than the frames then in flight
    (three queues of 2, one in each stage and one the reader holds), not the source to its
    end, and every thread ends."""
    out, read = [], []

    def source():
        for frame in frames(1000):
            read.append(frame.index)
            yield frame

    stream = StreamPipeline(source(), matte_processor(segmenter),
                            lambda alpha, _pts: out.append(alpha), PipelineOptions(), max_frames=25)
    stats = stream.run()
    assert stats.frames == 25 and len(out) == 25
    assert 25 <= len(read) <= 25 + 3 * 2 + 3, len(read)
    assert not [t for t in threading.enumerate() if t.name in ("reader", "segment", "finish")]


def test_stop_from_another_thread(segmenter):
    """stop() from another thread, once frames flow (not after a fixed time, in which a loaded
    machine may output none), ends run() before the source ends (20 s of frames at least)."""
    out, read, flowing = [], [], threading.Event()

    def source():
        for frame in frames(20_000, delay_s=0.001):
            read.append(frame.index)
            yield frame

    def output(alpha, _pts):
        out.append(alpha)
        flowing.set()

    stream = StreamPipeline(source(), matte_processor(segmenter), output,
                            PipelineOptions(live=True))
    stopper = threading.Thread(target=lambda: flowing.wait(60) and stream.stop())
    stopper.start()
    stream.run()
    stopper.join()
    assert out and len(read) < 20_000


def test_a_failing_stage_is_raised_in_the_caller_and_threads_end(segmenter):
    def broken_output(alpha, _pts):
        raise RuntimeError("disk full")

    stream = StreamPipeline(frames(50), matte_processor(segmenter), broken_output,
                            PipelineOptions())
    with pytest.raises(RuntimeError, match="disk full"):
        stream.run()
    time.sleep(0.3)
    assert not [t for t in threading.enumerate() if t.name in ("reader", "segment", "finish")]


def test_a_failing_source_is_raised_in_the_caller(segmenter):
    def source():
        yield from frames(3)
        raise OSError("camera unplugged")

    stream = StreamPipeline(source(), matte_processor(segmenter), lambda a, _pts: None, PipelineOptions())
    with pytest.raises(OSError, match="unplugged"):
        stream.run()


def test_still_scene_reuses_the_mask_a_bounded_number_of_times(segmenter):
    options = PipelineOptions(reuse_still=True, max_reuse=2, still_threshold=1.0)
    processor = matte_processor(segmenter, options)
    image = np.full((48, 64, 3), 200, np.uint8)
    still = [Frame(image.copy(), i, time.perf_counter()) for i in range(9)]
    stream = StreamPipeline(iter(still), processor, lambda a, _pts: None, options)
    stats = stream.run()
    # Every third frame is segmented: reuse runs of at most max_reuse frames.
    assert stats.reused == 6


def reuse_pattern(processor, images, behind=False):
    """Whether each frame reused the last mask, frame by frame."""
    from portrait.pipeline import Packet

    return [processor.segment(Packet(image=image, index=i, time_s=0.0), behind=behind)
            for i, image in enumerate(images)]


def test_reuse_runs_are_at_most_max_reuse_frames_and_behind_every_other_frame(segmenter):
    """A still scene reuses a mask for at most max_reuse frames in a row; a live pipeline that is
    behind runs the model on every other frame of a moving scene (half the rate), not never."""
    still = [np.full((48, 64, 3), 200, np.uint8)] * 8
    options = PipelineOptions(reuse_still=True, max_reuse=2, still_threshold=1.0)
    assert (reuse_pattern(matte_processor(segmenter, options), still)
            == [False, True, True] * 2 + [False, True])
    moving = [np.full((48, 64, 3), 20 + 25 * i, np.uint8) for i in range(6)]
    assert reuse_pattern(matte_processor(segmenter), moving, behind=True) == [False, True] * 3
    assert reuse_pattern(matte_processor(segmenter), moving) == [False] * 6


def test_a_mask_is_never_reused_across_a_lost_camera_a_pause_a_cut_or_a_new_run(segmenter):
    """The scene after a reconnect, after the effect was off (space), after a cut and in a new
    run of the processor is new: its first frame is segmented, even by a pipeline that is behind or on a
    still scene."""
    from portrait.controls import Controls, LiveState
    from portrait.pipeline import Packet

    image = np.full((48, 64, 3), 200, np.uint8)
    options = PipelineOptions(reuse_still=True, max_reuse=5, still_threshold=1.0)
    processor = matte_processor(segmenter, options)
    assert processor.segment(Packet(image=image, index=0, time_s=0.0)) is False
    processor.segment(Packet(image=image, index=-1, time_s=0.0, lost=True))
    assert processor.segment(Packet(image=image, index=1, time_s=0.0), behind=True) is False
    # A cut (a looped clip starting again): however alike the frames, another shot's mask.
    assert processor.segment(Packet(image=image, index=2, time_s=0.0)) is True
    assert processor.segment(Packet(image=image, index=3, time_s=0.0, cut=True)) is False
    controls = Controls(LiveState(), scripts=[["", " ", " "]])  # off for the second frame
    processor = FrameProcessor(segmenter, None, Refiner(RefineOptions(enabled=False)), None,
                               matte=True, options=options, controls=controls)
    assert reuse_pattern(processor, [image] * 3, behind=True) == [False, False, False]
    for run in range(2):  # two runs of one processor: each starts afresh
        still = [Frame(image.copy(), i, time.perf_counter()) for i in range(2)]
        stats = StreamPipeline(iter(still), processor, lambda a, _pts: None, options).run()
        assert (stats.frames, stats.reused) == (2, 1), run

@pytest.mark.parametrize("max_frames", [1, 4])
def test_reused_masks_count_only_the_frames_output(segmenter, max_frames):
    """Frames still in flight when --max-frames is reached are not output, so their reused
    masks are not counted either: of the frames output, the first is segmented and the rest
    of a still scene reuse its mask."""
    options = PipelineOptions(reuse_still=True, max_reuse=100, still_threshold=1.0)
    processor = matte_processor(segmenter, options)
    image = np.full((48, 64, 3), 200, np.uint8)
    still = [Frame(image.copy(), i, time.perf_counter()) for i in range(60)]
    stream = StreamPipeline(iter(still), processor, lambda a, _pts: None, options,
                            max_frames=max_frames)
    stats = stream.run()
    assert stats.frames == max_frames
    assert stats.reused == max_frames - 1


def test_still_detector_sees_motion():
    detector = StillDetector(threshold=1.5)
    a = np.full((90, 160, 3), 100, np.uint8)
    assert not detector(detector.thumbnail(a))  # nothing remembered yet
    detector.remember(detector.thumbnail(a))
    assert detector(detector.thumbnail(a.copy()))
    b = a.copy()
    b[20:70, 40:120] = 200
    assert not detector(detector.thumbnail(b))


class CountingStillDetector(StillDetector):
    """The real detector, counting the thumbnails it makes."""

    made = 0

    def thumbnail(self, image):
        self.made += 1
        return super().thumbnail(image)


def test_each_frame_s_still_thumbnail_is_made_once(segmenter):
    """The still test and remembering a segmented frame share one thumbnail of it (each made
    its own: two area averages of a 720p frame, about 2 ms of CPU, on each segmented frame),
    and the reuse pattern is the one the test gives."""
    still = [np.full((48, 64, 3), 200, np.uint8)] * 5
    moving = [np.full((48, 64, 3), 20 + 25 * i, np.uint8) for i in range(4)]
    options = PipelineOptions(reuse_still=True, max_reuse=2, still_threshold=1.0)
    processor = matte_processor(segmenter, options)
    processor._still = detector = CountingStillDetector(options.still_threshold)
    assert (reuse_pattern(processor, still + moving)
            == [False, True, True, False, True] + [False] * 4)
    assert detector.made == len(still + moving)


def test_processor_with_smoothing_and_refinement_gives_frame_size_alpha(segmenter):
    processor = FrameProcessor(segmenter, TemporalSmoother(SmoothOptions()),
                               Refiner(RefineOptions()), None, matte=True)
    image = np.full((360, 640, 3), 30, np.uint8)
    image[100:300, 200:400] = 230
    alpha = processor.process(image)
    assert alpha.shape == (360, 640) and alpha.dtype == np.uint8
    assert alpha[200, 300] > 200 and alpha[20, 20] < 50


def test_a_processor_without_controls_uses_its_foreground_estimator_on_every_frame(segmenter):
    """Without live controls (a library caller) a given ForegroundEstimator is used on every
    frame, as if --decontaminate were on: only the live state's e can turn it off."""
    from portrait.composite import make_background
    from portrait.foreground import ForegroundEstimator
    from portrait.options import CompositeOptions

    image = np.full((96, 128, 3), (40, 200, 60), np.uint8)  # a green wall
    cv2.circle(image, (64, 48), 30, (230, 230, 230), -1)
    image = cv2.GaussianBlur(image, (0, 0), 3)  # a soft edge
    outputs = {}
    for name, foreground in (("plain", None), ("estimated", ForegroundEstimator())):
        with make_background(CompositeOptions(background="#0000ff"), (128, 96)) as background:
            processor = FrameProcessor(segmenter, None, Refiner(RefineOptions()), background,
                                       foreground=foreground)
            outputs[name] = processor.process(image).copy()
    assert (outputs["plain"] != outputs["estimated"]).any(axis=2).sum() > 20


def test_smoothing_starts_afresh_after_a_pause(segmenter):
    """Space turns the effect off and on: the first frame after it is smoothed with nothing
    from before the pause, as on a fresh start, where without a pause it blends with the last."""
    from portrait.controls import Controls, LiveState

    before, after = np.full((48, 64, 3), 125, np.uint8), np.full((48, 64, 3), 131, np.uint8)

    def outputs(keys, images):
        controls = Controls(LiveState(), scripts=[keys])
        processor = FrameProcessor(segmenter, TemporalSmoother(SmoothOptions()),
                                   Refiner(RefineOptions(enabled=False)), None, matte=True,
                                   options=PipelineOptions(reuse_still=False), controls=controls)
        return [processor.process(image).copy() for image in images]

    fresh = outputs([""], [after])[0]
    assert not np.array_equal(outputs(["", ""], [before, after])[1], fresh)  # blended
    np.testing.assert_array_equal(outputs(["", " ", " "], [before, before, after])[2], fresh)


def test_subject_selection_runs_on_the_smoothed_probability(segmenter):
    """Smoothing takes the model's own output and subject selection the smoothed one, so a
    region dropped as small in one frame keeps its history for when it grows big enough to stay
    (a second person stepping in): the matte is the stages' run one by one in that order."""
    head = np.zeros((64, 64, 3), np.uint8)
    head[10:50, 4:22] = 255  # the person: 720 px
    head[20:25, 50:55] = 150  # 25 px, 28 px apart from the person: dropped
    stepping_in = head.copy()
    stepping_in[20:25, 50:55] = 138
    stepping_in[25:40, 46:60] = 138  # the region is now 235 px, over a fifth of the person
    images = [head, stepping_in]
    processor = FrameProcessor(segmenter, TemporalSmoother(SmoothOptions()),
                               Refiner(RefineOptions(enabled=False)), None, matte=True,
                               options=PipelineOptions(reuse_still=False),
                               subject=SubjectSelector(SubjectOptions()))
    mattes = [processor.process(image).copy() for image in images]
    smoother, selector = TemporalSmoother(SmoothOptions()), SubjectSelector(SubjectOptions())
    refiner = Refiner(RefineOptions(enabled=False))
    for image, matte in zip(images, mattes):
        expected = refiner(image, selector(smoother(segmenter.segment(image))))
        np.testing.assert_array_equal(matte, expected)
    assert mattes[0][22, 52] == 0  # the small region was dropped from the first matte
    raw = refiner(stepping_in, segmenter.segment(stepping_in))
    # Where it was, the second matte blends in the first frame's brighter probability (0.89,
    # against 0.73 now), where smoothing after selection would have started it from 0 ...
    assert mattes[1][22, 52] > raw[22, 52] + 10
    # ... and where it has grown, the region is the model's own output, with no history.
    assert mattes[1][30, 50] == raw[30, 50]


def test_camera_loss_keeps_the_output_fed_and_resumes(segmenter, tmp_path):
    from conftest import write_video
    from portrait.capture import CameraSource
    from portrait.sink import camera_lost_frame
    from test_capture import CameraDevice

    device = CameraDevice(write_video(tmp_path / "camera.avi", 60, size=(64, 48)))
    camera = CameraSource(0, opener=device.open, retry_initial_s=0.02, retry_max_s=0.05)
    processor = FrameProcessor(segmenter, TemporalSmoother(SmoothOptions()),
                               Refiner(RefineOptions()), None, matte=True,
                               lost_frame=camera_lost_frame)
    outputs = []

    def emit(image, _pts):
        outputs.append(image)
        if len(outputs) == 5:
            device.present = False  # unplugged ...
            threading.Timer(0.4, setattr, (device, "present", True)).start()  # ... and back

    options = PipelineOptions(live=True)
    stream = StreamPipeline(camera.frames(lost_markers=True), processor, emit, options,
                            max_frames=20)
    with camera:
        stats = stream.run()
    lost = [o for o in outputs if o.ndim == 3]  # the "camera lost" frames are BGR, mattes grey
    assert stats.frames == 20
    assert len(lost) >= 2
    assert len(outputs) == 20 + len(lost)
    first_lost = next(i for i, o in enumerate(outputs) if o.ndim == 3)
    assert outputs[-1].ndim == 2 and first_lost >= 5  # mattes again after the camera came back
    for shown in lost:  # the "camera lost" card, not the last good frame again
        np.testing.assert_array_equal(shown, camera_lost_frame(64, 48))


def test_camera_stats_give_the_wait_for_the_sensor_apart_from_decoding(segmenter, tmp_path):
    """A 10 fps camera whose decoding takes 5 ms: --stats's decode is those 5 ms, not the
    100 ms the reader waits for each frame, whose other 95 ms are ``wait_ms`` (no stage:
    ``stage_ms`` stays work). The camera runs on a clock that moves only as it does (only the
    reader thread reads it), so the numbers are exact however loaded the machine."""
    from conftest import ManualClock, write_video
    from portrait.capture import CameraSource
    from test_capture import CameraDevice, PacedCapture

    device = CameraDevice(write_video(tmp_path / "camera.avi", 30, size=(64, 48)))
    clock = ManualClock()
    camera = CameraSource(0, clock=clock, opener=lambda index: PacedCapture(
        device, cv2.VideoCapture(str(device.video)), fps=10.0, clock=clock, decode_s=0.005))
    options = PipelineOptions(live=True, reuse_still=False)
    stream = StreamPipeline(camera.frames(lost_markers=True), matte_processor(segmenter, options),
                            lambda alpha, _pts: None, options, max_frames=8)
    with camera:
        summary = stream.run().summary()
    assert summary["frames"] == 8
    assert summary["stage_ms"]["decode"] == pytest.approx(5.0), summary  # 100 before: the wait
    assert "wait" not in summary["stage_ms"]
    assert summary["wait_ms"]["median"] == pytest.approx(95.0), summary
    assert summary["wait_ms"]["mean"] == pytest.approx(95.0), summary


def test_a_live_pipeline_that_falls_behind_halves_the_model_rate(segmenter):
    options = PipelineOptions(live=True, queue_size=1, reuse_still=False)
    processor = matte_processor(segmenter, options)
    calls = []
    original = processor.segmenter.segment
    outputs = []

    class Counting:
        def segment(self, image):
            calls.append(1)
            return original(image)

    processor.segmenter = Counting()
    stream = StreamPipeline(frames(300, delay_s=0.001), processor,
                            lambda a, _pts: (time.sleep(0.01), outputs.append(a)), options)
    stats = stream.run()
    assert stats.dropped > 0
    assert stats.reused > 0
    assert len(calls) + stats.reused == stats.frames  # drops happen before segmenting
    assert len(calls) < stats.frames


def test_pipeline_idles_while_nobody_wants_output(segmenter):
    """Nobody reads the output for the reader's first three looks, then someone does: no
    frame is read before that (events in the reader's thread, in order, not times)."""
    events = []

    def source():
        for frame in frames(100_000):
            events.append("read")
            yield frame

    def wanted():
        events.append("wanted" if events.count("idle") == 3 else "idle")
        return events[-1] == "wanted"

    stream = StreamPipeline(source(), matte_processor(segmenter), lambda a, _pts: None,
                            PipelineOptions(live=True), max_frames=30, wanted=wanted)
    stream.run()
    assert events[:4] == ["idle"] * 3 + ["wanted"], events[:8]  # nothing read while idle
    assert events.count("idle") == 3 and events.count("read") >= 30
    assert stream.stats.frames == 30


def test_device_readers_counts_other_processes():
    import subprocess
    import sys

    from portrait.sink import device_readers

    if not sys.platform.startswith("linux"):
        pytest.skip("device_readers looks through /proc (Linux only)")
    before = device_readers("/dev/zero")
    # A process that holds it twice is one reader, and this process (the app) is none.
    holder = subprocess.Popen([sys.executable, "-c",
                               "import time; f = open('/dev/zero', 'rb'); "
                               "g = open('/dev/zero', 'rb'); print(1, flush=True); "
                               "time.sleep(30)"], stdout=subprocess.PIPE)
    try:
        with open("/dev/zero", "rb"):
            holder.stdout.readline()  # the device is open now
            assert device_readers("/dev/zero") == before + 1
    finally:
        holder.kill()
        holder.wait()
    assert device_readers("/dev/zero") == before
    assert device_readers("/not/a/device") is None


def test_paced_video_stats_show_decode_time_not_the_wait(segmenter, tmp_path):
    """A video paced to its 5 fps: --stats's decode is the decoding (none on a clock that
    moves only as the source waits; only the reader thread reads it), not the 200 ms each
    frame waits to be due, which is ``wait_ms``. On that clock the frames come as fast as the
    reader asks, so the pipeline keeps every one (file mode; live, it would drop some)."""
    from conftest import ManualClock, write_video
    from portrait.capture import VideoFileSource

    clip = write_video(tmp_path / "paced.avi", 6, fps=5.0)  # frames due every 200 ms
    options = PipelineOptions(live=False, reuse_still=False)
    outputs, times = [], []
    with VideoFileSource(clip, realtime=True, clock=ManualClock()) as video:
        stats = StreamPipeline(video, matte_processor(segmenter, options),
                               lambda alpha, pts_s: (outputs.append(alpha), times.append(pts_s)),
                               options).run()
    summary = stats.summary()
    assert stats.frames == len(outputs) == 6
    assert summary["stage_ms"]["decode"] == pytest.approx(0.0), summary  # 200 with the wait
    assert "wait" not in summary["stage_ms"]
    assert summary["wait_ms"]["median"] == pytest.approx(200.0), summary  # the first: none
    assert summary["wait_ms"]["mean"] == pytest.approx(1000.0 / 6, abs=1e-3), summary  # rounded
    # Each output comes with its frame's time in the file, for a video file sink to keep.
    assert times == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0], abs=1e-6)


def test_opencv_threads_are_shared_out_among_the_stages():
    assert stream_opencv_threads(cores=2) == 1
    assert stream_opencv_threads(cores=4) == 1
    assert stream_opencv_threads(cores=16) == 5
    assert stream_opencv_threads(cores=16, stages=1) == 16
    with pytest.raises(ValueError, match="at least 1"):
        stream_opencv_threads(cores=4, stages=0)


def test_a_streams_interpreter_gets_half_the_cores_unless_told():
    assert stream_inference_threads(0, cores=2) == 1
    assert stream_inference_threads(0, cores=1) == 1
    assert stream_inference_threads(0, cores=8) == 4
    assert stream_inference_threads(3, cores=2) == 3  # --threads N as given
    with pytest.raises(ValueError, match="0 \\(auto\\) or more"):
        stream_inference_threads(-1)


def test_stream_sizes_opencv_pool_while_running_and_restores_it(segmenter):
    before = cv2.getNumThreads()
    seen = []
    options = PipelineOptions(reuse_still=False, opencv_threads=1)
    stream = StreamPipeline(frames(5), matte_processor(segmenter, options),
                            lambda alpha, _pts: seen.append(cv2.getNumThreads()), options)
    stream.run()
    assert seen == [1] * 5
    assert cv2.getNumThreads() == before


def test_stream_restores_opencv_pool_after_a_failing_stage(segmenter):
    before = cv2.getNumThreads()

    def broken_output(alpha, _pts):
        raise RuntimeError("sink gone")

    options = PipelineOptions(opencv_threads=1)
    with pytest.raises(RuntimeError, match="sink gone"):
        StreamPipeline(frames(5), matte_processor(segmenter, options), broken_output,
                       options).run()
    assert cv2.getNumThreads() == before


def test_a_video_background_plays_by_the_source_videos_own_times(segmenter, tmp_path):
    """File to file, the background's frame is chosen by each frame's time in the source: a
    15 fps source over a 29 fps background shows about every other background frame (each one
    before), looping; and every run shows the same ones."""
    from portrait.capture import VideoFileSource
    from portrait.composite import make_background
    from portrait.options import CompositeOptions

    mjpg = cv2.VideoWriter_fourcc(*"MJPG")
    source, levels = tmp_path / "dark.avi", tmp_path / "levels.avi"
    writer = cv2.VideoWriter(str(source), mjpg, 15.0, (64, 48))
    for _ in range(8):
        writer.write(np.zeros((48, 64, 3), np.uint8))  # dark: nobody, the output is background
    writer.release()
    writer = cv2.VideoWriter(str(levels), mjpg, 29.0, (64, 48))
    for i in range(12):
        writer.write(np.full((48, 64, 3), 10 + 20 * i, np.uint8))  # frame i: grey 10 + 20 i
    writer.release()
    options = PipelineOptions(reuse_still=False)
    runs = []
    for _ in range(2):
        shown = []
        with VideoFileSource(source) as video, make_background(
                CompositeOptions(background=str(levels)), (64, 48)) as background:
            processor = FrameProcessor(segmenter, None, Refiner(RefineOptions(enabled=False)),
                                       background, options=options)
            StreamPipeline(video, processor, lambda image, _pts: shown.append(
                round((float(image.mean()) - 10) / 20)), options).run()
        runs.append(shown)
    # Frame k is at k/15 s, where the background's frame k * 29/15 is nearest (12 a loop).
    assert runs[0] == runs[1] == [int(k * 29 / 15 + 0.5) % 12 for k in range(8)] == [
        0, 2, 4, 6, 8, 10, 0, 2]


def creeping_patch(count: int = 13) -> list[np.ndarray]:
    """A still scene (two frames differ by about 0.1 grey levels on average, far below the still
    threshold) in which a small patch brightens by 6 levels a frame: the brightness model's
    person probability there creeps up, as a still person's edge drifts."""
    images = []
    for i in range(count):
        image = np.full((48, 64, 3), 40, np.uint8)
        image[20:28, 28:36] = 92 + 6 * i
        images.append(image)
    return images


def matte_changes(segmenter, options: PipelineOptions, images) -> list[float]:
    """Per-frame matte change (video_metrics.alpha_change) through smoothing, as the app runs."""
    from portrait.training.video_metrics import alpha_change

    processor = FrameProcessor(segmenter, TemporalSmoother(SmoothOptions()),
                               Refiner(RefineOptions(enabled=False)), None, matte=True,
                               options=options)
    alphas = [processor.process(image).copy() for image in images]
    return [alpha_change(a, b) for a, b in zip(alphas, alphas[1:])]


def test_reused_masks_on_a_still_scene_do_not_make_the_matte_jump_when_the_model_runs(segmenter):
    """After two reused masks the model's new mask has caught up with three frames' change at
    once, past the smoother's motion test: with the whole step on that frame the matte jumps
    every third frame (spread_still=False). Spread over the frames the mask is shown for, the
    largest change is under half of that, and the matte still follows the change (it trails
    the model run on every frame by about a frame)."""
    images = creeping_patch()
    assert (reuse_pattern(matte_processor(segmenter, PipelineOptions()), images)
            == [False, True, True] * 4 + [False])  # the scene is still: masks are reused
    spread = matte_changes(segmenter, PipelineOptions(), images)
    jumps = matte_changes(segmenter, PipelineOptions(spread_still=False), images)
    every_frame = matte_changes(segmenter, PipelineOptions(reuse_still=False), images)
    assert max(spread) < 0.5 * max(jumps), (spread, jumps)
    # And it still follows the change (a matte held still would pass the line above).
    assert sum(spread) > 0.75 * sum(every_frame), (spread, every_frame)


def test_the_smoother_is_told_a_still_scenes_mask_spans_max_reuse_plus_one_frames(segmenter):
    from portrait.pipeline import Packet

    # The fourth still frame runs the model (two reused before it): its mask spans frames too.
    still = [np.full((48, 64, 3), 200, np.uint8)] * 4
    moving = [np.full((48, 64, 3), 20 + 25 * i, np.uint8) for i in range(3)]
    for options, spans in ((PipelineOptions(max_reuse=2), [1, 3, 3, 3, 1, 1, 1]),
                           (PipelineOptions(max_reuse=4), [1, 5, 5, 5, 1, 1, 1]),
                           (PipelineOptions(spread_still=False), [1] * 7),
                           (PipelineOptions(reuse_still=False), [1] * 7),
                           # No mask is reused: each spans its own frame (the smoother
                           # refuses a span of 0; PipelineOptions a max_reuse below 0).
                           (PipelineOptions(max_reuse=0), [1] * 7)):
        processor = matte_processor(segmenter, options)
        packets = [Packet(image=image, index=i, time_s=0.0) for i, image in enumerate(still + moving)]
        for packet in packets:
            processor.segment(packet)
        assert [p.span for p in packets] == spans, options


def test_latency_is_timed_on_the_clock_the_source_read_its_frames_on(segmenter, tmp_path):
    """One clock, given to the source and to the pipeline: each frame's latency is from its
    ``time_s`` to the end of its output on that clock. The frames are read up front (the
    clock stands at 1000 s for each); each output takes 1/64 s on it, so the k-th frame out
    waited k/64 s. The latency was taken on ``time.perf_counter`` against a ``time_s`` of the
    source's clock: a difference of two clocks, not a latency."""
    from conftest import ManualClock, write_video
    from portrait.capture import VideoFileSource

    clock = ManualClock(start_s=1000.0)
    with VideoFileSource(write_video(tmp_path / "clip.avi", 4), clock=clock) as video:
        frames = list(video)
    assert [frame.time_s for frame in frames] == [1000.0] * 4

    def output(alpha, _pts_s):
        clock.advance(1 / 64)  # the sink's time, on the same clock

    options = PipelineOptions(reuse_still=False)
    stats = StreamPipeline(iter(frames), matte_processor(segmenter, options), output, options,
                           clock=clock).run()
    summary = stats.summary()
    assert stats.frames == 4
    # 15.625, 31.25, 46.875 and 62.5 ms (exact in binary): a mean and median of 39.0625 ms,
    # which the summary rounds to the microsecond; each output 15.625 ms
    assert summary["latency_ms"]["mean"] == summary["latency_ms"]["median"] == 39.062
    assert summary["latency_ms"]["p95"] == round(46.875 + 0.85 * 15.625, 3)
    assert summary["stage_ms"]["output"] == 15.625
    # the run's length, on the same clock: its stats were timed by it too
    assert summary["wall_s"] == round(4 / 64, 3) and summary["fps"] == round(4 / (4 / 64), 2)


def cut_processor(segmenter, options=PipelineOptions(reuse_still=False)):
    """A matte processor with the stages that carry state from frame to frame: smoothing and
    subject selection."""
    return FrameProcessor(segmenter, TemporalSmoother(SmoothOptions()),
                          Refiner(RefineOptions(enabled=False)), None, matte=True, options=options,
                          subject=SubjectSelector(SubjectOptions()))


def test_a_cut_starts_smoothing_and_subject_selection_afresh(segmenter):
    """The first frame of another shot (a looped clip starting again) is matted as a first
    frame is: nothing of the last shot's masks blends into it, where the next frame of the same
    shot blends with the last."""
    from portrait.pipeline import Packet

    before, after = np.full((48, 64, 3), 125, np.uint8), np.full((48, 64, 3), 131, np.uint8)

    def mattes(cuts):
        processor = cut_processor(segmenter)
        packets = [Packet(image=image, index=i, time_s=0.0, cut=cut)
                   for i, (image, cut) in enumerate(zip((before, after), cuts))]
        for packet in packets:
            processor.segment(packet)
            processor.finish(packet)
        return [packet.output.copy() for packet in packets]

    fresh = cut_processor(segmenter).process(after)
    assert not np.array_equal(mattes([False, False])[1], fresh)  # blended with the last shot
    np.testing.assert_array_equal(mattes([False, True])[1], fresh)


def test_a_live_pipeline_that_drops_a_cut_frame_passes_its_cut_to_the_next(segmenter):
    """Live, a frame the reader drops (the segment stage was busy) takes its cut with it unless
    the frame that replaces it carries it on: the frame after the seam was then blended with,
    and reused the mask of, the last shot. Step by step: frame 0 holds the segment stage while
    frame 1 (the cut) and frame 2 are read; frame 2 replaces frame 1 in the queue."""
    before, after = np.full((48, 64, 3), 125, np.uint8), np.full((48, 64, 3), 131, np.uint8)
    held, release = threading.Event(), threading.Event()

    def source():
        yield Frame(before, 0, time.perf_counter())
        assert held.wait(30)  # frame 0 is in the segment stage: the queue is empty
        yield Frame(after, 1, time.perf_counter(), cut=True)
        yield Frame(after, 2, time.perf_counter())  # the queue is full: frame 1 is dropped
        release.set()

    class Held(FrameProcessor):
        def segment(self, packet, behind=False):
            if packet.index == 0:
                held.set()
                release.wait(30)
            return super().segment(packet, behind)

    options = PipelineOptions(live=True, reuse_still=False)
    processor = Held(segmenter, TemporalSmoother(SmoothOptions()),
                     Refiner(RefineOptions(enabled=False)), None, matte=True, options=options,
                     subject=SubjectSelector(SubjectOptions()))
    outputs = []
    stream = StreamPipeline(source(), processor, lambda alpha, _pts: outputs.append(alpha.copy()),
                            options)
    stats = stream.run()
    assert stats.dropped == 1 and len(outputs) == 2
    np.testing.assert_array_equal(outputs[1], cut_processor(segmenter).process(after))

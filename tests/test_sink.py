"""Sinks: the virtual camera through pyvirtualcam itself (with a registered fake backend and the
real missing-device failure), video files, PNG frames, single images."""

from __future__ import annotations

import errno
import io
import logging
import os
import platform
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from pyvirtualcam.util import encode_fourcc

from conftest import (ROOT, FakeCameraBackend, ManualClock, colour_profile, fake_camera,
                      main_frequency, phone_exif, python_on_a_tmpfs, sound_of, write_video,
                      write_video_with_sound)
from portrait.errors import DeviceError, InputError, StopRequested
from portrait.photo_metadata import PhotoMetadata
from portrait.sink import (
    ImageFileSink,
    ImageFolderSink,
    PngFolderSink,
    PreviewSink,
    VideoFileSink,
    VirtualCameraSink,
    camera_lost_frame,
    open_image_sink,
    open_sink,
    to_bgr,
    virtual_camera_hint,
    write_image,
)
from portrait.sink.avi import trim_to_whole_chunks
from portrait.sink.mp4 import playable, trim_to_whole_boxes
from portrait.sink.paths import OUTPUT_MARKER, check_report_file

BACKEND = "portrait-test-recorder"


class RecordingBackend(FakeCameraBackend):
    """Keeps every frame. ``fail_sends`` makes the next sends raise, as a native backend does
    when its write fails."""

    instances: list["RecordingBackend"] = []
    DEVICE = "/dev/video-test"
    fail_sends = 0

    def __init__(self, **kw):
        super().__init__(**kw)
        self.frames: list[np.ndarray] = []

    def send(self, frame: np.ndarray) -> None:
        if RecordingBackend.fail_sends:
            RecordingBackend.fail_sends -= 1
            raise RuntimeError("write failed: No such device")
        super().send(frame)
        self.frames.append(frame.copy())


@pytest.fixture
def recorder():
    RecordingBackend.fail_sends = 0
    with fake_camera(BACKEND, RecordingBackend) as backend:
        yield backend


def frames_of(backend: RecordingBackend) -> list[np.ndarray]:
    return [f.reshape(backend.height, backend.width, 3) for f in backend.frames]


def test_virtual_camera_delivers_every_frame_as_bgr(recorder):
    rng = np.random.default_rng(0)
    sent = [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(5)]
    with VirtualCameraSink(64, 48, 30.0, backend=BACKEND) as sink:
        assert sink.device == "/dev/video-test"
        for frame in sent:
            sink.write(frame)
        assert sink.frames_written == 5
    (backend,) = recorder.instances
    assert backend.fourcc == encode_fourcc("24BG")  # pyvirtualcam's BGR format
    assert (backend.width, backend.height, backend.fps) == (64, 48, 30.0)
    received = frames_of(backend)
    assert len(received) == 5
    assert all(np.array_equal(a, b) for a, b in zip(received, sent))
    assert backend.closed == 1


def test_virtual_camera_adapts_size_and_format_changes(recorder):
    with VirtualCameraSink(64, 48, 30.0, backend=BACKEND) as sink:
        sink.write(np.full((96, 128, 3), (10, 20, 30), np.uint8))  # bigger: resized
        sink.write(np.full((24, 32, 3), (40, 50, 60), np.uint8))  # smaller: resized
        sink.write(np.full((48, 64), 200, np.uint8))  # a grey matte
        sink.write(np.full((48, 64, 4), (1, 2, 3, 0), np.uint8))  # BGRA: alpha dropped
    received = frames_of(recorder.instances[0])
    assert [f.shape for f in received] == [(48, 64, 3)] * 4
    assert received[0][5, 5].tolist() == [10, 20, 30]
    assert received[1][5, 5].tolist() == [40, 50, 60]
    assert received[2][5, 5].tolist() == [200, 200, 200]
    assert received[3][5, 5].tolist() == [1, 2, 3]


def test_a_frame_of_another_aspect_is_fitted_with_bars_not_stretched(recorder):
    """A camera that comes back at 16:9 into a virtual camera opened at 4:3."""
    frame = np.zeros((90, 160, 3), np.uint8)
    frame[:, 70:90] = 255  # a white bar in the middle, 20 of 160 px wide
    with VirtualCameraSink(64, 48, 30.0, backend=BACKEND) as sink:
        sink.write(frame)
    (received,) = frames_of(recorder.instances[0])
    assert received.shape == (48, 64, 3)
    rows = received[:, :, 0].max(axis=1)
    assert rows[:5].max() == 0 and rows[-5:].max() == 0  # bars above and below (64x36 inside)
    bright = np.flatnonzero(received[24, :, 0] > 128)
    assert 7 <= len(bright) <= 9  # 20 * 64 / 160 = 8 px wide, centred like the frame's
    assert abs(bright.mean() - 31.5) <= 1


def test_virtual_camera_recovers_when_the_device_fails(recorder, caplog):
    """A send that fails drops the camera; frames within the back-off (0.1 s) are dropped with
    no attempt to reopen it; the first after it reopens the camera (on a clock the test moves)."""
    clock = ManualClock()
    sink = VirtualCameraSink(32, 24, 30.0, backend=BACKEND, clock=clock)
    frame = np.zeros((24, 32, 3), np.uint8)
    recorder.fail_sends = 1
    sink.write(frame)  # fails: the camera is dropped
    clock.advance(0.09)
    sink.write(frame)  # within the back-off: dropped, not tried
    assert sink.frames_dropped == 2 and sink.frames_written == 0
    assert recorder.instances[0].closed == 1 and len(recorder.instances) == 1
    clock.advance(0.02)
    sink.write(frame)  # reopened
    sink.close()
    assert len(recorder.instances) == 2 and len(recorder.instances[1].frames) == 1
    assert sink.frames_written == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("stopped accepting" in m for m in messages) == 1
    assert sum("is back" in m for m in messages) == 1


def test_a_frame_the_backend_refuses_as_malformed_is_an_error_not_a_lost_device(recorder):
    """pyvirtualcam raises ValueError or TypeError for a frame of the wrong shape or type: a
    bug of ours, raised, not taken for a device that went away (which would drop every frame
    and reopen the camera over and over, saying only 'stopped accepting frames')."""
    class Refusing(RecordingBackend):
        instances: list = []

        def send(self, frame):
            raise ValueError("unexpected frame shape")

    with fake_camera("refusing", Refusing):
        with VirtualCameraSink(32, 24, 30.0, backend="refusing") as sink:
            with pytest.raises(ValueError, match="unexpected frame shape"):
                sink.write(np.zeros((24, 32, 3), np.uint8))
            assert len(Refusing.instances) == 1 and Refusing.instances[0].closed == 0
            assert sink.frames_dropped == 0


def test_the_virtual_camera_reopens_with_a_back_off_that_doubles(recorder):
    """A device that stays gone is tried again after 0.1 s, then 0.2, 0.4, ... s (up to 2 s),
    not ten times a second for as long as it is gone; lost again once back, it is tried after
    0.1 s again. Frames come every 5 ms on a clock the
    test moves, so each attempt's time is exact (to the 5 ms step)."""
    clock = ManualClock()

    class Vanishing(RecordingBackend):
        instances: list = []
        attempts: list = []
        gone = False

        def __init__(self, **kw):
            Vanishing.attempts.append(clock.now())
            if Vanishing.gone:
                raise RuntimeError("device gone")
            super().__init__(**kw)

        def send(self, frame):
            if Vanishing.gone:
                raise RuntimeError("write failed: No such device")
            super().send(frame)

    frame = np.zeros((24, 32, 3), np.uint8)
    with fake_camera("vanishing", Vanishing):
        with VirtualCameraSink(32, 24, 30.0, backend="vanishing", clock=clock) as sink:
            Vanishing.gone = True
            dropped_by = clock.now()
            sink.write(frame)  # fails: dropped, the first attempt due 0.1 s later
            Vanishing.attempts = []
            while len(Vanishing.attempts) < 6 and clock.now() < dropped_by + 10:
                clock.advance(0.005)
                sink.write(frame)
            assert sink.frames_written == 0
            gaps = np.diff([dropped_by, *Vanishing.attempts])
            Vanishing.gone = False  # back: the next attempt opens it
            while sink.frames_written == 0 and clock.now() < dropped_by + 20:
                clock.advance(0.005)
                sink.write(frame)
            Vanishing.gone = True  # lost again: tried 0.1 s later, not at the 2 s it reached
            lost_again = clock.now()
            sink.write(frame)
            Vanishing.attempts = []
            while not Vanishing.attempts and clock.now() < lost_again + 10:
                clock.advance(0.005)
                sink.write(frame)
    assert gaps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0], abs=0.006), gaps  # capped
    assert sink.frames_written == 1
    assert Vanishing.attempts[0] - lost_again == pytest.approx(0.1, abs=0.006)


def test_virtual_camera_close_is_safe_twice_and_write_after_close_fails(recorder):
    sink = VirtualCameraSink(32, 24, 30.0, backend=BACKEND)
    sink.close()
    sink.close()
    assert recorder.instances[0].closed == 1
    with pytest.raises(ValueError, match="after close"):
        sink.write(np.zeros((24, 32, 3), np.uint8))


def test_a_device_that_fails_to_close_is_a_warning_not_a_failed_run(recorder, caplog):
    class ClosingFails(RecordingBackend):
        instances: list = []

        def close(self) -> None:
            super().close()
            raise RuntimeError("close failed: No such device")

    with fake_camera("closing-fails", ClosingFails):
        sink = VirtualCameraSink(32, 24, 30.0, backend="closing-fails")
        sink.write(np.zeros((24, 32, 3), np.uint8))
        sink.close()  # no exception
        sink.close()
    assert ClosingFails.instances[0].closed == 1 and sink.frames_written == 1
    assert any("did not close cleanly (close failed: No such device)" in r.getMessage()
               for r in caplog.records)


def _settles(watch, value, within_s=5.0) -> bool:
    """Whether a :class:`ConsumerWatch` says ``value`` within ``within_s`` (a bound on a busy
    machine, not a timing asserted)."""
    deadline = time.perf_counter() + within_s
    while watch.present != value and time.perf_counter() < deadline:
        time.sleep(0.01)
    return watch.present == value


@contextmanager
def _holding(device: str):
    """A process that holds ``device`` open (a reader of it) until the block ends, or until
    it is killed sooner."""
    process = subprocess.Popen([sys.executable, "-c",
                                f"import time; f = open({device!r}, 'rb'); print(1, flush=True); "
                                "time.sleep(30)"], stdout=subprocess.PIPE)
    try:
        process.stdout.readline()  # the device is open now
        yield process
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


@pytest.fixture
def free_dev_full() -> str:
    """``/dev/full``, which no other process holds open here, or a skip."""
    from portrait.sink.virtual_camera import device_readers

    if device_readers("/dev/full") != 0:
        pytest.skip("needs Linux and a /dev/full that no other process holds open")
    return "/dev/full"


def test_consumer_watch_follows_a_reader_from_a_thread_of_its_own(free_dev_full):
    """The count of a device's readers runs beside the stream, which only reads the answer."""
    from portrait.sink.virtual_camera import ConsumerWatch

    watch = ConsumerWatch(free_dev_full, idle_s=0.05, busy_s=0.05)
    try:
        assert watch._thread is not None and watch._thread.is_alive()
        assert _settles(watch, False)
        with _holding(free_dev_full):
            assert _settles(watch, True)
        assert _settles(watch, False)
    finally:
        watch.close()
    assert not watch._thread.is_alive()
    # Where readers cannot be counted there is no thread, and output is always wanted.
    unknown = ConsumerWatch("/dev/video-fake")
    assert unknown._thread is None and unknown.present


def test_closing_the_virtual_camera_stops_the_count_of_its_readers(free_dev_full):
    """The thread that counts the device's readers ends with the sink, not with the app."""
    import threading

    class OnDevFull(RecordingBackend):
        instances: list = []
        DEVICE = free_dev_full

    def counting():
        return [t for t in threading.enumerate() if t.name == "vcam-consumers"]

    before = counting()
    with fake_camera("on-dev-full", OnDevFull):
        sink = VirtualCameraSink(32, 24, 30.0, backend="on-dev-full")
        started = [t for t in counting() if t not in before]
        assert len(started) == 1 and sink.device == free_dev_full
        sink.close()
    assert not started[0].is_alive()


def test_the_app_holding_its_own_device_open_is_no_reader(free_dev_full):
    """The app writes the device (its backend holds it open): that is not a video call reading
    it, so it is not counted; another process that holds it is."""
    from portrait.sink.virtual_camera import device_readers

    with open(free_dev_full, "rb"):
        assert device_readers(free_dev_full) == 0
        with _holding(free_dev_full):
            assert device_readers(free_dev_full) == 1


def test_consumer_watch_counts_often_while_nobody_reads_and_seldom_while_someone_does(
        free_dev_full):
    """Idle, the app wakes within ``idle_s`` of a call opening the camera; while someone
    reads it counts only every ``busy_s``. Each interval is set far longer than the test
    waits, so a watch that used the other one would not see the change."""
    from portrait.sink.virtual_camera import ConsumerWatch

    idle = ConsumerWatch(free_dev_full, idle_s=0.02, busy_s=600)  # idle: counts every 20 ms
    try:
        assert _settles(idle, False)
        with _holding(free_dev_full):
            assert _settles(idle, True)
    finally:
        idle.close()
    with _holding(free_dev_full) as reader:
        busy = ConsumerWatch(free_dev_full, idle_s=600, busy_s=0.02)  # read: counts every 20 ms
        try:
            assert _settles(busy, True)
            time.sleep(0.5)  # it counts once with the reader there, then waits busy_s
            reader.kill()
            reader.wait()
            assert _settles(busy, False)
        finally:
            busy.close()


def test_virtual_camera_rejects_non_uint8_frames(recorder):
    with VirtualCameraSink(32, 24, 30.0, backend=BACKEND) as sink:
        with pytest.raises(ValueError, match="float32 != uint8"):
            sink.write(np.zeros((24, 32, 3), np.float32))


@pytest.mark.parametrize("width, height, fps", [(32, 24, 0.0), (32, 24, float("nan")),
                                                (0, 24, 30.0), (32, -1, 30.0)])
def test_a_virtual_camera_format_without_a_size_or_a_rate_is_refused(recorder, width, height, fps):
    """A size or a frame rate no camera has (0 fps where a source reports none, NaN) is refused
    as the camera is made, with the format named, before any backend opens."""
    with pytest.raises(ValueError, match=rf"^unexpected virtual camera format: {width}x{height} "
                                         rf"at {fps} fps$"):
        VirtualCameraSink(width, height, fps, backend=BACKEND)
    assert RecordingBackend.instances == []


@pytest.mark.skipif(platform.system() != "Linux", reason="the v4l2loopback backend is Linux's")
def test_missing_virtual_camera_device_gives_the_modprobe_hint():
    if any(Path("/sys/devices/virtual/video4linux").glob("video*")):
        pytest.skip("a v4l2loopback device exists on this machine")
    # The real backend, failing for real: no /dev/video loopback device here.
    with pytest.raises(DeviceError) as error:
        VirtualCameraSink(640, 480, 30.0, backend="v4l2loopback")
    message = str(error.value)
    assert "\n" not in message
    assert ('sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="Portrait Cam"'
            in message)
    assert "sudo apt install v4l2loopback-dkms" in message  # modprobe alone fails without it
    assert "No v4l2 loopback device found" in message


class NoDevice(FakeCameraBackend):
    """A backend whose device is not set up, as OBS's where its camera was never started."""

    def __init__(self, **kw):
        raise RuntimeError("OBS Virtual Camera is not installed in your system. Use the Virtual "
                           "Camera function in OBS to trigger installation.")


def test_a_backend_without_its_device_is_one_line_with_this_systems_setup_step():
    with fake_camera("portrait-test-no-device", NoDevice):
        with pytest.raises(DeviceError) as error:
            VirtualCameraSink(64, 48, 30.0, backend="portrait-test-no-device")
    assert str(error.value) == (
        "no virtual camera device could be opened ('portrait-test-no-device' backend: OBS "
        f"Virtual Camera is not installed in your system); {virtual_camera_hint()}, or write to "
        "a file with --out out.mp4")


class NoUnityCapture(FakeCameraBackend):
    """Unity Capture's backend where its installer was never run."""

    def __init__(self, **kw):
        raise RuntimeError("Unity Capture is not installed. Run Install.bat as administrator.")


def test_a_named_backend_without_its_device_gives_that_backends_own_setup_step():
    # Registered under the real backend's name, as on Windows: the hint follows the name.
    with fake_camera("unitycapture", NoUnityCapture):
        with pytest.raises(DeviceError) as error:
            VirtualCameraSink(64, 48, 30.0, backend="unitycapture")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("no virtual camera device could be opened ('unitycapture' "
                              "backend: Unity Capture is not installed); install Unity Capture")
    assert "Install.bat" in message and "as administrator" in message
    assert "OBS" not in message  # OBS's setup does not make Unity Capture's device
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Virtual camera setup", 1)[1].split("\n## ", 1)[0]
    assert "`--vcam-backend unitycapture`" in section and "`Install.bat`" in section


@pytest.mark.parametrize("backend, system, step", [
    ("v4l2loopback", "Windows", "sudo modprobe v4l2loopback"),
    ("obs", "Windows", "OBS Studio (26 or later)"),
    (None, "Windows", "OBS Studio (26 or later)"),
    ("unitycapture", "Linux", "Install.bat"),
])
def test_the_hint_follows_the_named_backend_over_the_system(backend, system, step):
    assert step in virtual_camera_hint(system, backend=backend)


def test_a_missing_virtual_camera_device_is_said_before_the_model_loads(brightness_model,
                                                                         tmp_path, caplog, capsys):
    from portrait.cli import main

    video = write_video(tmp_path / "in.avi", 3)
    with fake_camera("portrait-test-no-device", NoDevice), \
            caplog.at_level(logging.INFO, "portrait"):
        assert main(["--model", brightness_model, "--source", video,
                     "--vcam-backend", "portrait-test-no-device"]) == 2
    assert capsys.readouterr().err.startswith("error: no virtual camera device could be opened")
    assert not any("segmenter:" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("system, steps", [
    ("Linux", ("sudo apt install v4l2loopback-dkms", "sudo modprobe v4l2loopback devices=1 "
               'exclusive_caps=1 card_label="Portrait Cam"')),
    ("Windows", ("OBS Studio (26 or later)", '"Start Virtual Camera" once and stop it again')),
    ("Darwin", ("OBS Studio (30 or later)", "macOS approves its system extension")),
    ("FreeBSD", ("install OBS Studio and start its virtual camera once",)),
])
def test_the_virtual_camera_hint_gives_each_systems_setup_as_the_readme_does(system, steps):
    hint = virtual_camera_hint(system)
    assert all(step in hint for step in steps), hint
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Virtual camera setup", 1)[1].split("\n## ", 1)[0]
    for version in ("26 or later", "30 or later"):
        if version in hint:
            assert f"version {version}" in section  # the README asks for the same OBS


def test_unknown_virtual_camera_backend_is_an_input_error_naming_those_there_are(recorder):
    with pytest.raises(InputError) as error:
        VirtualCameraSink(64, 48, 30.0, backend="nope")
    assert str(error.value).startswith(
        f"virtual camera backend 'nope' is not available here (available: {BACKEND}, ")


def test_open_sink_without_out_is_the_virtual_camera(recorder):
    with open_sink(None, fps=25.0, size=(64, 48), backend=BACKEND) as sink:
        assert isinstance(sink, VirtualCameraSink)
        sink.write(np.zeros((48, 64, 3), np.uint8))
    assert len(recorder.instances[0].frames) == 1


def test_camera_lost_frame():
    frame = camera_lost_frame(320, 180)
    assert frame.shape == (180, 320, 3) and frame.dtype == np.uint8
    assert frame.max() > 150 and np.median(frame) == 32  # text on a dark frame
    assert camera_lost_frame(320, 180) is frame and not frame.flags.writeable  # drawn once


# --- preview -------------------------------------------------------------------------------------


@pytest.mark.skipif(platform.system() != "Linux", reason="displays are always there elsewhere")
def test_preview_without_display_is_a_device_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(DeviceError, match="no display.*leave out --preview "
                                          "\\(--no-preview where a config file sets it\\)"):
        PreviewSink()


@pytest.mark.skipif(not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")),
                    reason="no display to open a window on")
def test_preview_shows_frames():
    with PreviewSink("portrait test") as preview:
        preview.write(np.zeros((48, 64, 3), np.uint8))
        assert preview.frames_written == 1 and not preview.quit_requested


# --- video files ---------------------------------------------------------------------------------


def count_frames(path: Path) -> tuple[int, int, list[np.ndarray]]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    claimed = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return claimed, len(frames), frames


@pytest.mark.parametrize("name", ["out.mp4", "out.AVI"])
def test_video_file_round_trip(tmp_path, name):
    path = tmp_path / "nested" / name
    with VideoFileSink(path, fps=25.0) as sink:
        assert not path.exists()  # opens on the first frame
        for i in range(12):
            sink.write(np.full((48, 64, 3), 20 * i, np.uint8))
    claimed, read, frames = count_frames(path)
    assert claimed == 12 and read == 12
    assert frames[0].shape == (48, 64, 3)
    assert [round(float(f.mean()) / 20) for f in frames] == list(range(12))
    sink.close()  # safe twice


def test_video_file_adapts_size_and_format(tmp_path, caplog):
    path = tmp_path / "mixed.avi"
    with VideoFileSink(path, fps=30.0) as sink:
        sink.write(np.full((48, 64, 3), 100, np.uint8))
        sink.write(np.full((96, 128), 180, np.uint8))  # a bigger grey matte
        sink.write(np.full((48, 64, 4), 60, np.uint8))  # BGRA
        sink.write(np.full((96, 128), 180, np.uint8))  # resized again: said once
    claimed, read, frames = count_frames(path)
    assert read == 4 and all(f.shape == (48, 64, 3) for f in frames)
    assert [round(float(f.mean()) / 10) for f in frames] == [10, 18, 6, 18]
    assert sum("resized to 64x48" in r.getMessage() for r in caplog.records) == 1


def test_video_file_with_a_fixed_size(tmp_path):
    path = tmp_path / "fixed.mp4"
    with VideoFileSink(path, fps=30.0, size=(32, 24)) as sink:
        sink.write(np.zeros((48, 64, 3), np.uint8))
    assert count_frames(path)[2][0].shape == (24, 32, 3)


def test_video_file_sink_refusals(tmp_path):
    with pytest.raises(InputError, match="unsupported type '.mkv'; use .mp4 or .avi"):
        VideoFileSink(tmp_path / "out.mkv", fps=30.0)
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(InputError, match="is a file, not a folder"):
        VideoFileSink(blocker / "out.mp4", fps=30.0)
    source = tmp_path / "in.mp4"
    source.write_bytes(b"pretend video")
    with pytest.raises(InputError, match="refusing to overwrite the input"):
        VideoFileSink(source, fps=30.0, protected=[source])
    assert source.read_bytes() == b"pretend video"
    folder = tmp_path / "clips.mp4"  # a folder named like a video: refused before any frame
    (folder / "kept.txt").parent.mkdir()
    (folder / "kept.txt").write_text("the user's")
    with pytest.raises(InputError, match=r"^cannot write video '.*clips\.mp4': it is a folder; "
                                         r"give a file name$"):
        VideoFileSink(folder, fps=30.0)
    assert [p.name for p in folder.iterdir()] == ["kept.txt"]


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root can write anywhere")
def test_video_file_sink_refuses_an_unwritable_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(InputError, match="not writable"):
        VideoFileSink(locked / "out.mp4", fps=30.0)


@pytest.mark.parametrize("fps", [0.0, float("nan"), 5000.0])
def test_a_video_file_at_an_unusable_frame_rate_is_written_at_30_fps_and_says_so(
        tmp_path, fps, caplog):
    """A source that reports no rate (0, NaN) or an absurd one still gets its video, at 30
    fps, with a warning that says so."""
    import av

    path = tmp_path / "out.avi"
    with VideoFileSink(path, fps) as sink:
        for i in range(3):
            sink.write(np.full((48, 64, 3), 40 * i, np.uint8))
    assert sink.fps == 30.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == pytest.approx(30.0)
        assert len(list(container.decode(stream))) == 3
    assert any(f"frame rate {fps} is not usable; writing at 30 fps" in r.getMessage()
               for r in caplog.records)


def test_video_file_with_no_frames_writes_nothing(tmp_path):
    with VideoFileSink(tmp_path / "empty.mp4", fps=30.0):
        pass
    assert not (tmp_path / "empty.mp4").exists()


def test_an_odd_frame_size_is_named_where_the_codec_keeps_even_sizes(tmp_path, caplog):
    """H.264 and MJPEG store 97x63 frames as 96x62; the log says so rather than claim 97x63."""
    path = tmp_path / "odd.mp4"
    with caplog.at_level(logging.WARNING, logger="portrait.sink.video"):
        with VideoFileSink(path, fps=30.0) as sink:
            for _ in range(3):
                sink.write(np.full((63, 97, 3), 128, np.uint8))
    capture = cv2.VideoCapture(str(path))
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (96, 62)
    assert [r.getMessage() for r in caplog.records] == [
        f"video '{path}': 97x63 frames were stored as 96x62 (H.264 keeps even sizes); write PNG "
        "frames (--out DIR/) to keep every pixel"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.mp4"]  # no partial file left


def _copy_frames(source: Path, sink: VideoFileSink, limit: int) -> int:
    capture = cv2.VideoCapture(str(source))
    count = 0
    while count < limit and (frame := capture.read()[1]) is not None:
        sink.write(frame)
        count += 1
    capture.release()
    return count


@pytest.mark.parametrize("name, stored", [("out.mp4", "aac"), ("out.avi", "pcm_s16le")])
def test_a_video_keeps_its_sound_in_step_and_cut_where_the_picture_ends(tmp_path, name, stored):
    """The source's 440 Hz tone comes along: copied into .mp4 (AAC), encoded again as 16-bit
    PCM for .avi; 45 of 90 frames at 30 fps keep 1.5 s of its 3 s."""
    source = write_video_with_sound(tmp_path / "talk.mp4", frames=90, seconds=3.0)
    out = tmp_path / name
    with VideoFileSink(out, fps=30.0, audio_from=source) as sink:
        assert _copy_frames(source, sink, 45) == 45
    codec, seconds, samples = sound_of(out)
    assert codec == stored
    assert abs(seconds - 1.5) < 0.06, seconds  # a packet of sound at most (1024 samples, 23 ms)
    if stored == "pcm_s16le":  # encoded again: cut at the sample where the picture ends
        assert seconds == 1.5, seconds
    assert abs(main_frequency(samples[:44100]) - 440.0) < 2.0
    assert count_frames(out)[:2] == (45, 45)


def test_copied_sound_stops_at_a_packet_that_starts_where_the_picture_ends(tmp_path):
    """16 frames at 30 fps end at 0.5333 s, where the 26th packet of 1024 samples at 48 kHz
    starts: that packet is the picture's successor's, not kept, and the sound ends with the
    picture, not 21 ms after it."""
    import av

    source = write_video_with_sound(tmp_path / "talk.mp4", frames=60, seconds=2.0, rate=48000)
    out = tmp_path / "out.mp4"
    with VideoFileSink(out, fps=30.0, audio_from=source) as sink:
        assert _copy_frames(source, sink, 16) == 16
    with av.open(str(out)) as container:
        packets = [p for p in container.demux(container.streams.audio[0]) if p.size]
        end = max((p.pts + p.duration) * p.time_base for p in packets)
    assert end * 30 == 16, float(end)  # exactly: times are fractions of the time base


@pytest.mark.parametrize("name, codec, picture_starts_s", [
    ("talk.mp4", "aac", 0.0), ("talk.mov", "aac", 0.0), ("late.mp4", "aac", 0.3),
    ("late.mp4", "mp3", 0.3), ("late.mp4", "libopus", 0.3)])
def test_copied_sound_starts_whole_and_in_step_with_the_picture(tmp_path, name, codec,
                                                                 picture_starts_s):
    """Copied sound decodes in the output as in the source from the first frame on, sample for
    sample. An AAC encoder's first packet (at -1024 samples, behind the source's edit list)
    carries half of the first 1024 samples, and each packet the end of the one before it: where
    the copy began with the packet at the first frame, its first 21 ms decoded garbled (errors
    near the tone's 0.3), and so did MP3 and Opus where the picture starts 0.3 s into the sound.
    The sound, 1.5 s, ends before the picture (2 s): none of it is cut."""
    rate = 48000 if codec == "libopus" else 44100
    source = write_video_with_sound(tmp_path / name, frames=60, seconds=1.5, codec=codec,
                                    rate=rate,
                                    frame_times=[picture_starts_s + i / 30 for i in range(60)])
    out = tmp_path / "out.mp4"
    with VideoFileSink(out, fps=30.0, audio_from=source) as sink:
        assert _copy_frames(source, sink, 60) == 60
    stored, _, copied = sound_of(out)
    heard = sound_of(source)[2][round(picture_starts_s * rate):]
    assert stored == sound_of(source)[0] and len(copied) == len(heard), (len(copied), len(heard))
    # Opus converges rather than starts exact: 0.014 at most after 80 ms (0.15 without them)
    np.testing.assert_allclose(copied, heard, atol=0.03 if codec == "libopus" else 1e-6)


@pytest.mark.parametrize("name, stored", [("late.mp4", "aac"), ("late.avi", "pcm_s16le")])
def test_sound_encoded_again_keeps_its_place_against_the_picture(tmp_path, name, stored):
    """FLAC goes into neither container as it is: it is decoded and placed sample by sample,
    so sound that starts 0.5 s after the first frame still does (silence before it), and a
    192 kHz source, which AAC cannot take, comes down to 48 kHz rather than losing the video."""
    source = write_video_with_sound(tmp_path / "talk.mkv", frames=60, seconds=1.5, codec="flac",
                                    rate=192000, sound_starts_s=0.5)
    out = tmp_path / name
    with VideoFileSink(out, fps=30.0, audio_from=source) as sink:
        assert _copy_frames(source, sink, 60) == 60
    codec, seconds, samples = sound_of(out)
    rate = 48000 if stored == "aac" else 192000
    assert codec == stored and abs(seconds - 2.0) < 0.03, (codec, seconds)
    level = [float(np.sqrt(np.mean(samples[round(a * rate):round(b * rate)] ** 2)))
             for a, b in ((0.05, 0.45), (0.55, 1.95))]
    assert level[0] < 0.01 < 0.1 < level[1], level  # silent until 0.5 s, then the tone
    assert abs(main_frequency(samples[rate:2 * rate], rate) - 440.0) < 2.0
    assert count_frames(out)[:2] == (60, 60)


@pytest.mark.parametrize("name, stored", [("out.mp4", "aac"), ("out.avi", "pcm_s16le")])
def test_sound_encoded_again_keeps_its_place_when_the_video_starts_late(tmp_path, name, stored):
    """A source whose picture starts 0.5 s into the file and whose sound starts at 1.0 s:
    the output's picture starts at 0, so its sound starts 0.5 s after the first frame, as it
    did in the source (not 1.0 s, its time in the file)."""
    source = write_video_with_sound(tmp_path / "late.mkv", frames=60, seconds=1.5, codec="flac",
                                    frame_times=[0.5 + i / 30 for i in range(60)],
                                    sound_starts_s=1.0)
    out = tmp_path / name
    with VideoFileSink(out, fps=30.0, audio_from=source) as sink:
        assert _copy_frames(source, sink, 60) == 60
    codec, seconds, samples = sound_of(out)
    rate = 48000 if stored == "aac" else 44100
    assert codec == stored
    level = [float(np.sqrt(np.mean(samples[round(a * rate):round(b * rate)] ** 2)))
             for a, b in ((0.05, 0.45), (0.55, 0.95))]
    assert level[0] < 0.01 < 0.1 < level[1], level  # silent until 0.5 s, then the tone


@pytest.mark.parametrize("name, stored", [("out.mp4", "aac"), ("out.avi", "pcm_s16le")])
def test_sound_encoded_again_from_before_the_first_frame_is_left_out(tmp_path, name, stored):
    """A source whose sound starts at 0 and whose picture starts 0.5 s into the file: the
    sound before the first frame is left out, so the output's 1.5 s of sound is its last
    1.0 s, in step with the picture (not all 1.5 s, starting 0.5 s early)."""
    source = write_video_with_sound(tmp_path / "early.mkv", frames=60, seconds=1.5, codec="flac",
                                    frame_times=[0.5 + i / 30 for i in range(60)])
    out = tmp_path / name
    with VideoFileSink(out, fps=30.0, audio_from=source) as sink:
        assert _copy_frames(source, sink, 60) == 60
    codec, seconds, samples = sound_of(out)
    assert codec == stored and abs(seconds - 1.0) < 0.05, (codec, seconds)
    rate = 48000 if stored == "aac" else 44100
    level = float(np.sqrt(np.mean(samples[round(0.05 * rate):round(0.95 * rate)] ** 2)))
    assert level > 0.1, level  # the tone from the first frame on


def test_an_mp4_is_what_browsers_play_with_its_index_first(tmp_path):
    """H.264 in yuv420p, the moov index before the frames (it plays while it downloads), and the
    encoder settings the README quotes (x264 writes them into the stream: superfast is subme=1)."""
    import av

    path = tmp_path / "out.mp4"
    with VideoFileSink(path, fps=30.0) as sink:
        for i in range(10):
            sink.write(np.full((48, 64, 3), 20 * i, np.uint8))
    with av.open(str(path)) as container:
        video = container.streams.video[0].codec_context
        assert (video.codec.name, video.pix_fmt) == ("h264", "yuv420p")
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")
    settings = data[data.index(b"x264 - core"):][:2000]
    assert b"crf=23.0" in settings and b"subme=1 " in settings


# Luma weights (Kr, Kb) of the matrices a file may name (FFmpeg's AVColorSpace numbers).
_MATRIX_WEIGHTS = {1: (0.2126, 0.0722), 5: (0.299, 0.114), 6: (0.299, 0.114)}


@pytest.mark.parametrize("name", ["out.mp4", "out.avi"])
def test_a_player_that_follows_the_files_colour_tags_shows_the_colours_written(tmp_path, name):
    """A player decodes YUV with the matrix and range the file names, and guesses where it names
    none (BT.709 for HD in most players, where the frames were converted with BT.601): a webcam's
    720p .mp4 showed an orange top and skin shifted (CIELAB dE 2.8 on average over the person).
    Decoded here by the file's own tags, each colour must come back as written."""
    import av

    colours = [(40, 120, 230), (200, 60, 30), (60, 200, 90), (128, 128, 128)]  # BGR
    image = np.zeros((720, 1280, 3), np.uint8)
    for i, colour in enumerate(colours):
        image[:, i * 320:(i + 1) * 320] = colour
    path = tmp_path / name
    with VideoFileSink(path, fps=30.0) as sink:
        for _ in range(3):
            sink.write(image)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
    assert frame.colorspace in _MATRIX_WEIGHTS, f"matrix {frame.colorspace} named, not a known one"
    assert frame.color_range in (1, 2), f"range {frame.color_range}: neither limited nor full"
    kr, kb = _MATRIX_WEIGHTS[frame.colorspace]
    y, u, v = (np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
               for plane in frame.planes)  # as stored: full-size luma, half-size chroma
    y_scale, c_scale, y_zero = (219, 224, 16) if frame.color_range == 1 else (255, 255, 0)
    for i, colour in enumerate(colours):
        x = i * 320 + 160
        luma = (float(y[360, x]) - y_zero) / y_scale
        cb, cr = ((float(chroma[180, x // 2]) - 128) / c_scale for chroma in (u, v))
        red, blue = luma + 2 * (1 - kr) * cr, luma + 2 * (1 - kb) * cb
        green = (luma - kr * red - kb * blue) / (1 - kr - kb)
        shown = np.clip(np.array([blue, green, red]) * 255, 0, 255)
        assert np.abs(shown - colour).max() <= 4, (name, colour, shown.round(1))


def frame_times(path: Path) -> list[float]:
    import av

    with av.open(str(path)) as container:
        return [float(f.pts * f.time_base) for f in container.decode(video=0)]


def top_level_boxes(data: bytes) -> list[tuple[str, int, int]]:
    """An MP4's top-level boxes as (type, offset, size), up to one the data cuts short."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset:offset + 4], "big")
        if size == 1:
            size = int.from_bytes(data[offset + 8:offset + 16], "big")
        if size < 8 or offset + size > len(data):
            break
        boxes.append((data[offset + 4:offset + 8].decode("latin-1"), offset, size))
        offset += size
    return boxes


def packets_of(path: Path) -> list[tuple]:
    """Every packet with data: (track kind, pts, dts, bytes), in the file's order per track."""
    import av

    with av.open(str(path)) as container:
        return sorted(((p.stream.type, p.pts, p.dts, bytes(p)) for p in container.demux()
                       if p.size), key=lambda p: (p[0], p[2]))


def decodable_frames(path: Path) -> int:
    """Frames a player gets from ``path`` from its start, up to the first packet that fails."""
    import av

    count = 0
    try:
        with av.open(str(path)) as container:
            for _ in container.decode(video=0):
                count += 1
    except (av.FFmpegError, OSError):
        pass
    return count


def test_an_mp4_is_recorded_in_fragments_and_finished_with_its_index_first(tmp_path, monkeypatch):
    """The frames go into a fragmented MP4 (an index per second or so), which close() copies
    packet for packet into one file with its index before its frames (``ftyp``, ``moov``,
    ``free``, ``mdat``): the same packets, the frames at the times written (a variable rate, a
    first frame after 0), the last shown one frame's time, the sound copied and cut there."""
    from portrait.sink import video

    source = write_video_with_sound(tmp_path / "talk.mp4", frames=90, seconds=3.0)
    recording = tmp_path / "recording.mp4"
    real_remux = video.remux_faststart

    def keep_recording(partial, *args):
        recording.write_bytes(Path(partial).read_bytes())
        return real_remux(partial, *args)

    monkeypatch.setattr(video, "remux_faststart", keep_recording)
    times = [0.1 + i / 30 for i in range(45)] + [1.6 + i / 15 for i in range(20)]
    out = tmp_path / "out.mp4"
    capture = cv2.VideoCapture(str(source))
    with VideoFileSink(out, fps=30.0, audio_from=source) as sink:
        for pts_s in times:
            sink.write(capture.read()[1], pts_s)
    capture.release()
    kinds = [kind for kind, _, _ in top_level_boxes(recording.read_bytes())]
    assert kinds[:2] == ["ftyp", "moov"] and kinds.count("moof") >= 3  # about 1 s each
    assert [kind for kind, _, _ in top_level_boxes(out.read_bytes())
            if kind != "free"] == ["ftyp", "moov", "mdat"]
    assert packets_of(out) == packets_of(recording)  # copied, not encoded again
    assert frame_times(out) == pytest.approx(times, abs=1e-4)
    end = times[-1] + 1 / 30
    import av

    with av.open(str(out)) as container:  # the track lasts until the picture ends, as before
        picture = container.streams.video[0]
        assert float(picture.duration * picture.time_base) == pytest.approx(end, abs=1e-4)
    codec, seconds, samples = sound_of(out)
    assert codec == "aac" and abs(seconds - end) < 0.06, seconds  # from 0, as in the source
    assert abs(main_frequency(samples[:22050]) - 440.0) < 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "recording.mp4", "talk.mp4"]


def test_a_recording_cut_at_any_byte_plays_its_whole_fragments(tmp_path):
    """What a run killed mid-recording leaves (SIGKILL, a power cut: the partial file as it is,
    cut wherever the disk stopped) plays, with its sound, up to its last whole fragment: at most
    about a second (and the encoder's few frames in flight) is lost."""
    source = write_video_with_sound(tmp_path / "talk.mp4", frames=150, seconds=5.0)
    with VideoFileSink(tmp_path / "out.mp4", fps=30.0, audio_from=source) as sink:
        assert _copy_frames(source, sink, 150) == 150
        (partial,) = tmp_path.glob(".out.mp4.*.partial.mp4")
        snapshot = partial.read_bytes()  # the run is "killed" here
    recorded = tmp_path / "killed.mp4"
    recorded.write_bytes(snapshot)
    assert decodable_frames(recorded) >= 150 - 30 - 20
    assert sound_of(recorded)[1] > 3.0
    import av

    with av.open(str(recorded)) as container:
        ends = [(p.pos + p.size) for p in container.demux(video=0) if p.size]
    for cut in (len(snapshot) - 1, len(snapshot) * 2 // 3, len(snapshot) // 2 + 1,
                len(snapshot) // 3 - 7):
        cut_short = tmp_path / f"cut{cut}.mp4"
        cut_short.write_bytes(snapshot[:cut])
        whole = max(offset + size for kind, offset, size in top_level_boxes(snapshot[:cut])
                    if kind == "mdat")
        in_whole_fragments = sum(end <= whole for end in ends)
        assert decodable_frames(cut_short) >= in_whole_fragments >= 30, cut
        # Trimmed as a failed run's partial file is: it ends with its last whole fragment,
        # not with the index (moof) of a fragment whose frames never followed.
        trim_to_whole_boxes(cut_short)
        assert cut_short.stat().st_size == whole, cut
        assert top_level_boxes(cut_short.read_bytes())[-1][0] == "mdat", cut
    # A file whole to its last byte (its last box ends where the file does) is left whole.
    finished = (tmp_path / "out.mp4").read_bytes()
    trim_to_whole_boxes(tmp_path / "out.mp4")
    assert (tmp_path / "out.mp4").read_bytes() == finished


def test_an_avi_cut_inside_its_last_frames_keeps_only_frames_that_decode(tmp_path):
    """A full disk stops a .avi recording wherever its write stopped, often inside a frame: the
    seconds reported are those of its whole frames (a frame cut short is not counted), and
    trimmed as a failed run's partial file is, it ends with its last whole chunk, every frame
    left decodes and none whole is lost."""
    import av

    source = write_video_with_sound(tmp_path / "talk.mp4", frames=40, seconds=2.0)
    with VideoFileSink(tmp_path / "out.avi", fps=30.0, audio_from=source) as sink:
        assert _copy_frames(source, sink, 40) == 40
        (partial,) = tmp_path.glob(".out.avi.*.partial.avi")
        snapshot = partial.read_bytes()  # as the disk has it: no index, sizes not yet written
    # Where each chunk's data lies, read from the finished file (the same bytes, then an index).
    with av.open(str(tmp_path / "out.avi")) as finished:
        packets = [(p.stream.type, p.pos, p.size) for p in finished.demux() if p.size]
    frames = [(offset, size) for kind, offset, size in packets
              if kind == "video" and offset + size <= len(snapshot)]
    start = frames[-2][0] - 8  # the header of the last but one frame the snapshot holds whole
    edges = {edge + step for _, offset, size in packets for edge in (offset - 8, offset + size)
             for step in range(-2, 4)}  # either side of each chunk's header and pad byte
    cuts = sorted({cut for cut in edges | set(range(start, len(snapshot), 53))
                   if start <= cut <= len(snapshot)})
    assert len(cuts) > 100, len(cuts)
    for cut in cuts:
        cut_short = tmp_path / "cut.avi"
        cut_short.write_bytes(snapshot[:cut])
        whole = [offset + size for offset, size in frames if offset + size <= cut]
        assert playable(av, cut_short) == (len(whole), pytest.approx(len(whole) / 30)), cut
        trim_to_whole_chunks(cut_short)
        assert whole[-1] <= cut_short.stat().st_size <= cut, cut
        with av.open(str(cut_short)) as container:
            shown = [float(picture.time) for picture in container.decode(video=0)]
        assert shown == pytest.approx([i / 30 for i in range(len(whole))]), cut
        assert playable(av, cut_short) == (len(whole), pytest.approx(len(whole) / 30)), cut


def test_an_avi_is_trimmed_to_its_last_whole_chunk_through_lists_of_unwritten_size(tmp_path):
    """The sizes of a recording's RIFF and movi lists are written only at its end: the trim
    steps into them, keeps a chunk whose pad byte is all that is missing, drops a second RIFF
    (past 1 GB) whose chunks never followed, and leaves a file that is no RIFF file alone."""
    unwritten = b"\xff\xff\xff\xff"
    head = (b"RIFF" + unwritten + b"AVI " + b"LIST" + (4).to_bytes(4, "little") + b"hdrl"
            + b"LIST" + unwritten + b"movi")
    frames = b"00dc" + (3).to_bytes(4, "little") + b"abc\0" + b"01wb" + (4).to_bytes(4, "little")
    second = b"RIFF" + unwritten + b"AVIX" + b"LIST" + unwritten + b"movi"
    cut_frame = b"00dc" + (10).to_bytes(4, "little") + b"abcde"
    recording = tmp_path / "cut.avi"
    for tail, kept in [(b"defg" + second + cut_frame, len(head + frames) + 4),
                       (b"defg" + second[:7], len(head + frames) + 4),
                       (b"de", len(head) + 12), (b"", len(head) + 12)]:
        recording.write_bytes(head + frames + tail)
        trim_to_whole_chunks(recording)
        assert recording.read_bytes() == (head + frames + tail)[:kept], tail
    recording.write_bytes(head + frames[:11])  # the 3-byte frame whole, its pad byte not
    trim_to_whole_chunks(recording)
    assert recording.read_bytes() == head + frames[:11]
    not_riff = tmp_path / "cut.mp4"
    not_riff.write_bytes(b"\0\0\0\x08ftyp" + cut_frame)
    trim_to_whole_chunks(not_riff)
    assert not_riff.read_bytes() == b"\0\0\0\x08ftyp" + cut_frame


def test_an_mp4_whose_copy_a_full_disk_refuses_keeps_the_whole_recording(tmp_path, monkeypatch):
    """The copy with the index first needs the recording's size again: where the disk refuses
    it, the copy goes and the recording (a fragmented MP4 that plays) stays, named in one
    error; an earlier file of that name is kept."""
    from portrait.errors import OutputFull
    from portrait.sink import video

    def full_disk(partial, copy, *args):
        Path(copy).write_bytes(b"the first bytes of a copy")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(video, "remux_faststart", full_disk)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier recording")
    sink = VideoFileSink(out, fps=30.0)
    for i in range(40):
        sink.write(np.full((48, 64, 3), 5 * i, np.uint8))
    (partial,) = tmp_path.glob(".out.mp4.*.partial.mp4")
    with pytest.raises(OutputFull) as raised:
        sink.close()
    assert str(raised.value) == (
        f"cannot finish video '{out}': its copy with the index first cannot be written (No "
        f"space left on device); the whole recording is '{partial}' (a fragmented .mp4, which "
        "plays); free space or choose another --out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [partial.name, "out.mp4"]
    assert out.read_bytes() == b"an earlier recording"
    assert count_frames(partial)[1] == 40 == decodable_frames(partial)
    sink.close()  # safe twice


@pytest.mark.skipif(os.name == "nt", reason="POSIX file locks tell a live writer from a dead one")
def test_a_partial_file_a_killed_run_left_is_named_and_a_running_ones_is_not(tmp_path, caplog):
    """SIGKILL leaves the hidden partial file, which nothing can finish: the next run into the
    same file names it (and leaves it), while a run still writing is left alone."""
    out = tmp_path / "talk.mp4"
    killed = subprocess.run(
        [sys.executable, "-c",
         "import os, signal, sys, numpy as np\n"
         f"sys.path.insert(0, {str(ROOT)!r})\n"
         "from portrait.sink.video import VideoFileSink\n"
         f"sink = VideoFileSink({str(out)!r}, fps=25.0)\n"
         "for _ in range(20): sink.write(np.zeros((48, 64, 3), np.uint8))\n"
         "os.kill(os.getpid(), signal.SIGKILL)\n"], timeout=120)
    assert killed.returncode == -signal.SIGKILL
    (left,) = tmp_path.glob(".talk.mp4.*.partial.mp4")
    caplog.set_level(logging.WARNING, logger="portrait.sink.video")
    with VideoFileSink(out, fps=25.0) as running:
        running.write(np.zeros((48, 64, 3), np.uint8))
        with VideoFileSink(out, fps=25.0) as second:  # beside a live writer
            second.write(np.zeros((48, 64, 3), np.uint8))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2 and all(w.startswith(f"'{left}' (") for w in warnings)
    assert "is an unfinished video that an earlier run into" in warnings[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [left.name, "talk.mp4"]


# Run in a process of its own: the real close() of a 60-frame .mp4 recording, which the real
# SIGNAL hits while the copy with the index first is half written (at its 10th packet).
_STOPPED_WHILE_COPYING = """
import os, signal, sys
import numpy as np
sys.path.insert(0, {root!r})
from portrait.errors import stop_on_termination_signals
from portrait.sink.video import VideoFileSink

sink = VideoFileSink({out!r}, fps=25.0)
for i in range(60):
    sink.write(np.full((48, 64, 3), 4 * i, np.uint8))
packets = 0

def signal_at_the_10th_packet(frame, event, arg):
    global packets
    if (event == "c_call" and getattr(arg, "__name__", "") == "mux"
            and frame.f_code.co_name == "remux_faststart"):
        packets += 1
        if packets == 10:
            os.kill(os.getpid(), signal.{signal})

sys.setprofile(signal_at_the_10th_packet)
with stop_on_termination_signals():  # as the app finishes its output: SIGTERM stops it
    sink.close()
"""


def stop_while_copying(out: Path, signal_name: str) -> subprocess.CompletedProcess:
    # Ctrl-C as in a terminal's foreground: tests run as a background job (CI) inherit SIGINT
    # ignored, and Python then raises no KeyboardInterrupt.
    return subprocess.run(
        [sys.executable, "-c", _STOPPED_WHILE_COPYING.format(root=str(ROOT), out=str(out),
                                                            signal=signal_name)],
        capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def others(folder: Path, *names: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in names)


@pytest.mark.skipif(os.name == "nt", reason="POSIX file locks tell a live writer from a dead one")
def test_a_run_killed_while_copying_leaves_the_final_file_as_it_was_and_the_recording_whole(
        tmp_path, caplog):
    """SIGKILL halfway through the copy with the index first: the final file is the earlier
    one, untouched (the copy goes to a hidden name and is renamed over it only when whole);
    the recording, a fragmented MP4, plays every frame. The next run into the same file
    removes the half copy (it never plays: its index comes last; unless it is an input of that
    run), names the recording and finishes its own video."""
    out = tmp_path / "talk.mp4"
    out.write_bytes(b"an earlier recording")
    killed = stop_while_copying(out, "SIGKILL")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert out.read_bytes() == b"an earlier recording"
    (partial,) = tmp_path.glob(".talk.mp4.*.partial.mp4")
    (copy,) = others(tmp_path, out.name, partial.name)  # the half-written copy
    assert copy.startswith(".talk.mp4.") and copy.endswith(".finishing.mp4"), copy
    assert count_frames(partial)[1] == 60 == decodable_frames(partial)
    with VideoFileSink(out, fps=25.0, protected=[tmp_path / copy]) as sink:  # an input: kept
        sink.write(np.zeros((48, 64, 3), np.uint8))
    assert others(tmp_path, out.name, partial.name) == [copy]
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="portrait.sink.video")
    with VideoFileSink(out, fps=25.0) as sink:
        for i in range(5):
            sink.write(np.full((48, 64, 3), 50 * i, np.uint8))
    assert others(tmp_path, out.name, partial.name) == []
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(f"removed '{tmp_path / copy}' (") and \
        "a half-written copy with the index first that an earlier run into" in warnings[0]
    assert warnings[1].startswith(f"'{partial}' (") and "is an unfinished video" in warnings[1]
    assert count_frames(out)[1] == 5 and count_frames(partial)[1] == 60


@pytest.mark.parametrize("signal_name, code, stop", [
    ("SIGINT", -signal.SIGINT, "KeyboardInterrupt"),
    ("SIGTERM", 1, "StopRequested: SIGTERM"),  # the app's handler turns it into a stop
])
def test_a_run_stopped_while_copying_removes_the_copy_and_keeps_the_recording(
        tmp_path, signal_name, code, stop):
    """Ctrl-C or SIGTERM halfway through the copy: the copy goes, the earlier final file stays,
    and the recording, which plays every frame, is named in a warning."""
    out = tmp_path / "talk.mp4"
    out.write_bytes(b"an earlier recording")
    stopped = stop_while_copying(out, signal_name)
    assert stopped.returncode == code and stop in stopped.stderr, stopped.stderr
    assert out.read_bytes() == b"an earlier recording"
    (partial,) = tmp_path.glob(".talk.mp4.*.partial.mp4")
    assert others(tmp_path, out.name, partial.name) == []
    assert count_frames(partial)[1] == 60 == decodable_frames(partial)
    assert (f"video '{out}' was not finished: stopped while copying it with its index first; "
            f"the whole recording is '{partial}' (a fragmented .mp4, which plays)"
            in stopped.stderr), stopped.stderr


def test_an_mp4_keeps_each_frames_time_and_an_avi_holds_its_rate(tmp_path):
    """Frames written with their times (a variable rate, a stall, two in one frame's time): the
    .mp4 shows each at its time and ends one frame after the last; the .avi shows at 25 fps
    the frame due at each step, repeating across the stall and dropping the one of two."""
    import av

    times = [0.0, 0.04, 0.08, 0.09, 0.48, 0.52]  # 0.08 and 0.09 fall in one 25 fps step
    for name in ("vfr.mp4", "vfr.avi"):
        with VideoFileSink(tmp_path / name, fps=25.0) as sink:
            for i, pts_s in enumerate(times):
                sink.write(np.full((48, 64, 3), 20 + 30 * i, np.uint8), pts_s)
    assert frame_times(tmp_path / "vfr.mp4") == pytest.approx(times, abs=1e-4)
    with av.open(str(tmp_path / "vfr.mp4")) as container:
        assert container.duration / 1e6 == pytest.approx(0.56, abs=1e-3)  # not cut short
    assert sink.frames_written == 6 and (sink.frames_repeated, sink.frames_dropped) == (9, 1)
    claimed, read, frames = count_frames(tmp_path / "vfr.avi")
    assert claimed == read == 14 and frame_times(tmp_path / "vfr.avi") == pytest.approx(
        [i / 25 for i in range(14)])
    shown = [round((float(f.mean()) - 20) / 30) for f in frames]
    assert shown == [0, 1] + [2] * 10 + [4, 5]  # 0.08 held until 0.48, 0.09 dropped


def test_an_avi_is_written_at_its_mjpeg_quality(tmp_path, monkeypatch):
    """MJPEG_QUALITY (FFmpeg's qscale, 2 best .. 31) sets the quantiser of every frame: a coarser
    one gives smaller frames. FFmpeg took each frame's own quality (0 from PyAV) and wrote every
    frame at 2, whatever the constant said, until qmin and qmax held it."""
    import portrait.sink.video as video

    rng = np.random.default_rng(7)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (144, 256, 3), np.uint8), (5, 5), 0)
    sizes = {}
    for quality in (2, 3, 8):
        monkeypatch.setattr(video, "MJPEG_QUALITY", quality)
        path = tmp_path / f"q{quality}.avi"
        with VideoFileSink(path, fps=25.0) as sink:
            for i in range(3):
                sink.write(frame, i / 25)
        sizes[quality] = path.stat().st_size
    assert sizes[2] > sizes[3] * 1.1 and sizes[3] > sizes[8] * 1.5, sizes


@pytest.mark.parametrize("fps", [30000 / 1001, 24000 / 1001, 60000 / 1001],
                         ids=["29.97", "23.976", "59.94"])
def test_an_avi_holds_an_ntsc_rate_exactly(tmp_path, fps):
    """A source at an NTSC rate (30000/1001, as a camcorder or a TV capture gives it, read as
    a float): the .avi's rate is that fraction exactly, the source's own clock, not a
    fraction near it (19001/634 where the denominator stops at 1000), which drifts from the
    source's sound."""
    import av

    with VideoFileSink(tmp_path / "ntsc.avi", fps=fps) as sink:
        for i in range(3):
            sink.write(np.full((48, 64, 3), 20 + 30 * i, np.uint8), i / fps)
    with av.open(str(tmp_path / "ntsc.avi")) as container:
        assert container.streams.video[0].average_rate == Fraction(round(fps * 1001), 1001)


def test_an_mp4_frame_at_the_time_of_the_one_before_or_earlier_follows_it_by_a_tick(tmp_path):
    """A frame whose time does not move forward (the same as the last, or earlier) is kept,
    in order, one tick of the 90 kHz clock after the last: the encoder refuses two frames
    at one time, which would end the video."""
    import av

    path = tmp_path / "out.mp4"
    times = [0.0, 0.04, 0.04, 0.08, 0.02]
    with VideoFileSink(path, 25.0) as sink:
        for i, t in enumerate(times):
            sink.write(np.full((48, 64, 3), 20 + 40 * i, np.uint8), t)
    with av.open(str(path)) as container:
        shown = [(float(f.time), float(f.to_ndarray(format="bgr24").mean()))
                 for f in container.decode(video=0)]
    assert [t for t, _ in shown] == pytest.approx([0.0, 0.04, 0.04 + 1 / 90000, 0.08,
                                                   0.08 + 1 / 90000], abs=1e-6)
    assert [round((level - 20) / 40) for _, level in shown] == [0, 1, 2, 3, 4]


def test_a_frame_with_a_time_before_0_is_shown_at_0(tmp_path):
    """The picture starts at 0 in either container: a first frame given a time before 0 (a
    caller's clock that started late) is shown at 0, and the next at its own time."""
    for name in ("early.mp4", "early.avi"):
        with VideoFileSink(tmp_path / name, 25.0) as sink:
            for i, t in enumerate([-0.2, 0.04, 0.08]):
                sink.write(np.full((48, 64, 3), 20 + 40 * i, np.uint8), t)
        assert frame_times(tmp_path / name) == pytest.approx([0.0, 0.04, 0.08], abs=1e-6), name


def test_an_avi_puts_each_frame_in_the_slot_nearest_its_time(tmp_path):
    """Times rounded to the millisecond (as Matroska stores them) fall a little before or
    after their frame's slot at 30 fps (0.033 s is slot 0.99): each frame goes to the
    nearest slot, so none is dropped as a second frame in one slot and none repeated."""
    import av

    path = tmp_path / "out.avi"
    times = [round(i / 30, 3) for i in range(8)]  # 0.0, 0.033, 0.067, 0.1, ...
    with VideoFileSink(path, 30.0) as sink:
        for i, t in enumerate(times):
            sink.write(np.full((48, 64, 3), 20 + 25 * i, np.uint8), t)
        assert sink.frames_dropped == 0 and sink.frames_repeated == 0
    with av.open(str(path)) as container:
        levels = [float(f.to_ndarray(format="bgr24").mean()) for f in container.decode(video=0)]
    assert [round((level - 20) / 25) for level in levels] == list(range(8))


@pytest.mark.parametrize("missing", [0, 297])
def test_an_mp4_with_a_frame_missing_reads_back_whole(tmp_path, missing):
    """A live run drops frames, and a phone skips some: the read-back finds the last frame by
    its time (a seek by frame number landed on nothing there, and a whole file was reported as
    cut short by a full disk, exit 2)."""
    times = [i / 30 for i in range(300) if i != missing]
    with VideoFileSink(tmp_path / "gap.mp4", fps=30.0) as sink:
        for i, pts_s in enumerate(times):
            sink.write(np.full((48, 64, 3), i % 200, np.uint8), pts_s)
    assert frame_times(tmp_path / "gap.mp4") == pytest.approx(times, abs=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gap.mp4"]


def test_sound_stays_with_a_variable_frame_rate(tmp_path):
    """A phone's video at 30 fps for its first second and 10 fps for its second (40 frames;
    read at its claimed rate they would end at 1.3 s): the picture keeps its times, and the
    sound, copied into .mp4 and encoded again for .avi, lasts as long as it."""
    times = [i / 30 for i in range(30)] + [1 + i / 10 for i in range(10)]
    source = write_video_with_sound(tmp_path / "phone.mp4", frames=40, seconds=2.0,
                                    frame_times=times)
    for name in ("out.mp4", "out.avi"):
        out = tmp_path / name
        with VideoFileSink(out, fps=30.0, audio_from=source) as sink:
            capture = cv2.VideoCapture(str(source))
            while (frame := capture.read()[1]) is not None:
                sink.write(frame, capture.get(cv2.CAP_PROP_POS_MSEC) / 1000)
            capture.release()
        seconds = sound_of(out)[1]
        shown = frame_times(out)
        if name == "out.mp4":
            assert shown == pytest.approx(times, abs=1e-3)
        else:
            assert shown == pytest.approx([i / 30 for i in range(58)])  # until 1.9 s at 30 fps
        # The sound ends with the last frame, shown for one frame's time at 30 fps.
        assert abs(seconds - (1.9 + 1 / 30)) < 0.03, (name, seconds)


def test_copied_sound_that_is_damaged_is_named_once_and_still_copied(tmp_path, caplog):
    """AAC is copied into .mp4 packet for packet; three packets overwritten with 0xFF no longer
    decode, which a player hears as a skip or a click: one warning says where, and the picture
    and the rest of the sound are written as before."""
    import av

    source = write_video_with_sound(tmp_path / "talk.mp4", frames=60, seconds=2.0)
    with av.open(str(source)) as container:
        packets = [(p.pos, p.size, float(p.pts * p.time_base))
                   for p in container.demux(container.streams.audio[0]) if p.size]
    data = bytearray(source.read_bytes())
    for pos, size, _ in packets[40:43]:
        data[pos:pos + size] = b"\xff" * size
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger="portrait.sink.audio")
    with VideoFileSink(tmp_path / "out.mp4", fps=30.0, audio_from=damaged) as sink:
        assert _copy_frames(damaged, sink, 60) == 60
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"the sound of '{damaged}' is damaged at {packets[40][2]:.2f} s ("), warnings
    assert "it is copied as it is, so players may skip or click there" in warnings[0]
    with av.open(str(tmp_path / "out.mp4")) as container:  # it does not all decode: by packet
        sound = container.streams.audio[0]
        copied = [p for p in container.demux(sound) if p.size]
        # every packet, the encoder's priming one before the first frame too
        assert sound.codec_context.name == "aac"
        assert len(copied) == len(packets) and packets[0][2] < 0
        assert float((copied[-1].pts + copied[-1].duration) * copied[-1].time_base) == \
            pytest.approx(2.0, abs=0.06)
    assert count_frames(tmp_path / "out.mp4")[:2] == (60, 60)


def test_the_track_marked_default_is_the_one_kept(tmp_path):
    source = write_video_with_sound(tmp_path / "two.mkv", frames=30, seconds=1.0, codec="flac",
                                    default_tone_hz=880.0)
    with VideoFileSink(tmp_path / "out.mp4", fps=30.0, audio_from=source) as sink:
        _copy_frames(source, sink, 30)
    assert abs(main_frequency(sound_of(tmp_path / "out.mp4")[2]) - 880.0) < 2.0


def test_a_video_without_sound_or_a_source_without_it_writes_the_picture_alone(tmp_path, caplog):
    silent = write_video(tmp_path / "silent.avi", frames=6)
    with caplog.at_level(logging.WARNING, logger="portrait.sink"):
        with VideoFileSink(tmp_path / "a.mp4", fps=30.0, audio_from=silent) as sink:
            _copy_frames(silent, sink, 6)
        with VideoFileSink(tmp_path / "b.mp4", fps=30.0) as sink:
            _copy_frames(write_video_with_sound(tmp_path / "t.mp4", 6, 1.0), sink, 6)
    for name in ("a.mp4", "b.mp4"):
        assert sound_of(tmp_path / name)[0] == "" and count_frames(tmp_path / name)[:2] == (6, 6)
    assert not caplog.records  # a silent clip is no problem to report


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd (Linux)")
@pytest.mark.parametrize("name", ["out.mp4", "out.avi"])
def test_a_finished_video_holds_no_descriptor_of_its_files(tmp_path, name):
    """The lock that marks a partial file as a running writer's is let go once the video is
    finished: a process that writes many videos (a batch of clips, the tests) keeps no
    descriptor open for each, nor a lock on the finished file."""
    path = tmp_path / name
    with VideoFileSink(path, 25.0) as sink:
        for i in range(3):
            sink.write(np.full((48, 64, 3), 40 * i, np.uint8))
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(os.path.realpath(tmp_path)):
            held.append(target)
    assert held == [] and path.is_file()


def test_a_video_out_that_is_a_link_is_finished_where_it_points(tmp_path):
    target = tmp_path / "videos" / "call.mp4"
    target.parent.mkdir()
    target.write_bytes(b"an earlier recording")
    link = tmp_path / "latest.mp4"
    link.symlink_to(target)
    with VideoFileSink(link, fps=30.0) as sink:
        for _ in range(3):
            sink.write(np.full((64, 96, 3), 128, np.uint8))
    assert link.is_symlink() and link.resolve() == target
    capture = cv2.VideoCapture(str(target))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 3
    assert sorted(p.name for p in target.parent.iterdir()) == ["call.mp4"]


# --- PNG frames and images ------------------------------------------------------------------------


def test_png_folder_names_and_content(tmp_path):
    folder = tmp_path / "frames"
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (8, 10, 3), np.uint8),
              rng.integers(0, 256, (8, 10, 4), np.uint8),
              rng.integers(0, 256, (8, 10), np.uint8)]
    with PngFolderSink(folder) as sink:
        for image in images:
            sink.write(image)
    assert sorted(p.name for p in folder.iterdir()) == ["000000.png", "000001.png", "000002.png",
                                                        OUTPUT_MARKER]  # and no temporary file
    for i, image in enumerate(images):
        back = cv2.imread(str(folder / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(back, image)  # lossless, alpha and grey kept


def test_png_folder_says_how_many_earlier_frames_it_replaces(tmp_path, caplog):
    """One frame was '1 numbered frames'."""
    frame = np.zeros((8, 10, 3), np.uint8)
    for count, words in ((1, "holds 1 numbered frame of"), (3, "holds 3 numbered frames of")):
        folder = tmp_path / str(count)
        with PngFolderSink(folder) as sink:
            for _ in range(count):
                sink.write(frame)
        caplog.clear()
        with caplog.at_level(logging.WARNING), PngFolderSink(folder) as sink:
            sink.write(frame)
        assert [words in r.getMessage() for r in caplog.records] == [True], caplog.text


def test_png_folder_never_replaces_the_users_frames_or_an_input(tmp_path):
    """Numbered PNGs in a folder the app did not mark are the user's: refused, untouched. In a
    marked folder, an earlier run's frame that is now an input (a background) is refused too."""
    frame = np.zeros((8, 10, 3), np.uint8)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    for name in ("000000.png", "000007.png"):
        cv2.imwrite(str(theirs / name), frame + 9)
    before = {p.name: p.read_bytes() for p in theirs.iterdir()}
    with pytest.raises(InputError, match=f"cannot write frames to '{theirs}': it holds numbered "
                                         "frames \\(000000.png, ...\\) that this app did not write"):
        PngFolderSink(theirs)
    assert {p.name: p.read_bytes() for p in theirs.iterdir()} == before
    ours = tmp_path / "ours"
    with PngFolderSink(ours) as sink:
        for _ in range(3):
            sink.write(frame)
    background = ours / "000002.png"
    with pytest.raises(InputError, match=f"refusing to overwrite the input '{background}'"):
        PngFolderSink(ours, protected=[background])
    with PngFolderSink(ours, protected=[tmp_path / "elsewhere.png"]) as sink:
        sink.write(frame + 1)  # an earlier run's frames are replaced, the later ones removed
    assert sorted(p.name for p in ours.glob("*.png")) == ["000000.png"]


def _change_folder(out: Path, moved: Path, change: str) -> str:
    """Do to the output folder ``out`` what ``change`` names, for real: "removed", "moved" (to
    ``moved``) or "replaced" (moved, and an empty folder made in its place); returns how the
    refusal words it."""
    import shutil

    if change == "removed":
        shutil.rmtree(out)
        return "removed or moved"
    out.rename(moved)
    if change == "replaced":
        out.mkdir()
        return "replaced by another"
    return "removed or moved"


@pytest.mark.parametrize("change", ["removed", "moved", "replaced"])
def test_png_folder_gone_after_the_first_frame_stops_the_run_and_is_not_made_again(tmp_path,
                                                                                   change):
    """The frames folder removed, moved away, or replaced by another after the first frame: the
    next frame is refused as the folder's (OutputGone, an OutputRefused: the run stops), saying
    so and what to do, where a removed folder's next frame failed as 'No such file or
    directory; choose another path' and a replaced one took the rest of the frames, unmarked.
    Nothing is written into the other folder, and close() leaves it alone: its 000005.png is
    not taken for the earlier run's frame past this run's last. A folder moved away keeps what
    was written into it."""
    from portrait.errors import OutputGone

    out, moved = tmp_path / "frames", tmp_path / "elsewhere"
    frame = np.zeros((4, 4, 3), np.uint8)
    with PngFolderSink(out) as earlier:  # an earlier run's 000000..000005.png
        for _ in range(6):
            earlier.write(frame)
    sink = PngFolderSink(out)
    sink.write(frame + 1)
    how = _change_folder(out, moved, change)
    if change == "replaced":
        cv2.imwrite(str(out / "000005.png"), frame + 9)
    for _ in range(2):  # the same for the next frame
        with pytest.raises(OutputGone) as raised:
            sink.write(frame + 2)
        assert str(raised.value) == (
            f"cannot write frames to '{out}': the folder was {how} during the run, with 1 frame "
            "this run wrote into it; run it again and leave the folder in place until it ends")
    sink.close()
    assert sink.frames_written == 1
    assert (sorted(p.name for p in out.iterdir()) == ["000005.png"] if change == "replaced"
            else not out.exists())
    if change == "moved":  # this run's first frame, the earlier run's others not yet removed
        assert sorted(p.name for p in moved.iterdir()) == [
            *(f"{i:06d}.png" for i in range(6)), OUTPUT_MARKER]
        assert cv2.imread(str(moved / "000000.png"))[0, 0, 0] == 1


def test_a_batch_into_a_folder_another_command_marked_replaces_none_of_its_files(tmp_path):
    """Numbered frames written into a folder of the user's (holiday.png there) mark it, as
    they replace only their own frames; an image batch into it took the mark for its own and
    replaced holiday.png unsaid, as an earlier batch's image. The batch now refuses that
    photo and keeps the file (a data tool's mark alike); a folder its own earlier batch
    marked, or a mark that names no command, still has its images replaced."""
    mine = tmp_path / "mine"
    mine.mkdir()
    cv2.imwrite(str(mine / "holiday.png"), np.full((4, 4, 3), 200, np.uint8))
    holiday = (mine / "holiday.png").read_bytes()
    with PngFolderSink(mine) as sink:
        sink.write(np.zeros((4, 4, 3), np.uint8))
    assert (mine / OUTPUT_MARKER).is_file()
    data = tmp_path / "data"
    data.mkdir()
    cv2.imwrite(str(data / "holiday.png"), np.full((4, 4, 3), 200, np.uint8))
    (data / OUTPUT_MARKER).write_text("A training data folder (train.txt, images, masks) "
                                      "written by python -m portrait.training.mine by portrait.")
    for folder in (mine, data):
        with ImageFolderSink(folder) as batch:
            with pytest.raises(InputError, match=f"'{folder / 'holiday.png'}' was there before "
                                                 "and this app did not write it"):
                batch.write(np.full((4, 4, 3), 7, np.uint8), "holiday")
            batch.write(np.full((4, 4, 3), 7, np.uint8), "new")  # the batch goes on
        assert (folder / "holiday.png").read_bytes() == holiday
    for folder, mark in ((tmp_path / "batch", None), (tmp_path / "by hand", "an earlier run's")):
        if mark is None:
            with ImageFolderSink(folder) as batch:
                batch.write(np.zeros((4, 4, 3), np.uint8), "holiday")
        else:
            folder.mkdir()
            cv2.imwrite(str(folder / "holiday.png"), np.zeros((4, 4, 3), np.uint8))
            (folder / OUTPUT_MARKER).write_text(mark)
        with ImageFolderSink(folder) as batch:
            batch.write(np.full((4, 4, 3), 7, np.uint8), "holiday")
            assert batch.replaced == 1
        assert cv2.imread(str(folder / "holiday.png"))[0, 0, 0] == 7


def test_write_image_png_keeps_alpha_and_jpeg_drops_it(tmp_path):
    bgra = np.zeros((6, 8, 4), np.uint8)
    bgra[..., 2], bgra[..., 3] = 255, 128
    write_image(tmp_path / "a.png", bgra)
    assert np.array_equal(cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED), bgra)
    write_image(tmp_path / "a.jpg", bgra)
    jpeg = cv2.imread(str(tmp_path / "a.jpg"), cv2.IMREAD_UNCHANGED)
    assert jpeg.shape == (6, 8, 3) and abs(int(jpeg[3, 3, 2]) - 255) <= 3
    # A 32-bit BMP's fourth byte is ignored by most viewers: the alpha is dropped, as for JPEG.
    write_image(tmp_path / "a.bmp", bgra)
    assert cv2.imread(str(tmp_path / "a.bmp"), cv2.IMREAD_UNCHANGED).shape == (6, 8, 3)
    matte = np.full((6, 8), 77, np.uint8)
    write_image(tmp_path / "m.png", matte)
    assert np.array_equal(cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED), matte)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bmp", "a.jpg", "a.png", "m.png"]


def _pixels(data: bytes) -> np.ndarray:
    """An encoded image's pixels as Pillow decodes them (RGB or RGBA, straight alpha)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGBA" if "A" in image.getbands() else "RGB"))


def _test_image(channels: int) -> np.ndarray:
    image = np.random.default_rng(5).integers(0, 256, (30, 44, channels), np.uint8)
    if channels == 4:
        image[:, :10, 3], image[:, 10:20, 3], image[:, 20:, 3] = 0, 128, 255
    return image


@pytest.mark.parametrize("name, channels", [
    ("out.png", 3), ("out.png", 4), ("out.jpg", 3), ("out.JPEG", 3), ("out.webp", 3),
    ("out.webp", 4), ("out.tiff", 3), ("out.tif", 4)])
def test_an_output_keeps_its_photos_colour_profile_and_date_with_the_same_pixels(
        tmp_path, name, channels):
    """A Display-P3 phone photo cut out or blurred looked duller in colour-managed viewers: the
    output had no colour profile, so they took its values for sRGB. Its profile is kept now,
    with the capture date and camera, and the pixels are those written before."""
    from PIL import Image

    exif = phone_exif()
    kept = Image.Exif()
    kept[0x010F], kept[0x0110], kept[0x0132] = exif[0x010F], exif[0x0110], exif[0x0132]
    kept[0x8769] = {0x9003: "2024:05:01 09:59:58", 0x9011: "+02:00"}
    metadata = PhotoMetadata(icc_profile=colour_profile(), exif=kept.tobytes()[6:])
    image = _test_image(channels)
    path = write_image(tmp_path / name, image, metadata=metadata)
    data = path.read_bytes()
    with Image.open(path) as written:
        assert written.info.get("icc_profile") == metadata.icc_profile
        tags = written.getexif()
        assert (tags.get(0x010F), tags.get(0x0110), tags.get(0x0132)) == (
            "Apple", "iPhone 15 Pro", "2024:05:01 10:00:05")
        if path.suffix.lower() not in (".tif", ".tiff"):  # a TIFF keeps the first directory
            assert tags.get_ifd(0x8769) == {0x9003: "2024:05:01 09:59:58", 0x9011: "+02:00"}
    ext = path.suffix.lower()
    before = cv2.imencode(ext, image, [cv2.IMWRITE_JPEG_QUALITY, 95] if "jp" in ext else [])[1]
    np.testing.assert_array_equal(_pixels(data), _pixels(before.tobytes()))
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # written whole, no temporary


def test_pillow_writes_the_same_pixels_and_metadata_where_opencv_keeps_none(tmp_path):
    """Where this OpenCV's encoder keeps no metadata for a type (before OpenCV 4.12, and TIFF
    in every release), Pillow encodes: the same pixels, the profile and the date."""
    from PIL import Image

    from portrait.sink.encode import _encode_pillow

    exif = Image.Exif()
    exif[0x0132] = "2024:05:01 10:00:05"
    metadata = PhotoMetadata(icc_profile=colour_profile(), exif=exif.tobytes()[6:])
    for ext in (".png", ".jpg", ".webp"):
        for channels in ((3, 4) if ext != ".jpg" else (3,)):
            image = _test_image(channels)
            data = _encode_pillow(image, ext, metadata)
            before = cv2.imencode(ext, image, [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg"
                                  else [])[1]
            np.testing.assert_array_equal(_pixels(data), _pixels(before.tobytes()))
            with Image.open(io.BytesIO(data)) as written:
                assert written.info.get("icc_profile") == metadata.icc_profile, ext
                assert written.getexif().get(0x0132) == "2024:05:01 10:00:05", ext


@pytest.mark.parametrize("name", ["out.png", "out.jpg", "out.webp"])
def test_a_photo_with_a_date_but_no_colour_profile_keeps_its_date(tmp_path, name):
    """Most photos from cameras and older phones carry EXIF and no profile: the date goes to
    the output too, not only with a profile."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0132] = "2024:05:01 10:00:05"
    path = write_image(tmp_path / name, _test_image(3),
                       metadata=PhotoMetadata(exif=exif.tobytes()[6:]))
    with Image.open(path) as written:
        assert written.getexif().get(0x0132) == "2024:05:01 10:00:05"
        assert "icc_profile" not in written.info


def test_a_profile_libpng_refuses_is_still_kept_and_a_matte_keeps_none(tmp_path):
    """libpng checks a profile before OpenCV writes it, and refuses one whose stated length is
    wrong; the PNG keeps it as a JPEG does (Pillow writes it). A grey matte keeps no colour
    profile (an RGB profile cannot describe it), nor a BMP any metadata."""
    from PIL import Image

    profile = colour_profile()
    malformed = (len(profile) + 4).to_bytes(4, "big") + profile[4:]
    image = _test_image(3)
    path = write_image(tmp_path / "odd.png", image, metadata=PhotoMetadata(icc_profile=malformed))
    with Image.open(path) as written:
        assert written.info.get("icc_profile") == malformed
    np.testing.assert_array_equal(cv2.imread(str(path)), image)
    matte = image[:, :, 0]
    path = write_image(tmp_path / "matte.png", matte, metadata=PhotoMetadata(icc_profile=profile))
    with Image.open(path) as written:
        assert "icc_profile" not in written.info
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), matte)
    path = write_image(tmp_path / "out.bmp", image, metadata=PhotoMetadata(icc_profile=profile))
    np.testing.assert_array_equal(cv2.imread(str(path)), image)


@pytest.mark.parametrize("name", ["cutout.tiff", "cutout.TIF"])
def test_a_transparent_tiff_marks_its_fourth_channel_as_alpha(tmp_path, name):
    """OpenCV wrote a BGRA TIFF without the ExtraSamples tag that says what the fourth channel
    is: libtiff warned, and some editors did not take it for transparency. It is marked
    unassociated (straight) alpha now, ExtraSamples = 2, which the cut-out's alpha is, and the
    pixels are the same; an opaque TIFF and a matte stay as they were."""
    from PIL import Image

    image = _test_image(4)
    path = write_image(tmp_path / name, image)
    with Image.open(path) as written:
        assert written.mode == "RGBA"
        assert written.tag_v2.get(338) == (2,)  # ExtraSamples: unassociated alpha
        assert written.tag_v2.get(259) == 5  # LZW, as OpenCV's
        assert written.tag_v2.get(317) == 2  # with its horizontal predictor: a smaller file
        pixels = np.asarray(written)
    np.testing.assert_array_equal(pixels, cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA))
    for kind, flat in (("RGB", _test_image(3)), ("L", _test_image(3)[:, :, 0])):
        path = write_image(tmp_path / f"flat_{kind}.tiff", flat)
        with Image.open(path) as written:
            assert written.mode == kind and 338 not in written.tag_v2
        np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), flat)


def test_write_image_replaces_an_old_output_atomically(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    write_image(path, np.zeros((2, 2, 3), np.uint8))
    assert cv2.imread(str(path)).shape == (2, 2, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, StopRequested])
def test_a_stop_that_lands_mid_write_leaves_no_half_written_file(tmp_path, stop):
    """Ctrl-C (KeyboardInterrupt) or a kill (StopRequested) arriving while a photo's bytes are
    being written: the old output stays as it was and no hidden temporary file is left in the
    output folder (a 36 MB '.b0.png.59921a31.tmp' was, after a Ctrl-C in a batch). The signal
    is delivered in the middle of the write itself, deterministically: a file-size limit makes
    the kernel send SIGXFSZ there, and its handler stops the run as Ctrl-C's does."""
    import resource

    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), np.uint8)  # ~200 KB PNG

    def handler(_signum, _frame):
        raise stop()

    previous = signal.signal(signal.SIGXFSZ, handler)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
    try:
        with pytest.raises(stop):
            write_image(path, image)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    assert path.read_bytes() == b"old"


def test_a_stop_mid_write_leaves_no_hidden_file_where_the_process_has_an_audit_hook(tmp_path):
    """As above, in a process with an audit hook (a sitecustomize, a security tool; one can
    never be removed, so in a process of its own): Python code then runs inside the cleanup's
    os.unlink, and the pending signal's handler with it, which raised the stop before the
    hidden file was gone. The cleanup tries again; the stop still stops the run."""
    script = f"""
import resource, signal, sys
import numpy as np
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from portrait.sink import write_image
sys.addaudithook(lambda event, args: None)
def handler(_signum, _frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGXFSZ, handler)
path = Path({str(tmp_path)!r}) / "out.png"
path.write_bytes(b"old")
image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), np.uint8)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, hard))
try:
    write_image(path, image)
except KeyboardInterrupt:
    print("stopped")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "stopped", done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    assert (tmp_path / "out.png").read_bytes() == b"old"


@pytest.mark.parametrize("stem", ["p" * 245, "é" * 124], ids=["ascii", "accented"])  # 249, 252 bytes
def test_a_photo_named_up_to_the_limit_is_written(tmp_path, stem):
    """An output name that fits the file system's 255 bytes: its hidden temporary name
    ('.NAME.<8 hex>.tmp', 14 bytes longer) did not, and the batch stopped at that photo with
    'cannot use '.../.ppp...png.a77627ab.tmp': File name too long'. The temporary name is
    shortened now; the output keeps its name, and nothing else is left."""
    from portrait.sink.paths import temporary_beside
    from portrait.sink.video import abandoned_partials

    with ImageFolderSink(tmp_path / "out") as sink:
        sink.write(np.zeros((4, 6, 3), np.uint8), name=stem)
    assert {p.name for p in (tmp_path / "out").iterdir()} == {f"{stem}.png", OUTPUT_MARKER}
    assert cv2.imread(str(tmp_path / "out" / f"{stem}.png")).shape == (4, 6, 3)
    # A video's partial file is named the same way, and found again by the next run.
    final = tmp_path / f"{stem[:-4]}.mp4"
    partial = temporary_beside(final, ".partial.mp4")
    assert len(os.fsencode(partial.name)) <= 255
    partial.write_bytes(b"")
    assert abandoned_partials(final, ".mp4") == [partial]


def test_write_image_refuses_the_input_and_bad_types(tmp_path):
    photo = tmp_path / "me.png"
    cv2.imwrite(str(photo), np.zeros((4, 4, 3), np.uint8))
    before = photo.read_bytes()
    with pytest.raises(InputError, match="refusing to overwrite the input"):
        write_image(tmp_path / "." / "me.png", np.ones((4, 4, 3), np.uint8), protected=[photo])
    with pytest.raises(InputError, match="refusing to overwrite the input"):
        ImageFileSink(photo, protected=[photo])
    assert photo.read_bytes() == before
    # every type it writes is named, as the README's Photo outputs lists them
    with pytest.raises(InputError, match=r"unsupported type '\.gif'; expected \.png, \.jpg, "
                                         r"\.jpeg, \.bmp, \.webp, \.tif or \.tiff$"):
        write_image(tmp_path / "x.gif", np.zeros((4, 4, 3), np.uint8))
    # no type at all: most likely a folder meant, which a / at the end makes
    with pytest.raises(InputError, match=r"noext': its name has no type; end it with \.png, "
                                         r"\.jpg, \.jpeg, \.bmp, \.webp, \.tif or \.tiff, or with / for a "
                                         r"folder$"):
        ImageFileSink(tmp_path / "noext")
    assert not (tmp_path / "noext").exists()
    with pytest.raises(ValueError, match="float64 != uint8"):
        write_image(tmp_path / "x.png", np.zeros((4, 4, 3)))


def test_write_image_refuses_an_input_named_through_a_folder_not_made_yet(tmp_path):
    """``new/../photo.png`` names the input ``photo.png`` once ``new`` is made: refused, and
    the photo stays as it was."""
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((8, 8, 3), 50, np.uint8))
    before = photo.read_bytes()
    with pytest.raises(InputError, match="refusing to overwrite the input"):
        write_image(tmp_path / "new" / ".." / "photo.png", np.zeros((8, 8, 3), np.uint8),
                    protected=[photo])
    assert photo.read_bytes() == before


def test_image_file_sink_writes_one_file(tmp_path):
    with ImageFileSink(tmp_path / "sub" / "out.png") as sink:
        sink.write(np.zeros((3, 5, 3), np.uint8), name="ignored")
    assert cv2.imread(str(tmp_path / "sub" / "out.png")).shape == (3, 5, 3)


def test_image_folder_sink_keeps_stems_and_protects_inputs(tmp_path):
    inputs = tmp_path / "photos"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "b.png"), np.zeros((4, 4, 3), np.uint8))
    before = (inputs / "b.png").read_bytes()
    sink = open_image_sink(inputs, batch=True, protected=[inputs / "b.png"])
    assert isinstance(sink, ImageFolderSink)
    image = np.full((4, 4, 3), 9, np.uint8)
    sink.write(image, "a")  # a.jpg -> a.png: fine
    with pytest.raises(InputError, match="refusing to overwrite the input"):
        sink.write(image, "b")  # b.png is an input
    with pytest.raises(InputError, match="already written for another input named 'a'"):
        sink.write(image, "a")  # a.jpeg after a.jpg
    assert (inputs / "b.png").read_bytes() == before
    assert sink.frames_written == 1 and (inputs / "a.png").exists()


def test_a_disk_that_turns_read_only_mid_batch_is_full_for_every_photo_to_come(tmp_path):
    """A disk remounted read-only (ext4 does so after an error) refuses every later file, as a
    full one does: OutputFull, which stops a batch, not an InputError for each photo left. A
    tmpfs in a user namespace of its own, remounted read-only after the first photo."""
    disk = tmp_path / "disk"
    disk.mkdir()
    code = ("import sys, numpy as np, subprocess\n"
            "from portrait.sink import ImageFolderSink\n"
            "sink = ImageFolderSink(sys.argv[1])\n"
            "sink.write(np.zeros((4, 4, 3), np.uint8), 'first')\n"
            "subprocess.run(['mount', '-o', 'remount,ro', sys.argv[1]], check=True)\n"
            "try:\n"
            "    sink.write(np.zeros((4, 4, 3), np.uint8), 'second')\n"
            "except Exception as error:\n"
            "    print(type(error).__name__, error)\n")
    done = python_on_a_tmpfs(disk, code)
    assert done.stdout.startswith("OutputFull cannot write image "), (done.stdout, done.stderr)
    assert "Read-only file system" in done.stdout, done.stdout


def lock(folder: Path) -> Path:
    """Make ``folder`` (which is there) read-only for this user; skips the test where it is
    writable all the same (root)."""
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        folder.chmod(0o755)
        pytest.skip("a read-only folder is writable for this user (root)")
    return folder


@pytest.mark.parametrize("change", ["read-only parent", "a file in the way",
                                    "a file in its place"])
def test_a_batch_folder_that_cannot_be_made_at_the_first_image_refuses_the_batch(tmp_path,
                                                                                 change):
    """The folder, checked at construction, is made as the first image is written: where it
    cannot be made then (the folder above it made read-only, or replaced by a file, or a file
    put where it would be, since the check), the error is the folder's (OutputRefused, which
    stops a batch), not the photo's, and says what to do; nothing is made."""
    from portrait.errors import OutputFull, OutputRefused

    parent = tmp_path / "parent"
    parent.mkdir()
    out = parent / "cutouts"
    sink = ImageFolderSink(out)
    why = "cannot create folder '{out}' ({reason})"
    if change == "read-only parent":
        lock(parent)
        reason = "Permission denied"
    elif change == "a file in the way":
        parent.rmdir()
        parent.write_bytes(b"a file")
        reason = "Not a directory"
    else:
        out.write_bytes(b"a file")
        why, reason = "'{out}' is a file, not a folder", ""
    for _ in range(2):  # the same for the next photo: no half-made folder in between
        with pytest.raises(OutputRefused) as raised:
            sink.write(np.zeros((4, 4, 3), np.uint8), "a")
        assert not isinstance(raised.value, OutputFull)
        assert str(raised.value) == (f"cannot write images to '{out}': "
                                     f"{why.format(out=out, reason=reason)}; choose another --out")
    assert sink.frames_written == 0 and not out.is_dir()


def test_a_batch_folder_made_read_only_mid_batch_refuses_the_batch_not_the_photo(tmp_path):
    """A folder made read-only after the first image: the next image's failure is the folder's
    (OutputRefused, which stops a batch, naming the folder), not that photo's alone."""
    from portrait.errors import OutputRefused

    out = tmp_path / "cutouts"
    sink = ImageFolderSink(out)
    sink.write(np.zeros((4, 4, 3), np.uint8), "a")
    lock(out)
    try:
        with pytest.raises(OutputRefused, match=rf"^cannot write image '{re.escape(str(out))}"
                                                rf"/b\.png': folder '{re.escape(str(out))}' is not "
                                                r"writable \(Permission denied\); choose "
                                                "another --out$"):
            sink.write(np.zeros((4, 4, 3), np.uint8), "b")
    finally:
        out.chmod(0o755)
    assert sorted(p.name for p in out.iterdir()) == ["a.png", OUTPUT_MARKER]


@pytest.mark.parametrize("change", ["removed", "moved", "replaced"])
def test_a_batch_folder_gone_after_the_first_image_refuses_the_batch_and_is_not_made_again(
        tmp_path, change):
    """The folder removed, moved away, or replaced by another after the first image: the next
    image's failure is the folder's (OutputGone, an OutputRefused: the batch stops), saying so
    and what to do; the folder is not made again (it was, unmarked, with the rest of the photos
    alone in it), nor is anything written into the other folder. A folder moved away keeps what
    was written into it."""
    from portrait.errors import OutputGone

    out, moved = tmp_path / "cutouts", tmp_path / "elsewhere"
    sink = ImageFolderSink(out)
    sink.write(np.zeros((4, 4, 3), np.uint8), "a")
    how = _change_folder(out, moved, change)
    for name in ("b", "c"):  # the same for the next photo
        with pytest.raises(OutputGone) as raised:
            sink.write(np.zeros((4, 4, 3), np.uint8), name)
        assert str(raised.value) == (
            f"cannot write images to '{out}': the folder was {how} during the batch, with 1 image "
            "this batch wrote into it; run the batch again and leave the folder in place until "
            "it ends")
    sink.close()
    assert sink.frames_written == 1
    assert (sorted(p.name for p in out.iterdir()) == [] if change == "replaced"
            else not out.exists())
    if change != "removed":
        assert sorted(p.name for p in moved.iterdir()) == ["a.png", OUTPUT_MARKER]


def test_an_image_written_without_making_its_folder_refuses_a_folder_not_there(tmp_path):
    """write_image(make_folder=False), as a batch writes after its first image: a folder that
    is not there is the folder's refusal (OutputRefused), and none is made."""
    from portrait.errors import OutputRefused

    path = tmp_path / "gone" / "a.png"
    with pytest.raises(OutputRefused, match=rf"^cannot write image '{re.escape(str(path))}': "
                                            rf"folder '{re.escape(str(path.parent))}' is not "
                                            "there; choose another --out$"):
        write_image(path, np.zeros((4, 4, 3), np.uint8), make_folder=False)
    assert not path.parent.exists()
    assert write_image(path, np.zeros((4, 4, 3), np.uint8)).is_file()  # made by default


def test_a_photo_of_its_own_that_cannot_be_written_is_no_refusal_of_the_folder(tmp_path):
    """A failure of one photo's file (here its name is taken by a folder, in a folder the app
    marked) stays that photo's: an InputError, not OutputRefused, so the batch goes on, and the
    next photo is written."""
    from portrait.errors import OutputRefused

    out = tmp_path / "cutouts"
    ImageFolderSink(out).write(np.zeros((4, 4, 3), np.uint8), "first")  # made and marked
    (out / "a.png").mkdir()
    sink = ImageFolderSink(out)
    with pytest.raises(InputError, match="it is a folder") as raised:
        sink.write(np.zeros((4, 4, 3), np.uint8), "a")
    assert not isinstance(raised.value, OutputRefused)
    sink.write(np.zeros((4, 4, 3), np.uint8), "b")
    assert sink.frames_written == 1 and cv2.imread(str(out / "b.png")) is not None


def test_a_photo_a_full_disk_cannot_take_is_output_full_and_leaves_no_hidden_file(tmp_path):
    """A disk with room for the folder's check (an empty file) but not for the photo: the
    write itself fails, with OutputFull (which stops a batch: no later photo fits either),
    and the hidden file it was written to is gone. A 16 KB tmpfs in a user namespace of its
    own; the photo, noise, is about 120 KB as a PNG."""
    disk = tmp_path / "disk"
    disk.mkdir()
    code = ("import os, sys, numpy as np\n"
            "from portrait.sink import write_image\n"
            "noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), np.uint8)\n"
            "try:\n"
            "    write_image(os.path.join(sys.argv[1], 'photo.png'), noise)\n"
            "except Exception as error:\n"
            "    print(type(error).__name__, error)\n"
            "print(sorted(os.listdir(sys.argv[1])))\n")
    done = python_on_a_tmpfs(disk, code, "16k")
    error, listing = done.stdout.splitlines()
    assert error == (f"OutputFull cannot write image '{disk}/photo.png': No space left on "
                     "device; free space or choose another place"), (done.stdout, done.stderr)
    assert listing == "[]"


def test_folders_made_for_images_of_which_none_fits_on_the_disk_are_removed(tmp_path):
    """A disk with room for the folders and the mark but not for the first photo (a 16 KB
    tmpfs in a user namespace of its own; the photo, noise, is about 120 KB as a PNG): the
    folders a batch made for it (two levels) and those write_image made for one photo are gone
    once the write fails and the sink is closed; a folder that was there, empty, is left as it
    was, without the mark the batch wrote into it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    code = ("import os, sys, numpy as np\n"
            "from portrait.sink import ImageFolderSink, write_image\n"
            "disk = sys.argv[1]\n"
            "noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), np.uint8)\n"
            "os.mkdir(os.path.join(disk, 'empty'))\n"
            "for folder in (os.path.join(disk, 'new', 'cutouts'), os.path.join(disk, 'empty')):\n"
            "    sink = ImageFolderSink(folder)\n"
            "    try:\n"
            "        sink.write(noise, 'photo')\n"
            "    except Exception as error:\n"
            "        print(type(error).__name__, sorted(os.listdir(folder)))\n"
            "    sink.close()\n"
            "try:\n"
            "    write_image(os.path.join(disk, 'one', 'deeper', 'photo.png'), noise)\n"
            "except Exception as error:\n"
            "    print(type(error).__name__)\n"
            "print(sorted(os.path.relpath(os.path.join(top, name), disk)\n"
            "             for top, folders, files in os.walk(disk) for name in folders + files))\n")
    done = python_on_a_tmpfs(disk, code, "16k")
    assert done.stdout.splitlines() == [
        f"OutputFull ['{OUTPUT_MARKER}']",  # made and marked, before the photo failed
        f"OutputFull ['{OUTPUT_MARKER}']",
        "OutputFull",
        "['empty']"], (done.stdout, done.stderr)


@pytest.mark.parametrize("parts, refusal", [
    (("a", "b", "c"), "cannot create folder '{}/a/b/c' (No space left on device)"),
    (("a", "b"), "folder '{}/a/b' is not writable (No space left on device)")])
def test_folders_for_an_output_are_made_all_or_none(tmp_path, parts, refusal):
    """A disk out of inodes after two new folders (a tmpfs of three, its root's included, in a
    user namespace of its own): making a/b/c fails at c, and making a/b fails at the check of
    its first file, each with OutputFull, which stops a batch; and a and a/b, made on the way,
    are removed again."""
    disk = tmp_path / "disk"
    disk.mkdir()
    code = ("import os, sys\n"
            "from pathlib import Path\n"
            "from portrait.sink.paths import _prepare_folder\n"
            "try:\n"
            f"    _prepare_folder(Path(sys.argv[1], *{parts!r}), 'frames')\n"
            "except Exception as error:\n"
            "    print(type(error).__name__, error)\n"
            "print(os.listdir(sys.argv[1]))\n")
    done = python_on_a_tmpfs(disk, code, "64k,nr_inodes=3")
    assert done.stdout.splitlines() == [
        f"OutputFull cannot write frames: {refusal.format(disk)}; choose another --out",
        "[]"], (done.stdout, done.stderr)


def test_a_folder_that_was_there_is_kept_however_the_path_reaches_it(tmp_path):
    """An empty folder of the user's reached through a ".." of one made for the output
    (new/../mine/out): of the folders made for an output of which nothing was written, only
    those this run made are removed (new, out), never mine, though its path names a folder
    that was not there; a photo refused by the encoder, a batch, frames and a video alike."""
    mine = tmp_path / "mine"
    mine.mkdir()
    through = tmp_path / "new" / ".." / "mine"
    wide = np.zeros((1, 16384, 3), np.uint8)  # WebP takes at most 16383 pixels a side
    with pytest.raises(InputError, match="WebP limit"):
        write_image(through / "one" / "wide.webp", wide)
    with ImageFolderSink(through / "cutouts", ext=".webp") as sink:
        with pytest.raises(InputError, match="WebP limit"):
            sink.write(wide, "a")
    PngFolderSink(through / "frames").close()
    VideoFileSink(through / "video" / "out.mp4", fps=30.0).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    assert list(mine.iterdir()) == []


def test_a_photo_the_encoder_refuses_leaves_no_folder_made_for_it(tmp_path):
    """Any failed write, here the encoder's (WebP takes at most 16383 pixels a side), leaves no
    folder made for it: write_image's are removed as it fails, a batch's when the sink closes
    with no image written. A folder that holds an earlier run's images keeps them and its
    mark; one that got an image keeps it."""
    wide = np.zeros((1, 16384, 3), np.uint8)
    with pytest.raises(InputError, match="WebP limit of 16383 pixels"):
        write_image(tmp_path / "one" / "deeper" / "wide.webp", wide)
    assert list(tmp_path.iterdir()) == []
    with ImageFolderSink(tmp_path / "new" / "cutouts", ext=".webp") as sink:
        for name in ("a", "b"):  # each photo refused, the batch goes on
            with pytest.raises(InputError, match="WebP limit"):
                sink.write(wide, name)
        assert sorted(p.name for p in (tmp_path / "new" / "cutouts").iterdir()) == [OUTPUT_MARKER]
    assert list(tmp_path.iterdir()) == []
    earlier = tmp_path / "earlier"
    with ImageFolderSink(earlier, ext=".webp") as sink:
        sink.write(np.zeros((4, 4, 3), np.uint8), "a")
        with pytest.raises(InputError, match="WebP limit"):
            sink.write(wide, "b")
    with ImageFolderSink(earlier, ext=".webp") as sink:  # a later run that writes nothing
        with pytest.raises(InputError, match="WebP limit"):
            sink.write(wide, "c")
    assert sorted(p.name for p in earlier.iterdir()) == ["a.webp", OUTPUT_MARKER]


def _noise_video_script(out_parts: str, frames: int) -> str:
    """A script for :func:`python_on_a_tmpfs`: ``frames`` frames of noise (320x240) into a
    VideoFileSink at 30 fps under the disk (``out_parts``: the path's parts after it, as
    Python literals), printing the error it ends with, if any, then the disk's listing."""
    return ("import os, sys, numpy as np\n"
            "from portrait.sink import VideoFileSink\n"
            "noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)\n"
            "try:\n"
            f"    with VideoFileSink(os.path.join(sys.argv[1], {out_parts}), 30.0) as sink:\n"
            f"        for _ in range({frames}):\n"
            "            sink.write(noise)\n"
            "except Exception as error:\n"
            "    print(type(error).__name__, error)\n"
            "print(sorted(os.listdir(sys.argv[1])))\n")


def test_a_video_a_full_disk_stops_before_any_of_it_plays_leaves_nothing(tmp_path):
    """A disk with room for the folder's check but not for the video's first second: the
    write that fails ends the run with OutputFull, and the partial file, of which nothing
    plays, is removed, not left to fill the disk (an 8 KB tmpfs in a user namespace of its
    own; frames of noise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = python_on_a_tmpfs(disk, _noise_video_script("'out.mp4'", 90), "8k")
    error, listing = done.stdout.splitlines()
    assert re.fullmatch(rf"OutputFull cannot write video '{re.escape(str(disk))}/out\.mp4': No "
                        r"space left on device after \d+ frames; nothing of it plays, so it was "
                        r"removed; free space or choose another --out", error), done
    assert listing == "[]"


def test_an_mp4_no_fragment_of_which_reached_a_full_disk_is_said_to_be_full(tmp_path):
    """A disk full before the .mp4's first fragment (an 8 KB tmpfs in a user namespace of its
    own; a second of noise): the fragmenting muxer reports no failed write, so the frames are
    found missing at the end; the disk has no room for them, so it is the full-disk error
    (OutputFull, "No space left on device"), as where a write is refused, not a plain one that
    asks whether the disk is full. Nothing of it plays: the file and its folder are removed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = python_on_a_tmpfs(disk, _noise_video_script("'new', 'out.mp4'", 30), "8k")
    assert done.stdout.splitlines() == [
        f"OutputFull cannot write video '{disk}/new/out.mp4': No space left on device after 30 "
        "frames (0 of the 30 stored reached the disk); nothing of it plays, so it was removed; "
        "free space or choose another --out", "[]"], (done.stdout, done.stderr)


def test_an_mp4_that_lost_frames_on_a_disk_with_room_is_not_said_to_be_full(tmp_path):
    """The other side of the check above: a recording cut (here, by hand, to half its size
    while it records) on a disk with room for what it lacks is no full disk: InputError, not
    OutputFull, and what of it plays is kept."""
    from portrait.errors import OutputFull

    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)
    sink = VideoFileSink(tmp_path / "out.mp4", fps=30.0)
    for _ in range(90):
        sink.write(noise)
    (partial,) = tmp_path.glob(".out.mp4.*.partial.mp4")
    os.truncate(partial, partial.stat().st_size // 2)
    with pytest.raises(InputError, match=r"^cannot write video .*: \d+ of the 90 frames stored "
                                         r"reached the disk \(is it full\?\); the partial file") \
            as raised:
        sink.close()
    assert not isinstance(raised.value, OutputFull)
    assert [p.name for p in tmp_path.iterdir()] == [partial.name]


# Run in a process of its own: 60 frames of noise into a .mp4, then its close() under a real
# memory cap (RLIMIT_AS, as ``ulimit -v`` sets it) HEADROOM_MB MB above what the process maps
# now; prints the error close() raised, then the folder's listing.
_CLOSED_UNDER_A_MEMORY_CAP = """
import os, resource, sys
import numpy as np
sys.path.insert(0, {root!r})
from portrait.sink.video import VideoFileSink

noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)
sink = VideoFileSink({out!r}, fps=30.0)
for _ in range(60):
    sink.write(noise)
with open("/proc/self/status") as status:
    mapped = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (mapped + {headroom_mb} * 2**20, resource.RLIM_INFINITY))
try:
    sink.close()
except Exception as error:
    print(type(error).__name__, error)
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print(sorted(os.listdir({folder!r})))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads its size from /proc")
@pytest.mark.parametrize("headroom_mb, step", [(8, "reading it back to check it"),
                                               (-8, "copying it with its index first")])
def test_an_mp4_that_memory_fails_while_finishing_is_not_blamed_on_the_disk(tmp_path,
                                                                            headroom_mb, step):
    """Memory that runs out as a closed .mp4 is finished is said to be memory, not a full disk
    (a cap 8 MB above the process's size: the copy with the index first is written, but
    FFmpeg's decoder cannot map its threads' stacks to read it back; 8 MB below it, the copy
    itself gets none), and the whole recording, which a read starved of memory took for a
    file of which nothing plays and removed, is kept as written and named; the copy goes."""
    import av

    out = tmp_path / "out.mp4"
    done = subprocess.run([sys.executable, "-c", _CLOSED_UNDER_A_MEMORY_CAP.format(
        root=str(ROOT), out=str(out), headroom_mb=headroom_mb, folder=str(tmp_path))],
        capture_output=True, text=True, timeout=120)
    lines = done.stdout.splitlines()
    if headroom_mb > 0 and lines == ["['out.mp4']"]:
        pytest.skip("the read-back took no memory the cap refused here (a decoder without "
                    "threads on one core, or small thread stacks: ulimit -s)")
    (partial,) = tmp_path.glob(".out.mp4.*.partial.mp4")
    assert len(lines) == 2, (done.stdout, done.stderr)
    assert re.fullmatch(
        rf"InputError cannot finish video '{re.escape(str(out))}': memory ran out while {step} "
        rf"\((Cannot allocate memory|Resource temporarily unavailable)\); the whole recording "
        rf"is '{re.escape(str(partial))}' \(a fragmented \.mp4, which plays\); close other "
        r"programs or raise this run's memory limit \(ulimit -v\), and run again",
        lines[0]), (done.stdout, done.stderr)
    assert lines[1] == str([partial.name])
    assert playable(av, partial) == (60, 2.0)
    assert decodable_frames(partial) == 60


def test_memory_is_told_from_the_disk_by_what_the_error_says():
    """A MemoryError Python raises (it has no errno) is memory; a full disk (/dev/full's
    ENOSPC) and a missing file are not, however the sink reports them."""
    from portrait.errors import ran_out_of_memory

    with pytest.raises(MemoryError) as memory:
        bytearray(1 << 62)
    assert ran_out_of_memory(memory.value)
    if Path("/dev/full").exists():
        with pytest.raises(OSError) as full:
            with open("/dev/full", "wb", buffering=0) as disk:
                disk.write(b"x")
        assert full.value.errno == errno.ENOSPC and not ran_out_of_memory(full.value)
    with pytest.raises(OSError) as missing:
        open("/nonexistent/folder/file", "rb")
    assert not ran_out_of_memory(missing.value)


def test_stream_outputs_a_full_disk_takes_nothing_of_leave_no_folder(tmp_path):
    """A disk with room for folders and a mark but for no frame (an 8 KB tmpfs in a user
    namespace of its own; frames of noise): a .mp4, a .avi and PNG frames, each into folders
    made for it (two levels), end with OutputFull and, once closed, leave none of those folders
    nor the frames' mark; a folder that was there is left, without the mark. Then, the disk
    filled to its last byte, frames whose folder is made but whose mark does not fit: the
    sink refuses at construction, and removes the folders it made."""
    disk = tmp_path / "disk"
    disk.mkdir()
    code = ("import os, sys, numpy as np\n"
            "from portrait.sink import PngFolderSink, VideoFileSink\n"
            "disk = sys.argv[1]\n"
            "noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)\n"
            "os.mkdir(os.path.join(disk, 'empty'))\n"
            "def listing():\n"
            "    return sorted(os.path.relpath(os.path.join(top, name), disk) for top, folders,\n"
            "                  files in os.walk(disk) for name in folders + files)\n"
            "outs = [('mp4', lambda: VideoFileSink(os.path.join(disk, 'new', 'a', 'out.mp4'), 30)),\n"
            "        ('avi', lambda: VideoFileSink(os.path.join(disk, 'new', 'a', 'out.avi'), 30)),\n"
            "        ('png', lambda: PngFolderSink(os.path.join(disk, 'new', 'frames'))),\n"
            "        ('old', lambda: PngFolderSink(os.path.join(disk, 'empty')))]\n"
            "for kind, make in outs:\n"
            "    sink = make()\n"
            "    try:\n"
            "        for _ in range(90):\n"
            "            sink.write(noise)\n"
            "    except Exception as error:\n"
            "        print(kind, type(error).__name__)\n"
            "    sink.close()\n"
            "    print(listing())\n"
            "filler = os.open(os.path.join(disk, 'filler'), os.O_WRONLY | os.O_CREAT)\n"
            "try:\n"
            "    while True:\n"
            "        os.write(filler, b'x' * 512)\n"
            "except OSError:\n"
            "    os.close(filler)\n"
            "try:\n"
            "    PngFolderSink(os.path.join(disk, 'new', 'frames'))\n"
            "except Exception as error:\n"
            "    print(type(error).__name__, error)\n"
            "print(listing())\n")
    done = python_on_a_tmpfs(disk, code, "8k")
    assert done.stdout.splitlines() == [
        "mp4 OutputFull", "['empty']",
        "avi OutputFull", "['empty']",
        "png OutputFull", "['empty']",
        "old OutputFull", "['empty']",
        f"OutputFull cannot write the output mark '{disk}/new/frames/{OUTPUT_MARKER}': No space "
        "left on device; free space or choose another place",
        "['empty', 'filler']"], (done.stdout, done.stderr)


@pytest.mark.parametrize("ext", [".mp4", ".avi"])
def test_a_video_whose_first_frame_the_encoder_refuses_leaves_no_folder_made_for_it(tmp_path, ext):
    """A real encoder failure at the first frame (a frame 65536 pixels wide, more than H.264
    or JPEG take): the video ends with an InputError, and the folders made for it (two levels)
    are gone; into a folder that was there, its other file is left as it was."""
    wide = np.zeros((2, 65536, 3), np.uint8)
    with pytest.raises(InputError, match="refused frame 1, 65536x2 pixels .*; nothing of it "
                                         "plays, so it was removed"):
        with VideoFileSink(tmp_path / "new" / "a" / f"wide{ext}", fps=30.0) as sink:
            sink.write(wide)
    assert list(tmp_path.iterdir()) == []
    there = tmp_path / "there"
    there.mkdir()
    (there / "notes.txt").write_text("theirs")
    with pytest.raises(InputError, match="nothing of it plays"):
        with VideoFileSink(there / f"wide{ext}", fps=30.0) as sink:
            sink.write(wide)
    assert [(p.name, p.read_text()) for p in there.iterdir()] == [("notes.txt", "theirs")]


@pytest.mark.parametrize("ext, width, codec, other", [(".mp4", 20000, "H.264", ".avi"),
                                                      (".avi", 65536, "MJPEG", ".mp4")])
def test_a_frame_the_encoder_refuses_is_said_to_be_the_encoders_not_the_disks(tmp_path, ext,
                                                                               width, codec,
                                                                               other):
    """A real refusal (x264 takes frames up to 16384 pixels wide, FFmpeg's MJPEG up to 65535):
    the error names the codec, the frame and its size, and says what to write instead, not to
    free space (the disk is not full). A 20000-pixel-wide frame the .mp4 refuses, a .avi takes,
    as the error says."""
    from portrait.errors import OutputFull

    out = tmp_path / f"wide{ext}"
    with pytest.raises(InputError) as raised:
        with VideoFileSink(out, fps=30.0) as sink:
            sink.write(np.zeros((2, width, 3), np.uint8))
    assert not isinstance(raised.value, OutputFull)
    assert re.fullmatch(
        re.escape(f"cannot write video '{out}': the {codec} encoder refused frame 1, {width}x2 "
                  "pixels (") + r"[^;]+" + re.escape("); nothing of it plays, so it was removed; "
                                                     f"use smaller frames, or write a {other} or "
                                                     "PNG frames (--out DIR/)"),
        str(raised.value)), str(raised.value)
    assert "free space" not in str(raised.value) and list(tmp_path.iterdir()) == []
    if ext == ".mp4":  # what the error offers works
        with VideoFileSink(tmp_path / f"wide{other}", fps=30.0) as sink:
            sink.write(np.zeros((2, width, 3), np.uint8))
        assert count_frames(tmp_path / f"wide{other}")[:2] == (1, 1)


def test_stream_outputs_stopped_before_their_first_frame_leave_nothing_of_theirs(tmp_path):
    """A stream stopped between its output's opening and its first frame (Ctrl-C, a kill, a
    source that ends): a video's folders and a frames folder it made are removed as the sink
    closes; a folder that was there, empty, is left without the mark; an earlier run's frames
    are left as they were, with their mark, where this run wrote none to replace them."""
    VideoFileSink(tmp_path / "new" / "a" / "out.mp4", fps=30.0).close()
    VideoFileSink(tmp_path / "new" / "a" / "out.avi", fps=30.0).close()
    PngFolderSink(tmp_path / "new" / "frames").close()
    assert list(tmp_path.iterdir()) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    with PngFolderSink(empty):
        assert sorted(p.name for p in empty.iterdir()) == [OUTPUT_MARKER]
    assert list(empty.iterdir()) == []
    earlier = tmp_path / "earlier"
    with PngFolderSink(earlier) as sink:
        for value in (1, 2, 3):
            sink.write(np.full((8, 10, 3), value, np.uint8))
    before = {p.name: p.read_bytes() for p in earlier.iterdir()}
    with PngFolderSink(earlier):
        pass
    assert {p.name: p.read_bytes() for p in earlier.iterdir()} == before


def test_names_that_differ_only_in_case_are_one_output_where_the_disk_ignores_case(tmp_path):
    """IMG_1.jpg and img_1.png give OUT/IMG_1.png and OUT/img_1.png: one file on a disk that
    ignores case (macOS, Windows), where the second replaced the first unsaid. The second is
    refused there as an exact duplicate is; where the disk tells them apart (Linux) both are
    written. Run on this machine's own disk, so one branch runs here."""
    probe = tmp_path / "Probe"
    probe.touch()
    ignores_case = (tmp_path / "probe").exists()
    out = tmp_path / "out"
    sink = ImageFolderSink(out)
    sink.write(np.full((4, 4, 3), 10, np.uint8), "IMG_1")
    if ignores_case:
        with pytest.raises(InputError, match="is the file already written for another input "
                                             "named 'IMG_1'.*ignores case; rename one of them"):
            sink.write(np.full((4, 4, 3), 20, np.uint8), "img_1")
        assert cv2.imread(str(out / "IMG_1.png"))[0, 0, 0] == 10
    else:
        sink.write(np.full((4, 4, 3), 20, np.uint8), "img_1")
        assert cv2.imread(str(out / "IMG_1.png"))[0, 0, 0] == 10
        assert cv2.imread(str(out / "img_1.png"))[0, 0, 0] == 20
    assert sink.frames_written == (1 if ignores_case else 2)


def test_a_name_that_leads_to_a_file_written_in_this_run_is_refused_not_written_over(tmp_path):
    """Where two names lead to one file, as IMG_1.png and img_1.png do on a disk that ignores
    case, the second photo is refused and the first output kept. Here the two names are made
    with a link in a folder an earlier run marked as its own, so that it runs on any disk."""
    out = tmp_path / "out"
    out.mkdir()
    (out / OUTPUT_MARKER).write_text("an earlier run's")
    (out / "img_1.png").symlink_to("IMG_1.png")
    sink = ImageFolderSink(out)
    sink.write(np.full((4, 4, 3), 10, np.uint8), "IMG_1")
    with pytest.raises(InputError, match=f"output '{out / 'img_1.png'}' is the file already "
                                         "written for another input named 'IMG_1': the disk of "
                                         f"'{out}' ignores case; rename one of them"):
        sink.write(np.full((4, 4, 3), 20, np.uint8), "img_1")
    assert cv2.imread(str(out / "IMG_1.png"))[0, 0, 0] == 10
    sink.write(np.full((4, 4, 3), 30, np.uint8), "other")  # the batch carries on
    assert sink.frames_written == 2


def test_image_folder_sink_never_replaces_a_file_it_did_not_write(tmp_path):
    """A batch into the user's own folder adds its images but refuses, one by one, to replace
    the user's files; into a folder it wrote before, it replaces its own earlier images."""
    image = np.full((4, 4, 3), 9, np.uint8)
    theirs = tmp_path / "pictures"
    theirs.mkdir()
    (theirs / "holiday.png").write_bytes(b"the user's own")
    sink = ImageFolderSink(theirs)
    sink.write(image, "new")
    with pytest.raises(InputError, match="holiday.png' was there before and this app did not "
                                         "write it; move it or choose a new --out folder"):
        sink.write(image, "holiday")
    assert (theirs / "holiday.png").read_bytes() == b"the user's own"
    # A link of theirs is theirs too, where it leads nowhere (a drive not mounted).
    (theirs / "trip.png").symlink_to(tmp_path / "unmounted" / "trip.png")
    with pytest.raises(InputError, match="trip.png' was there before"):
        sink.write(image, "trip")
    assert (theirs / "trip.png").is_symlink()
    assert not (theirs / OUTPUT_MARKER).exists()
    ours = tmp_path / "cutouts"
    ImageFolderSink(ours).write(image, "holiday")
    ImageFolderSink(ours).write(image + 1, "holiday")  # a second run replaces the first's
    assert cv2.imread(str(ours / "holiday.png"))[0, 0, 0] == 10
    assert sorted(p.name for p in ours.iterdir()) == ["holiday.png", OUTPUT_MARKER]
    # A folder the user made for it and left empty is as good as a new one: marked, so the
    # next run replaces this one's images.
    made = tmp_path / "made"
    made.mkdir()
    ImageFolderSink(made).write(image, "holiday")
    ImageFolderSink(made).write(image + 1, "holiday")
    assert cv2.imread(str(made / "holiday.png"))[0, 0, 0] == 10


def test_a_report_never_replaces_a_file_of_another_type(tmp_path):
    """--stats replaces an earlier report (.json), never a photo, a video or a model that is
    there under the name given; a folder is refused, and nothing is made by the check."""
    photo = tmp_path / "holiday.png"
    photo.write_bytes(b"a photo")
    with pytest.raises(InputError, match=r"^refusing to replace '.*holiday\.png' with the --stats "
                                         r"report: it exists and is not a \.json file; choose "
                                         r"another --stats$"):
        check_report_file(photo, "--stats", ".json")
    assert photo.read_bytes() == b"a photo"
    earlier = tmp_path / "run.JSON"
    earlier.write_text("{}")
    assert check_report_file(earlier, "--stats", ".json") == earlier
    with pytest.raises(InputError, match="it is a folder; give a file name, e.g. run.json"):
        check_report_file(tmp_path, "--stats", ".json")
    assert check_report_file(tmp_path / "new" / "run.json", "--stats", ".json")
    assert not (tmp_path / "new").exists()


def test_image_sinks_say_when_they_replace_a_file_that_was_there(tmp_path, caplog):
    """An --image --out file that is there already is replaced with a warning naming it (not
    silently); a new one writes without. A batch into its own earlier folder says how many of
    the earlier run's images it replaced, at close; a first run into it says nothing."""
    image = np.full((4, 4, 3), 9, np.uint8)
    old = tmp_path / "cutout.png"
    old.write_bytes(b"the user's earlier file")
    for path, warned in ((old, True), (tmp_path / "new.png", False)):
        caplog.clear()
        with caplog.at_level(logging.INFO), ImageFileSink(path) as sink:
            sink.write(image)
            sink.write(image)  # the sink's own file: no second warning
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == ([f"'{path}' was there before; replaced with this run's output"]
                            if warned else []), caplog.text
        assert cv2.imread(str(path))[0, 0, 0] == 9
    folder = tmp_path / "cutouts"
    for run, said in ((1, []), (2, [f"replaced 2 images of an earlier run in '{folder}'"])):
        caplog.clear()
        with caplog.at_level(logging.INFO), ImageFolderSink(folder) as sink:
            sink.write(image, "a")
            sink.write(image, "b")
            if run == 2:
                sink.write(image, "c")  # new in this run: not replaced
                sink.close()  # closed early, then again on leaving: said once
        assert [r.getMessage() for r in caplog.records if "replaced" in r.getMessage()] == said


def test_open_image_sink_picks_file_or_folder(tmp_path):
    assert isinstance(open_image_sink(tmp_path / "o.png", batch=False), ImageFileSink)
    assert isinstance(open_image_sink(tmp_path, batch=False), ImageFolderSink)
    (tmp_path / "f.png").write_bytes(b"x")
    with pytest.raises(InputError, match="it is a file"):
        open_image_sink(tmp_path / "f.png", batch=True)
    # A batch into a name like a photo's is a mistake, not a folder called 'cutouts.png'.
    with pytest.raises(InputError, match="'.*cutouts.PNG': it is named like an image file; "
                                         "give a folder for --out"):
        open_image_sink(tmp_path / "cutouts.PNG", batch=True)
    assert not (tmp_path / "cutouts.PNG").exists()


def test_open_sink_picks_video_or_png_frames(tmp_path):
    assert isinstance(open_sink(str(tmp_path / "o.mp4"), fps=30.0), VideoFileSink)
    assert isinstance(open_sink(str(tmp_path / "o.avi"), fps=30.0), VideoFileSink)
    assert isinstance(open_sink(str(tmp_path / "CLIP.MP4"), fps=30.0), VideoFileSink)  # any case
    assert isinstance(open_sink(str(tmp_path / "frames"), fps=30.0), PngFolderSink)
    with pytest.raises(InputError, match="use a .mp4 or .avi file, or a folder"):
        open_sink(str(tmp_path / "o.mkv"), fps=30.0)


def test_to_bgr_reuses_the_buffer():
    buffer = np.empty((10, 20, 3), np.uint8)
    out = to_bgr(np.zeros((20, 40, 3), np.uint8), (20, 10), out=buffer)
    assert out is buffer
    same = np.zeros((10, 20, 3), np.uint8)
    assert to_bgr(same, (20, 10)) is same


def test_to_bgr_shrinks_by_area_so_thin_lines_are_not_lost():
    """Hair is a few pixels wide: a frame shrunk to the camera's size averages each output
    pixel's area (as cv2.INTER_AREA does), where sampling keeps some lines and loses others.
    One-pixel white lines every 3 px, shrunk by 3, are an even grey of a third, not gone."""
    lines = np.zeros((48, 96, 3), np.uint8)
    lines[:, ::3] = 255
    out = to_bgr(lines, (32, 16))
    assert out.shape == (16, 32, 3)
    np.testing.assert_array_equal(out, cv2.resize(lines, (32, 16), interpolation=cv2.INTER_AREA))
    assert int(out.min()) == 85 and int(out.max()) == 85

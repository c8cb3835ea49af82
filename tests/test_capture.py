"""Sources: camera (real OpenCV, and a double of the device for loss), video files, images."""

from __future__ import annotations

import itertools
import logging
import struct
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from portrait.capture import (
    CameraSource,
    Frame,
    ImageSource,
    VideoFileSource,
    camera_index,
    is_camera_index,
    open_source,
    read_image,
    read_photo,
    to_bgr_uint8,
)
from conftest import ManualClock, colour_profile, phone_exif, write_rgba_tiff
from portrait.errors import DeviceError, InputError
from portrait.options import CaptureOptions
from portrait.photo_metadata import PhotoMetadata

RED_BGR = (0, 0, 255)


def level(i: int) -> int:
    """Grey level that encodes frame number ``i`` (robust to lossy codecs)."""
    return 10 + 6 * i


def write_video(path: Path, n: int, fps: float = 30.0, size=(64, 48), codec="MJPG") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, size)
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((size[1], size[0], 3), level(i), np.uint8))
    writer.release()
    return path


def frame_number(image: np.ndarray) -> int:
    return round((float(image.mean()) - 10) / 6)


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_video(tmp_path / "clip.avi", 12)


# --- camera --------------------------------------------------------------------------------------


class CameraDevice:
    """Stands in for /dev/video0: can be unplugged and plugged back.

    Opening gives a real cv2.VideoCapture over a video file (wrapped so its reads fail while the
    device is unplugged) or, while unplugged, a real unopened cv2.VideoCapture.
    """

    def __init__(self, video: Path) -> None:
        self.video = video
        self.present = True
        self.opens = 0

    def open(self, index: int):
        self.opens += 1
        if not self.present:
            return cv2.VideoCapture()
        return PluggableCapture(self, cv2.VideoCapture(str(self.video)))


class PluggableCapture:
    def __init__(self, device: CameraDevice, capture: cv2.VideoCapture) -> None:
        self.device, self.capture = device, capture

    def grab(self):
        return self.device.present and self.capture.grab()

    def retrieve(self):
        if not self.device.present:
            return False, None
        return self.capture.retrieve()

    def isOpened(self):
        return self.capture.isOpened()

    def set(self, prop, value):
        return self.capture.set(prop, value)

    def get(self, prop):
        return self.capture.get(prop)

    def release(self):
        self.capture.release()


@pytest.fixture
def device(tmp_path) -> CameraDevice:
    return CameraDevice(write_video(tmp_path / "camera.avi", 40, fps=25.0))


def test_missing_camera_index_is_a_device_error_after_one_open():
    """A camera that is not there fails at once: the platform's camera is asked once, not
    again through the back-off that rides out a camera lost mid-stream (0.1 to 2 s a step), and
    nothing waits on the clock."""
    from portrait.capture import camera as camera_module

    opened = []

    def opener(index):
        opened.append(index)
        return camera_module._open_camera(index)  # the real device open

    clock = ManualClock()
    with pytest.raises(DeviceError) as error:
        CameraSource(99, opener=opener, clock=clock)
    assert opened == [99]
    assert clock.now() == 1000.0  # no back-off waited
    message = str(error.value)
    assert message.startswith("camera 99 could not be opened: no such camera or it is in use")
    assert "--source 0" in message and "\n" not in message


def test_open_source_with_missing_camera_raises_device_error():
    with pytest.raises(DeviceError, match="camera 98"):
        open_source(CaptureOptions(source="98"))


def test_camera_logs_what_it_asked_for_and_got(device, caplog):
    caplog.set_level(logging.INFO, logger="portrait.capture")
    with CameraSource(0, 1280, 720, 30, opener=device.open) as camera:
        frame = camera.read()
        assert camera.fps == pytest.approx(25.0)
    assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8
    assert frame.index == 0 and frame.name is None
    lines = [r.getMessage() for r in caplog.records if "asked for" in r.getMessage()]
    assert len(lines) == 1
    assert "1280x720 at 30 fps" in lines[0] and "got 64x48 at 25 fps" in lines[0]


def test_camera_that_opens_but_gives_no_frame_is_a_device_error(device):
    class Silent(PluggableCapture):
        def grab(self):
            return False

    def opener(index):
        return Silent(device, cv2.VideoCapture(str(device.video)))

    with pytest.raises(DeviceError, match="gave no frames"):
        CameraSource(0, opener=opener)


def test_camera_loss_backs_off_reports_once_and_recovers(device, caplog):
    caplog.set_level(logging.DEBUG, logger="portrait.capture")
    clock = ManualClock()  # moves only as the camera waits
    camera = CameraSource(0, opener=device.open, retry_initial_s=0.02, retry_max_s=0.08,
                          clock=clock)
    try:
        frames = [camera.read() for _ in range(3)]
        assert [f.index for f in frames] == [0, 1, 2]
        assert not camera.lost

        device.present = False
        opens_before = device.opens
        start = clock.now()
        results = [camera.read() for _ in range(5)]
        assert results == [None] * 5
        assert camera.lost and camera.lost_for_s == pytest.approx(0.3)
        # One reopen attempt per call, each after a back-off of 0.02, 0.04, 0.08, 0.08, 0.08 s:
        # no spinning, and the wait is capped.
        assert device.opens - opens_before == 5
        assert clock.now() - start == pytest.approx(0.3)

        device.present = True
        frame = camera.read()
        assert frame is not None and frame.index == 3
        assert frame.image.shape == (48, 64, 3)
        assert not camera.lost and camera.lost_for_s == 0.0
        assert camera.read().index == 4
    finally:
        camera.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("lost" in m for m in warnings) == 1
    assert sum("is back" in m for m in warnings) == 1


def test_camera_iteration_rides_out_a_loss(device):
    camera = CameraSource(0, opener=device.open, retry_initial_s=0.02, retry_max_s=0.05)
    times = []
    with camera:
        for frame in itertools.islice(camera, 6):
            times.append(frame.time_s)
            if frame.index == 2:
                device.present = False
                threading.Timer(0.2, setattr, (device, "present", True)).start()
    assert len(times) == 6
    assert times[3] - times[2] >= 0.18  # the gap while the camera was unplugged
    assert times == sorted(times)


def test_camera_frames_with_lost_markers(device):
    camera = CameraSource(0, opener=device.open, retry_initial_s=0.02, retry_max_s=0.04)
    seen = []
    with camera:
        for frame in camera.frames(lost_markers=True):
            seen.append(frame)
            if frame.index == 1:
                device.present = False
                last_good = frame.image
            if sum(f.lost for f in seen) == 3:
                device.present = True
            if len(seen) == 7:
                break
    assert [(f.index, f.lost) for f in seen] == [
        (0, False), (1, False), (-1, True), (-1, True), (-1, True), (2, False), (3, False)]
    assert all(f.image is last_good for f in seen if f.lost)


def test_camera_lost_markers_come_at_the_cameras_rate_between_slow_retries(device):
    """While the camera is gone, a marker per frame time (25 fps: 40 ms), so a virtual camera
    stays fed, while reconnection attempts keep their back-off (0.3 s here): on a clock that
    moves only as the camera waits, 20 markers take 0.76 s, no gap longer than a frame time,
    and two attempts come in that time (at 0.3 and 0.6 s, each with a marker of its own)."""
    clock = ManualClock()
    camera = CameraSource(0, opener=device.open, retry_initial_s=0.3, retry_max_s=0.3,
                          clock=clock)
    markers = []
    with camera:
        for frame in camera.frames(lost_markers=True):
            if frame.index == 1:
                device.present = False
                opens_before, lost_at = device.opens, frame.time_s
            if frame.lost:
                markers.append(frame.time_s)
            if len(markers) == 20:
                break
    gaps = np.diff([lost_at] + markers)
    assert gaps.max() == pytest.approx(0.04), gaps  # never longer than one frame time
    assert np.median(gaps) == pytest.approx(0.04), gaps  # and one a frame time, not bunched
    assert markers[-1] - lost_at == pytest.approx(0.76), gaps
    assert device.opens - opens_before == 2  # at 0.3 and 0.6 s, not one per marker


def test_camera_frames_carry_the_time_since_the_first_one(device):
    """A camera's clock is the wall's: a recording keeps a stall, or a frame the pipeline
    dropped, as the time it took; the markers while it is lost carry theirs too."""
    camera = CameraSource(0, opener=device.open, retry_initial_s=0.02, retry_max_s=0.04)
    seen = []
    with camera:
        for frame in camera.frames(lost_markers=True):
            seen.append(frame)
            if len(seen) == 1:
                time.sleep(0.2)
            elif len(seen) == 2:
                device.present = False
            elif frame.lost:
                device.present = True
            elif len(seen) >= 4:
                break
    times = [f.pts_s for f in seen]
    assert times[0] == 0.0 and times[1] >= 0.2
    assert times == sorted(times) and any(f.lost for f in seen)
    assert times[-1] - times[1] >= 0.02  # at least one back-off step while lost


def test_camera_close_from_another_thread_stops_a_lost_iteration(device):
    camera = CameraSource(0, opener=device.open, retry_initial_s=0.05, retry_max_s=2.0)
    camera.read()
    device.present = False
    seen = []
    worker = threading.Thread(target=lambda: seen.extend(camera))
    worker.start()
    time.sleep(0.3)  # lost, and waiting in a back-off step
    camera.close()
    worker.join(timeout=2.0)
    assert not worker.is_alive()
    assert seen == []
    camera.close()  # safe twice
    assert camera.read() is None


class RecordingCapture(PluggableCapture):
    """A :class:`PluggableCapture` that records what it was asked for (``set``)."""

    def __init__(self, device: CameraDevice, capture: cv2.VideoCapture) -> None:
        super().__init__(device, capture)
        self.asked: dict[int, float] = {}

    def set(self, prop, value):
        self.asked[prop] = value
        return super().set(prop, value)


def test_a_camera_is_asked_for_the_freshest_frame_not_a_backlog_each_time_it_opens(device):
    """A driver's buffer of several frames would hand a slow pipeline frames that are seconds
    old: every opening, the first and each reconnection, asks for a buffer of one frame, in
    MJPG, at the size and rate requested."""
    captures = []

    def opener(index):
        capture = device.open(index)
        if isinstance(capture, PluggableCapture):
            capture = RecordingCapture(device, capture.capture)
            captures.append(capture)
        return capture

    camera = CameraSource(0, 640, 360, 24, opener=opener, retry_initial_s=0.01, retry_max_s=0.02)
    with camera:
        camera.read()
        device.present = False
        assert camera.read() is None
        device.present = True
        while camera.read() is None:
            pass
    assert len(captures) >= 2  # the first opening and a reconnection
    for capture in captures:
        assert capture.asked[cv2.CAP_PROP_BUFFERSIZE] == 1
        assert capture.asked[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
        assert (capture.asked[cv2.CAP_PROP_FRAME_WIDTH], capture.asked[cv2.CAP_PROP_FRAME_HEIGHT],
                capture.asked[cv2.CAP_PROP_FPS]) == (640, 360, 24.0)


def test_the_back_off_is_capped_and_starts_again_short_at_the_next_loss(device):
    """After many failed attempts the next is due within ``retry_max_s``, not ever later (a
    camera back after a long loss is found within it); and a second loss starts again at
    ``retry_initial_s``, not at the long wait the first one reached. ``read(max_wait_s)``
    returns without an attempt when none is due by then, so the attempts counted tell when
    each was due."""
    camera = CameraSource(0, opener=device.open, retry_initial_s=0.01, retry_max_s=0.05)
    with camera:
        camera.read()
        device.present = False
        for _ in range(8):  # uncapped, the wait would now be 0.01 * 2**8 = 2.56 s
            camera.read()
        opens = device.opens
        assert camera.read(max_wait_s=1.0) is None
        assert device.opens == opens + 1  # an attempt came within the cap

        device.present = True
        while camera.read() is None:
            pass
        assert not camera.lost
        device.present = False
        assert camera.read() is None  # lost again: the first attempt follows at once
        opens = device.opens
        assert camera.read(max_wait_s=0.04) is None
        assert device.opens == opens + 1  # due after 0.02 s, not the 0.05 s reached before


@pytest.mark.parametrize(
    "text, index", [("0", 0), (" 2 ", 2), ("/dev/video3", 3), ("clip.mp4", None), ("", None),
                    ("1.5", None), ("-1", None), ("1234", None), ("12345", None)],
)
def test_camera_index_parsing(text, index):
    assert camera_index(text) == index
    assert is_camera_index(text) == (index is not None)


# --- video files ---------------------------------------------------------------------------------


def test_video_file_gives_every_frame_in_order(clip):
    with VideoFileSource(clip) as video:
        assert video.fps == pytest.approx(30.0)
        assert video.frame_count == 12
        assert video.size == (64, 48)
        frames = list(video)
    assert [f.index for f in frames] == list(range(12))
    assert [frame_number(f.image) for f in frames] == list(range(12))
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    assert [f.time_s for f in frames] == sorted(f.time_s for f in frames)


@pytest.mark.parametrize("aspect, shown", [((4, 3), (160, 120)), ((3, 4), (90, 120))])
def test_a_video_whose_pixels_are_not_square_is_read_at_the_shape_players_show(
        tmp_path, caplog, aspect, shown):
    """A video stored squeezed with a sample aspect ratio (DV, HDV, a DVD: here 120x120 at 4:3,
    shown 160x120) gives frames of the shape players show, a circle round, and says so once;
    the person in it came out squeezed, and so did the output."""
    from conftest import write_anamorphic_video

    picture = np.zeros((shown[1], shown[0], 3), np.uint8)
    cv2.circle(picture, (shown[0] // 2, 60), 40, (255, 255, 255), -1)
    path = write_anamorphic_video(tmp_path / "anamorphic.mp4", picture, 3, aspect)
    with caplog.at_level(logging.INFO), VideoFileSource(path) as video:
        assert video.size == shown
        frames = [frame.image for frame in video]
    assert len(frames) == 3 and all(f.shape == (shown[1], shown[0], 3) for f in frames)
    ys, xs = np.nonzero(frames[-1].min(axis=2) > 128)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(width / height - 1) < 0.06, (width, height)
    assert sum("not square" in r.getMessage() for r in caplog.records) == 1


def test_a_turned_video_whose_pixels_are_not_square_is_stretched_along_its_stored_width(
        tmp_path):
    """Rotation metadata and a sample aspect ratio together (a phone's portrait clip through a
    DV-style encoder: 120x120 stored at 4:3, shown 160x120, then turned a quarter): OpenCV
    turns the frames, so the stretch is along their height, 120x160; it was along their width,
    160x120, and a round face came out 107x61."""
    from conftest import write_anamorphic_video

    picture = np.zeros((120, 160, 3), np.uint8)
    cv2.circle(picture, (80, 60), 40, (255, 255, 255), -1)
    path = write_anamorphic_video(tmp_path / "turned.mp4", picture, 2, rotation=90)
    with VideoFileSource(path) as video:
        assert video.size == (120, 160)
        frames = [frame.image for frame in video]
    assert len(frames) == 2 and all(f.shape == (160, 120, 3) for f in frames)
    ys, xs = np.nonzero(frames[-1].min(axis=2) > 128)
    width, height = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    assert abs(width / height - 1) < 0.06, (width, height)


@pytest.mark.parametrize("aspect, interpolation", [((4, 3), cv2.INTER_LINEAR),
                                                    ((3, 4), cv2.INTER_AREA)],
                         ids=["widened", "narrowed"])
def test_a_video_whose_pixels_are_not_square_is_scaled_as_opencv_scales_it(tmp_path, aspect,
                                                                          interpolation):
    """A stored frame of fine stripes is stretched to the shape players show as
    ``cv2.resize`` does it, bilinear where it is widened and by area where it is narrowed (so
    the stripes average out rather than alias), on the frame OpenCV's own reader decodes."""
    from conftest import write_anamorphic_video

    shown = (round(120 * aspect[0] / aspect[1]), 120)
    picture = np.zeros((120, 120, 3), np.uint8)
    picture[:, ::2] = 255  # fine stripes: each interpolation gives other values
    picture = cv2.resize(picture, shown, interpolation=cv2.INTER_NEAREST)
    path = write_anamorphic_video(tmp_path / "stripes.mp4", picture, 1, aspect)
    capture = cv2.VideoCapture(str(path))
    ok, stored = capture.read()
    capture.release()
    assert ok and stored.shape == (120, 120, 3)
    with VideoFileSource(path) as video:
        assert video.size == shown
        image = next(iter(video)).image
    expected = cv2.resize(stored, shown, interpolation=interpolation)
    other = cv2.INTER_AREA if interpolation == cv2.INTER_LINEAR else cv2.INTER_LINEAR
    assert not np.array_equal(expected, cv2.resize(stored, shown, interpolation=other))
    np.testing.assert_array_equal(image, expected)


def test_video_frames_carry_their_times_in_the_file_also_when_the_rate_varies(tmp_path):
    """A phone in dim light records fewer frames a second: each frame keeps its own time (the
    container's average rate would put the last of these at 0.8 s instead of 1.4 s)."""
    from conftest import write_video_with_sound

    times = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0, 1.2, 1.4]
    clip = write_video_with_sound(tmp_path / "phone.mp4", frames=10, seconds=1.5,
                                  frame_times=times)
    with VideoFileSource(clip) as video:
        seen = [f.pts_s for f in video]
    assert seen == pytest.approx(times, abs=0.002)
    with VideoFileSource(write_video(tmp_path / "steady.avi", 5, fps=25.0)) as video:
        assert [f.pts_s for f in video] == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])


def test_a_video_whose_every_frame_rate_is_out_of_range_is_read_at_30_fps_and_says_so(
        tmp_path, caplog):
    """A header that claims 2400 fps, to OpenCV and to FFmpeg's guess alike (a broken
    recorder's): neither is taken, the frames are read at 30 fps, and the warning gives the
    rate that was refused."""
    import av

    path = tmp_path / "fast.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=2400)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(3):
            image = np.full((48, 64, 3), level(i), np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())
    with av.open(str(path)) as container:
        assert container.streams.video[0].guessed_rate == 2400  # what this is about
    caplog.set_level(logging.WARNING, logger="portrait.capture")
    with VideoFileSource(path) as video:
        assert video.fps == 30.0
        assert len(list(video)) == 3
    assert [r.getMessage() for r in caplog.records] == [
        f"video '{path}' reports no usable frame rate (2400.0); assuming 30 fps"]


def test_open_source_points_a_folder_to_image(tmp_path):
    """A folder of photos given to --source was 'not a file; give a video file'; it is pointed
    to --image, where a folder is a batch."""
    (tmp_path / "photos").mkdir()
    with pytest.raises(InputError, match=r"^--source '.*photos' is a folder; give a video file or "
                                         r"a camera index \(a folder of photos goes to --image\)$"):
        open_source(CaptureOptions(source=str(tmp_path / "photos")))


def test_open_source_picks_a_video_file(clip):
    with open_source(CaptureOptions(source=str(clip), realtime=True)) as source:
        assert isinstance(source, VideoFileSource) and source.realtime


def test_video_realtime_paces_to_the_file_rate_and_fast_mode_does_not(tmp_path):
    """On a clock that moves only as the source waits: realtime, each frame of a 25 fps file
    comes 40 ms after the one before (9 intervals, 0.36 s); as fast as possible, none waits."""
    clip = write_video(tmp_path / "slow.avi", 10, fps=25.0)
    clock = ManualClock()
    with VideoFileSource(clip, clock=clock) as video:
        frames = list(video)
    assert len(frames) == 10 and clock.now() == 1000.0  # no time went by: no wait
    assert [f.wait_ms for f in frames] == [None] * 10

    with VideoFileSource(clip, realtime=True, clock=clock) as video:
        frames = list(video)
    assert len(frames) == 10
    assert np.diff([f.time_s for f in frames]) == pytest.approx([0.04] * 9)


def test_paced_video_reports_decode_time_without_the_wait(tmp_path):
    """Frames due every 200 ms: each waits that long, and says so in ``wait_ms``, not in its
    ``decode_ms`` (decoding takes no time on this clock, which moves only when waited on)."""
    clip = write_video(tmp_path / "paced.avi", 6, fps=5.0)
    with VideoFileSource(clip, realtime=True, clock=ManualClock()) as video:
        frames = list(video)
    assert len(frames) == 6
    assert [f.decode_ms for f in frames] == [0.0] * 6
    assert [f.wait_ms for f in frames] == pytest.approx([0.0] + [200.0] * 5)
    with VideoFileSource(clip) as video:  # as fast as possible: no wait
        assert [f.wait_ms for f in video] == [None] * 6


class PacedCapture(PluggableCapture):
    """A camera at ``fps``: ``grab()`` returns when the sensor's next frame is due, as a
    webcam's driver does; decoding (``retrieve()``) is the real one of the clip's MJPG frames.
    With a :class:`ManualClock`, the sensor's wait moves that clock instead of sleeping, and
    decoding takes ``decode_s`` on it."""

    def __init__(self, device: CameraDevice, capture: cv2.VideoCapture, fps: float,
                 clock: ManualClock | None = None, decode_s: float = 0.0) -> None:
        super().__init__(device, capture)
        self.interval_s = 1.0 / fps
        self.clock, self.decode_s = clock, decode_s
        self.due = self._now()

    def _now(self) -> float:
        return time.perf_counter() if self.clock is None else self.clock.now()

    def grab(self):
        self.due = max(self.due + self.interval_s, self._now())
        if self.clock is None:
            time.sleep(max(0.0, self.due - self._now()))
        else:
            self.clock.advance(self.due - self._now())
        return super().grab()

    def retrieve(self):
        if self.clock is not None:
            self.clock.advance(self.decode_s)
        return super().retrieve()


def test_a_camera_tells_the_wait_for_its_sensor_from_decoding(device):
    """A 10 fps camera whose decoding takes 5 ms: each frame waits the rest of its 100 ms for
    the sensor, which is no decoding (on a clock that moves only as the camera does)."""
    clock = ManualClock()

    def opener(index):
        return PacedCapture(device, cv2.VideoCapture(str(device.video)), fps=10.0, clock=clock,
                            decode_s=0.005)

    with CameraSource(0, opener=opener, clock=clock) as camera:
        frames = [camera.read() for _ in range(5)]
    assert frames[0].wait_ms is None  # the camera starting, not a frame interval
    assert [f.decode_ms for f in frames] == pytest.approx([5.0] * 5)
    assert [f.wait_ms for f in frames[1:]] == pytest.approx([95.0] * 4)
    assert np.diff([f.time_s for f in frames]) == pytest.approx([0.1] * 4)


def test_video_realtime_clock_starts_when_the_reader_comes_back_after_the_first_frame(tmp_path):
    """The app takes the first frame, then loads its model: the clip's clock must not run
    meanwhile, or the frames of those seconds all come due at once and a live reader drops
    them (4 of 25 frames of a 20 fps clip, before)."""
    clip = write_video(tmp_path / "paced.avi", 4, fps=10.0)  # frames due every 100 ms
    clock = ManualClock()
    with VideoFileSource(clip, realtime=True, clock=clock) as video:
        frames = iter(video)
        next(frames)
        clock.advance(0.35)  # the model loading
        resumed = clock.now()
        arrivals = [frame.time_s - resumed for frame in frames]
    assert arrivals == pytest.approx([0.1, 0.2, 0.3])


def test_video_realtime_with_a_slow_consumer_still_gives_every_frame(tmp_path):
    clip = write_video(tmp_path / "fast.avi", 6, fps=100.0)
    numbers = []
    with VideoFileSource(clip, realtime=True) as video:
        for frame in video:
            time.sleep(0.03)  # slower than the 10 ms frame interval
            numbers.append(frame_number(frame.image))
    assert numbers == list(range(6))


def test_truncated_video_gives_what_it_can_and_warns(tmp_path, clip, caplog):
    data = write_video(tmp_path / "long.avi", 30).read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    caplog.set_level(logging.WARNING, logger="portrait.capture")
    with VideoFileSource(truncated) as video:
        frames = list(video)
    assert 0 < len(frames) < 30
    assert [frame_number(f.image) for f in frames] == list(range(len(frames)))
    assert any("truncated" in r.getMessage() and f"after {len(frames)} of the 30" in r.getMessage()
               for r in caplog.records)


def test_a_truncated_avi_says_about_its_frame_count_before_the_warning(tmp_path, caplog):
    """An AVI cut short still lists the 30 frames it was written with (its header, written as
    it was finished): the info line says "about 30 frames", as for Matroska's estimate, where
    it said "30 frames" and a truncation warning then followed. Its header's RIFF size says so
    before a frame is read; the whole file says its count as exact."""
    whole = write_video(tmp_path / "long.avi", 30)
    data = whole.read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    caplog.set_level(logging.INFO, logger="portrait.capture")
    for path, count in ((whole, "30 frames"), (truncated, "about 30 frames")):
        caplog.clear()
        with VideoFileSource(path) as video:
            said = [r.getMessage() for r in caplog.records]
            frames = list(video)
        assert said == [f"video '{path}': 64x48 at 30 fps, {count}"]
    assert 0 < len(frames) < 30
    assert [(r.levelname, r.getMessage()) for r in caplog.records[1:]] == [
        ("WARNING", f"video '{truncated}' ended after {len(frames)} of the 30 frames it claims "
                    f"({len(frames) / 30:.1f} of 1.0 s): the file may be truncated")]


def test_an_avi_a_few_bytes_short_of_its_riff_size_lists_its_count_as_an_estimate(tmp_path,
                                                                                   caplog):
    """The RIFF size counts the bytes after its 8-byte header: an AVI 1 byte short (its index
    cut, every frame there) is cut short, its count "about"; a whole one, and one with bytes
    after its end, is exact."""
    data = write_video(tmp_path / "whole.avi", 30).read_bytes()
    assert data[:4] == b"RIFF" and int.from_bytes(data[4:8], "little") == len(data) - 8
    caplog.set_level(logging.INFO, logger="portrait.capture")
    for name, content, count in (("short.avi", data[:-1], "about 30 frames"),
                                 ("longer.avi", data + bytes(8), "30 frames")):
        path = tmp_path / name
        path.write_bytes(content)
        caplog.clear()
        with VideoFileSource(path):
            said = [r.getMessage() for r in caplog.records]
        assert said == [f"video '{path}': 64x48 at 30 fps, {count}"]
    # Only a RIFF file is judged by its header: an MP4's first 8 bytes are a box's size and
    # 'ftyp', which read as a RIFF size would call any MP4 cut short.
    mp4 = tmp_path / "whole.mp4"
    writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    for index in range(10):
        writer.write(np.full((48, 64, 3), 20 * index, np.uint8))
    writer.release()
    assert mp4.read_bytes()[4:8] == b"ftyp"
    caplog.clear()
    with VideoFileSource(mp4):
        said = [r.getMessage() for r in caplog.records]
    assert said == [f"video '{mp4}': 64x48 at 30 fps, 10 frames"]


def test_a_truncated_avi_is_not_opened_again_to_learn_it_is_not_matroska(tmp_path, caplog,
                                                                         monkeypatch):
    """A file short of its frames, without Matroska's DURATION tag, has its picture's end read
    from its last packets only where it is Matroska (an AVI's count is its own frames'): the
    probe as it opens says which it is. The AVI was opened a third time by PyAV, at its end,
    only to find it is not Matroska; now twice (the text-file check and the probe)."""
    import av

    data = write_video(tmp_path / "long.avi", 30).read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    opened = []
    real_open = av.open

    def counted_open(file, *args, **kwargs):
        opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(av, "open", counted_open)
    caplog.set_level(logging.WARNING, logger="portrait.capture")
    with VideoFileSource(truncated) as video:
        frames = list(video)
    assert 0 < len(frames) < 30
    assert any(f"after {len(frames)} of the 30" in r.getMessage() for r in caplog.records)
    assert opened == [str(truncated)] * 2


def test_a_quiet_video_reading_again_says_nothing_at_info(tmp_path, caplog):
    """A background video is read again at each loop: its first reading said what it is."""
    data = write_video(tmp_path / "long.avi", 30).read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    caplog.set_level(logging.INFO, logger="portrait.capture")
    with VideoFileSource(truncated, quiet=True) as video:
        frames = list(video)
    assert 0 < len(frames) < 30
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]


def test_fewer_frames_at_the_full_length_is_a_variable_frame_rate_not_truncation(tmp_path, caplog):
    """Phone recordings vary their frame rate; their container's count is an estimate from the
    duration. Frames that reach the claimed length are not a truncated file, and need no
    warning: each keeps its time."""
    caplog.set_level(logging.INFO, logger="portrait.capture")
    with VideoFileSource(write_video(tmp_path / "c.avi", 30)) as video:  # 30 frames, 1 s
        caplog.clear()
        video._warn_if_short(12, last_pts_s=29 / 30)  # the 12th frame at the end
        video._warn_if_short(12, last_pts_s=11 / 30)  # the 12th frame at 0.37 s
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", f"video '{tmp_path / 'c.avi'}' has a variable frame rate: 12 frames over 1.0 s; "
                 "a video file written from it keeps each frame's time"),
        ("WARNING", f"video '{tmp_path / 'c.avi'}' ended after 12 of the 30 frames it claims "
                    "(0.4 of 1.0 s): the file may be truncated")]


def test_a_video_that_starts_after_its_sound_is_not_called_truncated(tmp_path, caplog):
    """Matroska's frame count is estimated from the whole file's length, which here includes
    the half second of sound before the first frame: 45 frames, not the 60 it claims, are the
    whole video."""
    from conftest import write_video_with_sound

    clip = write_video_with_sound(tmp_path / "late.mkv", frames=45, seconds=2.0, codec="flac",
                                  frame_times=[0.5 + i / 30 for i in range(45)])
    caplog.set_level(logging.INFO, logger="portrait.capture")
    with VideoFileSource(clip) as video:
        assert video.frame_count > 50  # the estimate this is about
        caplog.clear()
        times = [f.pts_s for f in video]
    assert len(times) == 45 and times[-1] == pytest.approx(44 / 30, abs=0.002)
    assert caplog.records == []
    # A file whose times all start at 5 s: Matroska's length counts from 0 there too.
    clip = write_video_with_sound(tmp_path / "late5.mkv", frames=45, seconds=1.5, codec="flac",
                                  frame_times=[5 + i / 30 for i in range(45)], sound_starts_s=5)
    with VideoFileSource(clip) as video:
        assert video.frame_count > 150
        caplog.clear()
        assert len(list(video)) == 45
    assert caplog.records == []


def test_a_variable_rate_video_reports_its_base_rate_not_its_average(tmp_path):
    """25 fps with a 3 s pause: its average is about 9 fps, which a .avi written at it would
    hold by dropping most of the 25 fps frames."""
    from conftest import write_video_with_sound

    times = [i / 25 for i in range(25)] + [4 + i / 25 for i in range(25)]
    clip = write_video_with_sound(tmp_path / "pause.mp4", frames=50, seconds=5.0, fps=25,
                                  frame_times=times)
    with VideoFileSource(clip) as video:
        assert video.fps == pytest.approx(25.0)
        assert [f.pts_s for f in video] == pytest.approx(times, abs=0.002)


def test_a_photo_given_as_a_video_is_named(tmp_path, caplog):
    photo = tmp_path / "me.jpg"
    cv2.imwrite(str(photo), np.zeros((60, 80, 3), np.uint8))
    caplog.set_level(logging.WARNING, logger="portrait.capture")
    with VideoFileSource(photo) as video:
        assert len(list(video)) == 1
    assert [r.getMessage() for r in caplog.records] == [
        f"'{photo}' is a photo: as --source it is a video of one frame; --image cuts out photos"]


def test_a_photo_given_as_a_video_is_upright_by_its_exif_orientation(tmp_path):
    """FFmpeg ignores a JPEG's EXIF orientation; as --source the photo is read as --image
    reads it, upright."""
    image = Image.fromarray(rgb_red_left(80, 40))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    with VideoFileSource(tmp_path / "rotated.jpg") as video:
        assert video.size == (40, 80)
        frames = list(video)
    assert len(frames) == 1
    assert np.array_equal(frames[0].image, read_image(tmp_path / "rotated.jpg"))


def test_a_photo_its_decoder_complains_about_is_read_with_one_warning(tmp_path, caplog, capfd):
    """libjpeg decodes a JPEG with damaged scan data, and says so on the terminal; that
    becomes one warning naming the file, and nothing of libjpeg's own reaches the terminal."""
    rng = np.random.default_rng(0)
    ok, data = cv2.imencode(".jpg", rng.integers(0, 255, (120, 160, 3), np.uint8))
    data = bytearray(data.tobytes())
    middle = len(data) // 2
    data[middle:middle + 100] = bytes(100)  # zeroed scan data: the rest of it reads as stray
    path = tmp_path / "stray.jpg"
    path.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger="portrait.capture")
    image = read_image(path)
    assert image.shape == (120, 160, 3)
    assert [r.getMessage() for r in caplog.records] == [
        f"image '{path}' may be damaged: its decoder reported \"Corrupt JPEG data: 551 "
        "extraneous bytes before marker 0xd9\""]
    assert "Corrupt JPEG" not in capfd.readouterr().err


def test_a_frame_whose_time_does_not_move_forward_comes_one_frame_after_the_last():
    """A container that gives a frame no time (NaN), the time of the frame before, or an
    earlier one: the frame is placed one frame (at the file's rate) after the last, so every
    frame keeps a time of its own, in order (a video file sink would otherwise squeeze it into
    one tick after the last)."""
    from portrait.capture.video import _presentation_s

    assert _presentation_s(0.0, None, 25.0) == 0.0
    assert _presentation_s(float("nan"), None, 25.0) == 0.0
    assert _presentation_s(120.0, 0.08, 25.0) == pytest.approx(0.12)  # moves on: its own time
    assert _presentation_s(80.0, 0.08, 25.0) == pytest.approx(0.12)  # the same time
    assert _presentation_s(40.0, 0.08, 25.0) == pytest.approx(0.12)  # an earlier one
    assert _presentation_s(float("nan"), 0.08, 25.0) == pytest.approx(0.12)  # none


def test_a_video_cut_short_is_called_truncated_even_past_half_its_length(tmp_path, caplog):
    """Only a video whose frames reach (nearly) its whole length is a variable frame rate; one
    cut at 80 % of its bytes, whose 20 frames of 30 reach 0.7 of its 1.0 s, is truncated."""
    data = write_video(tmp_path / "long.avi", 30).read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: int(len(data) * 0.8)])
    caplog.set_level(logging.INFO, logger="portrait.capture")
    with VideoFileSource(truncated) as video:
        caplog.clear()
        frames = list(video)
    assert 15 <= len(frames) <= 25  # over half of its length, well short of all of it
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "may be truncated" in messages[0], messages
    assert caplog.records[0].levelno == logging.WARNING


def frames_of_a_cut_copy(clip: Path, share: float, caplog) -> int:
    """How many frames a copy of ``clip`` cut at ``share`` of its bytes gives, checked to be
    fewer than its 30 and to log one warning (``caplog.records[0]``, for the caller to read)."""
    data = clip.read_bytes()
    cut = clip.with_name(f"cut{clip.suffix}")
    cut.write_bytes(data[: int(len(data) * share)])
    with VideoFileSource(cut) as video:
        caplog.clear()
        frames = len(list(video))
    assert frames < 30
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    return frames


@pytest.mark.parametrize("sound_s, estimate", [
    # a frame or two longer than the picture: within what is taken as a whole file
    (1.05, 32),
    # half a second longer: the video track's own length (its DURATION tag) is reached
    (1.5, 45),
], ids=["sound-a-frame-longer", "sound-half-a-second-longer"])
def test_a_matroska_video_whose_sound_outlasts_its_picture_is_whole_and_cut_is_truncated(
        tmp_path, caplog, sound_s, estimate):
    """30 frames (1.0 s) whose sound goes on after them: Matroska's frame count is estimated
    from the file's length, which the sound makes longer (``estimate``); that is no truncation
    nor a variable frame rate, and nothing is said. The same file cut short is still called
    truncated, against the picture's own 30 frames and 1.0 s."""
    from conftest import write_video_with_sound

    clip = write_video_with_sound(tmp_path / "clip.mkv", frames=30, seconds=sound_s,
                                  codec="flac")
    caplog.set_level(logging.INFO, logger="portrait.capture")
    with VideoFileSource(clip) as video:
        assert video.frame_count == estimate  # the estimate this is about
        caplog.clear()
        assert len(list(video)) == 30
    assert caplog.records == []
    frames = frames_of_a_cut_copy(clip, 0.6, caplog)
    # against the picture's own 30 frames (1.0 s), not the file's estimate: numbers that agree
    assert f"ended after {frames} of the 30 frames it claims" in caplog.records[0].getMessage()
    assert "of 1.0 s): the file may be truncated" in caplog.records[0].getMessage()


def test_a_matroska_video_a_frame_short_of_its_estimate_is_whole_and_says_nothing(tmp_path,
                                                                                  caplog):
    """30 frames (1.0 s) with sound 40 ms longer: OpenCV estimates 31 frames from the file's
    length, and the video track's own end (1.0 s) is too close to that to tell them apart. A
    frame or two short of an estimate is how estimates are, not a variable frame rate nor a
    truncation: nothing is said."""
    from conftest import write_video_with_sound

    clip = write_video_with_sound(tmp_path / "clip.mkv", frames=30, seconds=1.04, codec="flac")
    caplog.set_level(logging.INFO, logger="portrait.capture")
    with VideoFileSource(clip) as video:
        assert video.frame_count == 31  # the estimate this is about
        caplog.clear()
        assert len(list(video)) == 30
    assert caplog.records == []


def test_a_matroska_video_over_a_minute_long_is_measured_by_its_whole_duration_tag(tmp_path,
                                                                                  caplog):
    """61 frames at 1 fps (1 min 1 s of picture) with 80 s of sound: the video track's
    ``DURATION`` tag (00:01:01.0...) says where the picture ends, minutes included, so a copy
    cut short is truncated against the picture's 61 frames and 61 s (not the file's 80 s)."""
    from conftest import write_video_with_sound

    clip = write_video_with_sound(tmp_path / "long.mkv", frames=61, seconds=80, fps=1.0,
                                  codec="flac", rate=8000)
    caplog.set_level(logging.INFO, logger="portrait.capture")
    with VideoFileSource(clip) as video:
        assert video.frame_count == 80  # the file's estimate, from the sound's length
        caplog.clear()
        assert len(list(video)) == 61
    assert caplog.records == []
    frames = frames_of_a_cut_copy(clip, 0.5, caplog)
    assert f"ended after {frames} of the 61 frames it claims" in caplog.records[0].getMessage()
    assert "of 61.0 s): the file may be truncated" in caplog.records[0].getMessage()


def test_a_frame_count_estimated_from_the_files_length_is_said_to_be_about(tmp_path, caplog):
    """The opening line gives a Matroska file's frame count, which OpenCV estimates from the
    file's length (here 45: its sound goes on 0.5 s after its 30 frames), as "about"; it said
    "45 frames" as if counted, and a clip of 73 frames was said to have 74. An AVI lists its
    frames: its count is said as it is."""
    from conftest import write_video_with_sound

    matroska = write_video_with_sound(tmp_path / "clip.mkv", frames=30, seconds=1.5,
                                      codec="flac")
    avi = write_video(tmp_path / "clip.avi", 30)
    caplog.set_level(logging.INFO, logger="portrait.capture")
    for path in (matroska, avi):
        with VideoFileSource(path) as video:
            assert len(list(video)) == 30
    assert [r.getMessage() for r in caplog.records] == [
        f"video '{matroska}': 96x64 at 30 fps, about 45 frames",
        f"video '{avi}': 64x48 at 30 fps, 30 frames"]


def _without_duration_tags(path: Path) -> Path:
    """``path`` with its tracks' ``DURATION`` tags renamed (``DURATIOX``: the same length, so
    the file stays whole and valid), as mkvmerge may write a Matroska file: without them."""
    data = path.read_bytes()
    assert data.count(b"DURATION") == 2  # one a track: the picture's and the sound's
    stripped = path.with_name("untagged_" + path.name)
    stripped.write_bytes(data.replace(b"DURATION", b"DURATIOX"))
    return stripped


def test_a_matroska_video_without_a_duration_tag_whose_sound_goes_on_is_not_called_truncated(
        tmp_path, caplog):
    """30 frames (1.0 s) with 1.5 s of sound, without the tag that says where the picture ends:
    its end is read from its last packets, reached, and nothing is said (it was called
    truncated); a variable rate is noted as such. The same file cut short is still called
    truncated, against the file's 45 frames: without the tag, nothing else says the picture's."""
    import av
    from conftest import write_video_with_sound

    clip = _without_duration_tags(
        write_video_with_sound(tmp_path / "clip.mkv", frames=30, seconds=1.5, codec="flac"))
    with av.open(str(clip)) as container:
        assert "DURATION" not in container.streams.video[0].metadata
    caplog.set_level(logging.INFO, logger="portrait.capture")
    with VideoFileSource(clip) as video:
        assert video.frame_count == 45  # the estimate this is about
        caplog.clear()
        assert len(list(video)) == 30
    assert caplog.records == []
    times = [i / 30 for i in range(10)] + [0.7 + i / 30 for i in range(10)]
    varying = _without_duration_tags(write_video_with_sound(
        tmp_path / "varying.mkv", frames=20, seconds=1.5, codec="flac", frame_times=times))
    with VideoFileSource(varying) as video:
        caplog.clear()
        assert len(list(video)) == 20
    assert [r.levelno for r in caplog.records] == [logging.INFO], caplog.text
    assert "has a variable frame rate: 20 frames over 1.0 s" in caplog.records[0].getMessage()
    frames = frames_of_a_cut_copy(clip, 0.5, caplog)
    assert (f"ended after {frames} of the 45 frames it claims (0.8 of 1.5 s): the file may be "
            "truncated") in caplog.records[0].getMessage()


def test_a_matroska_video_of_a_variable_rate_whose_sound_goes_on_is_said_to_vary(tmp_path,
                                                                                caplog):
    """20 frames over 1.0 s at a base rate of 30 fps (a pause in the middle, as a phone's
    dim-light recording has), with 1.5 s of sound: its picture reaches its own end, so it is
    noted as a variable frame rate, as it is where the sound is no longer than the picture;
    it was passed over in silence once the picture's end was reached."""
    from conftest import write_video_with_sound

    times = [i / 30 for i in range(10)] + [0.7 + i / 30 for i in range(10)]
    clip = write_video_with_sound(tmp_path / "clip.mkv", frames=20, seconds=1.5, codec="flac",
                                  frame_times=times)
    caplog.set_level(logging.INFO, logger="portrait.capture")
    with VideoFileSource(clip) as video:
        assert video.frame_count == 45  # the file's estimate
        caplog.clear()
        assert len(list(video)) == 20
    assert [r.levelno for r in caplog.records] == [logging.INFO], caplog.text
    assert "has a variable frame rate: 20 frames over 1.0 s" in caplog.records[0].getMessage()


def test_complete_video_does_not_warn(clip, caplog):
    caplog.set_level(logging.WARNING, logger="portrait.capture")
    with VideoFileSource(clip) as video:
        list(video)
    assert not caplog.records


def test_video_close_stops_iteration(clip):
    video = VideoFileSource(clip, realtime=True)
    frames = []
    for frame in video:
        frames.append(frame)
        if len(frames) == 3:
            video.close()
    assert len(frames) == 3
    video.close()


@pytest.mark.parametrize("kind", ["missing", "text", "empty", "folder", "truncated_mp4"])
def test_unreadable_video_is_a_one_line_input_error(tmp_path, kind):
    path = tmp_path / "bad.mp4"
    if kind == "text":
        path.write_text("this is not a video\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    elif kind == "truncated_mp4":
        data = write_video(tmp_path / "good.mp4", 10, codec="mp4v").read_bytes()
        path.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: unreadable
    with pytest.raises(InputError) as error:
        VideoFileSource(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert ("not found" in message) if kind == "missing" else True


@pytest.mark.parametrize("name", ["credits.txt", "notes.nfo"])
def test_a_text_file_is_refused_not_shown_as_a_picture_of_its_text(tmp_path, name):
    # FFmpeg's "tty" reader takes a text file of some length as a video and draws its
    # characters: a background pack's licence given as --background showed as white text.
    path = tmp_path / name
    path.write_text("".join(f"Line {i}: free backgrounds, licence CC-BY-4.0, credit the author.\n"
                            for i in range(40)))
    with pytest.raises(InputError, match=r"it is a text file.*give a video file") as error:
        VideoFileSource(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_text_file_as_background_is_refused_not_shown_as_a_picture_of_its_text(tmp_path):
    # The background's own reader (PyAV's ScaledVideo, not VideoFileSource) refuses it too: a
    # background pack's licence.txt given as --background.
    from portrait.composite import make_background
    from portrait.options import CompositeOptions

    path = tmp_path / "licence.txt"
    path.write_text("".join(f"Line {i}: free backgrounds, licence CC-BY-4.0, credit the author.\n"
                            for i in range(40)))
    with pytest.raises(InputError, match=r"background video .*it is a text file.*give a video"):
        make_background(CompositeOptions(background=str(path)), (64, 48)).close()


def test_a_file_with_sound_and_no_picture_says_so(tmp_path):
    import av

    path = tmp_path / "talk.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        stream.layout = "mono"
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(InputError, match=r"it has no video stream \(only audio\); give a file "
                                         "with a picture"):
        VideoFileSource(path)


def test_an_empty_video_file_says_it_is_empty(tmp_path):
    """A zero-byte video was called 'not a video OpenCV can decode, or ... truncated or corrupt',
    where a zero-byte photo is called empty; both say so now, the background reader too."""
    from portrait.capture.scaled import ScaledVideo

    path = tmp_path / "talk.mp4"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"^cannot read video '.*talk\.mp4': the file is empty "
                                         r"\(0 bytes\); check the file$"):
        VideoFileSource(path)
    with pytest.raises(InputError, match=r"the file is empty \(0 bytes\)"):
        ScaledVideo(path)


# --- images --------------------------------------------------------------------------------------


def rgb_red_left(width=80, height=40) -> np.ndarray:
    """RGB image: left half red, right half black."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (255, 0, 0)
    return image


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height``; the pixel data is a stub."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def test_read_image_converts_every_format_to_bgr_uint8(tmp_path):
    rgb = rgb_red_left()
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(
        tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    cv2.imwrite(str(tmp_path / "sixteen.png"), (rgb[:, :, ::-1].astype(np.uint16) * 257))
    Image.fromarray(rgb).save(tmp_path / "webp.webp", lossless=True)
    Image.fromarray(rgb).save(tmp_path / "tiff.tiff")
    Image.fromarray(rgb).save(tmp_path / "bmp.bmp")

    for name in ["rgba.png", "palette.png", "cmyk.jpg", "sixteen.png", "webp.webp", "tiff.tiff",
                 "bmp.bmp"]:
        image = read_image(tmp_path / name)
        assert image.dtype == np.uint8 and image.shape == (40, 80, 3), name
        assert np.abs(image[20, 10].astype(int) - RED_BGR).max() <= 3, name
        assert image[20, 70].max() <= 3, name
    grey = read_image(tmp_path / "grey.png")
    assert grey.shape == (40, 80, 3) and grey[20, 10].tolist() == [255, 255, 255]
    assert grey[20, 70].tolist() == [0, 0, 0]


def test_read_image_applies_exif_orientation(tmp_path):
    image = Image.fromarray(rgb_red_left(80, 40))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    bgr = read_image(tmp_path / "rotated.jpg")
    assert bgr.shape == (80, 40, 3)  # displayed upright: portrait
    # The stored left (red) half is the displayed top after a clockwise turn.
    assert np.abs(bgr[10, 20].astype(int) - RED_BGR).max() <= 10
    assert bgr[70, 20].max() <= 10


@pytest.mark.parametrize("name", ["phone.jpg", "phone.png", "phone.webp", "phone.tiff"])
def test_read_photo_gives_the_colour_profile_and_dates_but_no_position(tmp_path, name):
    """What an output keeps of its photo's metadata: the colour profile, the camera and the
    capture date and time; not the GPS position, the serial number, nor the orientation, which
    is applied to the pixels (a viewer would turn the output again)."""
    path = tmp_path / name
    Image.fromarray(rgb_red_left()).save(path, exif=phone_exif().tobytes(),
                                         icc_profile=colour_profile())
    image, metadata = read_photo(path)
    np.testing.assert_array_equal(image, read_image(path))
    if name.endswith(".jpg"):
        assert image.shape == (80, 40, 3)  # upright
    assert metadata.icc_profile == colour_profile()
    # A TIFF structure, without the JPEG's "Exif\0\0": an encoder adds its own, and a PNG's
    # eXIf chunk holds none.
    assert metadata.exif[:4] in (b"II*\x00", b"MM\x00*"), metadata.exif[:8]
    kept = Image.Exif()
    kept.load(metadata.exif)
    assert {tag: kept[tag] for tag in kept if tag != 0x8769} == {
        0x010F: "Apple", 0x0110: "iPhone 15 Pro", 0x0132: "2024:05:01 10:00:05"}
    assert kept.get_ifd(0x8769) == {0x9003: "2024:05:01 09:59:58", 0x9011: "+02:00"}
    assert kept.get_ifd(0x8825) == {}  # no GPS


def test_read_photo_drops_a_profile_of_other_colours_than_rgb_and_has_none_without(tmp_path):
    """OpenCV turns a CMYK photo into RGB, which its CMYK profile does not describe."""
    cmyk_profile = colour_profile()[:16] + b"CMYK" + colour_profile()[20:]
    Image.fromarray(rgb_red_left()).convert("CMYK").save(tmp_path / "print.jpg",
                                                         icc_profile=cmyk_profile)
    cv2.imwrite(str(tmp_path / "plain.png"), np.zeros((4, 6, 3), np.uint8))
    for name in ("print.jpg", "plain.png"):
        image, metadata = read_photo(tmp_path / name)
        assert metadata.icc_profile is None and metadata.exif is None and not metadata
        np.testing.assert_array_equal(image, read_image(tmp_path / name))


def test_read_photo_keeps_every_capture_time_tag_and_no_exif_without_one(tmp_path):
    """All the Exif sub-directory's date, time zone and fraction-of-a-second tags are kept; a
    photo whose EXIF holds only what is dropped (orientation, serial number, GPS position)
    keeps no EXIF at all, not an empty structure."""
    times = {0x9003: "2024:05:01 09:59:58", 0x9004: "2024:05:01 09:59:59",  # original, digitized
             0x9010: "+02:00", 0x9011: "+02:00", 0x9012: "+02:00",  # their time zones
             0x9290: "120", 0x9291: "125", 0x9292: "130"}  # their fractions of a second
    exif = Image.Exif()
    exif[0x8769] = {**times, 0xA431: "F17ZX123ABC"}
    Image.fromarray(rgb_red_left()).save(tmp_path / "times.jpg", exif=exif.tobytes())
    kept = Image.Exif()
    kept.load(read_photo(tmp_path / "times.jpg")[1].exif)
    assert kept.get_ifd(0x8769) == times and len(kept) == 1
    exif = phone_exif()
    for tag in (0x010F, 0x0110, 0x0132):  # no camera, no date
        del exif[tag]
    exif[0x8769] = {0xA431: "F17ZX123ABC"}
    Image.fromarray(rgb_red_left()).save(tmp_path / "bare.jpg", exif=exif.tobytes())
    assert read_photo(tmp_path / "bare.jpg")[1] == PhotoMetadata()


def test_read_photo_takes_a_png_s_exif_only_from_before_its_pixels(tmp_path):
    """An ``eXIf`` chunk after the pixels (the PNG specification puts it before them) is not
    looked for: finding it would decode the whole image a second time."""
    exif = Image.Exif()
    exif[0x0132] = "2024:05:01 10:00:05"
    cv2.imwrite(str(tmp_path / "late.png"), np.zeros((4, 6, 3), np.uint8))
    data = (tmp_path / "late.png").read_bytes()
    body = exif.tobytes().removeprefix(b"Exif\x00\x00")
    chunk = (struct.pack(">I", len(body)) + b"eXIf" + body
             + struct.pack(">I", zlib.crc32(b"eXIf" + body)))
    iend = data.rindex(b"IEND") - 4  # the IEND chunk's length field
    (tmp_path / "late.png").write_bytes(data[:iend] + chunk + data[iend:])
    with Image.open(tmp_path / "late.png") as image:
        image.load()
        assert image.info["exif"].endswith(body)  # Pillow finds it once the pixels are read
    assert read_photo(tmp_path / "late.png")[1].exif is None
    Image.fromarray(rgb_red_left()).save(tmp_path / "early.png", exif=exif.tobytes())
    assert read_photo(tmp_path / "early.png")[1].exif is not None


def test_a_photo_whose_exif_pillow_cannot_write_back_is_read_without_it(tmp_path):
    """A damaged EXIF costs the output its date, never the photo: here the date is stored as a
    signed fraction (type 10), which Pillow reads and then fails to write back with an
    AttributeError, not a ValueError."""
    raw = (b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, 1)
           + struct.pack("<HHII", 0x0132, 10, 1, 26) + struct.pack("<I", 0)
           + struct.pack("<ii", 1, 2))
    Image.fromarray(rgb_red_left()).save(tmp_path / "odd.jpg", exif=raw, quality=95)
    image, metadata = read_photo(tmp_path / "odd.jpg")
    np.testing.assert_array_equal(image, read_image(tmp_path / "odd.jpg"))
    assert metadata.exif is None and not metadata


def _half_transparent_rgba(width=80, height=40) -> np.ndarray:
    """RGBA: the left half opaque red, the right half transparent (its colour green, which
    must not show), and a half-transparent stripe in the middle."""
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[:, :, 1] = 255  # green everywhere, seen only where opaque...
    rgba[:, : width // 2] = (255, 0, 0, 255)  # ...which the left half is, in red
    rgba[:, width // 2 - 2: width // 2 + 2, 3] = 128
    return rgba


@pytest.mark.parametrize("name", ["rgba.png", "rgba16.png", "la.png", "palette.png",
                                  "lossless.webp", "rgba.tiff"])
def test_read_image_keeps_the_alpha_when_asked(tmp_path, name):
    rgba = _half_transparent_rgba()
    path = tmp_path / name
    if name == "rgba16.png":
        cv2.imwrite(str(path), rgba[:, :, [2, 1, 0, 3]].astype(np.uint16) * 257)
    elif name == "la.png":
        Image.fromarray(rgba[:, :, [0, 3]], "LA").save(path)
    elif name == "palette.png":  # one transparent palette entry (tRNS), no alpha channel
        palette = Image.fromarray(rgba[:, :, :3]).convert("P")
        palette.save(path, transparency=palette.getpixel((70, 20)))
    else:
        Image.fromarray(rgba, "RGBA").save(path, **({"lossless": True} if "webp" in name else {}))
    image = read_image(path, keep_alpha=True)
    assert image.dtype == np.uint8 and image.shape == (40, 80, 4), name
    assert image[20, 10, 3] == 255 and image[20, 70, 3] == 0, name
    if name not in ("palette.png", "la.png"):
        assert abs(int(image[20, 39, 3]) - 128) <= 1, name
    if name != "la.png":
        assert np.abs(image[20, 10, :3].astype(int) - RED_BGR).max() <= 3, name
    # Without keep_alpha, as before: BGR, the alpha dropped.
    assert read_image(path).shape == (40, 80, 3)


def test_read_image_keep_alpha_gives_bgr_for_opaque_images(tmp_path):
    rgb = rgb_red_left()
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(
        tmp_path / "opaque.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=95)
    for name in ["opaque.png", "rgb.png", "photo.jpg"]:
        image = read_image(tmp_path / name, keep_alpha=True)
        np.testing.assert_array_equal(image, read_image(tmp_path / name))


def test_read_image_turns_the_alpha_with_the_exif_orientation(tmp_path):
    image = Image.fromarray(_half_transparent_rgba(), "RGBA")
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "rotated.png", exif=exif)
    bgra = read_image(tmp_path / "rotated.png", keep_alpha=True)
    assert bgra.shape == (80, 40, 4)  # displayed upright: portrait
    # The stored left (opaque red) half is the displayed top, colours and alpha alike.
    assert bgra[10, 20, 3] == 255 and np.abs(bgra[10, 20, :3].astype(int) - RED_BGR).max() <= 3
    assert bgra[70, 20, 3] == 0


def _float_bgr(width=80, height=40) -> np.ndarray:
    """Float BGR in 0..1: the left half red, the right half a quarter grey, one NaN pixel."""
    image = np.full((height, width, 3), 0.25, np.float32)
    image[:, : width // 2] = (0.0, 0.0, 1.0)
    image[0, -1] = np.nan
    return image


def test_a_photo_of_a_format_pillow_does_not_read_is_opaque_without_a_word_unless_it_has_alpha(
        tmp_path, caplog):
    """--image reads each photo's transparency with Pillow: a Radiance HDR or a PFM, which
    OpenCV reads and Pillow does not, have no alpha to lose, and were warned about as 'its
    transparency could not be read (cannot identify image file <_io.BytesIO object at ...>)';
    a PAM with an alpha channel, which Pillow does not read either, is still warned about,
    in words (its colours are read, opaque)."""
    colours = (_float_bgr() * 0.5).astype(np.float32)
    colours[0, -1] = 0.25  # no NaN: a plain photo
    cv2.imwrite(str(tmp_path / "room.hdr"), colours)
    cv2.imwrite(str(tmp_path / "room.pfm"), colours)
    bgra = np.zeros((40, 80, 4), np.uint8)
    bgra[..., 2], bgra[:, 40:, 3] = 200, 255
    assert cv2.imwrite(str(tmp_path / "cut.pam"), bgra,
                       [cv2.IMWRITE_PAM_TUPLETYPE, cv2.IMWRITE_PAM_FORMAT_RGB_ALPHA])
    caplog.set_level(logging.WARNING, logger="portrait.capture")
    for name in ("room.hdr", "room.pfm", "cut.pam"):
        (item,) = ImageSource(tmp_path / name).items()
        assert item.error is None and item.frame.alpha is None, name
        assert item.frame.image.shape == (40, 80, 3), name
    assert [r.getMessage() for r in caplog.records] == [
        f"image '{tmp_path / 'cut.pam'}': its transparency could not be read (Pillow, which "
        "reads transparency, does not read this format); shown opaque"]


@pytest.mark.parametrize("name", ["rgb32.tiff", "rgba32.tif", "grey32.tiff", "rgb64.tiff",
                                  "colour.pfm"])
def test_a_float_image_is_read_with_its_0_to_1_values_scaled_to_8_bits(tmp_path, name, caplog):
    """A valid 32-bit float TIFF (as HDR and scientific tools write) was refused as 'not a
    supported image, or the file is truncated or corrupt'; a PFM came out black (OpenCV cast its
    0..1 to 0 and 1). Float values are read as 0..1 now, as OpenCV reads a Radiance HDR."""
    path = tmp_path / name
    image = _float_bgr()
    if name == "grey32.tiff":
        Image.fromarray(image[:, :, 2].copy(), "F").save(path)
    elif name == "rgba32.tif":
        cv2.imwrite(str(path), np.dstack([image, np.ones(image.shape[:2], np.float32)]))
    else:
        cv2.imwrite(str(path), image.astype(np.float64) if "64" in name else image)
    caplog.set_level(logging.INFO, logger="portrait.capture")
    bgr = read_image(path)
    assert bgr.dtype == np.uint8 and bgr.shape == (40, 80, 3), name
    # (the grey one is the red channel: white, then a quarter grey)
    assert bgr[20, 10].tolist() == ([255] * 3 if name == "grey32.tiff" else list(RED_BGR)), name
    assert bgr[20, 70].tolist() == [64] * 3, name  # 0.25 * 255, rounded
    assert bgr[0, -1].tolist() == [0, 0, 0], name  # NaN: black
    bits = 64 if "64" in name else 32
    kind = "PFM" if name.endswith(".pfm") else "TIFF"
    assert f"is a {bits}-bit float {kind}: its 0..1 values are scaled to 8 bits" in caplog.text


@pytest.mark.parametrize("extra_samples", [1, 2], ids=["associated", "unassociated"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_a_tiff_background_s_colours_are_straight_whichever_alpha_it_marks(tmp_path, dtype,
                                                                           extra_samples):
    """A TIFF whose ExtraSamples tag says its colours are premultiplied by its alpha (1,
    associated) gives, with its alpha, the straight colours one that stores them straight (2)
    gives, at every depth. A 32-bit float one gave them as stored, premultiplied (OpenCV
    decodes its samples as they are, and Pillow cannot read it): a tenth-opaque orange came
    out nearly black. They are divided by the alpha before the 8-bit scaling now; an 8- or
    16-bit TIFF's colours and alpha are Pillow's, which made them straight already."""
    # RGBA orange, by columns: opaque, half, a tenth and not at all
    straight = np.zeros((4, 8, 4), np.float32)
    straight[:, :, :3] = (1.0, 0.5, 0.0)
    straight[:, :, 3] = np.repeat([1.0, 0.5, 0.1, 0.0], 2)
    stored = straight.copy()
    if extra_samples == 1:
        stored[:, :, :3] *= stored[:, :, 3:]
    if dtype != np.float32:
        stored = np.round(stored * np.iinfo(dtype).max).astype(dtype)
    path = write_rgba_tiff(tmp_path / "overlay.tif", stored, extra_samples)
    bgra = read_image(path, keep_alpha=True, what="background image")
    assert bgra.dtype == np.uint8 and bgra.shape == (4, 8, 4)
    # (Pillow takes a 16-bit alpha's high byte: 25 for a tenth)
    assert np.abs(bgra[0, ::2, 3].astype(int) - (255, 128, 26, 0)).max() <= 1
    colour = bgra[:, :4, :3].astype(int)  # opaque and half transparent: the colour itself
    assert np.abs(colour - (0, 128, 255)).max() <= 1, colour[0, ::2].tolist()
    # Where a tenth opaque, what shows of it (times its alpha) is the orange's tenth. (Pillow
    # makes a 16-bit TIFF's colours straight at 8 bits, 122 for 128 here: a tenth of that.)
    alpha = bgra[:, :6, 3:] / 255
    shows = bgra[:, :6, :3] * alpha
    assert np.abs(shows - np.multiply((0, 128, 255), alpha)).max() <= 1, shows[0, ::2].tolist()


@pytest.mark.parametrize("extra_samples", [1, 2], ids=["associated", "unassociated"])
def test_a_32_bit_integer_rgba_tiff_background_is_refused_whichever_alpha_it_marks(
        tmp_path, extra_samples):
    """A 32-bit integer RGBA TIFF is refused in one line, as a background too. Marked
    associated (ExtraSamples 1), its colours were divided by its alpha before the depth was
    checked, and NumPy's UFuncTypeError (a uint32 output for a division) escaped instead."""
    rgba = np.zeros((4, 8, 4), np.uint32)
    rgba[:, :, 3] = 2 ** 31
    path = write_rgba_tiff(tmp_path / "counts.tif", rgba, extra_samples)
    for keep_alpha in (True, False):
        with pytest.raises(InputError, match=r"'.*counts.tif': it is a 32-bit integer TIFF, "
                                             r"which is not read here; save it as an 8- or "
                                             r"16-bit image$"):
            read_image(path, keep_alpha=keep_alpha, what="background image")


def test_float_values_over_1_are_named_and_32_bit_integers_refused_saying_what_they_are(
        tmp_path, caplog):
    """A float image saved in 0..255 reads white but says why; a 32-bit integer image is
    refused with what it is instead of 'truncated or corrupt'."""
    cv2.imwrite(str(tmp_path / "levels.tiff"), _float_bgr() * 200)
    caplog.set_level(logging.WARNING, logger="portrait.capture")
    assert read_image(tmp_path / "levels.tiff")[20, 10].tolist() == [0, 0, 255]
    assert ("is a 32-bit float TIFF with values up to 200: float images are read as 0..1, and "
            "66.6 % of its values are over 1 and show as white; save it as an 8- or 16-bit image"
            ) in caplog.text
    Image.fromarray(np.full((40, 80), 60000, np.int32), "I").save(tmp_path / "counts.tiff")
    with pytest.raises(InputError, match=r"'.*counts.tiff': it is a 32-bit integer TIFF, which "
                                         r"is not read here; save it as an 8- or 16-bit image$"):
        read_image(tmp_path / "counts.tiff")


def test_read_image_one_pixel(tmp_path):
    cv2.imwrite(str(tmp_path / "dot.png"), np.array([[[1, 2, 3]]], np.uint8))
    image = read_image(tmp_path / "dot.png")
    assert image.shape == (1, 1, 3) and image[0, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize("kind", ["zero_byte", "truncated_jpeg", "truncated_png", "text_as_png",
                                  "random_as_jpg", "folder"])
def test_bad_image_files_are_one_line_input_errors(tmp_path, kind):
    photo = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    path = tmp_path / ("bad.png" if "png" in kind else "bad.jpg")
    if kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "truncated_jpeg":
        ok, data = cv2.imencode(".jpg", photo)
        path.write_bytes(data.tobytes()[: len(data) * 2 // 3])
    elif kind == "truncated_png":
        ok, data = cv2.imencode(".png", photo)
        path.write_bytes(data.tobytes()[: len(data) // 2])
    elif kind == "text_as_png":
        path.write_text("definitely not a PNG\n")
    elif kind == "random_as_jpg":
        path.write_bytes(np.random.default_rng(1).bytes(5000))
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(InputError) as error:
        read_image(path)
    message = str(error.value)
    assert f"'{path}'" in message and "\n" not in message
    if kind == "zero_byte":
        assert "empty" in message
    if kind == "truncated_png":  # said before libpng decodes what it can and complains
        assert "the PNG file is truncated" in message


def decoder_calls(function) -> list[str]:
    """The image decoders ``function()`` calls, in order: OpenCV's ``imdecode``/``imread`` and
    Pillow's loading of the pixels, seen through ``sys.setprofile`` (the real calls, untimed)."""
    import sys

    from PIL import ImageFile

    opencv = {cv2.imdecode, cv2.imread, cv2.imdecodemulti, cv2.imreadmulti}
    pillow_load = ImageFile.ImageFile.load.__code__
    calls: list[str] = []

    def profile(frame, event, arg):
        if event == "c_call" and arg in opencv:
            calls.append(f"cv2.{arg.__name__}")
        elif event == "call" and frame.f_code is pillow_load:
            calls.append("PIL load")

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        function()
    finally:
        sys.setprofile(previous)
    return calls


def test_huge_image_is_refused_from_its_header(tmp_path):
    path = png_header_only(tmp_path / "huge.png", 12000, 9000)

    def refused():
        with pytest.raises(InputError, match=r"12000x9000 \(108,000,000 pixels\), over the limit "
                                             r"of 64,000,000 \(64 MP\); downscale it first"):
            read_image(path)

    assert decoder_calls(refused) == []  # refused before any decoding
    # ... which the probe would have seen: a small photo is decoded, once, by OpenCV.
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((3, 4, 3), np.uint8))
    assert decoder_calls(lambda: read_image(small)) == ["cv2.imdecode"]
    # Just over: the numbers say so (rounded to megapixels, both read "64 MP").
    with pytest.raises(InputError, match=r"8000x8001 \(64,008,000 pixels\), over the limit of "
                                         r"64,000,000"):
        read_image(png_header_only(tmp_path / "over.png", 8000, 8001))


def test_a_photo_over_the_limit_is_refused_without_reading_the_whole_file(tmp_path):
    """An uncompressed scan over the limit: the whole file was read into memory to be refused
    from its header (a 2.7 GB TIFF took 2.7 GB); now only its header is read."""
    import tracemalloc

    path = tmp_path / "scan.tif"
    Image.fromarray(np.zeros((1500, 2000, 3), np.uint8)).save(path)  # 9 MB, uncompressed
    assert path.stat().st_size > 9_000_000
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((3, 4, 3), np.uint8))
    read_image(tmp_path / "small.png")  # the header reader's imports, before memory is traced
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"2000x1500 \(3,000,000 pixels\), over the limit"):
            read_image(path, max_pixels=2_999_999)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak


def test_pixel_limit_also_applies_to_decoded_images(tmp_path):
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((30, 40, 3), np.uint8))
    assert read_image(tmp_path / "small.png", max_pixels=1200).shape == (30, 40, 3)
    with pytest.raises(InputError, match="40x30"):
        read_image(tmp_path / "small.png", max_pixels=1199)


def test_missing_image_message():
    with pytest.raises(InputError) as error:
        ImageSource("x.jpg")
    assert str(error.value) == "image 'x.jpg' not found; check the path"


def test_image_folder_lists_sorted_images_and_carries_on_past_bad_files(tmp_path, caplog):
    for name in ["b.PNG", "a.jpg", "c.webp"]:
        cv2.imwrite(str(tmp_path / name.lower()), np.full((8, 8, 3), 100, np.uint8))
        (tmp_path / name.lower()).rename(tmp_path / name)
    (tmp_path / "bad.jpeg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "._a.jpg").write_bytes(b"\0\5\x16\7")  # macOS metadata: skipped
    (tmp_path / "sub.png").mkdir()  # a folder with an image-like name: skipped
    caplog.set_level(logging.WARNING, logger="portrait.capture")

    source = ImageSource(tmp_path)
    assert [p.name for p in source.paths] == ["a.jpg", "b.PNG", "bad.jpeg", "c.webp"]
    assert len(source) == 4 and source.fps is None
    frames = list(source)
    assert [(f.name, f.index) for f in frames] == [("a", 0), ("b", 1), ("c", 3)]
    assert all(f.image.shape == (8, 8, 3) and f.path.parent == tmp_path for f in frames)
    assert [p.name for p, _ in source.failures] == ["bad.jpeg"]
    assert "empty" in str(source.failures[0][1])
    assert sum("bad.jpeg" in r.getMessage() for r in caplog.records) == 1

    items = list(ImageSource(tmp_path).items())
    assert [(i.path.name, i.frame is not None, i.error is not None) for i in items] == [
        ("a.jpg", True, False), ("b.PNG", True, False), ("bad.jpeg", False, True),
        ("c.webp", True, False)]


def test_a_folder_says_how_many_subfolders_it_does_not_search(tmp_path, caplog):
    """Photos sorted into folders by year beside a photo of the top folder: the batch is that
    photo, and one line counts the subfolders left out (not the hidden ones), naming the
    first, so they are not missed unsaid; the other files are counted in a line of their own."""
    cv2.imwrite(str(tmp_path / "top.jpg"), np.full((8, 8, 3), 100, np.uint8))
    for name in ("2024", "2023", ".thumbnails"):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "inside.jpg"), np.full((8, 8, 3), 100, np.uint8))
    (tmp_path / "notes.txt").write_text("not a photo")
    caplog.set_level(logging.INFO, logger="portrait.capture")
    assert [p.name for p in ImageSource(tmp_path).paths] == ["top.jpg"]
    assert [r.getMessage() for r in caplog.records] == [
        f"'{tmp_path}': 1 file that is not an image skipped (first: notes.txt)",
        f"'{tmp_path}': 2 subfolders not searched (first: 2023); give a subfolder's path to "
        "process its photos"]
    # A folder of subfolders only: its error says they are not searched, and no line before it
    (tmp_path / "top.jpg").unlink()
    caplog.clear()
    with pytest.raises(InputError, match="has no images .*subfolders are not searched"):
        ImageSource(tmp_path)
    assert not [r for r in caplog.records if "not searched" in r.getMessage()]


def test_a_folder_warns_of_photos_whose_names_differ_only_in_case(tmp_path, caplog):
    """IMG_1.jpg and img_1.png: their outputs are one file on a disk that ignores case."""
    for name in ("IMG_1.jpg", "img_1.png", "a.jpg", "a.png"):
        cv2.imwrite(str(tmp_path / name), np.full((8, 8, 3), 100, np.uint8))
    caplog.set_level(logging.WARNING, logger="portrait.capture")
    ImageSource(tmp_path)
    assert ("'IMG_1.jpg' and 'img_1.png' have names that differ only in case; where the output "
            "folder's disk ignores case (macOS, Windows, a USB stick) their outputs would be one "
            "file, and the second is not written") in caplog.text
    assert "'a.jpg' and 'a.png' have the same name; their outputs would share 'a.png'" in caplog.text
    assert len(caplog.records) == 2


def test_photos_that_cannot_be_decoded_and_dangling_links_are_reported_not_left_out(tmp_path):
    """An iPhone folder: its HEIC photos were counted with the text files as 'not images' (one
    INFO line, unseen with -q; exit code 0 with half the photos missing), and a link to a photo
    on a drive not mounted was left out unsaid. Each is now a photo not processed, with why."""
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((8, 8, 3), 100, np.uint8))
    # The start of a real HEIC file (its ftyp box): OpenCV has no decoder for it.
    (tmp_path / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64))
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "elsewhere" / "gone.jpg")
    (tmp_path / "notes.txt").write_text("still left alone")

    items = {item.path.name: item for item in ImageSource(tmp_path).items()}
    assert sorted(items) == ["IMG_0001.HEIC", "a.jpg", "gone.jpg"]
    assert items["a.jpg"].frame is not None
    assert "HEIC photos cannot be decoded here; convert it to JPEG or PNG first" in str(
        items["IMG_0001.HEIC"].error)
    assert f"is a link to '{tmp_path / 'elsewhere' / 'gone.jpg'}', which is not there" in str(
        items["gone.jpg"].error)
    with pytest.raises(InputError, match="is a link to .*which is not there; check the link"):
        ImageSource(tmp_path / "gone.jpg")


def test_single_bad_image_raises_when_iterated(tmp_path):
    (tmp_path / "bad.png").write_text("nope")
    source = ImageSource(tmp_path / "bad.png")
    with pytest.raises(InputError, match="bad.png"):
        list(source)


def test_single_image_source(tmp_path):
    cv2.imwrite(str(tmp_path / "me.jpg"), np.zeros((10, 12, 3), np.uint8))
    with ImageSource(tmp_path / "me.jpg") as source:
        frames = list(source)
    assert len(frames) == 1 and frames[0].name == "me" and frames[0].image.shape == (10, 12, 3)


def test_empty_image_folder_is_an_input_error(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="has no images"):
        ImageSource(tmp_path)


def test_to_bgr_uint8():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_bgr_uint8(grey).shape == (3, 4, 3)
    bgr = np.zeros((3, 4, 3), np.uint8)
    assert to_bgr_uint8(bgr) is bgr
    assert to_bgr_uint8(np.full((2, 2), 65535, np.uint16)).max() == 255
    # 16 bits made from 8 (v * 257, as PNG and TIFF writers widen) read back as v, each level.
    widened = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    np.testing.assert_array_equal(to_bgr_uint8(widened)[:, :, 0],
                                  np.arange(256, dtype=np.uint8).reshape(16, 16))
    with pytest.raises(ValueError, match="float32"):
        to_bgr_uint8(np.zeros((2, 2, 3), np.float32))


def test_frame_is_a_plain_record():
    image = np.zeros((2, 2, 3), np.uint8)
    frame = Frame(image, 3, 1.5)
    assert frame.name is None and frame.path is None and frame.image is image


# --- fuzz: mutated and random bytes never give a traceback or a hang ----------------------------


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buffer = bytearray(data)
    choice = rng.integers(4)
    if choice == 0:  # flip bytes
        for pos in rng.integers(0, len(buffer), rng.integers(1, 20)):
            buffer[pos] = int(rng.integers(256))
    elif choice == 1:  # cut
        buffer = buffer[: int(rng.integers(1, len(buffer)))]
    elif choice == 2:  # splice random bytes in
        pos = int(rng.integers(len(buffer)))
        buffer[pos:pos] = rng.bytes(int(rng.integers(1, 200)))
    else:  # zero a run
        pos = int(rng.integers(len(buffer)))
        buffer[pos:pos + int(rng.integers(1, 300))] = bytes(min(300, len(buffer) - pos))
    return bytes(buffer)


def test_fuzz_image_reader(tmp_path):
    rng = np.random.default_rng(1234)
    photo = cv2.resize(rng.integers(0, 255, (6, 8, 3), np.uint8), (96, 72))
    seeds = [cv2.imencode(ext, photo)[1].tobytes() for ext in (".jpg", ".png", ".webp", ".bmp")]
    start = time.perf_counter()
    outcomes = {"image": 0, "error": 0}
    for case in range(120):
        data = mutate(seeds[case % len(seeds)], rng) if case % 6 else rng.bytes(
            int(rng.integers(1, 2000)))
        path = tmp_path / f"fuzz{case}.jpg"
        path.write_bytes(data)
        try:
            image = read_image(path)
        except InputError as error:
            assert "\n" not in str(error)
            outcomes["error"] += 1
        else:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            outcomes["image"] += 1
    assert time.perf_counter() - start < 20.0
    assert outcomes["image"] > 0 and outcomes["error"] > 0  # both paths were exercised


def test_fuzz_video_reader(tmp_path):
    rng = np.random.default_rng(99)
    seed = write_video(tmp_path / "seed.avi", 8).read_bytes()
    start = time.perf_counter()
    for case in range(15):
        path = tmp_path / f"fuzz{case}.avi"
        path.write_bytes(mutate(seed, rng) if case % 5 else rng.bytes(3000))
        try:
            with VideoFileSource(path) as video:
                for frame in itertools.islice(video, 50):
                    assert frame.image.dtype == np.uint8 and frame.image.shape[2] == 3
        except InputError as error:
            assert "\n" not in str(error)
    assert time.perf_counter() - start < 20.0


NOT_UTF_8_CHILD = r"""
import sys
from pathlib import Path
from portrait.capture import VideoFileSource, list_images
from portrait.errors import InputError

folder, video = sys.argv[1], sys.argv[2]
print("images", sorted(path.name for path in list_images(Path(folder))), flush=True)
try:
    VideoFileSource(video)
except InputError as error:
    print("refused", error, flush=True)
"""


def test_opencv_is_never_given_a_name_that_is_not_utf_8(tmp_path):
    """OpenCV takes a path as UTF-8 text and crashes the process (a segmentation fault, exit
    code 139, no line) on a name that is not: a photo folder holding any file of such a name
    not named like a photo (its first bytes were asked of OpenCV), and a video of such a name
    (app.py --source, distill --video). The file is counted with the other files; the video is
    refused in one line."""
    import os
    import subprocess
    import sys

    from conftest import ROOT, write_video

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((32, 48, 3), 128, np.uint8))
    video = write_video(tmp_path / "clip.avi", frames=3)
    try:
        (folder / os.fsdecode(b"notes\xe9")).write_text("not a photo")
        video = video.rename(tmp_path / os.fsdecode(b"clip\xe9.avi"))
    except OSError as error:  # a file system that takes only UTF-8 names
        pytest.skip(f"no Latin-1 file names here: {error}")
    done = subprocess.run([sys.executable, "-c", NOT_UTF_8_CHILD, str(folder), str(video)],
                          cwd=ROOT, capture_output=True, text=True, errors="surrogateescape",
                          timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.splitlines() == [
        "images ['a.jpg']",
        f"refused cannot read video '{video}': its name is not UTF-8 text, "
        "which the video reader cannot open; rename the file"], done.stdout

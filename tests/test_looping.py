"""portrait.capture.looping: the play clock, and a looping video decoded ahead in its thread."""

import logging
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import portrait.capture.looping as looping
from portrait.capture.looping import LoopingVideo, PlayClock
from portrait.capture.video import VideoFileSource
from portrait.composite import cover


def levels_video(path, count, fps=30.0, size=(64, 48)):
    """A video whose frame i is a flat grey of 2 + 4 * i (MJPEG keeps flat greys)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(count):
        writer.write(np.full((size[1], size[0], 3), 2 + 4 * i, np.uint8))
    writer.release()
    return path


def h264_video(path, count, fps=30, size=(64, 48)):
    """An H.264 clip (B-frames, one keyframe), frame i a grey of 2 + 4 * i with a moving bar."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for i in range(count):
            image = np.full((size[1], size[0], 3), 2 + 4 * i, np.uint8)
            image[:, 2 * i % size[0]] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())
    return path


def index_of(image) -> int:
    return round((float(image.mean()) - 2) / 4)


def test_play_clock_follows_the_stream_time_and_never_goes_back():
    clock = PlayClock()
    assert clock.advance(5.0) == 0.0  # the first call starts it
    assert clock.advance(5.5) == pytest.approx(0.5)
    assert clock.advance(5.2) == pytest.approx(0.5)  # back in time: it waits
    assert clock.advance(6.0) == pytest.approx(1.0)
    assert clock.advance(None) == pytest.approx(1.0)  # on to the monotonic clock, from there
    time.sleep(0.02)
    assert clock.advance(None) >= 1.02
    assert clock.advance(0.0) >= 1.02  # and back to a stream's time, still going forward


def test_waited_for_frames_that_are_late_are_not_prepared(tmp_path):
    """A file run that jumps ahead: the frames passed over are decoded, not scaled."""
    path = levels_video(tmp_path / "levels.avi", 60)
    prepared = []

    def prepare(image, size):
        prepared.append(index_of(image))
        return cover(image, size)

    video = LoopingVideo(path, (32, 24), prepare)
    try:
        assert index_of(video.frame_at(40.2 / 30)) == 40
        assert video.frame_at(40.3 / 30) is None  # still frame 40
    finally:
        video.close()
    # The first, up to three made before the jump, frame 40 and the one after it (which says
    # frame 40 is the one due): not the 36 frames between.
    assert len(prepared) <= 7 and 40 in prepared, prepared


class Turnstile:
    """Lets a reader's frames through one at a time, when the test says."""

    def __init__(self):
        self._waiting, self._let = threading.Semaphore(0), threading.Semaphore(0)

    def pass_through(self):
        """In the reader's thread: say it is done with the frames before, and wait its turn."""
        self._waiting.release()
        self._let.acquire()

    def reader_waits(self):
        """Wait (10 s at most) until the reader is done with the frames let through."""
        assert self._waiting.acquire(timeout=10.0), "the reader never asked for another frame"

    def let_through(self, count=1):
        self._let.release(count)


class TurnstileVideo(VideoFileSource):
    """A video file read for real, each frame after the first let through by the test: the
    test, as the clock, stays ahead of every frame decoded, however fast the machine."""

    def __init__(self, path, turnstile, **kwargs):
        super().__init__(path, **kwargs)
        self.turnstile = turnstile

    def __iter__(self):
        for index, frame in enumerate(super().__iter__()):
            if index:
                self.turnstile.pass_through()
            yield frame


def test_live_a_reader_slower_than_the_clock_still_shows_new_frames(tmp_path):
    """Live, every decoded frame is late when the reader cannot keep up with the clock (the
    next one is due before it is decoded); it is shown anyway (dropping late frames
    unprepared showed no new frame after the first few). Here the clock runs 20 frames ahead
    at each call, and one frame is decoded between calls."""
    path = levels_video(tmp_path / "levels.avi", 30)
    turnstile = Turnstile()
    video = LoopingVideo(path, (32, 24), cover,
                         reader=lambda path, **kwargs: TurnstileVideo(path, turnstile, **kwargs))
    shown = []
    try:
        turnstile.reader_waits()
        turnstile.let_through()  # frame 1: held until the next one says when it ends
        turnstile.reader_waits()
        for k in range(1, 9):
            video.frame_at(k * 20 / 30, wait=False)  # frames up to 20 k are due
            turnstile.let_through()  # frame k + 1: frame k, late, is handed over
            turnstile.reader_waits()
            picked = video.frame_at(k * 20 / 30, wait=False)
            shown.append(None if picked is None else index_of(picked))
    finally:
        turnstile.let_through(100)  # it goes on until its queue is full, then sees the close
        video.close()
    assert shown == list(range(1, 9)), shown

@pytest.mark.parametrize("ahead", [1, 3])
def test_at_most_ahead_prepared_frames_wait(tmp_path, ahead):
    """Prepared frames (a 4K background's, scaled) take memory: the thread prepares the first,
    ``ahead`` to wait, and the one it then waits to queue, and no more until one is taken."""
    path = levels_video(tmp_path / "levels.avi", 30)
    prepared = []
    more = threading.Event()

    def prepare(image, size):
        prepared.append(index_of(image))
        if len(prepared) > ahead + 1:
            more.set()
        return cover(image, size)

    video = LoopingVideo(path, (32, 24), prepare, ahead=ahead)
    try:
        assert more.wait(5.0)  # the one it waits to queue
        time.sleep(0.2)  # room for a wrong bound to show: nothing more comes in that time
        assert prepared == list(range(ahead + 2)), prepared
        assert index_of(video.frame_at(1 / 30)) == 1  # one taken: room for one more
        deadline = time.perf_counter() + 5.0
        while len(prepared) < ahead + 3 and time.perf_counter() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert prepared == list(range(ahead + 3)), prepared
    finally:
        video.close()


def test_close_ends_the_thread_while_it_waits_for_room(tmp_path):
    path = levels_video(tmp_path / "levels.avi", 30)
    before = set(threading.enumerate())
    video = LoopingVideo(path, (32, 24), cover, ahead=1)
    (reader,) = [t for t in set(threading.enumerate()) - before if t.name == "background-video"]
    time.sleep(0.05)  # it has filled its one place and waits
    video.close()
    assert not reader.is_alive()
    assert not [t for t in threading.enumerate() if t.name.startswith("background-video")]
    video.close()  # twice is safe


def test_rewind_plays_the_open_file_again_from_its_first_frame(tmp_path):
    path = h264_video(tmp_path / "clip.mp4", 12)
    with VideoFileSource(path, rewindable=True) as source:
        first = [(frame.pts_s, frame.image) for frame in source]
        assert source.rewind()
        again = [(frame.pts_s, frame.image) for frame in source]
        assert [t for t, _ in again] == [t for t, _ in first] and len(first) == 12
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(first, again))
        with path.open("ab") as handle:  # the file changed on disk: open it again instead
            handle.write(b"\0")
        assert not source.rewind()
        with pytest.raises(ValueError, match="iterated once"):  # closed
            next(iter(source))


def count_opens(monkeypatch) -> list:
    """The paths looping opens a VideoFileSource on, in order (the real source, counted)."""
    opened = []

    class Counted(VideoFileSource):
        def __init__(self, *args, **kwargs):
            opened.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(looping, "VideoFileSource", Counted)
    return opened


def test_a_loop_opens_no_file_while_the_file_is_unchanged(tmp_path, monkeypatch):
    """Each loop's first frame comes from a reader made ready beside the pass that plays (a
    rewound one): the file is opened twice in all, not once a loop (0.3-0.7 s for a 4K clip,
    which a file run waited for at each loop). The loops show the same frames."""
    opened = count_opens(monkeypatch)
    path = h264_video(tmp_path / "clip.mp4", 10)
    video = LoopingVideo(path, (64, 48), lambda image, _size: image)
    try:
        shown = [video.first] + [video.frame_at(k / 30) for k in range(1, 50)]  # 5 loops
    finally:
        video.close()
    assert len(opened) == 2, opened
    for k in range(10, 50):
        np.testing.assert_array_equal(shown[k], shown[k % 10])
    assert not np.array_equal(shown[0], shown[1])


def rotated(path, clockwise_degrees):
    """``path`` (an MP4) shown turned: its track's display matrix set, as a phone writes it."""
    import struct

    data = bytearray(path.read_bytes())
    at = data.index(b"tkhd") + 4  # version, flags, times, track, reserved, duration, ...
    matrix_at = at + (4 + 28 if data[at] == 1 else 4 + 20) + 16
    one, minus, w = 0x10000, -0x10000, 0x40000000
    matrix = {90: (0, one, 0, minus, 0, 0, 0, 0, w), 180: (minus, 0, 0, 0, minus, 0, 0, 0, w),
              270: (0, minus, 0, one, 0, 0, 0, 0, w)}[clockwise_degrees]
    data[matrix_at:matrix_at + 36] = struct.pack(">9i", *matrix)
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
@pytest.mark.parametrize("size", [(64, 48), (48, 64), (40, 40), (96, 30)])
def test_cover_picture_is_cover_of_the_frame_opencv_decodes(tmp_path, degrees, size):
    """Converted straight at the size shown (swscale scales the YUV planes), a frame is what
    cover() of OpenCV's BGR frame was, within a grey level or two on a smooth picture, and
    upright as OpenCV turns a phone's clip."""
    from portrait.capture.scaled import ScaledVideo, cover_picture

    path = tmp_path / "clip.mp4"
    import av

    ramp = np.linspace(40, 200, 64)[None, :, None] + np.linspace(0, 40, 48)[:, None, None]
    image = np.repeat(ramp, 3, axis=2).astype(np.uint8)
    image[:12, :12] = (0, 0, 255)  # a red corner shows which way is up
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv444p"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        container.mux(stream.encode())
    if degrees:
        rotated(path, degrees)
    with VideoFileSource(path, quiet=True) as video:
        expected = cover(next(iter(video)).image, size)
    with ScaledVideo(path, quiet=True) as video:
        shown = cover_picture(next(iter(video)).image, size)
    assert shown.shape == expected.shape == (size[1], size[0], 3)
    difference = np.abs(shown.astype(int) - expected)
    assert difference.mean() < 1.0 and difference.max() <= 12, (difference.mean(), difference.max())


def test_scaled_video_gives_the_frames_and_times_of_the_video_reader(tmp_path):
    from portrait.capture.scaled import ScaledVideo, cover_picture

    for path in (levels_video(tmp_path / "levels.avi", 8), h264_video(tmp_path / "clip.mkv", 8)):
        with VideoFileSource(path, quiet=True) as video:
            expected = [(frame.pts_s, frame.image) for frame in video]
        with ScaledVideo(path, quiet=True, rewindable=True) as video:
            shown = [(frame.pts_s, cover_picture(frame.image, (64, 48))) for frame in video]
            assert video.rewind()
            again = [(frame.pts_s, cover_picture(frame.image, (64, 48))) for frame in video]
        assert [t for t, _ in shown] == pytest.approx([t for t, _ in expected], abs=1e-9)
        assert [t for t, _ in again] == [t for t, _ in shown]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(again, shown))
        for (_, image), (_, reference) in zip(shown, expected):
            assert np.abs(image.astype(int) - reference).max() <= 1
        if os.path.isdir("/proc/self/fd"):  # not rewindable: the file is let go at its end
            with ScaledVideo(path, quiet=True) as video:
                assert len(list(video)) == 8
                held = [fd for fd in os.listdir("/proc/self/fd")
                        if os.path.realpath(f"/proc/self/fd/{fd}") == os.path.realpath(path)]
                assert held == []


@pytest.mark.skipif(os.name == "nt", reason="names are UTF-16 on Windows")
def test_a_background_video_whose_name_is_not_utf8_plays(tmp_path):
    """OpenCV's reader cannot open such a name (it was refused, saying so); PyAV can."""
    from portrait.composite import VideoBackground

    path = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.avi"))
    try:
        levels_video(tmp_path / "levels.avi", 4).rename(path)
    except (OSError, UnicodeError):
        pytest.skip("this file system takes no such name")
    frame = np.zeros((48, 64, 3), np.uint8)
    with VideoBackground(str(path), (64, 48)) as background:
        shown = [background.render(frame, np.zeros((48, 64), np.uint8), time_s=t)
                 for t in (0.0, 2 / 30)]
    assert [index_of(image) for image in shown] == [0, 2]


def test_a_gif_s_last_frame_lasts_its_own_delay_before_the_loop(tmp_path):
    """A GIF that pauses on its last frame (delays 100, 100, 500 ms) loops after the pause,
    at 0.7 s; its last frame had lasted one first-frame delay, looping at 0.3 s."""
    from PIL import Image

    from portrait.capture.scaled import ScaledVideo

    greys = (0, 120, 240)
    frames = [Image.fromarray(np.full((48, 64, 3), grey, np.uint8)) for grey in greys]
    path = tmp_path / "pause.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[100, 100, 500],
                   loop=0)

    def which(image, size):  # the frame's index, by its grey
        bgr = image.to_ndarray(format="bgr24")
        return int(np.argmin([abs(float(bgr[..., 0].mean()) - grey) for grey in greys]))

    video = LoopingVideo(path, (64, 48), which, reader=ScaledVideo)
    shown = [video.first]
    try:
        for time_s in (0.1, 0.2, 0.45, 0.6, 0.7, 0.8, 0.9, 1.3, 1.4):
            picked = video.frame_at(time_s)
            shown.append(shown[-1] if picked is None else picked)
    finally:
        video.close()
    assert shown == [0, 1, 2, 2, 2, 0, 1, 2, 2, 0]


def test_a_gif_frame_of_a_delay_under_20_ms_lasts_100_ms_as_browsers_show_it(tmp_path):
    """Delays of 0 and 10 ms ("as fast as you can", which browsers show for 100 ms) last
    100 ms; 20 ms and more their own. Pillow's reader, which played a transparent GIF until
    FFmpeg took over every GIF, kept that rule; FFmpeg keeps a 10 ms delay, so a sticker saved
    with 1/100 s delays ran ten times as fast as before, and as a browser shows it."""
    from PIL import Image

    from portrait.capture.scaled import ScaledVideo

    greys = (0, 60, 120, 180, 240)
    frames = [Image.fromarray(np.full((8, 8, 3), grey, np.uint8)) for grey in greys]
    path = tmp_path / "fast.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:],
                   duration=[10, 0, 20, 10, 50], loop=0)
    with ScaledVideo(path, quiet=True) as video:
        assert video.fps == pytest.approx(10.0)  # the median delay as shown (gif.rate_fps)
        timed = [(round(frame.pts_s, 3), round(frame.duration_s, 3)) for frame in video]
    assert timed == [(0.0, 0.1), (0.1, 0.1), (0.2, 0.02), (0.22, 0.1), (0.32, 0.05)]


def fast_gif(path, durations_ms=(0, 10, 20, 50), greys=(0, 80, 160, 240)):
    """A GIF written by Pillow whose frame i is a flat grey ``greys[i]`` lasting
    ``durations_ms[i]``."""
    from PIL import Image

    frames = [Image.fromarray(np.full((24, 32, 3), grey, np.uint8)) for grey in greys]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=list(durations_ms),
                   loop=0)
    return path


def grey_index(image, greys=(0, 80, 160, 240)) -> int:
    """Which of ``greys`` a flat frame (BGR array, or a decoded PyAV frame) shows."""
    bgr = image if isinstance(image, np.ndarray) else image.to_ndarray(format="bgr24")
    return int(np.argmin([abs(float(bgr.mean()) - grey) for grey in greys]))


# Delays 0, 10, 20, 50 ms as viewers show them: 100, 100, 20, 50 ms. The frames begin at 0,
# 0.1, 0.2, 0.22; the pass ends at 0.27, the next at 0.54.
FAST_GIF_TIMES_S = [0.0, 0.1, 0.2, 0.22, 0.27, 0.37, 0.47, 0.49, 0.54]


def test_a_gif_source_s_frames_follow_each_other_by_their_delays_as_viewers_show_them(
        tmp_path):
    """Inside a pass as at the seam: a --source GIF's frame of a delay under 20 ms lasts
    100 ms before the next begins. OpenCV's times (FFmpeg's) began the frames at 0, 0.1 (the
    0 ms delay as FFmpeg's default), 0.11 and 0.13 s, so such a GIF played ten times too fast
    until its last frame, which alone lasted its delay as shown. Paced, each frame is
    delivered at its time. ScaledVideo, a background's reader, gives the same times."""
    from conftest import ManualClock

    from portrait.capture.scaled import ScaledVideo

    path = fast_gif(tmp_path / "fast.gif")
    for reader in (VideoFileSource, ScaledVideo):
        with reader(path, quiet=True) as source:
            one_pass = [(frame.pts_s, frame.duration_s) for frame in source]
        assert [pts_s for pts_s, _ in one_pass] == pytest.approx(FAST_GIF_TIMES_S[:4]), reader
        assert [lasts_s for _, lasts_s in one_pass] == pytest.approx([0.1, 0.1, 0.02, 0.05])
    with looping.LoopedSource(path) as source:
        unpaced = [frame for frame, _ in zip(source, range(9))]
    assert [frame.pts_s for frame in unpaced] == pytest.approx(FAST_GIF_TIMES_S)
    assert [grey_index(frame.image) for frame in unpaced] == [0, 1, 2, 3] * 2 + [0]
    with looping.LoopedSource(path, realtime=True, clock=ManualClock()) as source:
        paced = [frame for frame, _ in zip(source, range(9))]
    assert [frame.time_s - paced[0].time_s for frame in paced] == pytest.approx(FAST_GIF_TIMES_S)
    assert paced[2].wait_ms == pytest.approx(100.0)  # after the 10 ms frame: 100 ms


@pytest.mark.parametrize("durations_ms, ffmpeg_fps", [
    ((10, 10, 10, 10), 100.0),  # 10 ms delays, shown for 100 ms each
    ((100, 200, 100, 50, 70, 100, 100, 300, 100, 100), 60000 / 1001),  # most last 100 ms
    ((40, 40, 80, 80), 25.0),  # an even count: the shorter middle delay, one the GIF shows
])
def test_a_gif_source_s_rate_is_its_delays_as_shown_not_ffmpeg_s_guess(
        tmp_path, caplog, durations_ms, ffmpeg_fps):
    """A --source GIF's rate (logged, and the one an output video is written at) is one over
    its frames' median delay as viewers show them; FFmpeg's guess, which it was, follows the
    raw delays: 100 fps for 10 ms ones. Each frame keeps its own delay."""
    import av

    greys = tuple(range(0, 250, 250 // len(durations_ms)))[:len(durations_ms)]
    path = fast_gif(tmp_path / "delays.gif", durations_ms, greys)
    with av.open(str(path)) as container:
        assert float(container.streams.video[0].guessed_rate) == pytest.approx(ffmpeg_fps)
    shown_s = sorted(ms / 1000 if ms >= 20 else 0.1 for ms in durations_ms)  # as viewers
    expected_fps = 1 / shown_s[(len(shown_s) - 1) // 2]
    caplog.set_level(logging.INFO, logger="portrait.capture.video")
    with VideoFileSource(path) as source:
        assert source.fps == pytest.approx(expected_fps)
        lasts_s = [frame.duration_s for frame in source]
    assert lasts_s == pytest.approx([ms / 1000 if ms >= 20 else 0.1 for ms in durations_ms])
    assert f"video '{path}': 32x24 at {expected_fps:g} fps, {len(durations_ms)} frames" \
        in caplog.text


def test_a_gif_background_s_rate_is_a_gif_source_s_not_its_first_delay(tmp_path, caplog):
    """A GIF whose first frame lasts 50 ms and the other three 100 ms plays at 10 fps as a
    background (ScaledVideo's rate and its INFO line) as it does as a --source, where the
    background took its first frame's delay: 20 fps."""
    from portrait.capture.scaled import ScaledVideo

    path = fast_gif(tmp_path / "first_short.gif", (50, 100, 100, 100))
    caplog.set_level(logging.INFO, logger="portrait.capture.scaled")
    with ScaledVideo(path) as video, VideoFileSource(path, quiet=True) as source:
        assert video.fps == pytest.approx(10.0) and source.fps == pytest.approx(10.0)
    assert f"video '{path}': 32x24 at 10 fps" in caplog.text


def test_a_gif_background_shows_each_frame_for_its_delay_as_viewers_show_it(tmp_path):
    """A background GIF of delays 0, 10, 20, 50 ms shows each frame from its time as a
    --source GIF gives it (FAST_GIF_TIMES_S), across the seam too."""
    from portrait.capture.scaled import ScaledVideo

    path = fast_gif(tmp_path / "fast.gif")
    video = LoopingVideo(path, (32, 24), lambda image, size: grey_index(image),
                         reader=ScaledVideo)
    shown = [video.first]
    # just before and just after each frame's time, and midway through the 100 ms ones
    probes_s = [0.05, 0.095, 0.105, 0.15, 0.195, 0.205, 0.215, 0.225, 0.265, 0.275, 0.32, 0.365,
                0.375, 0.465, 0.475, 0.485, 0.495, 0.535, 0.545]
    try:
        for time_s in probes_s:
            picked = video.frame_at(time_s)
            shown.append(shown[-1] if picked is None else picked)
    finally:
        video.close()
    assert shown == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 0, 0, 0, 1, 1, 2, 2, 3, 3, 0]


def test_a_pass_whose_rewind_fails_unexpectedly_is_closed(tmp_path, caplog):
    """A finished pass whose rewind raises an error of a kind not expected (not InputError) is
    closed there, not left open until collected; the loop plays on from the file opened again."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to count the files open")
    caplog.set_level(logging.DEBUG, logger="portrait.capture.looping")
    path = levels_video(tmp_path / "clip.avi", 3)
    opened = []

    class RewindFails(VideoFileSource):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)  # held here, so only close() releases its file

        def rewind(self):
            raise RuntimeError("seek broke")

    def open_here():
        return sum(os.path.realpath(f"/proc/self/fd/{fd}") == str(path.resolve())
                   for fd in os.listdir("/proc/self/fd"))

    video = LoopingVideo(path, (32, 24), lambda image, size: index_of(image),
                         reader=RewindFails)
    shown = [video.first]
    try:
        for step in range(1, 12):  # about four loops of 0.1 s
            picked = video.frame_at(step / 30)
            shown.append(shown[-1] if picked is None else picked)
    finally:
        video.close()
    assert shown == [0, 1, 2] * 4
    assert len(opened) >= 3 and open_here() == 0
    assert "RuntimeError: seek broke" in caplog.text


# --- LoopedSource: a --source video that starts again (--loop) -----------------------------


def test_a_looped_source_goes_on_past_its_clip_on_one_timeline(tmp_path):
    path = levels_video(tmp_path / "clip.avi", 4, fps=10.0)
    with looping.LoopedSource(path) as source:
        frames = [frame for frame, _ in zip(source, range(11))]
    assert [index_of(frame.image) for frame in frames] == [0, 1, 2, 3] * 2 + [0, 1, 2]
    assert [frame.index for frame in frames] == list(range(11))
    # The times go on where the last pass ended (its last frame lasts one frame: 0.1 s).
    assert [frame.pts_s for frame in frames] == pytest.approx([i / 10 for i in range(11)])
    assert [i for i, frame in enumerate(frames) if frame.cut] == [4, 8]


def test_a_paced_looped_source_gives_its_last_frame_its_time_at_each_seam(tmp_path):
    from conftest import ManualClock

    path = levels_video(tmp_path / "clip.avi", 3, fps=10.0)
    clock = ManualClock()
    with looping.LoopedSource(path, realtime=True, clock=clock) as source:
        frames = [frame for frame, _ in zip(source, range(8))]
    times = [frame.time_s - frames[0].time_s for frame in frames]
    # Delivered as the frames' times say, across the seams (after frames 2 and 5) too.
    assert times == pytest.approx([frame.pts_s for frame in frames])
    assert times == pytest.approx([i / 10 for i in range(8)])
    assert frames[3].wait_ms == pytest.approx(100.0)  # the seam's wait is the reader's wait


def test_gif_delays_are_read_from_each_frame_s_own_graphic_control(tmp_path):
    """Delays are two bytes, little-endian, in hundredths: 3 s and 2.6 s need the high byte. A
    frame without a graphic control block of its own does not take the one before it: it
    lasts the default 100 ms. A file whose signature is not a GIF's has no delays, however its
    blocks read."""
    from PIL import Image

    from portrait.capture.gif import gif_delays_s

    frames = [Image.fromarray(np.full((24, 32, 3), grey, np.uint8)) for grey in (0, 120, 240)]
    path = tmp_path / "slow.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[3000, 200, 2600],
                   loop=0)
    assert gif_delays_s(path) == pytest.approx([3.0, 0.2, 2.6])
    data = path.read_bytes()
    controls = [at for at in range(len(data)) if data[at:at + 3] == b"\x21\xf9\x04"]
    assert len(controls) == 3
    bare = tmp_path / "bare.gif"  # the second frame's graphic control (8 bytes) taken out
    bare.write_bytes(data[:controls[1]] + data[controls[1] + 8:])
    assert gif_delays_s(bare) == pytest.approx([3.0, 0.1, 2.6])
    # Each frame begins when the one before is over, as --source and as a background: FFmpeg
    # gives the bare frame the delay before it (3 s), which ScaledVideo took, and began the
    # last frame at 6 s in both.
    from portrait.capture.scaled import ScaledVideo

    for reader in (VideoFileSource, ScaledVideo):
        with reader(bare, quiet=True) as source:
            timed = [(frame.pts_s, frame.duration_s) for frame in source]
        assert [pts_s for pts_s, _ in timed] == pytest.approx([0.0, 3.0, 3.1]), reader.__name__
        assert [lasts_s for _, lasts_s in timed] == pytest.approx([3.0, 0.1, 2.6])
    renamed = tmp_path / "not_a.gif"
    renamed.write_bytes(b"NOTGIF" + data[6:])
    assert gif_delays_s(renamed) == [] and gif_delays_s(tmp_path / "missing.gif") == []


def test_a_looped_gif_keeps_its_last_frame_s_own_delay_at_each_seam(tmp_path):
    """A GIF --source of delays 100, 200 and 300 ms starts its next pass when its last frame's
    300 ms are over (0.6 s, 1.2 s), not one frame of the file's rate (10 fps: 0.1 s) after it
    began; paced, each frame is delivered at that time."""
    from PIL import Image

    from conftest import ManualClock

    greys = (0, 120, 240)
    frames = [Image.fromarray(np.full((24, 32, 3), grey, np.uint8)) for grey in greys]
    path = tmp_path / "pause.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=[100, 200, 300],
                   loop=0)
    # pass 1 at 0, 0.1, 0.3; pass 2 from 0.3 + 0.3 = 0.6: 0.6, 0.7, 0.9; pass 3 from 1.2
    expected_s = [0.0, 0.1, 0.3, 0.6, 0.7, 0.9, 1.2]
    with looping.LoopedSource(path) as source:
        unpaced = [frame for frame, _ in zip(source, range(7))]
    assert [frame.pts_s for frame in unpaced] == pytest.approx(expected_s)
    assert [round(float(frame.image.mean())) for frame in unpaced] == [0, 120, 240] * 2 + [0]
    assert [i for i, frame in enumerate(unpaced) if frame.cut] == [3, 6]
    with looping.LoopedSource(path, realtime=True, clock=ManualClock()) as source:
        paced = [frame for frame, _ in zip(source, range(7))]
    assert [frame.time_s - paced[0].time_s for frame in paced] == pytest.approx(expected_s)
    assert paced[3].wait_ms == pytest.approx(300.0)


def test_a_looped_file_that_cannot_be_read_again_ends_the_source_with_a_warning(tmp_path,
                                                                                caplog):
    path = levels_video(tmp_path / "clip.avi", 3, fps=10.0)
    frames = []
    with looping.LoopedSource(path) as source:
        for frame in source:
            frames.append(index_of(frame.image))
            if len(frames) == 2:
                path.write_bytes(b"not a video any more")  # changed: no rewind, no reopen
    assert frames == [0, 1, 2]
    assert f"--loop: video '{path}' cannot be read again" in caplog.text


def test_a_looped_photo_repeats_its_one_frame_at_the_files_rate(tmp_path):
    from conftest import ManualClock

    path = tmp_path / "still.png"
    cv2.imwrite(str(path), np.full((24, 32, 3), 14, np.uint8))
    with looping.LoopedSource(path) as source:
        frames = [frame for frame, _ in zip(source, range(4))]
        assert source._source is None  # read once: no file held open for it
    assert [index_of(frame.image) for frame in frames] == [3, 3, 3, 3]
    assert [frame.pts_s for frame in frames] == pytest.approx(
        [i / source.fps for i in range(4)])
    assert not any(frame.cut for frame in frames)  # the same picture: nothing to start afresh
    # Paced, each repeat is delivered a frame after the last, not all at once.
    with looping.LoopedSource(path, realtime=True, clock=ManualClock()) as source:
        frames = [frame for frame, _ in zip(source, range(4))]
    assert [frame.time_s - frames[0].time_s for frame in frames] == pytest.approx(
        [i / source.fps for i in range(4)])


def test_a_looped_source_plays_each_pass_from_the_file_it_has_open(tmp_path, monkeypatch):
    """Each pass seeks back in the open file: one open for three passes, not one a pass."""
    opened = count_opens(monkeypatch)
    path = levels_video(tmp_path / "clip.avi", 3, fps=10.0)
    with looping.LoopedSource(path) as source:
        frames = [index_of(frame.image) for frame, _ in zip(source, range(9))]
    assert frames == [0, 1, 2] * 3
    assert opened == [path]


def test_a_looped_file_replaced_on_disk_is_opened_again_and_paced_as_before(tmp_path):
    from conftest import ManualClock

    path = levels_video(tmp_path / "clip.avi", 3, fps=10.0)
    replacement = levels_video(tmp_path / "new.avi", 5, fps=10.0)
    clock = ManualClock()
    frames = []
    with looping.LoopedSource(path, realtime=True, clock=clock) as source:
        for frame in source:
            frames.append(frame)
            if len(frames) == 2:
                os.replace(replacement, path)  # no rewind: the file is another one now
            if len(frames) == 8:
                break
    assert [index_of(frame.image) for frame in frames] == [0, 1, 2, 0, 1, 2, 3, 4]
    assert [frame.index for frame in frames] == list(range(8))
    # The new file's frames go on on the same timeline, each delivered at its time.
    assert [frame.time_s - frames[0].time_s for frame in frames] == pytest.approx(
        [i / 10 for i in range(8)])
    assert [frame.pts_s for frame in frames] == pytest.approx([i / 10 for i in range(8)])


class _ClosingClock:
    """A :class:`conftest.ManualClock` that closes ``source`` at its ``at``-th wait: the user
    stopping the run while the source waits for a frame to be due."""

    def __init__(self, at):
        from conftest import ManualClock

        self._clock, self._at, self.source = ManualClock(), at, None

    def now(self):
        return self._clock.now()

    def wait(self, event, seconds):
        self._at -= 1
        if self._at == 0:
            self.source.close()
        return self._clock.wait(event, seconds)


def test_close_ends_a_looped_source_mid_pass_or_at_a_seam_and_lets_go_of_the_file(tmp_path):
    path = levels_video(tmp_path / "clip.avi", 3, fps=10.0)
    source = looping.LoopedSource(path)
    frames = []
    for frame, _ in zip(source, range(10)):
        frames.append(index_of(frame.image))
        if len(frames) == 2:
            source.close()
    assert frames == [0, 1]
    assert source._source is None  # no file opened again after close
    # Paced: waits at frames 1 and 2, then at the seam, for the last frame's time to pass.
    clock = _ClosingClock(at=3)
    clock.source = source = looping.LoopedSource(path, realtime=True, clock=clock)
    assert [index_of(frame.image) for frame, _ in zip(source, range(10))] == [0, 1, 2]
    assert source._source is None

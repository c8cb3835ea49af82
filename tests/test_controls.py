"""Live controls and --mirror: the pure key step, the background cycle, the terminal reader on a
real pseudo-terminal, and whole runs of the app into a virtual camera (pyvirtualcam with a
registered backend) driven by a scripted key source, compared frame by frame with runs that
had the same setting from the start."""

import logging
import os
import platform
import queue
import sys
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest

from conftest import ROOT, fake_camera
from portrait.cli import main
from portrait.controls import (
    BLUR_MAX_PX,
    BLUR_MIN_PX,
    BLUR_STEP_PX,
    Controls,
    LiveBackground,
    LiveState,
    TerminalKeys,
    apply_key,
    background_cycle,
    background_files,
    split_keys,
    stdin_is_terminal,
)
from portrait.errors import InputError
from test_sink import RecordingBackend, frames_of

BACKEND = "portrait-controls-test"
RED, BLUE, GREEN = (0, 0, 255), (255, 0, 0), (0, 255, 0)  # BGR


# --- the pure step -------------------------------------------------------------------------------


def test_each_key_changes_what_it_says():
    state = LiveState(backgrounds=("blur", "a.png", "#00ff00"), blur_px=21)
    assert apply_key(state, " ").effect is False
    assert apply_key(apply_key(state, " "), " ").effect is True
    assert [s.background for s in _presses(state, "bbb")] == ["a.png", "#00ff00", "blur"]
    assert apply_key(state, "+").blur_px == 21 + BLUR_STEP_PX
    assert apply_key(state, "=").blur_px == 21 + BLUR_STEP_PX  # + without shift
    assert apply_key(state, "-").blur_px == 21 - BLUR_STEP_PX
    assert apply_key(state, "m").mirror is True and apply_key(state, "M").mirror is True
    assert apply_key(state, "f").framing is True
    assert apply_key(state, "e").decontaminate is True and apply_key(state, "E").decontaminate
    for key in ("q", "Q", "\x1b", "\x03"):
        assert apply_key(state, key).quit is True
    for key in ("x", "\n", "1", "\x1b[A"):
        assert apply_key(state, key) == state


def test_plus_and_minus_step_the_default_blur_from_the_frames_size():
    state = LiveState()  # no --blur: by the frame's size
    assert state.blur_px is None
    assert apply_key(state, "+").blur_px == 21 + BLUR_STEP_PX  # size unknown: 720p's
    assert apply_key(state, "+", (3000, 2000)).blur_px == 58 + BLUR_STEP_PX
    assert apply_key(state, "-", (3000, 2000)).blur_px == 58 - BLUR_STEP_PX
    assert apply_key(state, "-", (640, 480)).blur_px == 21 - BLUR_STEP_PX
    assert apply_key(LiveState(blur_px=21), "+", (3000, 2000)).blur_px == 21 + BLUR_STEP_PX
    controls = Controls(LiveState(), scripts=[["", "+"]])
    controls.poll((3000, 2000))
    assert controls.state.blur_px is None  # no key yet: still by the size
    assert controls.poll((3000, 2000)).blur_px == 58 + BLUR_STEP_PX
    # A key pressed between polls (the terminal's thread) steps from the last frame's size; a
    # poll that gives none keeps it rather than forgetting it.
    controls = Controls(LiveState())
    controls.poll((3000, 2000))
    controls.poll()
    assert controls.press("+").blur_px == 58 + BLUR_STEP_PX


def test_background_files_are_every_file_a_background_reads(tmp_path):
    """What an output must never overwrite: each image or video named, and every file of each
    folder named (not its sub-folders); nothing for blur, a colour or transparent."""
    photo = tmp_path / "beach.jpg"
    photo.write_bytes(b"x")
    folder = tmp_path / "backgrounds"
    (folder / "nested").mkdir(parents=True)
    for name in ("a.png", "b.mp4", "notes.txt"):
        (folder / name).write_bytes(b"x")
    found = background_files(["blur", "#00ff00", "transparent", f" {photo} ", str(folder)])
    assert found[0] == photo
    assert sorted(found[1:]) == [folder / "a.png", folder / "b.mp4", folder / "notes.txt"]


def test_the_opening_line_gives_the_blur_behind_a_transparent_background_only(tmp_path):
    """The room shows, blurred, through a transparent image: the line that says what the
    stream sends gives that blur too (by the frame's size, 21 px at 720p); behind an opaque
    image nothing shows, and no blur is named."""
    from portrait.composite import make_background
    from portrait.controls import describe_output
    from portrait.options import CompositeOptions

    picture = np.full((36, 64, 4), 200, np.uint8)
    picture[:, :, 3] = 255
    cv2.imwrite(str(tmp_path / "opaque.png"), picture)
    picture[:, :32, 3] = 0
    cv2.imwrite(str(tmp_path / "window.png"), picture)
    lines = {}
    for name in ("opaque.png", "window.png"):
        spec = str(tmp_path / name)
        state = LiveState(backgrounds=("blur", spec), background_index=1)
        with make_background(CompositeOptions(background=spec), (1280, 720)) as background:
            lines[name] = (describe_output(state, (1280, 720), background), background.description)
    line, description = lines["window.png"]
    assert line == (f"output: mirror off, framing off, background {description}, "
                    "blur 21 px (the default for 1280x720)")
    line, description = lines["opaque.png"]
    assert line == f"output: mirror off, framing off, background {description}"


def test_blur_steps_are_bounded():
    low = LiveState(blur_px=BLUR_MIN_PX + 1)
    assert apply_key(low, "-").blur_px == BLUR_MIN_PX
    assert apply_key(apply_key(low, "-"), "-").blur_px == BLUR_MIN_PX
    high = LiveState(blur_px=BLUR_MAX_PX - 1)
    assert apply_key(high, "+").blur_px == BLUR_MAX_PX
    assert apply_key(apply_key(high, "+"), "+").blur_px == BLUR_MAX_PX
    beyond = LiveState(blur_px=BLUR_MAX_PX + 40)  # --blur 140 is kept, not cut back by +
    assert apply_key(beyond, "+").blur_px == BLUR_MAX_PX + 40
    assert apply_key(beyond, "-").blur_px == BLUR_MAX_PX + 40 - BLUR_STEP_PX


def _presses(state, keys):
    states = []
    for key in keys:
        state = apply_key(state, key)
        states.append(state)
    return states


def test_each_change_is_logged_once_and_quit_calls_back_once(caplog):
    quits = []
    controls = Controls(LiveState(), on_quit=lambda: quits.append(1))
    with caplog.at_level(logging.INFO, logger="portrait.controls"):
        for key in "mxx+fee q q":
            controls.press(key)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["mirror on", f"blur {21 + BLUR_STEP_PX} px", "framing on",
                        "edge colour: the person's own (--decontaminate)",
                        "edge colour: the frame's",
                        "effect off: the plain camera frame goes out", "quit"]
    assert quits == [1]
    assert controls.state.framing is True  # the flag the auto-framer reads


@pytest.mark.parametrize("key", ["b", "B"])
def test_b_with_one_background_says_how_to_add_more_with_caps_lock_on_too(caplog, key):
    controls = Controls(LiveState())
    with caplog.at_level(logging.INFO, logger="portrait.controls"):
        assert controls.press(key) == LiveState()
    assert [r.getMessage() for r in caplog.records] == [
        "b: only one background (blur); --background DIR or a colour in the config file adds "
        "more"]


def test_scripted_keys_apply_one_item_per_frame():
    controls = Controls(LiveState(), scripts=[[None, "m", "", "m f"]])
    states = [controls.poll() for _ in range(6)]
    assert [s.mirror for s in states] == [False, True, True, False, False, False]
    assert [s.framing for s in states] == [False] * 3 + [True] * 3
    assert [s.effect for s in states] == [True] * 3 + [False] * 3
    # Every source gives one item a frame: a second one's keys come with the first's.
    controls = Controls(LiveState(), scripts=[["m", "", "b"], ["", "f", "", "e"]])
    states = [controls.poll() for _ in range(4)]
    assert [(s.mirror, s.framing, s.decontaminate) for s in states] == [
        (True, False, False), (True, True, False), (True, True, False), (True, True, True)]


def test_preview_window_keys_reach_the_controls(monkeypatch):
    from portrait.sink import PreviewSink
    from portrait.sink.preview import key_name

    monkeypatch.setenv("DISPLAY", ":0")  # the window opens on the first write, which we skip
    controls = Controls(LiveState())
    preview = PreviewSink(on_key=controls.press)
    for code in (ord("m"), -1, ord("b") | 0x100000):  # -1: no key; modifier bits are dropped
        key = key_name(code)
        if key is not None:
            preview.key_pressed(key)
    assert controls.state.mirror and not preview.quit_requested
    preview.key_pressed(key_name(27))
    assert preview.quit_requested and controls.state.quit


@pytest.mark.parametrize("key", ["q", "Q"])
def test_the_preview_window_quits_on_q_with_caps_lock_on_too(monkeypatch, key):
    """Letter keys work in either case (the README): the window itself stops on Q too."""
    from portrait.sink import PreviewSink

    monkeypatch.setenv("DISPLAY", ":0")  # the window opens on the first write, which we skip
    preview = PreviewSink()
    preview.key_pressed(key)
    assert preview.quit_requested


# --- backgrounds ---------------------------------------------------------------------------------


def solid_image(path, bgr, size=(40, 30)):
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), bgr, np.uint8))
    return path


@pytest.fixture
def background_folder(tmp_path):
    folder = tmp_path / "backgrounds"
    folder.mkdir()
    solid_image(folder / "b_blue.png", BLUE)
    solid_image(folder / "a_red.jpg", RED)
    (folder / "notes.txt").write_text("not a background")
    # Hidden files are no backgrounds: macOS's AppleDouble fork of a picture on a USB stick or
    # a network share (not an image at all), and a hidden picture.
    (folder / "._a_red.jpg").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    solid_image(folder / ".0_green.png", (0, 255, 0))
    return folder


def test_background_cycle_is_blur_then_the_folder_then_the_colour(background_folder):
    files = [str(background_folder / "a_red.jpg"), str(background_folder / "b_blue.png")]
    cycle, start = background_cycle(str(background_folder), ["#00ff00"])
    assert cycle == ("blur", *files, "#00ff00") and start == 1
    cycle, start = background_cycle("#00ff00", [str(background_folder)])
    assert cycle == ("blur", *files, "#00ff00") and start == 3
    assert background_cycle("blur") == (("blur",), 0)
    assert background_cycle("beach.png", ["#123456"]) == (("blur", "beach.png", "#123456"), 1)
    # Of two of a kind the first (the command line's) wins; transparent is never stepped to.
    assert background_cycle("#111111", ["#222222", "transparent"]) == (("blur", "#111111"), 1)
    # The config file's transparent is no stop of b where the command line names another kind
    # (only a PNG can carry it, not a camera's frame); as the start it is one.
    assert background_cycle("blur", ["transparent"]) == (("blur",), 0)
    assert background_cycle("beach.png", ["transparent"]) == (("blur", "beach.png"), 1)
    assert background_cycle("transparent", ["beach.png"]) == (
        ("blur", "beach.png", "transparent"), 2)


def test_a_folder_without_backgrounds_is_an_input_error(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="no images or videos"):
        background_cycle(str(tmp_path))


# --- the terminal --------------------------------------------------------------------------------


def test_escape_sequences_are_not_esc():
    assert split_keys("m\x1b[Ab") == ["m", "b"]  # up arrow between two keys
    assert split_keys("\x1b[15~q\x1bOP") == ["q"]  # F5, then q, then F1
    assert split_keys("\x1b") == ["\x1b"]
    assert split_keys("+ -") == ["+", " ", "-"]


def test_stdin_that_is_not_a_terminal_gives_no_terminal_keys(tmp_path):
    with open(tmp_path / "file", "w") as file:
        assert not stdin_is_terminal(file)
    assert not stdin_is_terminal(sys.stdin)  # pytest's stand-in


@pytest.mark.skipif(os.name == "nt", reason="a pseudo-terminal is POSIX")
def test_a_terminal_is_read_only_from_its_foreground_process_group():
    """A process whose controlling terminal is its stdin reads keys from it; a background job
    on the same terminal (another process group) does not: changing the terminal's mode would
    stop it (SIGTTOU). A real pseudo-terminal, made the controlling terminal of a new session."""
    import pty
    import subprocess

    code = ("import os, fcntl, termios\n"
            "from portrait.controls import stdin_is_terminal\n"
            "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
            "print('foreground', stdin_is_terminal(), flush=True)\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os.setpgid(0, 0)\n"
            "    print('background', stdin_is_terminal(), flush=True)\n"
            "    os._exit(0)\n"
            "os.waitpid(pid, 0)\n")
    master, slave = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-c", code], stdin=slave, capture_output=True,
                              text=True, timeout=60, start_new_session=True,
                              cwd=ROOT)
    finally:
        os.close(master)
        os.close(slave)
    assert done.stdout.splitlines() == ["foreground True", "background False"], done.stderr


@pytest.mark.skipif(os.name == "nt", reason="a pseudo-terminal is POSIX")
def test_terminal_keys_without_enter_and_the_mode_restored():
    import pty
    import termios

    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        keys = queue.Queue()
        with TerminalKeys(keys.put, fd=slave):
            mode = termios.tcgetattr(slave)
            assert not mode[3] & termios.ICANON and not mode[3] & termios.ECHO  # cbreak
            assert mode[3] & termios.ISIG  # Ctrl-C still interrupts
            for chunk in (b"m", b"\x1b[A", b"b", b"\x1b"):
                os.write(master, chunk)
                time.sleep(0.05)
            got = [keys.get(timeout=5) for _ in range(3)]
        assert got == ["m", "b", "\x1b"]
        assert keys.empty()
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


# --- whole runs into a virtual camera ------------------------------------------------------------


def textured_video(path, frames=40, size=(96, 64)):
    """A bright square ('person') over dark noise, which a blur visibly smooths."""
    width, height = size
    rng = np.random.default_rng(3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    for i in range(frames):
        image = rng.integers(0, 70, (height, width, 3), np.uint8)
        x = 20 + (i % 5)
        image[12:52, x:x + 30] = 225
        writer.write(image)
    writer.release()
    return path


def decoded(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


@pytest.fixture
def video(tmp_path):
    return textured_video(tmp_path / "in.avi")


def camera_run(brightness_model, video, *args, keys=None):
    """Run the app on ``video`` into the virtual camera; returns (frames sent, the backend).

    Every frame, as fast as it goes (``--no-realtime``): paced, a busy machine drops one now
    and then, and the runs compared frame by frame would differ in length."""
    with fake_camera(BACKEND, RecordingBackend) as backend:
        RecordingBackend.fail_sends = 0
        code = main(["--model", brightness_model, "--source", video, "-q", "--no-realtime",
                     "--no-loop", *args],
                    keys=[keys] if keys is not None else ())
        assert code == 0
        (camera,) = backend.instances  # opened once: no key closes or reopens it
        assert camera.closed == 1
        return frames_of(camera), camera


def test_plus_steps_from_the_default_blur_of_a_frame_larger_than_720p(brightness_model,
                                                                     tmp_path):
    video = textured_video(tmp_path / "large.avi", frames=4, size=(1280, 1080))  # default 32 px
    sent, _ = camera_run(brightness_model, video, keys=[None, "+"])
    given, _ = camera_run(brightness_model, video, "--blur", 32 + BLUR_STEP_PX)
    from_720p, _ = camera_run(brightness_model, video, "--blur", 21 + BLUR_STEP_PX)
    assert np.array_equal(sent[2], given[2])
    assert not np.array_equal(sent[2], from_720p[2])


def test_scripted_keys_change_the_next_frames(brightness_model, video, background_folder,
                                              tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('background = "#00ff00"\n')  # joins the folder's files in the cycle
    script = [None, "b", "b", "b", "+", "-", "m", "m", " ", " ", "q"]
    sent, _ = camera_run(brightness_model, video, "--config", config,
                         "--background", background_folder, keys=script)
    blur21, _ = camera_run(brightness_model, video)  # the same settings from the start
    blur26, _ = camera_run(brightness_model, video, "--blur", 21 + BLUR_STEP_PX)
    source = decoded(video)
    assert 11 <= len(sent) < len(source)  # q stopped the run; frames in flight still went out

    corner = (slice(0, 6), slice(0, 6))  # background: alpha 0 there (the red one is a JPEG)
    for frame, colour in ((0, RED), (1, BLUE), (2, GREEN)):
        assert np.abs(sent[frame][corner].astype(int) - colour).max() <= 4, frame
    assert np.array_equal(sent[3], blur21[3])  # b: back to blur
    assert np.array_equal(sent[4], blur26[4])  # +
    assert not np.array_equal(sent[4], blur21[4])
    assert np.array_equal(sent[5], blur21[5])  # -
    assert np.array_equal(sent[6], cv2.flip(blur21[6], 1))  # m
    assert np.array_equal(sent[7], blur21[7])  # m again
    assert np.array_equal(sent[8], source[8])  # space: the plain camera frame
    assert not np.array_equal(sent[9], source[9])  # space again: the effect is back
    person = (slice(20, 44), slice(30, 45))
    assert np.abs(sent[9][person].astype(int) - source[9][person]).max() <= 3


def test_a_run_without_a_terminal_or_window_says_it_reads_no_keys(brightness_model, video,
                                                                   caplog):
    with fake_camera(BACKEND, RecordingBackend), caplog.at_level(logging.INFO, "portrait"):
        assert main(["--model", brightness_model, "--source", video, "--no-realtime",
                     "--max-frames", 2]) == 0  # pytest's stdin is no terminal
    lines = [r.getMessage() for r in caplog.records if "keys" in r.getMessage()]
    assert lines == ["no live keys: standard input is not a terminal in the foreground "
                     "(redirected, or a background job); --preview opens a window that takes "
                     "them; Ctrl-C (in the foreground) or a kill stops the run cleanly"]


def test_with_matte_the_keys_of_the_composite_do_nothing_and_say_so(brightness_model, video,
                                                                     tmp_path, caplog):
    """Space sent colour camera frames into the grey matte frames; b, +, - and e were logged
    as changes that changed nothing. m still flips the matte."""
    def matte_frames(name, keys):
        out = tmp_path / name
        assert main(["--model", brightness_model, "--source", video, "--no-realtime", "--matte",
                     "--out", f"{out}/", "--max-frames", 6], keys=[keys]) == 0
        return [cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in sorted(out.glob("*.png"))]

    plain = matte_frames("plain", [])
    with caplog.at_level(logging.INFO, logger="portrait.controls"):
        pressed = matte_frames("pressed", [None, " b+-E", None, "m", None, None])
    assert [r.getMessage() for r in caplog.records] == [
        f"{key} does nothing with --matte" for key in ("space", "b", "+", "-", "E")] + [
        "mirror on"]
    assert len(pressed) == len(plain) == 6
    assert all(frame.ndim == 2 for frame in pressed)  # every one a matte
    for i, (a, b) in enumerate(zip(plain, pressed)):
        assert np.array_equal(cv2.flip(a, 1) if i >= 3 else a, b), i


@pytest.mark.skipif(platform.system() in ("Windows", "Darwin"), reason="a display is always there")
def test_preview_without_a_display_is_refused_before_the_camera_and_model_open(
        brightness_model, video, monkeypatch, caplog, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with fake_camera(BACKEND, RecordingBackend) as backend, \
            caplog.at_level(logging.INFO, "portrait"):
        assert main(["--model", brightness_model, "--source", video, "--preview"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot open a preview window: no display")
    assert backend.instances == []  # no virtual camera opened
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "segmenter:" not in said and "video '" not in said  # nor the model, nor the source


def test_mirror_option_flips_every_frame(brightness_model, video, tmp_path):
    plain, _ = camera_run(brightness_model, video, "--max-frames", 12)
    mirrored, _ = camera_run(brightness_model, video, "--max-frames", 12, "--mirror")
    assert len(plain) == len(mirrored) == 12
    for a, b in zip(plain, mirrored):
        assert np.array_equal(cv2.flip(a, 1), b)
        assert not np.array_equal(a, b)


@pytest.mark.parametrize("extra", [[], ["--matte"], ["--background", "#0000ff"]])
def test_mirror_of_a_photo_and_its_matte_is_the_flipped_result(brightness_model, tmp_path,
                                                                extra):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 60, (120, 160, 3), np.uint8)
    image[30:110, 20:70] = 230  # off-centre, so the flip shows
    cv2.imwrite(str(tmp_path / "me.png"), image)
    results = []
    for mirror in ([], ["--mirror"]):
        out = tmp_path / f"out{len(results)}.png"
        assert main(["--model", brightness_model, "--image", tmp_path / "me.png", "--out", out,
                     "-q", *extra, *mirror]) == 0
        results.append(cv2.imread(str(out), cv2.IMREAD_UNCHANGED))
    plain, mirrored = results
    assert np.array_equal(mirrored, cv2.flip(plain, 1))
    assert not np.array_equal(mirrored, plain)


def test_mirror_keeps_a_background_picture_the_right_way_round(brightness_model, tmp_path):
    """--mirror flips the person; a picture behind them (text, a logo) is not reversed: where
    the matte is 0 the output is the picture as it is, where it is 255 the mirrored photo."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 60, (120, 160, 3), np.uint8)
    image[30:110, 20:70] = 230  # the person, off-centre
    cv2.imwrite(str(tmp_path / "me.png"), image)
    picture = np.full((120, 160, 3), 40, np.uint8)
    picture[:, :80] = (200, 60, 20)  # its left half apart from its right
    cv2.imwrite(str(tmp_path / "logo.png"), picture)
    outs = []
    for extra in (["--background", tmp_path / "logo.png"], ["--matte"]):
        outs.append(tmp_path / f"out{len(outs)}.png")
        assert main(["--model", brightness_model, "--image", tmp_path / "me.png", "--out",
                     outs[-1], "-q", "--mirror", *extra]) == 0
    sent, matte = (cv2.imread(str(out), cv2.IMREAD_UNCHANGED) for out in outs)
    room, person = matte == 0, matte == 255
    assert room.sum() > 5000 and person.sum() > 2000
    assert np.array_equal(sent[room], picture[room])
    assert np.array_equal(sent[person], cv2.flip(image, 1)[person])


def test_mirror_from_the_config_file_and_no_mirror_on_the_command_line(brightness_model,
                                                                       tmp_path):
    image = np.zeros((60, 80, 3), np.uint8)
    image[10:50, 5:30] = 230
    cv2.imwrite(str(tmp_path / "me.png"), image)
    config = tmp_path / "config.toml"
    config.write_text("mirror = true\nmatte = true\n")
    outs = {}
    for name, extra in (("file", []), ("cli", ["--no-mirror"])):
        outs[name] = tmp_path / f"{name}.png"
        assert main(["--config", config, "--model", brightness_model, "--image",
                     tmp_path / "me.png", "--out", outs[name], "-q", *extra]) == 0
    from_file, from_cli = (cv2.imread(str(outs[n]), cv2.IMREAD_UNCHANGED) for n in ("file", "cli"))
    assert from_file.ndim == 2  # matte = true applied
    assert np.array_equal(from_file, cv2.flip(from_cli, 1))
    assert from_cli[30, 10] > 200 and from_file[30, 10] < 50  # the person is on the left


def small_person_video(path, frames=20):
    """A small bright square off the centre of a dark frame: room for the framer to zoom."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (192, 128))
    for _ in range(frames):
        image = np.full((128, 192, 3), 30, np.uint8)
        image[48:80, 30:62] = 220
        writer.write(image)
    writer.release()
    return path


def test_f_switches_auto_framing_while_running(brightness_model, tmp_path):
    video = small_person_video(tmp_path / "small.avi")
    plain, _ = camera_run(brightness_model, video)
    sent, _ = camera_run(brightness_model, video, keys=[None, None, "f"])
    assert len(sent) == len(plain) == 20
    assert all(np.array_equal(a, b) for a, b in zip(sent[:2], plain[:2]))  # before f: unframed
    # After f the framer glides in towards the person, as --framing auto does from the start.
    assert not np.array_equal(sent[-1], plain[-1])
    framed, _ = camera_run(brightness_model, video, "--framing", "auto")
    assert not np.array_equal(framed[-1], plain[-1])
    # f on a run started with --framing auto glides back to the whole frame.
    back, _ = camera_run(brightness_model, video, "--framing", "auto", keys=[None] * 10 + ["f"])
    zoomed = np.abs(back[9].astype(int) - plain[9]).mean()
    assert np.abs(back[-1].astype(int) - plain[-1]).mean() < zoomed


def test_e_switches_the_edge_colour_while_running(brightness_model, video):
    plain, _ = camera_run(brightness_model, video, "--background", "#00ff00")
    estimated, _ = camera_run(brightness_model, video, "--background", "#00ff00", "--decontaminate")
    switched, _ = camera_run(brightness_model, video, "--background", "#00ff00", keys=[None, None, "e"])
    back, _ = camera_run(brightness_model, video, "--background", "#00ff00", "--decontaminate",
                         keys=[None, None, "e"])
    assert len(plain) == len(estimated) == len(switched) == len(back) > 4
    assert not np.array_equal(plain[0], estimated[0])  # the estimate changes the soft edge
    for frames, before, after in ((switched, plain, estimated), (back, estimated, plain)):
        assert all(np.array_equal(a, b) for a, b in zip(frames[:2], before[:2]))
        assert all(np.array_equal(a, b) for a, b in zip(frames[2:], after[2:]))


def test_the_image_b_steps_to_next_is_made_beforehand_and_kept(tmp_path):
    """A large photo in b's cycle is decoded and scaled while the stream runs, not on the key
    press (0.7 s of frozen output for a 62 MP photo before), and stays made for a way back."""
    from portrait.composite import ImageBackground
    from portrait.options import CompositeOptions

    rng = np.random.default_rng(5)
    big = tmp_path / "big.jpg"
    cv2.imwrite(str(big), rng.integers(0, 255, (3000, 4000, 3), np.uint8))  # 12 MP of noise
    state = LiveState(backgrounds=("blur", str(big), "#00ff00"))
    with LiveBackground(CompositeOptions(), state, (320, 240)) as live:
        # Made meanwhile, in its own thread, before any key press.
        made = live._image_future(str(big)).result(timeout=30)
        chosen = live.for_state(replace(state, background_index=1))
        assert isinstance(chosen, ImageBackground) and chosen is made  # nothing decoded on b
        # The frame at its size, from an image kept at most twice as large as that needs.
        assert chosen._background_for(np.zeros((240, 320, 3), np.uint8), None).shape == (240, 320, 3)
        assert live.for_state(replace(state, background_index=2)).description == "colour #00ff00"
        assert live.for_state(replace(state, background_index=1)) is chosen  # kept


def test_b_keeps_only_the_last_few_images_made(tmp_path):
    """Each image kept made holds a scaled copy: after b went through five images only the
    last KEPT_IMAGES stay made; an older one is made again when b comes back to it."""
    from portrait.controls import KEPT_IMAGES
    from portrait.options import CompositeOptions

    images = [str(solid_image(tmp_path / f"{i}.png", (40 * i, 0, 0))) for i in range(5)]
    state = LiveState(backgrounds=("blur", *images))
    with LiveBackground(CompositeOptions(), state, (64, 48)) as live:
        for index in range(1, 6):
            live.for_state(replace(state, background_index=index))
        kept = [spec for spec in images if live._image_future(spec) is not None]
        assert len(kept) == KEPT_IMAGES == 3
        assert kept == images[2:]  # the last three shown (the next, blur, needs no making)


def test_a_background_that_cannot_be_read_is_reported_once(tmp_path, caplog):
    """A broken file of b's cycle is named in one warning and the previous background kept, on
    this frame and every later one, not tried (and warned about) again on each frame."""
    from portrait.options import CompositeOptions

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    state = LiveState(backgrounds=("#00ff00", str(broken)))
    with LiveBackground(CompositeOptions(background="#00ff00"), state, (64, 48)) as live:
        with caplog.at_level(logging.WARNING, logger="portrait.controls"):
            shown = [live.for_state(replace(state, background_index=1)).description
                     for _ in range(3)]
    assert shown == ["colour #00ff00"] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "broken.png" in warnings[0] and "keeping the colour #00ff00" in warnings[0]

def test_a_gif_in_b_s_cycle_plays_again_when_b_comes_back_to_it(tmp_path):
    """A GIF is named like an image (IMAGE_SUFFIXES), so b's cycle made it ahead as an image
    and kept it, but it is a video background: closed when b stepped on, the kept one was
    shown again when b came back, 'unexpected render on a closed VideoBackground'. A GIF is
    made when it is chosen, as a video is, and each made is closed when left."""
    from PIL import Image

    from portrait.composite import VideoBackground
    from portrait.options import CompositeOptions

    gif = tmp_path / "anim.gif"
    greys = [Image.fromarray(np.full((48, 64, 3), grey, np.uint8)) for grey in (50, 150)]
    greys[0].save(gif, save_all=True, append_images=greys[1:], duration=100, loop=0)
    state = LiveState(backgrounds=("blur", str(gif), "#00ff00"))
    frame, nobody = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64), np.uint8)
    shown = []
    with LiveBackground(CompositeOptions(), state, (64, 48)) as live:
        assert live._image_future(str(gif)) is None  # not made ahead as an image
        for index in (1, 2, 1, 0, 1):
            background = live.for_state(replace(state, background_index=index))
            assert background.render(frame, nobody, time_s=0.0)[0, 0].tolist() == (
                [50, 50, 50] if index == 1 else [0, 255, 0] if index == 2 else [0, 0, 0])
            shown.append(background)
    gifs = [background for background in shown if isinstance(background, VideoBackground)]
    assert len(gifs) == 3 and len(set(map(id, gifs))) == 3
    assert all(background._video is None for background in gifs)  # each closed


def test_plus_and_minus_leave_a_video_or_a_colour_background_as_it_is(tmp_path):
    """+ and - change the blur, which a video (here a GIF) or a colour background does not
    use: the background in use stays, not made again (a video started again from its first
    frame at each press)."""
    from PIL import Image

    from portrait.options import CompositeOptions

    gif = tmp_path / "anim.gif"
    greys = [Image.fromarray(np.full((48, 64, 3), grey, np.uint8)) for grey in (50, 150)]
    greys[0].save(gif, save_all=True, append_images=greys[1:], duration=100, loop=0)
    state = LiveState(backgrounds=("blur", str(gif), "#00ff00"), blur_px=21)
    with LiveBackground(CompositeOptions(), state, (64, 48)) as live:
        for index in (1, 2):
            chosen = replace(state, background_index=index)
            background = live.for_state(chosen)
            for key in "+-+":
                chosen = apply_key(chosen, key)
                assert live.for_state(chosen) is background, (index, key)
        blurred = live.for_state(state)
        assert live.for_state(apply_key(state, "+")) is not blurred  # blur's own strength


@pytest.mark.parametrize("name", ["frame.png", "frame.gif"])  # an image; a GIF plays
def test_plus_and_minus_blur_what_shows_through_a_transparent_image(tmp_path, name):
    from PIL import Image

    from portrait.composite import blur_background
    from portrait.options import CompositeOptions

    rgba = np.zeros((240, 320, 4), np.uint8)  # transparent but for an opaque band at the top
    rgba[:40] = (255, 255, 255, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / name)
    state = LiveState(backgrounds=("blur", str(tmp_path / name)), background_index=1,
                      blur_px=21)
    frame = np.random.default_rng(2).integers(0, 256, (240, 320, 3), np.uint8)
    nobody = np.zeros((240, 320), np.uint8)
    with LiveBackground(CompositeOptions(blur_px=21), state, (320, 240)) as live:
        for blur_px in (21, 6, 41):  # as + and - leave it
            result = live.for_state(replace(state, blur_px=blur_px)).render(frame, nobody)
            np.testing.assert_array_equal(result[40:], blur_background(frame, nobody, blur_px)[40:])
            assert result[:40].min() == 255


def test_an_image_background_keeps_at_most_twice_what_covers_the_frame(tmp_path):
    from portrait.composite import _at_most_twice_cover

    image = np.zeros((3000, 4000, 3), np.uint8)
    assert _at_most_twice_cover(image, (320, 240)).shape == (480, 640, 3)  # cover 0.08, kept 0.16
    assert _at_most_twice_cover(image, (1280, 720)).shape == (1920, 2560, 3)  # 0.32, 0.64
    assert _at_most_twice_cover(image, (3840, 2160)) is image  # nothing to spare

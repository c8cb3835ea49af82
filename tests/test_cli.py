"""The command line end to end: image mode, video in → video out, live mode into a virtual
camera (pyvirtualcam with a registered backend), and every bad-input path (one line, no
traceback, non-zero exit)."""

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, colour_profile, fake_camera, phone_exif, shared_path, write_video
from portrait.cli import build_parser, main, model_size
from portrait.composite import blur_background
from test_sink import RecordingBackend

BACKEND = "portrait-cli-test"


def person_image(path, size=(160, 120)):
    """A bright 'person' block on a dark, textured background."""
    width, height = size
    rng = np.random.default_rng(1)
    image = rng.integers(0, 60, (height, width, 3), np.uint8)
    image[30:110, 50:110] = 230
    cv2.imwrite(str(path), image)
    return path


def run_app(*args, timeout=120):
    """Run ``python app.py`` as a user would; returns (exit code, stdout, stderr)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, "app.py", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def run_in_process(capsys, *args):
    """``main()`` in this process (no TensorFlow start-up per call); returns (code, stderr)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit:  # argparse usage errors
        code = exit.code
    return code, capsys.readouterr().err


def assert_one_line_error(code, stderr, *words):
    assert code != 0
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for word in words:
        assert word in errors[0], errors[0]


@pytest.mark.slow
def test_a_stream_runs_the_interpreter_on_half_the_cores_and_a_photo_on_all(
        brightness_model, tmp_path):
    """--threads 0: a camera or video stream gives the interpreter half the cores (its other
    stages run beside it); a photo every core; --threads N is N for both."""
    video = write_video(tmp_path / "clip.avi", frames=3)
    photo = person_image(tmp_path / "me.png")
    cores = os.cpu_count()
    for args, threads in ((["--source", video, "--out", tmp_path / "a.mp4"], max(1, cores // 2)),
                          (["--image", photo, "--out", tmp_path / "a.png"], cores),
                          (["--source", video, "--out", tmp_path / "b.mp4", "--threads", "3"], 3)):
        code, _, stderr = run_app("--model", brightness_model, *args)
        assert code == 0, stderr
        assert f"TFLite (CPU, {threads} thread{'' if threads == 1 else 's'}," in stderr, stderr


@pytest.mark.parametrize("extra, channels", [
    ([], 3), (["--background", "#00ff00"], 3), (["--background", "transparent"], 4),
    (["--matte"], 1),
])
def test_image_mode_writes_a_same_size_result(brightness_model, tmp_path, extra, channels):
    source = person_image(tmp_path / "me.jpg")
    out = tmp_path / "out.png"
    assert main(["--model", str(brightness_model), "--image", str(source), "--out", str(out),
                 "-q", *extra]) == 0
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.shape[:2] == (120, 160)
    assert (result.shape[2] if result.ndim == 3 else 1) == channels
    if extra == ["--matte"]:
        assert result[70, 80] > 200 and result[5, 5] < 50
    if extra == ["--background", "#00ff00"]:
        assert tuple(result[5, 5]) == (0, 255, 0)  # BGR: pure green background
        assert result[70, 80].min() > 200  # the person kept


def test_a_photos_colour_profile_and_date_go_to_its_outputs_but_not_to_its_matte(
        brightness_model, tmp_path):
    """A phone photo's colour profile goes to its blurred photo and its cut-out (without it a
    Display-P3 photo looks duller in colour-managed viewers), with the camera and the capture
    date; not its GPS position, nor its orientation (the pixels are turned upright). The matte
    is data, not colour: it keeps none of it."""
    from PIL import Image

    bgr = cv2.imread(str(person_image(tmp_path / "plain.png")))
    photo = tmp_path / "IMG_0001.jpg"
    Image.fromarray(bgr[:, :, ::-1]).save(photo, quality=95, exif=phone_exif().tobytes(),
                                          icc_profile=colour_profile())
    for name, extra in (("blur.png", []), ("cutout.webp", ["--background", "transparent"]),
                        ("matte.png", ["--matte"])):
        out = tmp_path / name
        assert main(["--model", str(brightness_model), "--image", str(photo), "--out", str(out),
                     "-q", *extra]) == 0
        with Image.open(out) as written:
            assert written.size == (120, 160), name  # upright: portrait
            profile, exif = written.info.get("icc_profile"), written.getexif()
        if name == "matte.png":
            assert profile is None and len(exif) == 0
            continue
        assert profile == colour_profile(), name
        assert (exif.get(0x010F), exif.get(0x0110)) == ("Apple", "iPhone 15 Pro"), name
        assert exif.get_ifd(0x8769) == {0x9003: "2024:05:01 09:59:58", 0x9011: "+02:00"}, name
        assert 0x0112 not in exif and exif.get_ifd(0x8825) == {}, name  # no orientation, GPS


@pytest.mark.parametrize("name", ["cutout.png", "cutout.webp", "cutout.tiff"])
def test_a_cutout_file_keeps_none_of_the_room_it_hides(brightness_model, tmp_path, name):
    """--background transparent: the file holds the room nowhere, even for a tool that drops
    its alpha: where it is transparent its colours are the person's beside them and black
    farther away, never the photo's dark texture; what it shows is the photo's."""
    from PIL import Image

    photo = person_image(tmp_path / "me.png")
    out = tmp_path / name
    assert main(["--model", str(brightness_model), "--image", str(photo), "--out", str(out),
                 "--background", "transparent", "-q"]) == 0
    with Image.open(out) as written:
        rgba = np.asarray(written.convert("RGBA"))
    bgr = cv2.imread(str(photo))
    hidden, shown = rgba[:, :, 3] == 0, rgba[:, :, 3] == 255
    assert hidden.sum() > 5000 and shown.sum() > 2000
    far = cv2.distanceTransform(hidden.astype(np.uint8), cv2.DIST_L2, 5) > 20
    assert far.sum() > 2000 and rgba[far][:, :3].max() == 0
    texture = bgr[hidden][:, ::-1]  # the room's own colours there, RGB
    kept = (rgba[hidden][:, :3] == texture).all(axis=1)
    assert kept.mean() < 0.05, f"{kept.mean():.1%} of the hidden pixels keep the room's colour"
    assert (rgba[hidden][:, :3] <= 230).all()  # nothing brighter than the person
    np.testing.assert_array_equal(rgba[shown][:, :3], bgr[shown][:, ::-1])


@pytest.mark.parametrize("ext", [".png", ".webp"])
def test_what_a_photo_hides_with_its_own_transparency_stays_out_of_the_person(
        brightness_model, tmp_path, ext):
    """A photo with transparency whose hidden pixels keep the person's colours (the right half
    of the bright block, alpha 0): the cut-out keeps it transparent, the matte 0 and a colour
    background shows there; the half the photo shows is the person as before. An alpha of 255
    everywhere changes nothing."""
    from PIL import Image

    bgr = cv2.imread(str(person_image(tmp_path / "me.png")))
    alpha = np.full((120, 160), 255, np.uint8)
    alpha[:, 80:] = 0
    half = tmp_path / f"half{ext}"
    Image.fromarray(np.dstack([bgr[:, :, ::-1], alpha])).save(half, lossless=True)
    opaque = tmp_path / f"opaque{ext}"
    Image.fromarray(np.dstack([bgr[:, :, ::-1], np.full_like(alpha, 255)])).save(opaque,
                                                                              lossless=True)
    results = {}
    for photo in (half, opaque, tmp_path / "me.png"):
        for extra in (["--background", "transparent"], ["--matte"], ["--background", "#00ff00"]):
            out = tmp_path / f"{photo.stem}{extra[-1].replace('#', '')}.png"
            assert main(["--model", str(brightness_model), "--image", str(photo), "--out",
                         str(out), "-q", *extra]) == 0
            results[photo.stem, extra[-1]] = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    cutout, matte = results["half", "transparent"], results["half", "--matte"]
    green = results["half", "#00ff00"]
    assert cutout[30:110, 80:110, 3].max() == 0 and matte[30:110, 80:110].max() == 0
    assert (green[40:100, 85:105] == (0, 255, 0)).all()
    assert cutout[40:100, 55:75, 3].min() > 200 and matte[40:100, 55:75].min() > 200
    assert green[40:100, 55:75].min() > 200  # the person the photo shows
    for extra in ("transparent", "--matte", "#00ff00"):
        np.testing.assert_array_equal(results["opaque", extra], results["me", extra])
    if ext == ".png":  # its hidden colours kept exactly (WebP may change those under alpha 0)
        # where the photo is opaque (alpha 255) its matte is the person's, to the last level
        np.testing.assert_array_equal(matte[:, :80], results["me", "--matte"][:, :80])


def test_a_transparent_tiff_cutout_is_marked_as_transparent(brightness_model, tmp_path):
    """--background transparent --out x.tiff: the alpha is marked as such (ExtraSamples = 2,
    unassociated), so editors show the room as transparent; the person stays opaque."""
    from PIL import Image

    out = tmp_path / "cutout.tiff"
    assert main(["--model", str(brightness_model), "--image", str(person_image(tmp_path / "me.jpg")),
                 "--out", str(out), "--background", "transparent", "-q"]) == 0
    with Image.open(out) as written:
        assert written.mode == "RGBA" and written.tag_v2.get(338) == (2,)
        alpha = np.asarray(written)[:, :, 3]
    assert alpha[70, 80] > 200 and alpha[5, 5] < 50


def test_blur_background_changes_only_the_background(brightness_model, tmp_path):
    source = person_image(tmp_path / "me.png")
    out = tmp_path / "blur.png"
    assert main(["--model", str(brightness_model), "--image", str(source), "--out", str(out),
                 "--blur", "15", "-q"]) == 0
    original, result = cv2.imread(str(source)), cv2.imread(str(out))
    background = (slice(0, 20), slice(0, 40))
    assert result[background].std() < original[background].std() / 2  # noise blurred away
    assert np.abs(result[60:80, 70:90].astype(int) - original[60:80, 70:90]).max() <= 3


def striped_photo(path, size):
    """Dark vertical stripes, 64 px wide (a room), with a bright block (a person) low right."""
    width, height = size
    stripes = np.where((np.arange(width) // 64) % 2 == 0, 10, 70).astype(np.uint8)
    image = np.repeat(np.repeat(stripes[None, :, None], height, 0), 3, 2)
    image[height // 3:, width // 3:width // 2] = 230
    cv2.imwrite(str(path), image)
    return image


@pytest.mark.parametrize("size, given, blur_px", [((3000, 2000), [], 58),
                                                  ((3000, 2000), ["--blur", "21"], 21),
                                                  ((640, 480), [], 21),
                                                  ((640, 480), ["--blur", "21"], 21)])
def test_the_default_blur_grows_with_a_photo_larger_than_720p_and_a_given_one_does_not(
        brightness_model, tmp_path, size, given, blur_px):
    photo = striped_photo(tmp_path / "room.png", size)
    out = tmp_path / "out.png"
    assert main(["--model", str(brightness_model), "--image", str(tmp_path / "room.png"),
                 "--out", str(out), "-q", *given]) == 0
    result = cv2.imread(str(out))
    room = (slice(0, size[1] // 4), slice(0, size[0] // 4))  # far from the person
    no_person = np.zeros(photo.shape[:2], np.uint8)
    expected = blur_background(photo, no_person, blur_px)
    np.testing.assert_array_equal(result[room], expected[room])
    other = blur_background(photo, no_person, 21 + 58 - blur_px)  # the other strength
    assert np.abs(result[room].astype(int) - other[room]).mean() > 5


def test_a_video_background_gives_every_photo_its_first_frame(brightness_model, tmp_path):
    """Photos have no time: each is cut out over the video's first frame (photo k got frame
    k before, one frame per output; by the clock, each would get another)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        person_image(folder / name)
    video = tmp_path / "levels.avi"
    # 300 fps: by the clock, a photo a few ms after the first would land on another frame
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 300.0, (160, 120))
    for level in [20] + [200] * 29:
        writer.write(np.full((120, 160, 3), level, np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert main(["--model", str(brightness_model), "--image", str(folder), "--out", str(out),
                 "--background", str(video), "-q"]) == 0
    for name in ("a.png", "b.png", "c.png"):
        corner = cv2.imread(str(out / name))[:20, :40]  # background there
        assert abs(float(corner.mean()) - 20) < 4, name


def test_folder_batch_keeps_stems_and_carries_on_past_a_bad_file(brightness_model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    person_image(folder / "a.jpg")
    person_image(folder / "b.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    out = tmp_path / "out"
    code, _, stderr = run_app("--model", brightness_model, "--image", folder, "--out", out)
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "written-by-portrait.txt"]
    assert "broken.jpg" in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in folder.iterdir()) == ["a.jpg", "b.png", "broken.jpg"]


def test_a_batch_reports_a_photo_whose_output_the_disk_takes_for_an_earlier_one(
        brightness_model, tmp_path, caplog):
    """IMG_1.jpg and img_1.png into a folder whose disk takes img_1.png for IMG_1.png (macOS,
    Windows; made here with a link): the second is reported and skipped, exit code 1, as two
    photos of one name are, and the first's output is kept."""
    from portrait.sink.paths import OUTPUT_MARKER

    folder = tmp_path / "photos"
    folder.mkdir()
    person_image(folder / "IMG_1.jpg")
    person_image(folder / "img_1.png", size=(200, 100))
    out = tmp_path / "out"
    out.mkdir()
    (out / OUTPUT_MARKER).write_text("an earlier run's")
    (out / "img_1.png").symlink_to("IMG_1.png")
    caplog.set_level(logging.WARNING)
    assert main(["--model", str(brightness_model), "--image", str(folder), "--out", str(out),
                 "-q"]) == 1
    assert cv2.imread(str(out / "IMG_1.png")).shape == (120, 160, 3)  # the first photo's
    assert "is the file already written for another input named 'IMG_1'" in caplog.text
    assert "1 of 2 images could not be processed: img_1.png" in caplog.text


def test_a_stream_runs_with_the_callers_pipeline_options(brightness_model, tmp_path,
                                                        monkeypatch):
    """run_stream sets ``live`` and keeps the rest of the PipelineOptions it is given: it
    copied four of them into new options, so ``spread_still=False`` (and ``opencv_threads``)
    given to it were dropped for the defaults."""
    import functools

    import portrait.cli
    import portrait.run
    from portrait.options import PipelineOptions

    given = functools.partial(PipelineOptions, spread_still=False, opencv_threads=1,
                              max_reuse=4, still_threshold=2.5)
    monkeypatch.setattr(portrait.cli, "PipelineOptions", given)
    seen = []

    class Recording(portrait.run.FrameProcessor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.options)

    monkeypatch.setattr(portrait.run, "FrameProcessor", Recording)
    video = write_video(tmp_path / "in.avi", frames=3)
    assert main(["--model", str(brightness_model), "--source", str(video), "--out",
                 str(tmp_path / "out.mp4"), "--no-reuse", "-q"]) == 0
    assert seen == [PipelineOptions(live=False, reuse_still=False, max_reuse=4,
                                    still_threshold=2.5, spread_still=False, opencv_threads=1)]


def test_video_in_gives_video_out_with_the_same_frame_count(brightness_model, tmp_path):
    video = write_video(tmp_path / "in.avi", frames=37)
    out, stats = tmp_path / "out.mp4", tmp_path / "s.json"
    assert main(["--model", str(brightness_model), "--source", str(video), "--out", str(out),
                 "--stats", str(stats), "-q"]) == 0
    capture = cv2.VideoCapture(str(out))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 37
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 37 and summary["fps"] > 0
    assert {"decode", "segment", "refine", "composite", "output"} <= set(summary["stage_ms"])
    assert summary["wait_ms"] == {"mean": None, "median": None, "p95": None}  # no waiting


def test_a_batch_of_photos_times_each_stage_in_its_stats(brightness_model, tmp_path):
    """--stats with --image: the photos written, and the mean ms of each stage they went
    through (the contract's stage_ms), as a video's; a file that could not be read is not
    counted. The latencies are null: a photo's is the sum of its stages."""
    folder = tmp_path / "photos"
    folder.mkdir()
    person_image(folder / "a.png")
    person_image(folder / "b.jpg", size=(96, 64))
    (folder / "c.jpg").write_bytes(b"")  # reported and skipped
    stats = tmp_path / "s.json"
    assert main(["--model", str(brightness_model), "--image", str(folder), "--out",
                 str(tmp_path / "out"), "--stats", str(stats), "-q"]) == 1
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 2 and summary["fps"] > 0
    assert set(summary["stage_ms"]) == {"decode", "segment", "refine", "composite", "output"}
    assert all(ms > 0 for ms in summary["stage_ms"].values()), summary["stage_ms"]
    assert summary["latency_ms"] == {"mean": None, "median": None, "p95": None}


def test_a_video_keeps_its_sound_unless_told(brightness_model, tmp_path, caplog):
    """The sound goes along, cut where the picture ends (20 frames at 30 fps: 0.67 s); not with
    --no-audio. With --realtime too: the frames it may drop leave their time to the frame
    before, so the picture still ends where the sound does."""
    import av

    from conftest import main_frequency, sound_of, write_video_with_sound

    talk = write_video_with_sound(tmp_path / "talk.mp4", frames=60, seconds=2.0)
    common = ["--model", str(brightness_model), "--source", str(talk), "--max-frames", "20"]
    assert main([*common, "--out", str(tmp_path / "kept.mp4"), "-q"]) == 0
    codec, seconds, samples = sound_of(tmp_path / "kept.mp4")
    assert codec == "aac" and abs(seconds - 20 / 30) < 0.06, seconds
    assert abs(main_frequency(samples) - 440.0) < 3.0
    assert main([*common, "--out", str(tmp_path / "quiet.mp4"), "--no-audio", "-q"]) == 0
    assert sound_of(tmp_path / "quiet.mp4")[0] == ""
    with caplog.at_level(logging.WARNING):
        assert main(["--model", str(brightness_model), "--source", str(talk), "--realtime",
                     "--out", str(tmp_path / "paced.mp4"), "-q"]) == 0
    assert caplog.text == ""
    codec, seconds, _ = sound_of(tmp_path / "paced.mp4")
    with av.open(str(tmp_path / "paced.mp4")) as container:
        shown = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    assert codec == "aac" and abs(seconds - (shown[-1] + 1 / 30)) < 0.03, (seconds, shown[-1])
    assert shown[-1] == pytest.approx(59 / 30, abs=1e-3)  # the last frame, dropped or not


def test_a_phone_video_keeps_its_timing_and_its_sound_with_it(brightness_model, tmp_path):
    """A phone in dim light drops to 10 fps for a second: the output shows each frame at its
    time and the sound lasts as long as the picture, as a .mp4 (each frame's time) and as a
    .avi (at the file's base rate, 30 fps, a frame shown again while the source waits; its
    average rate, which OpenCV reports, is 22 fps, at which the 40 frames would have ended at
    1.8 s of the 2 s sound)."""
    import av

    from conftest import sound_of, write_video_with_sound

    times = [i / 30 for i in range(30)] + [1 + i / 10 for i in range(10)]
    phone = write_video_with_sound(tmp_path / "phone.mp4", frames=40, seconds=2.0,
                                   frame_times=times)
    step = 1 / 30
    for name in ("out.mp4", "out.avi"):
        out = tmp_path / name
        assert main(["--model", str(brightness_model), "--source", str(phone), "--out", str(out),
                     "-q"]) == 0
        with av.open(str(out)) as container:
            shown = [float(f.pts * f.time_base) for f in container.decode(video=0)]
        expected = times if name == "out.mp4" else [i * step for i in range(58)]  # to 1.9 s
        assert shown == pytest.approx(expected, abs=1e-3), name
        assert abs(sound_of(out)[1] - (1.9 + step)) < 0.03, name


def test_a_gif_source_s_frames_keep_their_delays_as_viewers_show_them(brightness_model,
                                                                       tmp_path):
    """A GIF of delays 0, 10, 20 and 50 ms, written to a .mp4: its frames at 0, 0.1, 0.2 and
    0.22 s (under 20 ms is 100 ms, as browsers show it), where they were at 0, 0.1, 0.11 and
    0.13 s, FFmpeg's times."""
    import av

    from test_looping import fast_gif

    out = tmp_path / "out.mp4"
    assert main(["--model", str(brightness_model), "--source", str(fast_gif(tmp_path / "a.gif")),
                 "--out", str(out), "-q"]) == 0
    with av.open(str(out)) as container:
        shown = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    assert shown == pytest.approx([0.0, 0.1, 0.2, 0.22], abs=1e-3)


def test_a_gif_source_is_written_at_its_delays_rate_not_ffmpeg_s_guess(brightness_model,
                                                                         tmp_path):
    """A GIF of four 10 ms delays (each shown for 100 ms) goes into an .avi, which holds one
    rate, at 10 fps: four frames over 0.4 s. At FFmpeg's guess, 100 fps, each was repeated to
    fill its 100 ms."""
    import av

    from test_looping import fast_gif

    out = tmp_path / "out.avi"
    assert main(["--model", str(brightness_model), "--source",
                 str(fast_gif(tmp_path / "a.gif", durations_ms=(10, 10, 10, 10))),
                 "--out", str(out), "-q"]) == 0
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert float(stream.average_rate) == pytest.approx(10.0)
        assert len(list(container.decode(stream))) == 4


def test_png_frames_and_max_frames(brightness_model, tmp_path):
    video = write_video(tmp_path / "in.avi", frames=20)
    out = tmp_path / "frames"
    assert main(["--model", str(brightness_model), "--source", str(video), "--out", str(out),
                 "--max-frames", "7", "--matte", "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(7)] + [
        "written-by-portrait.txt"]


def test_transparent_png_frames_go_to_a_folder_whose_name_has_a_dot(brightness_model, tmp_path):
    """A trailing "/" names a folder whatever its name: ``takes.v2/`` takes RGBA PNG frames."""
    video = write_video(tmp_path / "in.avi", frames=3)
    out = tmp_path / "takes.v2"
    assert main(["--model", str(brightness_model), "--source", str(video), "--out", f"{out}/",
                 "--background", "transparent", "-q"]) == 0
    frames = sorted(out.glob("*.png"))
    assert len(frames) == 3
    assert cv2.imread(str(frames[0]), cv2.IMREAD_UNCHANGED).shape[2] == 4


@pytest.fixture
def virtual_camera():
    with fake_camera(BACKEND, RecordingBackend) as backend:
        yield backend


def test_live_mode_sends_every_processed_frame_to_the_virtual_camera(
        brightness_model, tmp_path, virtual_camera):
    video = write_video(tmp_path / "in.avi", frames=25, size=(96, 64), fps=20.0)
    stats = tmp_path / "s.json"
    assert main(["--model", str(brightness_model), "--source", str(video), "--stats", str(stats),
                 "--no-loop", "-q"]) == 0
    (camera,) = virtual_camera.instances
    assert (camera.width, camera.height) == (96, 64)
    summary = json.loads(stats.read_text())
    # A clip played into a call goes at its own pace, not as fast as the model runs.
    assert summary["fps"] <= 22.0, summary
    processed = summary["frames"]
    assert 20 <= processed <= 25  # a frame may be dropped when it comes late, as a camera's
    assert len(camera.frames) == processed
    assert all(f.size == 96 * 64 * 3 for f in camera.frames)
    assert camera.closed == 1

    # --no-realtime: every frame, as fast as the pipeline goes.
    assert main(["--model", str(brightness_model), "--source", str(video), "--stats", str(stats),
                 "--no-realtime", "--no-loop", "-q"]) == 0
    summary = json.loads(stats.read_text())
    assert summary["frames"] == 25 and summary["dropped_frames"] == 0, summary
    assert len(virtual_camera.instances[-1].frames) == 25


def grey_clip(path, levels, fps=30.0, size=(64, 48)):
    """A real video whose frame i is a flat grey of ``levels[i]`` (MJPEG keeps flat greys)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for level in levels:
        writer.write(np.full((size[1], size[0], 3), level, np.uint8))
    writer.release()
    return path


def test_a_clip_into_the_virtual_camera_loops_on_one_timeline_until_stopped(
        brightness_model, tmp_path, virtual_camera, caplog):
    """A clip standing in for a camera goes on after its end, as a camera does, so a call keeps
    its picture; its times go on too: a video background behind it plays on through the seam
    instead of starting again with the clip. --no-loop ends with the clip; --loop typed loops."""
    clip = grey_clip(tmp_path / "me.avi", [2] * 4)  # dark: nobody, the background shows whole
    behind = grey_clip(tmp_path / "behind.avi", [2 + 20 * i for i in range(10)])
    run = ["--model", str(brightness_model), "--source", str(clip), "--background", str(behind),
           "--no-realtime"]
    with caplog.at_level(logging.INFO, "portrait"):
        assert main([*run, "--max-frames", "9"]) == 0
    assert "starts again when it ends" in caplog.text
    (camera,) = virtual_camera.instances
    # 9 frames from a clip of 4; each shows the background frame of its own time: 0..8.
    assert [round((float(frame.mean()) - 2) / 20) for frame in camera.frames] == list(range(9))
    assert main([*run, "--no-loop", "-q"]) == 0
    assert len(virtual_camera.instances[-1].frames) == 4
    assert main([*run, "--loop", "--max-frames", "6", "-q"]) == 0  # as typed: the same
    assert len(virtual_camera.instances[-1].frames) == 6


def test_a_looped_clip_starts_its_smoothing_afresh_at_each_seam(brightness_model, tmp_path,
                                                                 virtual_camera):
    """Greys close enough for the smoother to blend (a ghost of the clip's end over its start,
    were it carried across the seam): each pass sends the same frames as the first."""
    clip = grey_clip(tmp_path / "me.avi", [122, 126, 131, 136])
    assert main(["--model", str(brightness_model), "--source", str(clip), "--matte",
                 "--no-realtime", "--max-frames", "12", "-q"]) == 0
    (camera,) = virtual_camera.instances
    frames = [frame.astype(np.int16) for frame in camera.frames]
    assert len(frames) == 12
    assert np.abs(frames[1] - frames[0]).max() > 0  # the greys do give other mattes
    for i in range(4, 12):
        np.testing.assert_array_equal(frames[i], frames[i % 4])


def test_loop_typed_with_a_file_output_is_refused_in_one_line(brightness_model, tmp_path, capsys):
    """A looped clip has no end: a file output would grow until the disk is full. --loop typed
    is refused so, with the config file's loop = true or without it, and an --out from the
    file too."""
    clip = write_video(tmp_path / "in.avi", frames=3)
    out = tmp_path / "out.mp4"
    config = tmp_path / "c.toml"
    config.write_text("loop = true\n")
    for extra in ([], ["--config", config]):
        code, stderr = run_in_process(capsys, "--model", brightness_model, "--source", clip,
                                      "--out", out, "--loop", *extra)
        assert_one_line_error(code, stderr, f"--loop is for the virtual camera: in --out '{out}' "
                              "the picture would repeat while the clip's sound plays once, and "
                              "without --max-frames never end; give --no-loop to write it once")
        assert "comes from config file" not in stderr  # typed, not the file's
        assert not out.exists()
    config.write_text(f"out = {json.dumps(str(out))}\n")
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--source", clip, "--loop",
                                  "--config", config)
    assert_one_line_error(code, stderr, f"--loop is for the virtual camera: in --out '{out}'",
                          f"(out = {json.dumps(str(out))} comes from config file '{config}')")
    assert not out.exists()


def test_the_config_files_loop_writes_a_file_output_once_and_says_so(
        brightness_model, tmp_path, capsys, caplog, virtual_camera):
    """loop = true in a config file is a standing default for calls: a run with an --out
    writes the clip once (one info line says the file's loop is not used there), where the
    virtual camera loops it; --no-loop there, as any option typed, wins over the file."""
    clip = write_video(tmp_path / "in.avi", frames=3)
    out = tmp_path / "out.avi"
    config = tmp_path / "c.toml"
    config.write_text("loop = true\n")
    run = ["--model", brightness_model, "--source", clip, "--config", config, "--no-realtime"]
    with caplog.at_level(logging.INFO, "portrait"):
        code, stderr = run_in_process(capsys, *run, "--out", out)
    assert code == 0, stderr
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3  # once, not refused nor looped
    capture.release()
    said = [record for record in caplog.records
            if "not used for a file output" in record.getMessage()]
    assert [(record.levelname, record.getMessage()) for record in said] == [
        ("INFO", f"loop = true in config file '{config}' is for the virtual camera and not used "
                 f"for a file output: --out '{out}' gets the clip once")]
    assert virtual_camera.instances == []
    caplog.clear()
    with caplog.at_level(logging.INFO, "portrait"):  # the virtual camera: looped, as the file says
        assert run_in_process(capsys, *run, "--max-frames", "7")[0] == 0
    assert len(virtual_camera.instances[-1].frames) == 7
    assert "not used for a file output" not in caplog.text
    assert run_in_process(capsys, *run, "--max-frames", "7", "--no-loop", "-q")[0] == 0
    assert len(virtual_camera.instances[-1].frames) == 3


def test_the_config_files_loop_is_kept_for_a_camera_a_photo_or_a_typed_loop():
    """without_config_loop unsets the config file's loop only for a video file written to an
    --out: a camera (which does not end), a photo, a --loop typed, or no --out keep it."""
    from portrait.cli import without_config_loop

    def args(**given):
        return argparse.Namespace(**{"loop": True, "image": None, "out": "rec.mp4",
                                     "source": "clip.mp4", **given})

    kept, line = without_config_loop(args(), set(), "c.toml")
    assert kept.loop is None and line == (
        "loop = true in config file 'c.toml' is for the virtual camera and not used for a file "
        "output: --out 'rec.mp4' gets the clip once")
    for given, typed in (({"source": "0"}, set()), ({"source": 1}, set()),
                         ({"image": "me.jpg"}, set()), ({"out": None}, set()), ({}, {"loop"})):
        original = args(**given)
        assert without_config_loop(original, typed, "c.toml") == (original, None), given


def test_loop_with_a_camera_is_neither_refused_nor_said_to_loop(brightness_model, tmp_path, capsys,
                                                                caplog):
    """A camera does not end: --loop with a camera --source is left out (a warning), so with an
    --out the run records as it would without it, not refused as a looped clip is; nor does the
    log say the camera starts again. Camera 99 is not there: the camera's error ends each run."""
    out = tmp_path / "rec.mp4"
    with caplog.at_level(logging.INFO, "portrait"):
        for given in (["--out", out, "--loop"], ["--out", out], []):
            code, stderr = run_in_process(capsys, "--model", brightness_model, "--source", "99",
                                          "--max-frames", "1", *given)
            assert_one_line_error(code, stderr, "camera 99 could not be opened")
    assert "starts again" not in caplog.text


def test_the_start_log_says_what_the_call_sees_with_the_blur_for_this_frame_size(
        brightness_model, tmp_path, virtual_camera, caplog):
    """Mirror, framing and the blur in pixels for the source's frames (32 px at 1080p), not the
    rule (21 px up to 720p)."""
    clip = grey_clip(tmp_path / "hd.avi", [40, 40], size=(1920, 1080))
    run = ["--model", str(brightness_model), "--source", str(clip), "--no-realtime",
           "--max-frames", "1"]

    def output_lines(*args):
        caplog.clear()
        with caplog.at_level(logging.INFO, "portrait"):
            assert main([*run, *args]) == 0
        assert "up to 720p" not in caplog.text
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("output:")]

    assert output_lines() == [
        "output: mirror off, framing off, background blur 32 px (the default for 1920x1080)"]
    assert output_lines("--mirror", "--framing", "auto", "--blur", "40") == [
        "output: mirror on, framing on, background blur 40 px"]
    assert output_lines("--matte") == ["output: the matte (white = person), mirror off, "
                                       "framing off"]
    photo = tmp_path / "beach.png"
    cv2.imwrite(str(photo), np.full((90, 160, 3), 200, np.uint8))
    assert output_lines("--background", str(photo)) == [
        f"output: mirror off, framing off, background image {photo} (160x90)"]


class FirstBackend(RecordingBackend):
    """A second recording backend, registered before the other: the one pyvirtualcam tries
    first when no backend is named."""

    instances: list = []
    DEVICE = "/dev/video-first"


class DeviceRecordingBackend(RecordingBackend):
    """Records the device it was asked for, and answers with it, as a real backend must."""

    instances: list = []

    def __init__(self, *, device, **kw):
        super().__init__(device=device, **kw)
        self.asked_device = device

    def device(self) -> str:
        return self.asked_device or self.DEVICE


def test_vcam_backend_and_device_pick_the_virtual_camera(brightness_model, tmp_path, caplog):
    """Without --vcam-backend the first backend that opens takes the frames; with it, the one
    named gets them, on the --vcam-device asked for; a config file sets both alike."""
    caplog.set_level(logging.INFO, logger="portrait.sink")
    video = write_video(tmp_path / "in.avi", frames=4, size=(96, 64), fps=20.0)
    run = ["--model", str(brightness_model), "--source", str(video), "--no-loop", "-q"]
    config = tmp_path / "c.toml"
    config.write_text('vcam-backend = "portrait-cli-second"\nvcam-device = "/dev/video7"\n')
    with fake_camera("portrait-cli-first", FirstBackend) as first, \
            fake_camera("portrait-cli-second", DeviceRecordingBackend) as second:
        assert main(run) == 0
        assert len(first.instances) == 1 and second.instances == []
        assert main(run + ["--vcam-backend", "portrait-cli-second",
                           "--vcam-device", "/dev/video9"]) == 0
        assert len(first.instances) == 1  # not opened again
        (camera,) = second.instances
        assert camera.asked_device == "/dev/video9" and len(camera.frames) >= 3
        assert main(run + ["--config", str(config)]) == 0
        assert len(first.instances) == 1 and second.instances[1].asked_device == "/dev/video7"
    assert any("virtual camera: /dev/video9 (portrait-cli-second backend)" in r.getMessage()
               for r in caplog.records)


def test_an_unknown_vcam_backend_is_one_line_naming_those_there_are(capsys, tmp_path):
    """Refused before the model loads (this one is no model at all) and the source opens."""
    video = write_video(tmp_path / "in.avi", frames=4)
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(b"not a model")
    import pyvirtualcam

    with fake_camera("portrait-cli-first", FirstBackend):
        known = ", ".join(sorted(pyvirtualcam.camera.BACKENDS))  # v4l2loopback on Linux
        code, stderr = run_in_process(capsys, "--model", broken, "--source", video,
                                      "--vcam-backend", "obz")
        assert FirstBackend.instances == []
    assert code == 2 and "portrait-cli-first" in known
    assert_one_line_error(code, stderr, f"virtual camera backend 'obz' is not available here "
                          f"(available: {known}); give one of those to --vcam-backend, or leave "
                          "it out to use the first that opens")


def test_missing_model(tmp_path):
    person_image(tmp_path / "x.jpg")
    code, _, stderr = run_app("--model", "nope.hdf5", "--image", tmp_path / "x.jpg")
    assert_one_line_error(code, stderr, "nope.hdf5")


def test_corrupt_model(capsys, tmp_path, brightness_model):
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(brightness_model.read_bytes()[:2000])
    person_image(tmp_path / "x.jpg")
    code, stderr = run_in_process(capsys, "--model", broken, "--image", tmp_path / "x.jpg")
    assert_one_line_error(code, stderr, "broken.hdf5")


def test_unreadable_image(capsys, tmp_path, brightness_model):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--image", bad, "--out",
                              tmp_path / "o.png")
    assert_one_line_error(code, stderr, "x.jpg")


@pytest.mark.parametrize("name, data", [("notes.txt", b"not a photo"),
                                        ("cut.jpg", "truncated"), ("x.jpg", b"\xff\xd8\xff garbage")])
def test_an_unreadable_photo_is_refused_before_the_model_loads(capsys, tmp_path, name, data):
    """A typo in --image (a text file, a truncated JPEG) costs no model load: the model here is
    no model at all, and its error would come first if it were tried."""
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(b"not a model")
    photo = tmp_path / name
    if data == "truncated":
        whole = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
        data = whole[:len(whole) // 2]
    photo.write_bytes(data)
    code, stderr = run_in_process(capsys, "--model", broken, "--image", photo,
                                  "--out", tmp_path / "new" / "o.png")
    assert_one_line_error(code, stderr, f"cannot read image '{photo}'")
    assert "broken.hdf5" not in stderr
    assert not (tmp_path / "new").exists()  # nor is the output's folder made for nothing


def test_a_folder_of_which_no_photo_reads_is_reported_without_the_model(capsys, caplog, tmp_path):
    """Each bad file is named and the batch ends with its summary and exit code 1, as always;
    with nothing to process, the model (no model at all here) is not loaded."""
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(b"not a model")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not a jpeg")
    (folder / "b.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        code, stderr = run_in_process(capsys, "--model", broken, "--image", folder,
                                      "--out", tmp_path / "out")
    assert code == 1, stderr
    assert "broken.hdf5" not in stderr + caplog.text
    assert "a.jpg" in caplog.text and "b.png" in caplog.text
    assert "2 of 2 images could not be processed: a.jpg, b.png" in caplog.text


def test_unreadable_video(capsys, tmp_path, brightness_model):
    bad = tmp_path / "clip.mp4"
    bad.write_text("this is not a video")
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--source", bad, "--out",
                              tmp_path / "o.mp4")
    assert_one_line_error(code, stderr, "clip.mp4")


def test_camera_that_does_not_exist(capsys, brightness_model):
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--source", "99")
    assert_one_line_error(code, stderr, "camera 99")


def test_no_virtual_camera_device(capsys, tmp_path, brightness_model):
    video = write_video(tmp_path / "in.avi", frames=5)
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--source", video)
    assert_one_line_error(code, stderr)
    if sys.platform.startswith("linux"):
        assert "modprobe v4l2loopback" in stderr


@pytest.mark.parametrize("background", ["missing.jpg", "garbage.png", "#12345"])
def test_background_that_cannot_be_read(capsys, tmp_path, brightness_model, background):
    (tmp_path / "garbage.png").write_bytes(b"\x89PNG nope")
    person_image(tmp_path / "x.jpg")
    spec = background if background.startswith("#") else str(tmp_path / background)
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--image", tmp_path / "x.jpg",
                              "--out", tmp_path / "o.png", "--background", spec)
    assert_one_line_error(code, stderr, "background")
    assert not (tmp_path / "o.png").exists()


def test_the_model_help_gives_the_model_cards_cost_of_the_camera_file(capsys):
    """--help's word for what the camera default costs against the photo default is the model
    card's ("costs about four times the camera file"): it said "two thirds of its CPU", from
    when the photo file was three seeds and the camera file two (the camera file is one model
    run at 160 px now, the photo file four at 192 px: 20 against 73-82 ms a 640x480 frame's
    segment stage on one thread)."""
    card = " ".join((ROOT / "weights" / "README.md").read_text(encoding="utf-8").split())
    assert "`--model weights/unet.hdf5` costs about four times the camera file" in card
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert ("(default: weights/unet.hdf5 with --image, the most accurate; "
            "weights/unet_live.hdf5 for camera and video, about a quarter of its CPU)") in said


def test_a_background_folder_that_is_not_there_is_named_with_every_kind_allowed(
        capsys, tmp_path, brightness_model):
    """A mistyped folder of backgrounds (--background ~/backgrounds/, not made yet) was told
    to use "an image or video file", as if a folder were not allowed: the line names every kind
    --background takes, the folder too."""
    person_image(tmp_path / "x.jpg")
    missing = tmp_path / "backgrounds"
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--image", tmp_path / "x.jpg",
                                  "--out", tmp_path / "o.png", "--background", f"{missing}/")
    assert_one_line_error(code, stderr, "background")
    assert stderr.strip() == (f"error: cannot read background '{missing}/': file not found; use "
                              "blur, transparent, #rrggbb, an image or video file, or a folder of "
                              "them")
    assert not (tmp_path / "o.png").exists() and not missing.exists()


def test_out_equal_to_input_is_refused_and_the_input_kept(capsys, tmp_path, brightness_model):
    source = person_image(tmp_path / "me.png")
    before = source.read_bytes()
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--image", source, "--out", source)
    assert_one_line_error(code, stderr)
    assert source.read_bytes() == before


def test_bad_option_value_is_one_line(capsys):
    code, stderr = run_in_process(capsys, "--max-frames", "-3")
    assert_one_line_error(code, stderr, "--max-frames")
    for bad in ("0", "-1", "nan", "soft"):
        code, stderr = run_in_process(capsys, "--refine-sharpen", bad)
        assert_one_line_error(code, stderr, "--refine-sharpen")
    for option, bad in (("--smooth", "nan"), ("--smooth", "1.5"), ("--smooth", "-5"),
                        ("--threads", "-4"), ("--fps", "0"), ("--fps", "-1"),
                        ("--input-size", "100x77"), ("--input-size", "300x200"),
                        ("--input-size", "99968x99968"), ("--input-size", "4128x192"),
                        ("--image", ""), ("--out", ""), ("--stats", ""), ("--model", ""),
                        ("--source", ""), ("--background", ""), ("--refine-radius", "0"),
                        ("--refine-radius", "65"), ("--refine-radius", "2000000000")):
        code, stderr = run_in_process(capsys, option, bad)
        assert_one_line_error(code, stderr, option)
    code, stderr = run_in_process(capsys, "--refine-radius", "100000")
    assert "'100000' must be from 1 to 64" in stderr  # seconds a frame, or a C++ error, before
    # a typo's size overflowed TFLite and was called a corrupt file; 4096 (a 4K frame) is taken
    code, stderr = run_in_process(capsys, "--input-size", "99968x99968")
    assert_one_line_error(code, stderr, "argument --input-size: size '99968x99968' has a side "
                          "of 99968 px; each side must be at most 4096 px, e.g. 352x192 or "
                          "4096x2176")
    code, stderr = run_in_process(capsys, "--input-size", "192x4128")
    assert_one_line_error(code, stderr, "a side of 4128 px; each side must be at most 4096 px")
    assert model_size("4096x2176") == (4096, 2176)
    # a strength is no probability, as the line called it
    code, stderr = run_in_process(capsys, "--light-wrap", "3")
    assert_one_line_error(code, stderr, "argument --light-wrap: '3' must be from 0 to 1")


def test_input_size_is_w_x_h_or_one_side_for_both_each_a_positive_multiple_of_32(capsys):
    def input_size(text):
        return build_parser().parse_args(["--input-size", text]).input_size

    assert input_size("352x192") == (352, 192) and input_size("256X96") == (256, 96)
    assert input_size("224") == (224, 224)  # N alone is NxN
    for bad, words in (("96x100", "is not a multiple of 32 on both sides"),
                       ("100x96", "is not a multiple of 32 on both sides"),
                       ("0x256", "must be positive"), ("256x0", "must be positive"),
                       ("big", "is not WxH"), ("32x32x32", "is not WxH")):
        code, stderr = run_in_process(capsys, "--input-size", bad)
        assert code == 2, bad
        assert_one_line_error(code, stderr, f"argument --input-size: size '{bad}' {words}")

@pytest.mark.parametrize("inputs_of", ["image", "video"])
def test_stats_never_replaces_an_input_or_the_output_and_is_checked_before_the_run(
        capsys, tmp_path, brightness_model, inputs_of):
    if inputs_of == "image":
        source = person_image(tmp_path / "me.png")
        run = ["--model", brightness_model, "--image", source, "-q"]
    else:
        source = write_video(tmp_path / "in.avi", frames=3)
        run = ["--model", brightness_model, "--source", source, "-q"]
    background = person_image(tmp_path / "bg.png", size=(64, 48))
    kept = {path: path.read_bytes() for path in (source, background, brightness_model)}
    out = tmp_path / ("o.png" if inputs_of == "image" else "o.avi")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    for stats, words in ((source, ["refusing", "--stats"]), (background, ["refusing", "--stats"]),
                         (brightness_model, ["refusing", "--stats"]),
                         (out, ["--out", "--stats"]), (folder, ["folder"]),
                         (f"{tmp_path / 'new_folder'}/", ["folder"]),
                         (tmp_path / "a_file" / "s.json", ["a_file"])):
        (tmp_path / "a_file").write_text("not a folder")
        code, stderr = run_in_process(capsys, *run, "--out", out, "--background", background,
                                      "--stats", stats)
        assert_one_line_error(code, stderr, *words)
        assert not out.exists(), f"--stats {stats}: the run went ahead"
    assert all(path.read_bytes() == data for path, data in kept.items())
    stats = tmp_path / "run.json"
    assert run_in_process(capsys, *run, "--out", out, "--stats", stats)[0] == 0
    assert json.loads(stats.read_text())["frames"] >= 1
    assert oct(stats.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_out_never_replaces_the_background_or_an_input_through_a_new_folder(
        capsys, tmp_path, brightness_model):
    source = person_image(tmp_path / "me.png")
    background = person_image(tmp_path / "bg.png", size=(64, 48))
    backgrounds = tmp_path / "bgs"
    backgrounds.mkdir()
    in_folder = person_image(backgrounds / "a.png", size=(64, 48))
    kept = {path: path.read_bytes() for path in (source, background, in_folder)}
    run = ["--model", brightness_model, "--image", source, "-q"]
    for out, spec in ((background, background), (in_folder, backgrounds),
                      (tmp_path / "new" / ".." / "me.png", "blur")):
        code, stderr = run_in_process(capsys, *run, "--out", out, "--background", spec)
        assert_one_line_error(code, stderr, "refusing")
    video = write_video(tmp_path / "in.avi", frames=3)
    video_bytes = video.read_bytes()
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--source", video, "-q",
                                  "--out", tmp_path / "sub" / ".." / "in.avi")
    assert_one_line_error(code, stderr, "refusing")
    assert video.read_bytes() == video_bytes
    assert all(path.read_bytes() == data for path, data in kept.items())


def test_out_never_replaces_the_config_files_background_that_b_steps_to(
        capsys, tmp_path, brightness_model):
    """With --background blur typed, ``b`` still steps to the config file's background image:
    an input too, which --out must not replace."""
    source = person_image(tmp_path / "me.png")
    background = person_image(tmp_path / "bg.png", size=(64, 48))
    kept = background.read_bytes()
    config = tmp_path / "portrait.toml"
    config.write_text(f"background = {json.dumps(str(background))}\n")
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--config", config,
                                  "--image", source, "--background", "blur", "--out", background)
    assert_one_line_error(code, stderr, "refusing to overwrite the input")
    assert background.read_bytes() == kept


def test_image_out_is_readable_by_others_as_any_new_file(capsys, tmp_path, brightness_model):
    source = person_image(tmp_path / "me.png")
    out = tmp_path / "me_cut.png"
    assert run_in_process(capsys, "--model", brightness_model, "--image", source, "--out", out,
                          "-q")[0] == 0
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_a_trailing_slash_names_a_folder_whatever_its_name(capsys, tmp_path, brightness_model):
    source = person_image(tmp_path / "me.png")
    assert run_in_process(capsys, "--model", brightness_model, "--image", source,
                          "--out", f"{tmp_path / 'cut'}/", "-q")[0] == 0
    assert (tmp_path / "cut" / "me.png").is_file()
    video = write_video(tmp_path / "in.avi", frames=3)
    assert run_in_process(capsys, "--model", brightness_model, "--source", video,
                          "--out", f"{tmp_path / 'frames.v2'}/", "--matte", "-q")[0] == 0
    assert sorted(p.name for p in (tmp_path / "frames.v2").iterdir()) == [
        f"{i:06d}.png" for i in range(3)] + ["written-by-portrait.txt"]


def test_one_photo_goes_into_a_folder_that_is_there_and_missing_folders_are_made(
        capsys, caplog, tmp_path, brightness_model):
    """As the README's --out says: one photo given a folder that is there (no '/') is written
    into it as <stem>.png; an --out whose folders are not there yet gets them made."""
    source = person_image(tmp_path / "me.jpg")
    (tmp_path / "cutouts").mkdir()
    assert run_in_process(capsys, "--model", brightness_model, "--image", source,
                          "--out", tmp_path / "cutouts", "-q")[0] == 0
    assert (tmp_path / "cutouts" / "me.png").is_file()
    nested = tmp_path / "a" / "b" / "me.jpg"
    with caplog.at_level("INFO", logger="portrait"):
        assert run_in_process(capsys, "--model", brightness_model, "--image", source,
                              "--out", nested)[0] == 0
    assert cv2.imread(str(nested)).shape == (120, 160, 3)
    assert f"wrote 1 image to {nested}" in caplog.text  # was "1 image(s)"


def test_a_batch_is_not_written_to_a_folder_named_like_an_image(capsys, tmp_path, brightness_model):
    photos = tmp_path / "photos"
    photos.mkdir()
    person_image(photos / "a.png")
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--image", photos,
                                  "--out", tmp_path / "single.png", "-q")
    assert_one_line_error(code, stderr, "folder")
    assert not (tmp_path / "single.png").exists()
    # nor like a video: a folder of cut-outs named talk.mp4 was made where a video was meant
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--image", photos,
                                  "--out", tmp_path / "talk.mp4", "-q")
    assert_one_line_error(code, stderr, "'" + str(tmp_path / "talk.mp4") + "': it is named like a "
                          "video file", "--source")
    assert not (tmp_path / "talk.mp4").exists()
    # a name typed with '/' is a folder whatever it looks like, as the README's --out says
    for name in ("clips.mp4", "shots.png"):
        assert run_in_process(capsys, "--model", brightness_model, "--image", photos,
                              "--out", f"{tmp_path / name}/", "-q")[0] == 0
        assert (tmp_path / name / "a.png").is_file()


def test_a_batch_is_not_written_into_its_own_folder(capsys, tmp_path, brightness_model):
    photos = tmp_path / "photos"
    photos.mkdir()
    person_image(photos / "a.jpg")
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--image", photos,
                                  "--out", f"{photos}/", "-q")
    assert_one_line_error(code, stderr, "own folder")
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg"]


def test_options_that_another_makes_meaningless_are_named(capsys, caplog, tmp_path, brightness_model):
    source = person_image(tmp_path / "me.png")
    code, _ = run_in_process(capsys, "--model", brightness_model, "--image", source, "--out",
                             tmp_path / "m.png", "--matte", "--light-wrap", "--source", "clip.mp4",
                             "--no-refine", "--refine-radius", "4")
    assert code == 0
    warned = {r.getMessage() for r in caplog.records if r.levelname == "WARNING"}
    assert {"--source is ignored with --image", "--light-wrap is ignored with --matte",
            "--refine-radius is ignored with --no-refine"} <= warned, warned
    assert not any("--smooth" in line for line in warned)


@pytest.mark.parametrize("argv, expected", [
    (["--image", "me.jpg", "--max-frames", "1", "--preview", "--realtime", "--fps", "25"],
     ["--max-frames is ignored with --image", "--preview is ignored with --image",
      "--realtime is ignored with --image", "--fps is ignored with --image"]),
    (["--matte", "--background", "#00ff00", "--blur", "40"],
     ["--background is ignored with --matte", "--blur is ignored with --matte"]),
    (["--background", "transparent", "--light-wrap", "0.8"],
     ["--light-wrap is ignored with --background transparent"]),
    (["--source", "clip.mkv", "--width", "640", "--height", "480"],
     ["--width is ignored with a video file --source (they ask a camera)",
      "--height is ignored with a video file --source (they ask a camera)"]),
    (["--source", "1", "--width", "640"], []),  # a camera takes them
    # A camera by its device path, as open_source opens it: it takes them too (they were
    # named as ignored "with a video file --source"), and it has no sound to record.
    (["--source", "/dev/video2", "--width", "640", "--fps", "60"], []),
    (["--source", "/dev/video2", "--out", "call.mp4", "--no-audio"],
     ["--audio is ignored with a camera --source (the app records no microphone)"]),
    # Four digits name a video file (camera_index takes at most three), which asks no camera.
    (["--source", "2024", "--width", "640"],
     ["--width is ignored with a video file --source (they ask a camera)"]),
    (["--image", "me.jpg", "--background", "transparent", "--light-wrap", "0.8"],
     ["--light-wrap is ignored with --background transparent"]),
    (["--image", "me.jpg", "--no-audio"], ["--audio is ignored with --image"]),
    (["--source", "1", "--out", "call.mp4", "--no-audio"],
     ["--audio is ignored with a camera --source (the app records no microphone)"]),
    (["--source", "talk.mp4", "--out", "frames/", "--no-audio"],
     ["--audio is ignored with no .mp4/.avi --out (only a video file holds sound)"]),
    (["--source", "talk.mp4", "--no-audio"],
     ["--audio is ignored with no .mp4/.avi --out (only a video file holds sound)"]),
    (["--source", "talk.mp4", "--out", "talk.AVI", "--no-audio"], []),
    (["--image", "me.jpg", "--vcam-backend", "obs"], ["--vcam-backend is ignored with --image"]),
    (["--out", "call.mp4", "--vcam-backend", "obs", "--vcam-device", "/dev/video2"],
     ["--vcam-backend is ignored with --out (no virtual camera is written)",
      "--vcam-device is ignored with --out (no virtual camera is written)"]),
    (["--source", "1", "--vcam-backend", "obs", "--vcam-device", "/dev/video2"], []),
    (["--source", "0", "--loop"], ["--loop is ignored with a camera --source (a camera does "
                                   "not end)"]),
    (["--image", "me.jpg", "--no-loop"], ["--loop is ignored with --image"]),
    (["--source", "talk.mp4", "--loop"], []),
    (["--no-refine", "--refine-confine", "0.2"],
     ["--refine-confine is ignored with --no-refine"]),
    (["--image", "me.jpg", "--refine-confine", "0.2"], []),
])
def test_ignored_options_are_those_typed(argv, expected):
    from portrait.cli import command_line_options, ignored_options

    assert ignored_options(build_parser().parse_args(argv), command_line_options(argv)) == expected


def test_a_config_files_settings_for_other_runs_are_not_warned_about(tmp_path):
    """`source = 1` in the file is for live runs: an --image run does not name it, though
    --source typed with --image is named."""
    from portrait.cli import command_line_options, ignored_options
    from portrait.config import parse_with_config

    config = tmp_path / "c.toml"
    config.write_text('source = 1\nno-smooth = true\nsmooth = 0.5\nmatte = true\nblur = 30\n')
    for argv, expected in (
            (["--config", str(config), "--image", "me.jpg"], []),
            (["--config", str(config), "--image", "me.jpg", "--source", "2"],
             ["--source is ignored with --image"]),
            (["--config", str(config), "--no-matte", "--blur", "9"], []),
            (["--config", str(config), "--background", "#000000"],
             ["--background is ignored with --matte"])):
        args, _ = parse_with_config(build_parser(), argv)
        assert ignored_options(args, command_line_options(argv)) == expected, argv


@pytest.mark.parametrize("name", ["me.jpg", "me.JPG"])
def test_transparent_to_a_format_without_alpha_is_refused(capsys, tmp_path, brightness_model,
                                                          name):
    source = person_image(tmp_path / "me.png")
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--image", source,
                                  "--out", tmp_path / name, "--background", "transparent")
    # Each output type that keeps transparency (README, Photo outputs), not only PNG; the type
    # whatever its case (a camera's IMG_1.JPG).
    assert_one_line_error(code, stderr, "transparent",
                          f"not {name[2:]}: use a .png, .webp or .tif --out")
    assert not (tmp_path / name).exists()


def test_png_frames_of_an_earlier_longer_run_do_not_survive_a_shorter_one(
        capsys, tmp_path, brightness_model):
    video = write_video(tmp_path / "in.avi", frames=6)
    out = tmp_path / "frames"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    for frames, expected in ((5, 5), (2, 2)):
        assert run_in_process(capsys, "--model", brightness_model, "--source", video, "--out", out,
                              "--max-frames", frames, "--matte", "-q")[0] == 0
        assert sorted(p.name for p in out.glob("*.png")) == [f"{i:06d}.png" for i in range(expected)]
    assert (out / "notes.txt").read_text() == "mine"


def test_png_frames_never_replace_a_background_or_the_users_own_frames(
        capsys, tmp_path, brightness_model):
    """A background taken from an earlier run's frames, or a folder of numbered PNGs the app did
    not write, is refused before anything is written."""
    video = write_video(tmp_path / "in.avi", frames=4)
    out = tmp_path / "frames"
    assert run_in_process(capsys, "--model", brightness_model, "--source", video, "--out", out,
                          "-q")[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for background, named in ((out / "000003.png", "000003.png"), (out, "000000.png")):
        code, stderr = run_in_process(capsys, "--model", brightness_model, "--source", video,
                                      "--out", out, "--max-frames", 2, "--background", background)
        assert_one_line_error(code, stderr, "refusing to overwrite the input", named)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "000000.png").write_bytes(before["000000.png"])
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--source", video,
                                  "--out", theirs)
    assert_one_line_error(code, stderr, "numbered frames (000000.png, ...) that this app did not "
                                        "write; choose a new or empty folder")
    assert [p.name for p in theirs.iterdir()] == ["000000.png"]


def test_a_batch_of_the_current_or_parent_folder_is_written_beside_it(
        capsys, tmp_path, monkeypatch, brightness_model):
    """``--image .`` and ``--image ..`` without --out: ``<folder>_portrait/`` beside the folder
    they stand for (not an error, and not a hidden ``.._portrait`` inside the input)."""
    photos = tmp_path / "photos"
    (photos / "inner").mkdir(parents=True)
    person_image(photos / "me.jpg")
    monkeypatch.chdir(photos)
    assert run_in_process(capsys, "--model", brightness_model, "--image", ".", "-q")[0] == 0
    assert [p.name for p in (tmp_path / "photos_portrait").glob("*.png")] == ["me.png"]
    monkeypatch.chdir(photos / "inner")
    assert run_in_process(capsys, "--model", brightness_model, "--image", "..", "-q")[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "photos_portrait"]
    assert sorted(p.name for p in photos.iterdir()) == ["inner", "me.jpg"]


def test_the_default_output_keeps_a_folders_whole_name_and_a_photos_stem(tmp_path):
    """``--image trip.2024/`` writes ``trip.2024_portrait/``, not ``trip_portrait/`` (a
    folder's dot is part of its name), and ``--image me.v2.jpg`` writes ``me.v2_portrait.png``."""
    from portrait.run import default_image_out

    assert default_image_out(tmp_path / "trip.2024", batch=True) == tmp_path / "trip.2024_portrait"
    assert default_image_out(tmp_path / "me.v2.jpg", batch=False) == tmp_path / "me.v2_portrait.png"


def test_only_a_video_file_into_a_video_file_takes_its_sound():
    """A camera has no sound to copy (its index is no file), nor do PNG frames or the virtual
    camera take any; --no-audio leaves it out."""
    from portrait.options import CaptureOptions, OutputOptions
    from portrait.run import sound_source

    video, mp4 = CaptureOptions(source="talk.mp4"), OutputOptions(out="o.mp4")
    assert sound_source(video, mp4) == "talk.mp4"
    for camera in ("0", "/dev/video2"):
        assert sound_source(CaptureOptions(source=camera), mp4) is None, camera
    for out in (OutputOptions(out="frames/"), OutputOptions(),
                OutputOptions(out="o.mp4", audio=False)):
        assert sound_source(video, out) is None, out


def test_refine_sharpen_reaches_the_refine_stage():
    from portrait.cli import build_parser, options_from_args

    def refine(*argv):
        return options_from_args(build_parser().parse_args(list(argv)))[3]

    assert refine().sharpen == 3.0
    assert refine("--refine-sharpen", "1").sharpen == 1.0


def test_refine_confine_is_the_video_default_and_off_for_photos_unless_given():
    """Camera and video cap the filter (rule CAP, stop 55); photos, whose path it was not
    measured on, do not; a given --refine-confine holds for both, 0 turning it off."""
    from portrait.cli import build_parser, options_from_args
    from portrait.options import VIDEO_CONFINE

    def refine(*argv):
        return options_from_args(build_parser().parse_args(list(argv)))[3]

    assert refine().confine == VIDEO_CONFINE == 0.05
    assert refine("--image", "a.jpg").confine == 0.0
    assert refine("--refine-confine", "0").confine == 0.0
    assert refine("--image", "a.jpg", "--refine-confine", "0.2").confine == 0.2


def test_a_leading_tilde_is_the_home_folder_however_it_was_typed(monkeypatch, tmp_path):
    """bash leaves --out=~/x.png and "~/x.png" as typed; a folder named ~ would be a trap."""
    monkeypatch.setenv("HOME", str(tmp_path))
    args = build_parser().parse_args(["--out=~/x.png", "--image", "~/me.jpg", "--stats", "~/s.json",
                                      "--background", "~/bg.png", "--source", "~/v.mkv"])
    assert [args.out, args.image, args.stats, args.background, args.source] == [
        str(tmp_path / name) for name in ("x.png", "me.jpg", "s.json", "bg.png", "v.mkv")]
    assert build_parser().parse_args(["--background", "blur"]).background == "blur"


def test_a_video_given_to_image_is_pointed_to_source(capsys, tmp_path, brightness_model):
    video = write_video(tmp_path / "clip.avi", frames=3)
    code, stderr = run_in_process(capsys, "--model", brightness_model, "--image", video)
    assert_one_line_error(code, stderr, f"cannot read image '{video}': it is named like a video; "
                                        "a video goes to --source")


def test_a_stream_output_of_the_wrong_kind_is_refused_before_the_model_loads(capsys, tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=3)
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(b"not a model")  # loading it would fail first if it were tried
    for out in ("o.mkv", "o.png"):
        code, stderr = run_in_process(capsys, "--model", broken, "--source", video,
                                      "--out", tmp_path / out)
        assert_one_line_error(code, stderr, f"cannot write '{tmp_path / out}': use a .mp4 or .avi "
                                            "file, or a folder for PNG frames")


def read_only_folder(path: Path) -> Path:
    """A new folder at ``path`` that this user cannot write in; skips the test where the user
    writes there all the same (root)."""
    path.mkdir()
    path.chmod(0o555)
    if os.access(path, os.W_OK):
        pytest.skip("a read-only folder is writable for this user (root)")
    return path


@pytest.mark.parametrize("where", ["/proc", "read-only", "frames in /proc"])
def test_an_unwritable_stream_output_is_refused_with_why_before_the_model_loads(
        capsys, tmp_path, where):
    """A video --out (or a frames folder) that cannot be written is refused before the model
    (no model at all here) loads, and says why: /proc takes no files (its system's own words,
    "No such file or directory", name a folder the user can see); a read-only folder."""
    if not Path("/proc").is_dir() and "proc" in where:
        pytest.skip("needs /proc, a folder that takes no files")
    video = write_video(tmp_path / "clip.avi", frames=3)
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(b"not a model")  # loading it would fail first if it were tried
    if where == "read-only":
        locked = read_only_folder(tmp_path / "locked")
        out, expected = locked / "o.mp4", f"folder '{locked}' is not writable (Permission denied)"
    elif where == "/proc":
        out, expected = "/proc/o.mp4", ("cannot write video '/proc/o.mp4': folder '/proc' is not "
                                        "writable (it takes no files")
    else:
        out, expected = "/proc/frames/", "cannot create folder '/proc/frames' (it takes no files"
    code, stderr = run_in_process(capsys, "--model", broken, "--source", video, "--out", out)
    assert_one_line_error(code, stderr, expected)
    assert "No such file or directory" not in stderr and "broken.hdf5" not in stderr


def test_several_photos_after_image_are_refused_saying_to_give_their_folder(capsys, tmp_path):
    """--image *.jpg: the shell gives each photo as an argument of its own. The refusal names
    them and says to give their folder, for --image FILE and --image=FILE; an argument that
    does not follow --image's file is refused without that advice."""
    photos = [person_image(tmp_path / f"p{i}.jpg") for i in range(3)]
    for image in (["--image", photos[0]], [f"--image={photos[0]}"]):
        code, stderr = run_in_process(capsys, *image, *photos[1:], "--out", tmp_path / "o/")
        assert_one_line_error(code, stderr, f"unrecognized arguments: {photos[1]} {photos[2]}; "
                              "--image takes one photo or a folder: to cut out several, give "
                              "their folder")
        assert code == 2
    code, stderr = run_in_process(capsys, "--image", photos[0], "--out", tmp_path / "o.png",
                                  "extra")
    assert_one_line_error(code, stderr, "unrecognized arguments: extra; see python app.py --help")
    assert not list(tmp_path.glob("o*"))


def test_threads_say_what_0_means_for_camera_video_and_photos(capsys):
    """--threads 0 is half the cores for a camera or video stream, every core for photos
    (pipeline.stream_inference_threads): the refusal of -1 says so, not "all cores"."""
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["--threads", "-1"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: argument --threads: '-1' must be 0 (half the cores for camera and video, every "
        "core for photos) or more, at most 1024; see python app.py --help"]


def test_a_blur_past_what_opencv_takes_is_refused_before_the_run(capsys, tmp_path):
    """--blur 4294967296 (a typo's size) was taken, and the photo's run ended in "unexpected
    error: OpenCV(5.1.0) ... in function 'stackBlur'" and three more lines of C++ overloads
    (exit 1). Now it is refused in one line before the run, as CompositeOptions refuses it;
    10000 px is taken."""
    from portrait.options import CompositeOptions

    photo, out = tmp_path / "me.png", tmp_path / "out.png"
    cv2.imwrite(str(photo), np.full((48, 64, 3), 200, np.uint8))
    code, stderr = run_in_process(capsys, "--image", photo, "--out", out, "--tta", "off",
                                  "--blur", "4294967296")
    assert_one_line_error(code, stderr, "argument --blur: '4294967296' must be from 1 to 10000")
    assert len(stderr.strip().splitlines()) == 1 and not out.exists()
    assert CompositeOptions(blur_px=10000).blur_px == 10000
    with pytest.raises(ValueError, match="blur_px = 10001"):
        CompositeOptions(blur_px=10001)


def test_threads_past_what_a_system_starts_are_refused_before_the_run(capsys):
    """--threads 100000 (a typo's count) was taken: the interpreter then could not start its
    threads, the shipped .tflite was called stale ("regenerate it"), the .hdf5 was converted
    instead, and the run ended in "unexpected RuntimeError: can't start new thread". Now it is
    refused at the command line and in a config file, as the options dataclass refuses it;
    1024 is taken."""
    from portrait.options import SegmentOptions

    assert build_parser().parse_args(["--threads", "1024"]).threads == 1024
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["--threads", "100000"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: argument --threads: '100000' must be 0 (half the cores for camera and video, "
        "every core for photos) or more, at most 1024; see python app.py --help"]
    with pytest.raises(ValueError, match="threads = 100000"):
        SegmentOptions(threads=100000)


@pytest.mark.parametrize("out", ["new/deeper/o.mp4", "new/deeper/frames/"])
def test_a_stream_run_that_fails_after_the_output_check_leaves_no_folder(capsys, tmp_path, out):
    """The early check of a stream's --out creates nothing: a run that fails after it (here
    its model won't load) leaves no empty folder where its video or frames would have gone."""
    video = write_video(tmp_path / "clip.avi", frames=3)
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(b"not a model")
    before = sorted(tmp_path.iterdir())
    code, stderr = run_in_process(capsys, "--model", broken, "--source", video,
                                  "--out", f"{tmp_path}/{out}")
    assert_one_line_error(code, stderr, "broken.hdf5")
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("out", ["new/deeper/me.png", "new/deeper/cutouts/", "batch"])
def test_a_photo_run_that_fails_before_its_first_output_leaves_no_folder(capsys, caplog,
                                                                        tmp_path, out):
    """--image checks its --out before the model loads, creating nothing: a run whose model
    will not load leaves no empty folder (nor a folder holding only the output mark) where its
    cut-outs would have gone, and a batch of which no photo reads makes none either."""
    photos = tmp_path / "photos"
    photos.mkdir()
    image = person_image(photos / "me.png")
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(b"not a model")
    before = sorted(tmp_path.rglob("*"))
    if out == "batch":
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "empty.jpg").write_bytes(b"")
        before = sorted(tmp_path.rglob("*"))
        caplog.set_level(logging.INFO)
        code, stderr = run_in_process(capsys, "--model", broken, "--image", tmp_path / "bad",
                                      "--out", tmp_path / "new" / "cutouts")
        assert code == 1 and "Traceback" not in stderr and "empty.jpg" in stderr, stderr
        assert f"wrote no image, and left no {tmp_path / 'new' / 'cutouts'}" in caplog.messages
        # into a folder that is there: no word of making it
        assert run_in_process(capsys, "--model", broken, "--image", tmp_path / "bad",
                              "--out", photos)[0] == 1
        assert f"wrote no image to {photos}" in caplog.messages
    else:
        source = photos if out.endswith("/") else image
        code, stderr = run_in_process(capsys, "--model", broken, "--image", source,
                                      "--out", f"{tmp_path}/{out}")
        assert_one_line_error(code, stderr, "broken.hdf5")
    assert sorted(tmp_path.rglob("*")) == before


class OnceModelReady(logging.Handler):
    """Runs ``change`` once, as the segmenter says it is ready: after a run's start-up checks
    of its --out, before its first photo is written; or at the first line that holds ``text``
    (``"wrote '"``: the first photo written, a debug line of the batch's sink)."""

    def __init__(self, change, text="(ready in"):
        super().__init__(logging.DEBUG)
        self.change, self.text = change, text

    def emit(self, record):
        if self.text in record.getMessage() and self.change is not None:
            change, self.change = self.change, None
            change()


def run_in_process_with(capsys, hook, *args):
    """:func:`run_in_process` with ``hook`` (a logging handler) on the app's logger meanwhile."""
    logging.getLogger("portrait").addHandler(hook)
    try:
        return run_in_process(capsys, *args)
    finally:
        logging.getLogger("portrait").removeHandler(hook)


@pytest.mark.parametrize("change", ["read-only parent", "read-only folder", "a file in the way"])
def test_a_batch_stops_at_an_output_folder_that_turns_unusable_after_the_start(
        capsys, caplog, tmp_path, brightness_model, change):
    """An --out folder that passed the start's checks but cannot be made, or takes no file, when
    the first photo is written (the folder above it or the folder itself made read-only, or a
    file put where a folder above it was): the batch stops there with one line saying what to
    do and exit code 2, not one skipped photo after another; the log says how far it got and
    --stats is written."""
    photos, stats = tmp_path / "photos", tmp_path / "stats.json"
    photos.mkdir()
    for name in ("a", "b", "c"):
        person_image(photos / f"{name}.png")
    parent = tmp_path / "parent"
    parent.mkdir()
    out = parent / "cutouts"
    if change == "read-only folder":
        out.mkdir()
        expected = f"folder '{out}' is not writable (Permission denied); choose another --out"
    else:
        expected = (f"cannot create folder '{out}' "
                    f"({'Not a directory' if 'file' in change else 'Permission denied'}); "
                    "choose another --out")

    def make_unusable():
        if change == "a file in the way":
            parent.rmdir()
            parent.write_bytes(b"a file")
            return
        locked = out if change == "read-only folder" else parent
        locked.chmod(0o555)
        if os.access(locked, os.W_OK):
            locked.chmod(0o755)
            pytest.skip("a read-only folder is writable for this user (root)")

    caplog.set_level(logging.INFO)
    hook = OnceModelReady(make_unusable)
    try:
        code, stderr = run_in_process_with(capsys, hook, "--model", brightness_model, "--image",
                                           photos, "--out", out, "--stats", stats)
    finally:
        for folder in (parent, out):
            if folder.is_dir():
                folder.chmod(0o755)
    assert hook.change is None  # the change was made
    assert_one_line_error(code, stderr, expected)
    assert code == 2 and "skipped" not in caplog.text, caplog.text
    assert "stopped before any of the 3 images was written: the output folder takes none" \
        in caplog.messages, caplog.text
    assert json.loads(stats.read_text())["frames"] == 0
    assert not out.is_dir() or not any(out.iterdir())


def test_a_batch_stops_where_its_output_folder_is_removed_after_its_first_photo(
        capsys, caplog, tmp_path, brightness_model):
    """The --out folder removed for real once the first photo is in it: the batch stops at the
    next with one line saying so and what to do, exit code 2, where the folder was made again
    without its mark (written-by-portrait.txt) and the other two photos written into it; the
    log says how far it got and that the photos went with the folder; --stats is written."""
    import shutil

    photos, stats = tmp_path / "photos", tmp_path / "stats.json"
    photos.mkdir()
    for name in ("a", "b", "c"):
        person_image(photos / f"{name}.png")
    out = tmp_path / "cutouts"
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="portrait.sink.images")  # each photo's written line
    hook = OnceModelReady(lambda: shutil.rmtree(out), text=f"wrote '{out / 'a.png'}'")
    code, stderr = run_in_process_with(capsys, hook, "--model", brightness_model, "--image",
                                       photos, "--out", out, "--stats", stats)
    assert hook.change is None  # removed after the first photo
    assert_one_line_error(code, stderr, f"cannot write images to '{out}': the folder was removed "
                          "or moved during the batch, with 1 image this batch wrote into it; run "
                          "the batch again and leave the folder in place until it ends")
    assert code == 2 and "skipped" not in caplog.text, caplog.text
    assert (f"stopped after 1 of 3 images: the output folder {out} was removed, moved or "
            "replaced, with those in it") in caplog.messages, caplog.text
    assert not out.exists()
    assert json.loads(stats.read_text())["frames"] == 1


def test_a_video_run_stops_where_its_frames_folder_is_removed_after_its_first_frame(
        capsys, caplog, tmp_path, brightness_model):
    """A run writing numbered PNG frames whose --out folder is removed for real once the first
    frame is in it stops at the next with one line saying so and what to do, exit code 2, as a
    photo batch does, where it failed as 'No such file or directory; choose another path'; the
    folder is not made again."""
    import shutil

    clip = write_video(tmp_path / "clip.avi", frames=3)
    out = tmp_path / "frames"
    caplog.set_level(logging.DEBUG, logger="portrait.sink.images")  # each frame's written line
    hook = OnceModelReady(lambda: shutil.rmtree(out), text=f"wrote '{out / '000000.png'}'")
    code, stderr = run_in_process_with(capsys, hook, "--model", brightness_model, "--source",
                                       clip, "--out", f"{out}/")
    assert hook.change is None  # removed after the first frame
    assert_one_line_error(code, stderr, f"cannot write frames to '{out}': the folder was removed "
                          "or moved during the run, with 1 frame this run wrote into it; run it "
                          "again and leave the folder in place until it ends")
    assert code == 2
    assert not out.exists()


@pytest.mark.parametrize("mode", ["--image", "--source"])
def test_a_run_that_fails_after_the_stats_check_leaves_no_folder(capsys, tmp_path,
                                                                 brightness_model, mode):
    """The early check of --stats creates nothing: a run that fails after it (here its model
    won't load) leaves no empty folder where its report would have gone; one that runs makes
    the folder as it writes the report."""
    source = (person_image(tmp_path / "me.png") if mode == "--image"
              else write_video(tmp_path / "clip.avi", frames=3))
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(b"not a model")
    before = sorted(tmp_path.iterdir())
    stats = tmp_path / "newdir" / "deeper" / "s.json"
    run = [mode, source, "--out", tmp_path / ("o.png" if mode == "--image" else "o.avi"),
           "--stats", stats]
    code, stderr = run_in_process(capsys, "--model", broken, *run)
    assert_one_line_error(code, stderr, "broken.hdf5")
    assert sorted(tmp_path.iterdir()) == before
    assert run_in_process(capsys, "--model", brightness_model, "-q", *run)[0] == 0
    assert json.loads(stats.read_text())["frames"] >= 1


@pytest.mark.parametrize("where", ["read-only", "file", "long name"])
def test_a_stream_output_folder_that_cannot_be_made_is_refused_without_making_any(
        capsys, tmp_path, where):
    """A --out whose folders are not there yet is checked where they would be made, and
    refused in the words making them would give; none of them is made."""
    video = write_video(tmp_path / "clip.avi", frames=3)
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(b"not a model")
    if where == "read-only":
        locked = read_only_folder(tmp_path / "locked")
        folder, reason = locked / "new" / "deeper", "Permission denied"
    elif where == "file":
        (tmp_path / "taken").write_bytes(b"a file")
        folder, reason = tmp_path / "taken" / "new", "Not a directory"
    else:
        folder, reason = tmp_path / "new" / ("n" * 300), "File name too long"
    before = sorted(tmp_path.rglob("*"))
    for out in (f"{folder}/o.mp4", f"{folder}/"):
        code, stderr = run_in_process(capsys, "--model", broken, "--source", video, "--out", out)
        assert_one_line_error(code, stderr, f"cannot create folder '{folder}' ({reason})")
        assert "broken.hdf5" not in stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_an_infinite_number_is_refused(capsys):
    for option in ("--refine-sharpen", "--fps"):
        with pytest.raises(SystemExit) as stop:
            build_parser().parse_args([option, "inf"])
        assert stop.value.code == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"error: argument {option}: 'inf' is not a finite number; see python app.py --help"]


def test_every_option_reaches_its_stage_options():
    """Each option, given a value other than its default, arrives in the options of the stage
    it sets (options_from_args is the only place that reads them)."""
    from portrait.cli import control_options_from_args, options_from_args, subject_options_from_args
    from portrait.options import (CaptureOptions, CompositeOptions, ControlOptions, FramingOptions,
                                  OutputOptions, PipelineOptions, RefineOptions, SegmentOptions,
                                  SmoothOptions)

    args = build_parser().parse_args([
        "--source", "clip.mp4", "--width", "640", "--height", "480", "--fps", "25", "--realtime",
        "--model", "mine.tflite", "--backend", "tflite", "--device", "cpu", "--input-norm", "raw",
        "--input-size", "96x64", "--letterbox", "--threads", "3", "--trust-model",
        "--tta", "mirror",
        "--no-smooth", "--smooth", "0.6", "--no-refine", "--refine-radius", "5",
        "--refine-sharpen", "2", "--refine-guide", "grey", "--background", "#00ff00",
        "--blur", "33",
        "--light-wrap", "0.3", "--decontaminate", "--out", "o.mp4", "--matte", "--preview",
        "--max-frames", "7", "--stats", "s.json", "--no-audio", "--vcam-backend", "obs",
        "--vcam-device", "/dev/video5", "--no-reuse", "--framing", "auto", "--max-zoom", "3",
        "--mirror", "--people", "all"])
    capture, segment, smooth, refine, composite, output, pipeline, framing = options_from_args(args)
    assert capture == CaptureOptions(source="clip.mp4", width=640, height=480, fps=25.0,
                                     realtime=True)
    assert segment == SegmentOptions(model="mine.tflite", backend="tflite", device="cpu",
                                     input_norm="raw", input_size=(96, 64), letterbox=True,
                                     threads=3, trust_model=True, tta="mirror")
    assert smooth == SmoothOptions(enabled=False, min_weight=0.6)
    assert refine == RefineOptions(enabled=False, radius_px=5, sharpen=2.0, guide="grey")
    assert composite == CompositeOptions(background="#00ff00", blur_px=33, light_wrap=0.3,
                                         decontaminate=True)
    assert output == OutputOptions(out="o.mp4", matte=True, preview=True, max_frames=7,
                                   stats="s.json", audio=False, vcam_backend="obs",
                                   vcam_device="/dev/video5")
    assert pipeline == PipelineOptions(reuse_still=False)
    assert framing == FramingOptions(enabled=True, max_zoom=3.0)
    assert control_options_from_args(args) == ControlOptions(mirror=True, framing=True)
    assert subject_options_from_args(args).enabled is False

def test_refine_guide_is_colour_for_photos_and_streams_unless_told():
    from portrait.cli import build_parser, options_from_args

    def guide(*argv):
        return options_from_args(build_parser().parse_args(list(argv)))[3].guide

    assert guide("--image", "me.jpg") == "colour"
    assert guide("--source", "clip.mkv") == "colour"
    assert guide() == "colour"
    assert guide("--image", "me.jpg", "--refine-guide", "grey") == "grey"
    assert guide("--source", "clip.mkv", "--refine-guide", "grey") == "grey"
    assert guide("--refine-guide", "auto") == "colour"


def test_only_photos_clear_islands_of_matte():
    """Small islands are cleared for --image; camera and video frames keep the matte as it was."""
    from portrait.cli import build_parser, options_from_args
    from portrait.options import PHOTO_MIN_ISLAND

    def min_island(*argv):
        return options_from_args(build_parser().parse_args(list(argv)))[3].min_island

    assert PHOTO_MIN_ISLAND > 0
    assert min_island("--image", "me.jpg") == PHOTO_MIN_ISLAND
    assert min_island("--image", "me.jpg", "--refine-guide", "grey") == PHOTO_MIN_ISLAND
    assert min_island("--source", "clip.mkv") == 0.0
    assert min_island() == 0.0


def test_selfie_model_acceptance_path(tmp_path):
    model = shared_path("models", "selfie_segmentation.tflite")
    image = shared_path("data", "eg1800", "images", "00002.jpg")
    out = tmp_path / "out.png"
    assert main(["--model", str(model), "--image", str(image), "--out", str(out), "-q"]) == 0
    assert cv2.imread(str(out)).shape == cv2.imread(str(image)).shape


def test_main_leaves_the_callers_sigterm_handler_in_place(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    assert main(["--model", str(tmp_path / "nope.hdf5"), "--image", str(tmp_path / "x.jpg")]) == 2
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stream_gives_back_the_callers_signal_handlers_when_it_ends(brightness_model, tmp_path):
    """A stream takes Ctrl-C, SIGTERM and SIGHUP while it runs (to finalise its output); after
    it, a Ctrl-C in the calling program raises KeyboardInterrupt again."""
    import signal

    names = [name for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]
    before = {name: signal.getsignal(getattr(signal, name)) for name in names}
    video = write_video(tmp_path / "in.avi", frames=3)
    assert main(["--model", str(brightness_model), "--source", str(video), "--out",
                 str(tmp_path / "out.avi"), "-q"]) == 0
    assert {name: signal.getsignal(getattr(signal, name)) for name in names} == before


def test_default_model_is_the_accurate_one_for_photos_and_the_cheaper_one_for_streams():
    from portrait.cli import build_parser, options_from_args
    from portrait.options import LIVE_MODEL, PHOTO_MODEL

    def model(*argv):
        return options_from_args(build_parser().parse_args(list(argv)))[1].model

    assert PHOTO_MODEL != LIVE_MODEL
    assert model("--image", "a.jpg") == PHOTO_MODEL
    assert model() == LIVE_MODEL
    assert model("--source", "clip.mp4", "--out", "o.mp4") == LIVE_MODEL
    assert model("--source", "clip.mp4", "--model", "mine.tflite") == "mine.tflite"
    assert model("--image", "a.jpg", "--model", LIVE_MODEL) == LIVE_MODEL


def test_tta_reaches_the_model_options_of_the_app_and_of_evaluate():
    from portrait.training import evaluate
    from portrait.cli import build_parser, options_from_args

    def app_tta(*argv):
        return options_from_args(build_parser().parse_args(list(argv)))[1].tta

    assert app_tta("--image", "a.jpg") == "scales"  # a photo has no frame budget
    assert app_tta("--source", "clip.mp4") == "off" and app_tta() == "off"  # 33 ms a frame
    assert app_tta("--image", "a.jpg", "--tta", "off") == "off"
    assert app_tta("--source", "clip.mp4", "--tta") == "scales"
    assert app_tta("--image", "a.jpg", "--tta", "mirror") == "mirror"

    def eval_tta(*argv):
        args = evaluate.build_parser().parse_args(
            ["--model", "a.hdf5", "--data", "d", "--compare", "b.tflite", *argv])
        return [m.tta for m in evaluate.options_from_args(args)[1]]

    assert eval_tta() == ["off", "off"]
    assert eval_tta("--tta") == ["scales", "scales"]  # both models, or the comparison is unfair
    assert eval_tta("--tta", "mirror") == ["mirror", "mirror"]
    assert eval_tta("--tta", "scales", "--compare-tta", "off") == ["scales", "off"]  # unless told

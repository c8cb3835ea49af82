"""``python -m portrait.training.bench``: both pipelines run on the same frames and the report adds up.

No timing is asserted here (speed lives in the benchmark's own numbers); this checks that the
benchmark runs end to end, counts what it ran, and writes the JSON it prints.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, shared_path, write_video
from portrait.training import bench, bench_effects, bench_runtimes
from portrait.options import LIVE_MODEL

EXPORTED_LIVE = ROOT / "weights" / "unet_live.tflite"  # a plain TFLite model: not MediaPipe's


def run_tool(module: str, *args, timeout=120) -> tuple[int, str, str]:
    """``python -m module args`` as a user runs it; returns (exit code, stdout, stderr)."""
    done = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                          env=dict(os.environ, PYTHONUNBUFFERED="1"), capture_output=True,
                          text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def in_process(capsys, main, *args) -> tuple[int, str, str]:
    """A tool's ``main()`` in this process; returns (exit code, stdout, stderr), an argparse
    refusal included."""
    capsys.readouterr()
    try:
        code = main([str(arg) for arg in args])
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(stderr: str) -> str:
    """The one line of an error without a traceback (native libraries' lines may precede it)."""
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture(scope="module")
def report(tmp_path_factory, brightness_model) -> tuple[dict, str]:
    tmp = tmp_path_factory.mktemp("bench")
    peer = shared_path("models", "selfie_segmentation.tflite")
    clip = write_video(tmp / "clip.mp4", frames=12, size=(96, 64))
    out = tmp / "bench.json"
    code = bench.main(["--source", str(clip), "--size", "128x96", "--frames", "30",
                       "--model", str(brightness_model), "--peer-model", str(peer),
                       "--camera-fps", "60", "--soak", "1100", "--threads", "1",
                       "--json", str(out)])
    assert code == 0
    return json.loads(out.read_text()), str(clip)


def test_both_pipelines_run_every_frame_of_the_looped_clip(report):
    results, clip = report
    assert results["source"] == clip and results["size"] == "128x96"
    for name in ("ours", "peer"):
        assert results["throughput"][name]["frames"] == 30
        assert results["throughput"][name]["fps"] > 0
        assert results["paced"][name]["cpu_percent"] > 0
    stages = results["throughput"]["ours"]["stage_ms"]
    assert {"decode", "segment", "smooth", "refine", "composite"} <= set(stages)
    assert "CPU, 1 thread," in results["runtime"]  # --threads reached our interpreter


def test_ratios_are_computed_from_the_runs(report):
    results, _ = report
    tp, pc = results["throughput"], results["paced"]
    assert results["ratios"]["throughput_fps_ours_over_peer"] == pytest.approx(
        tp["ours"]["fps"] / tp["peer"]["fps"], rel=1e-2)
    assert results["ratios"]["paced_cpu_ours_over_peer"] == pytest.approx(
        pc["ours"]["cpu_percent"] / pc["peer"]["cpu_percent"], rel=1e-2)


def test_soak_reports_memory_at_both_marks(report):
    memory = report[0]["memory"]
    assert memory["rss_mb_after_1000"] > 0 and memory["rss_mb_after_1100"] > 0
    assert memory["growth_mb"] == pytest.approx(
        memory["rss_mb_after_1100"] - memory["rss_mb_after_1000"], abs=0.11)


def test_decontaminate_puts_the_estimated_colour_in_our_composite(brightness_model):
    """``--decontaminate``: our pipeline blends the estimate at the soft edge, the same as the
    app's estimator gives, and the report says so."""
    import cv2
    import numpy as np

    from portrait.foreground import estimate_foreground
    from portrait.options import SegmentOptions

    image = np.full((96, 128, 3), 30, np.uint8)
    image[24:72, 40:88] = (200, 160, 230)
    image = cv2.GaussianBlur(image, (0, 0), 4)  # a soft edge: mixed pixels around the square
    composites, alphas = [], []
    for decontaminate in (False, True):
        ours = bench.OurPipeline(SegmentOptions(model=str(brightness_model)), blur_px=9,
                                 reuse_still=False, decontaminate=decontaminate)
        try:
            composites.append(ours.processor.process(image).copy())
            ours.processor.matte = True
            alphas.append(ours.processor.process(image).copy())
        finally:
            ours.close()
    alpha = alphas[0]
    assert np.array_equal(alphas[1], alpha)
    soft = (alpha > 8) & (alpha < 247)
    assert soft.sum() > 50
    assert not np.array_equal(composites[0][soft], composites[1][soft])
    solid = alpha == 255
    assert np.array_equal(composites[0][solid], composites[1][solid])
    # Where the matte is solid the person's own colour is the frame's; at the edge the estimate
    # replaced the frame's colour with one nearer the square's (the wall's dark grey is gone).
    estimate = estimate_foreground(image, alpha)
    assert np.abs(estimate[soft].astype(int) - image[soft]).max() > 20
    results = {"source": "clip", "size": "128x96", "frames": 1, "model": "m",
               "decontaminate": True, "peer_model": "p"}
    assert "with --decontaminate" in bench.format_table({**results, **_fake_runs()})


def _fake_runs() -> dict:
    run = {"fps": 30.0, "cpu_percent": 50.0, "stage_ms": {}, "dropped_frames": 0,
           "latency_ms": {"median": 20.0, "p95": 25.0}}
    return {"throughput": {"ours": run, "peer": run}, "paced": {"fps": 30, "ours": run, "peer": run},
            "ratios": {"throughput_fps_ours_over_peer": 1.0, "paced_cpu_ours_over_peer": 1.0}}


@pytest.mark.parametrize("passes", ["0", "-2"])
def test_bench_effects_refuses_no_passes_in_one_line(capsys, passes):
    from portrait.training import bench_effects

    code, _, err = in_process(capsys, bench_effects.main, "--source", "clip.mkv",
                              "--passes", passes)
    assert code == 2
    assert one_error_line(err).startswith(f"error: argument --passes: '{passes}' must be greater")


def test_missing_peer_model_is_one_clear_line(tmp_path, capsys):
    clip = write_video(tmp_path / "clip.mp4", frames=3)
    code = bench.main(["--source", str(clip), "--peer-model", str(tmp_path / "nope.tflite")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: peer model") and "--peer-model" in err[-1]


def test_bad_frames_and_json_path_are_one_line_before_any_run(tmp_path, capsys):
    clip = write_video(tmp_path / "clip.mp4", frames=3)
    with pytest.raises(SystemExit) as stop:
        bench.main(["--source", str(clip), "--frames", "0"])
    assert stop.value.code == 2
    assert "--frames" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("not a folder")
    for json_path, word in ((tmp_path / "a_file" / "r.json", "a_file"), (clip, "refusing"),
                            (tmp_path, "folder")):
        code = bench.main(["--source", str(clip), "--json", str(json_path)])
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and word in err[0], err


@pytest.mark.parametrize("soak", ["20", "1000", "1001", "-5"])
def test_a_soak_too_short_to_measure_growth_is_refused_while_parsing(tmp_path, capsys, soak):
    # Memory is sampled at frame 1000 and at frame N - 1: N <= 1001 has no second sample (it
    # was reported as 0 MB, so the whole RSS showed as growth) or the same one twice.
    clip = write_video(tmp_path / "clip.mp4", frames=3)
    code, out, err = in_process(capsys, bench.main, "--source", clip, "--soak", soak,
                                "--model", tmp_path / "nope.hdf5")
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "--soak" in line and ("1001" in line or "0 or more" in line), line


def test_a_missing_memory_sample_is_no_growth():
    assert bench.memory_report({1099: 700.0}, 1100) == {
        "rss_mb_after_1000": None, "rss_mb_after_1100": 700.0, "growth_mb": None}
    assert bench.memory_report({1000: 650.0}, 1100)["growth_mb"] is None
    assert bench.memory_report({1000: 650.0, 1099: 700.04}, 1100) == {
        "rss_mb_after_1000": 650.0, "rss_mb_after_1100": 700.0, "growth_mb": 50.0}


def test_a_camera_rate_that_paces_no_frame_is_refused(tmp_path, capsys):
    # The paced run lasts 10 s: below 0.1 fps it had no frame, and the table failed on its
    # missing latency after the whole throughput run.
    clip = write_video(tmp_path / "clip.mp4", frames=3)
    code, out, err = in_process(capsys, bench.main, "--source", clip, "--camera-fps", "0.05",
                                "--model", tmp_path / "nope.hdf5")
    assert code == 2 and out == ""
    assert "--camera-fps" in one_error_line(err)


def test_missing_files_answer_before_start_up_with_debug_too(tmp_path, capsys):
    clip = write_video(tmp_path / "clip.mp4", frames=3)
    for args, words in (
            (["--model", tmp_path / "nope.hdf5"], ("model", "nope.hdf5", "--model")),
            (["--source", tmp_path / "nope.mkv"], ("video", "nope.mkv", "not found"))):
        argv = ["--source", clip, *args, "--debug"]
        code, out, err = in_process(capsys, bench.main, *argv)
        assert code == 2 and out == ""
        line = one_error_line(err)
        assert all(word in line for word in words), line


def test_a_missing_model_is_one_line_from_the_command_line(tmp_path):
    # The peer (MediaPipe) was built before the model was looked for, and never closed: its
    # __del__ printed "Exception ignored ... Traceback" at exit after the error line.
    clip = write_video(tmp_path / "clip.mp4", frames=3)
    code, out, err = run_tool("portrait.bench", "--source", clip, "--model", tmp_path / "nope.hdf5")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [one_error_line(err)]


def test_what_was_built_is_closed_when_our_pipeline_fails_to_build(tmp_path):
    # The model exists but is no model: the peer is built first, then ours fails.
    clip = write_video(tmp_path / "clip.mp4", frames=3)
    notes = tmp_path / "notes.md"
    notes.write_text("not a model")
    code, out, err = run_tool("portrait.bench", "--source", clip, "--model", notes)
    assert code == 2 and out == ""
    assert "unsupported type" in one_error_line(err)


def test_a_peer_model_mediapipe_cannot_load_is_one_line(tmp_path, capsys):
    clip = write_video(tmp_path / "clip.mp4", frames=3)
    code, out, err = in_process(capsys, bench.main, "--source", clip, "--frames", "3",
                                "--peer-model", EXPORTED_LIVE)
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith("error: MediaPipe cannot load the peer model") and "--peer-model" in line


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc, a folder that takes no "
                                                     "new file whoever asks")
def test_a_json_folder_that_takes_no_file_is_refused_before_the_run(tmp_path, capsys):
    # For root, os.access says /proc is writable; the file failed only after the benchmark.
    clip = write_video(tmp_path / "clip.mp4", frames=3)
    code, out, err = in_process(capsys, bench.main, "--source", clip, "--frames", "3",
                                "--size", "32x32", "--json", "/proc/x.json")
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "--json" in line and "/proc" in line


def test_a_peer_model_that_mediapipe_cannot_run_is_named_before_the_run(tmp_path, capsys,
                                                                         brightness_model):
    """Our Keras model given as --peer-model was refused by MediaPipe ('not a valid Flatbuffer
    buffer', after a native ERROR line) once our model had loaded; a folder was 'not found'.
    Both are named in one line (check_peer_model runs before any model loads)."""
    clip = write_video(tmp_path / "clip.mp4", frames=3)
    folder = tmp_path / "models"
    folder.mkdir()
    cases = [(brightness_model, f"peer model '{brightness_model}' is a Keras model, which the "
                                "peer's MediaPipe cannot run (our model goes in --model); "),
             (folder, f"peer model '{folder}' is a folder, not a model file; ")]
    for peer, message in cases:
        code, out, err = in_process(capsys, bench.main, "--source", clip, "--frames", "3",
                                    "--size", "32x32", "--model", brightness_model,
                                    "--peer-model", peer)
        assert code == 2 and out == ""
        assert one_error_line(err) == f"error: {message}{bench.PEER_HINT}"


def test_bench_blur_is_checked_as_the_apps(capsys):
    """bench's --blur takes what the app's does (CompositeOptions.blur_px, 1 to 10000 px): a
    blur past it, which the app refuses, is refused here in one line before the run."""
    code, out, err = in_process(capsys, bench.main, "--source", "clip.mp4", "--blur", "20000")
    assert code == 2 and out == ""
    assert "argument --blur: '20000' must be from 1 to 10000" in one_error_line(err)


@pytest.mark.parametrize("tool, zero_means", [
    (bench, "0 (half the cores, as the app's camera and video)"),
    (bench_runtimes, "0 (all cores)")])
def test_threads_say_what_0_means_for_each_benchmark(capsys, tool, zero_means):
    """bench runs our model as the app runs a stream (0: half the cores); the runtime benchmark
    runs the model alone (0: every core)."""
    code, out, err = in_process(capsys, tool.main, "--source", "clip.mp4", "--threads", "-1")
    assert code == 2 and out == ""
    assert f"argument --threads: '-1' must be {zero_means} or more" in one_error_line(err)


@pytest.mark.parametrize("tool", [bench, bench_effects, bench_runtimes])
def test_a_size_of_one_number_is_square_and_help_says_so(capsys, tool):
    """--size 100 is 100x100, as the app's own --input-size reads it (cli.parse_size): said in
    --help, so a typo for 100x56 is no surprise."""
    from portrait.cli import parse_size

    assert parse_size("100") == (100, 100)
    code, out, _ = in_process(capsys, tool.main, "--help")
    assert code == 0
    assert "N alone means NxN" in " ".join(out.split()), out


@pytest.mark.parametrize("tool", [bench, bench_effects, bench_runtimes])
def test_help_states_no_default_as_none(capsys, tool):
    """A default left unset (``None``, decided later) reads as what it becomes, not as
    "None": bench's --blur said "(default None px)"."""
    code, out, _ = in_process(capsys, tool.main, "--help")
    assert code == 0
    assert "None" not in out, out


def test_bench_help_says_our_blur_follows_the_frame_size_as_the_apps(capsys):
    """Without --blur, ours blurs by the frame's size, as the app does (composite.
    default_blur_px): --help says so with the numbers the app uses."""
    from portrait.composite import default_blur_px

    code, out, _ = in_process(capsys, bench.main, "--help")
    assert code == 0
    said = " ".join(out.split())
    assert "our blur strength in px (default: by the frame's size, as the app's: " in said
    assert (f"{default_blur_px((1280, 720))} up to 720p, {default_blur_px((1920, 1080))} at 1080p"
            in said), said


@pytest.mark.parametrize("calls", ["0", "-3"])
def test_runtimes_refuse_no_calls_while_parsing(capsys, calls):
    code, out, err = in_process(capsys, bench_runtimes.main, "--calls", calls)
    assert code == 2 and out == ""
    assert "--calls" in one_error_line(err)


def test_runtimes_refuse_a_tflite_model_before_building_anything(capsys):
    code, out, err = in_process(capsys, bench_runtimes.main, "--model", EXPORTED_LIVE,
                                "--calls", "5")
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "Keras model (.hdf5)" in line and "--model" in line and "unet_live.hdf5" in line
    assert "portrait.training.export" not in line and "warning above" not in line


def test_runtimes_suggest_a_keras_model_that_is_there(tmp_path, capsys):
    """MediaPipe's selfie model given as --model was answered 'e.g. --model
    .../selfie_segmentation.hdf5', a file that is nowhere; the example is a model that is."""
    selfie = tmp_path / "selfie_segmentation.tflite"
    selfie.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))  # a TFLite file's first bytes
    code, out, err = in_process(capsys, bench_runtimes.main, "--model", selfie, "--calls", "5")
    assert code == 2 and out == ""
    assert one_error_line(err) == (
        f"error: --model '{selfie}' is not a Keras model (.tflite): --model takes the Keras model "
        f"(.hdf5) whose exported .tflite lies beside it, e.g. --model {LIVE_MODEL}")
    assert (ROOT / LIVE_MODEL).is_file()


def test_runtimes_check_the_source_before_the_models(tmp_path, capsys):
    model = tmp_path / "model.hdf5"  # a Keras name with no export beside it: found later
    model.write_bytes(b"")
    code, out, err = in_process(capsys, bench_runtimes.main, "--model", model,
                                "--source", tmp_path / "nope.mkv")
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert "nope.mkv" in line and "not found" in line


def _photo(path: Path) -> Path:
    import cv2
    import numpy as np

    image = np.zeros((64, 96, 3), np.uint8)
    image[:, 48:] = (40, 120, 220)  # halves told apart, so a frame read sideways would show
    cv2.imwrite(str(path), image)
    return path


def _photo_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("portrait.capture") and "is a photo" in r.getMessage()]


def test_a_photo_as_the_benchmarks_source_is_said_once_in_its_own_words(tmp_path, capsys,
                                                                         caplog):
    """A photo given as bench's or bench_effects' --source was warned about with the app's
    advice, '--image cuts out photos', an option neither has, and bench said it again at each
    of its readings (a hundred times for 20 frames). Each says once what a photo is to it."""
    import logging

    photo = _photo(tmp_path / "me.jpg")
    notes = tmp_path / "notes.md"
    notes.write_text("not a model")
    with caplog.at_level(logging.INFO, logger="portrait.capture"):
        code, out, err = in_process(capsys, bench.main, "--source", photo,
                                    "--model", tmp_path / "nope.hdf5")
    assert code == 2 and "nope.hdf5" in one_error_line(err)
    assert _photo_lines(caplog) == [
        f"'{photo}' is a photo: as --source it is a clip of one still frame, looped (the file "
        "opened again for each frame), so decode times are a file's opening and ours reuses its "
        "mask unless --no-reuse; time a video clip for a webcam's load"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="portrait.capture"):
        frames = list(bench.clip_frames(str(photo), (48, 32), 5))  # read five times, quietly
    assert [frame.image.shape for frame in frames] == [(32, 48, 3)] * 5
    assert _photo_lines(caplog) == []
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="portrait.capture"):
        code, out, err = in_process(capsys, bench_effects.main, "--source", photo,
                                    "--model", notes, "--size", "96x64")
    assert code == 2 and "unsupported type" in one_error_line(err)
    assert _photo_lines(caplog) == [
        f"'{photo}' is a photo: as --source it is a clip of one frame, so each effect is timed "
        "on that frame alone and the synthetic pan stands still; time a video clip for a "
        "webcam's frames"]
    assert "--image" not in err


def test_runtimes_take_a_photo_as_the_frame_timed_without_a_warning(tmp_path, caplog):
    """bench_runtimes takes one frame of --source: a photo is that frame, which the app's
    warning ('as --source it is a video of one frame; --image cuts out photos') called a
    mistake. It is read as a photo, upright, with an info line and no warning."""
    import logging

    import cv2

    photo = _photo(tmp_path / "me.png")
    with caplog.at_level(logging.INFO):
        frame = bench_runtimes.sample_frame((48, 32), str(photo))
    assert (frame == cv2.resize(cv2.imread(str(photo)), (48, 32),
                                interpolation=cv2.INTER_LINEAR)).all()
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("portrait")]
    assert said == [("INFO", f"frame: photo '{photo}', 96x64")], said
    clip = write_video(tmp_path / "clip.avi", frames=2)
    assert bench_runtimes.sample_frame((48, 32), str(clip)).shape == (32, 48, 3)


def test_the_synthetic_pan_slides_a_centred_window_from_the_left_edge_to_the_right():
    """bench_effects' pan: a window of 80 % of the frame, centred in height, from the left edge
    (first view) to the right edge (last view), each view scaled back to the frame size."""
    import cv2
    import numpy as np

    rows, cols = np.indices((50, 100))
    frame = np.dstack([cols * 2, rows * 4, np.full_like(cols, 7)]).astype(np.uint8)
    views = bench_effects.pan([frame] * 3)
    assert len(views) == 3 and all(view.shape == frame.shape for view in views)
    for view, left in zip(views, (0, 10, 20)):
        expected = cv2.resize(frame[5:45, left:left + 80], (100, 50), interpolation=cv2.INTER_LINEAR)
        assert np.array_equal(view, expected), left


def test_effect_statistics_are_the_median_and_95th_percentile_in_ms():
    stats = bench_effects._stats([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert stats == {"median_ms": 50.5, "p95_ms": 95.05, "n": 100}  # 1 + 0.95 * 99


def test_runtimes_refuse_ways_that_disagree_and_time_ways_that_agree(tmp_path):
    """bench times only ways that give the same mask: a way that differs from the first by more
    than 1e-3 is named; agreeing ways each get a median and a 90th percentile."""
    import numpy as np

    from conftest import brightness_model_file
    from portrait.errors import ModelError
    from portrait.segment import create_segmenter
    from portrait.options import SegmentOptions

    frame = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    models = [brightness_model_file(tmp_path / "a.hdf5"),
              brightness_model_file(tmp_path / "b.hdf5", bias=0.01)]  # 0.0025 apart at most
    with create_segmenter(SegmentOptions(model=str(models[0]))) as first, \
            create_segmenter(SegmentOptions(model=str(models[1]))) as shifted:
        results = bench_runtimes.bench({"first": first, "again": first}, frame, calls=3, warmup=1)
        assert sorted(results) == ["again", "first"]
        assert all(sorted(value) == ["median_ms", "p90_ms"] for value in results.values())
        with pytest.raises(ModelError, match="'shifted' disagrees with the first way by 0.002"):
            bench_runtimes.bench({"first": first, "shifted": shifted}, frame, calls=3, warmup=1)


def test_runtimes_name_a_missing_export_before_building_anything(tmp_path):
    from conftest import brightness_model_file
    from portrait.errors import ModelError
    from portrait.segment.exported import export_command

    model = brightness_model_file(tmp_path / "m.hdf5")
    with pytest.raises(ModelError) as refused:
        bench_runtimes.segmenters(str(model), (64, 64), 1)
    assert str(refused.value) == (f"no exported m.tflite beside {model}; make it with "
                                  f"'{export_command(model)}'")
    assert "--model" in export_command(model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.hdf5"]

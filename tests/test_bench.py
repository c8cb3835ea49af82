"""``python -m portrait.training.bench``: both pipelines run on the same frames and the report adds up.

No timing is asserted here (speed lives in the benchmark's own numbers); this checks that the
benchmark runs end to end, counts what it ran, and writes the JSON it prints.
"""

import json

import pytest

from conftest import shared_path, write_video
from portrait.training import bench


@pytest.fixture(scope="module")
def report(tmp_path_factory, brightness_model) -> tuple[dict, str]:
    tmp = tmp_path_factory.mktemp("bench")
    peer = shared_path("models", "selfie_segmentation.tflite")
    clip = write_video(tmp / "clip.mp4", frames=12, size=(96, 64))
    out = tmp / "bench.json"
    code = bench.main(["--source", str(clip), "--size", "128x96", "--frames", "30",
                       "--model", str(brightness_model), "--peer-model", str(peer),
                       "--camera-fps", "60", "--soak", "1100", "--json", str(out)])
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

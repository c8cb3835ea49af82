"""portrait.stats: the --stats summary, checked against values worked out by hand."""

import json
import logging
import os

from conftest import ManualClock
from portrait.stats import RunStats, summary_line


def test_means_cover_the_whole_run_and_percentiles_the_recent_samples():
    """With ``keep=2`` the samples are trimmed to the newest two once there are more than
    four: the 5th sample leaves [4, 5]. The mean still counts all five."""
    stats = RunStats(keep=2)
    for ms in (1.0, 2.0, 3.0, 4.0):
        stats.add("segment", ms)
    assert stats.summary()["stage_ms_p95"] == {"segment": 3.85}  # of all four: 3 + 0.85
    stats.add("segment", 5.0)
    summary = stats.summary()
    assert summary["stage_ms"] == {"segment": 3.0}  # (1 + 2 + 3 + 4 + 5) / 5
    assert summary["stage_ms_p95"] == {"segment": 4.95}  # of [4, 5]: 4 + 0.95


def test_latency_and_wait_give_mean_median_and_p95_and_none_without_samples():
    stats = RunStats()
    for ms in (10.0, 20.0, 30.0, 40.0, 100.0):
        stats.add("latency", ms)
        stats.add("wait", ms + 1)
    summary = stats.summary()
    # numpy's linear percentile: p95 lies 0.8 of the way from 40 to 100.
    assert summary["latency_ms"] == {"mean": 40.0, "median": 30.0, "p95": 88.0}
    assert summary["wait_ms"] == {"mean": 41.0, "median": 31.0, "p95": 89.0}
    assert summary["stage_ms"] == {} and summary["stage_ms_p95"] == {}  # the wait is no stage
    empty = RunStats().summary()
    assert empty["latency_ms"] == empty["wait_ms"] == {"mean": None, "median": None, "p95": None}


def test_counts_are_reported_each_under_its_own_name():
    stats = RunStats()
    stats.frames, stats.dropped, stats.reused = 7, 2, 5
    summary = stats.summary()
    assert (summary["frames"], summary["dropped_frames"], summary["reused_masks"]) == (7, 2, 5)
    assert summary["fps"] > 0


def test_cpu_percent_is_of_one_core():
    """CPU seconds over wall seconds, in percent of one core: a thread that keeps one core
    busy is 100 %, not 1 (a fraction); two cores busy, 200 %. On clocks the test moves, so the
    numbers are exact however loaded the machine; fps is frames over the same wall seconds."""
    wall, cpu = ManualClock(), ManualClock()
    stats = RunStats(clock=wall, cpu_clock=cpu.now)
    wall.advance(0.5)
    cpu.advance(0.5)
    stats.frames = 10
    summary = stats.summary()
    assert (summary["cpu_percent"], summary["wall_s"], summary["fps"]) == (100.0, 0.5, 20.0)
    wall.advance(0.5)
    cpu.advance(1.5)  # two cores busy, and one before
    assert stats.summary()["cpu_percent"] == 200.0


def test_the_summary_is_written_as_json_where_asked(tmp_path):
    stats = RunStats()
    stats.frames = 3
    stats.add("decode", 2.0)
    summary = stats.write(str(tmp_path / "run.json"))
    assert json.loads((tmp_path / "run.json").read_text()) == summary
    assert summary["frames"] == 3 and summary["stage_ms"] == {"decode": 2.0}
    assert stats.write(None)["frames"] == 3
    assert sorted(tmp_path.iterdir()) == [tmp_path / "run.json"]  # nothing else written


def test_the_last_line_counts_dropped_frames_only_where_there_are_some():
    wall = ManualClock()
    stats = RunStats(clock=wall, cpu_clock=ManualClock().now)
    wall.advance(2.0)
    stats.frames = 55
    for ms in (18.0, 20.0, 41.25):
        stats.add("latency", ms)
    assert summary_line(stats.summary()) == "55 frames at 27.5 fps; latency median 20.0 ms"
    stats.dropped = 5
    stats.add("wait", 26.68)
    assert summary_line(stats.summary()) == (
        "55 frames at 27.5 fps; latency median 20.0 ms; 5 frames dropped (the pipeline fell "
        "behind the source); waited 26.7 ms a frame (median) for the source")
    stats.dropped, stats.frames = 1, 1
    assert "; 1 frame dropped (" in summary_line(stats.summary())
    assert summary_line(RunStats().summary()) == "0 frames at 0.0 fps"


def test_each_number_is_rounded_to_its_own_places():
    """Means and percentiles to 3 places, wall_s 3, fps 2, cpu_percent 1; cpu_count is the
    machine's."""
    wall, cpu = ManualClock(), ManualClock()
    stats = RunStats(clock=wall, cpu_clock=cpu.now)
    wall.advance(3.0)
    cpu.advance(1.0)
    stats.frames = 2
    for ms in (1.0, 2.0, 2.0):
        stats.add("refine", ms)
        stats.add("latency", ms)
    stats.add("latency", 2.0021)
    summary = stats.summary()
    assert summary["stage_ms"] == {"refine": 1.667}  # 5 / 3
    assert summary["stage_ms_p95"] == {"refine": 2.0}
    assert summary["latency_ms"]["mean"] == 1.751  # 7.0021 / 4 = 1.750525
    assert summary["latency_ms"]["p95"] == 2.002  # 2 + 0.85 * 0.0021 = 2.001785
    assert (summary["fps"], summary["cpu_percent"]) == (0.67, 33.3)  # 2 / 3, 100 / 3
    wall.advance(0.0016)
    assert stats.summary()["wall_s"] == 3.002
    assert summary["cpu_count"] == os.cpu_count()


def test_a_summary_at_once_divides_by_no_zero():
    """A run that ends before the clock moves (no frame read) gives 0 fps and 0 % CPU."""
    stats = RunStats(clock=ManualClock(), cpu_clock=ManualClock().now)
    summary = stats.summary()
    assert (summary["frames"], summary["fps"], summary["cpu_percent"]) == (0, 0.0, 0.0)
    assert summary_line(summary) == "0 frames at 0.0 fps"


def test_the_json_file_ends_its_line_and_says_where_it_went(tmp_path, caplog):
    path = tmp_path / "run.json"
    with caplog.at_level(logging.INFO, logger="portrait.stats"):
        RunStats().write(str(path))
    assert path.read_text().endswith("}\n")
    assert f"stats written to {path}" in caplog.messages


def test_the_last_line_gives_a_median_of_zero_ms():
    """0.0 ms is a measurement, shown as one; only a series with no samples is left out."""
    wall = ManualClock()
    stats = RunStats(clock=wall, cpu_clock=ManualClock().now)
    wall.advance(1.0)
    stats.frames = 2
    for _ in range(2):
        stats.add("latency", 0.0)
        stats.add("wait", 0.0)
    assert summary_line(stats.summary()) == (
        "2 frames at 2.0 fps; latency median 0.0 ms; waited 0.0 ms a frame (median) for the source")

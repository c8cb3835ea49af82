"""Run statistics: per-stage milliseconds, latency, throughput and CPU use, as a JSON summary."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from typing import Callable, Optional

import numpy as np

from portrait.capture.base import WALL_CLOCK, Clock
from portrait.sink.paths import write_report
from portrait.words import counted

log = logging.getLogger(__name__)

STAGES = ("decode", "segment", "smooth", "subject", "refine", "composite", "framing", "output")
# Not a stage: the reader's time waiting for the source's next frame (a camera's sensor, a paced
# video file), which costs no CPU; reported apart, as ``wait_ms``, so ``stage_ms`` stays work.
WAIT = "wait"


class RunStats:
    """Collects per-frame timings; ``summary()`` gives the JSON the ``--stats`` option writes.

    Memory stays bounded on long runs: the percentiles see the newest ``keep`` to ``2 * keep``
    samples per series (trimmed back to ``keep`` once past ``2 * keep``, so trimming is rare),
    while counts and means cover the whole run.

    Args:
        keep: samples kept per series for the percentiles (all while there are fewer).
        clock: the wall's clock the run's length (``wall_s``, ``fps``) is timed by.
        cpu_clock: the process's CPU seconds so far (``time.process_time``), for
            ``cpu_percent``; tests give clocks of their own, so both are exact.
    """

    def __init__(self, keep: int = 20000, *, clock: Clock = WALL_CLOCK,
                 cpu_clock: Callable[[], float] = time.process_time):
        self.keep = keep
        self._samples: dict[str, list[float]] = defaultdict(list)
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)
        self.frames = 0
        self.dropped = 0
        self.reused = 0
        self._clock, self._cpu_clock = clock, cpu_clock
        self._wall_start = clock.now()
        self._cpu_start = cpu_clock()

    def add(self, series: str, ms: float) -> None:
        """Record one sample (milliseconds) of a stage, of ``latency`` or of the ``wait``."""
        samples = self._samples[series]
        samples.append(ms)
        if len(samples) > 2 * self.keep:
            del samples[: len(samples) - self.keep]
        self._sums[series] += ms
        self._counts[series] += 1

    def summary(self) -> dict:
        """frames, fps, stage_ms (mean), stage_ms_p95, latency_ms, wait_ms (the wait for the
        source's next frame: mean, median, p95; each ``None`` where the source does not wait),
        cpu_percent (of one core)."""
        wall_s = max(self._clock.now() - self._wall_start, 1e-9)
        cpu_s = self._cpu_clock() - self._cpu_start

        def mean(series):
            return round(self._sums[series] / self._counts[series], 3) if self._counts[series] else None

        def pct(series, q):
            data = self._samples.get(series)
            return round(float(np.percentile(data, q)), 3) if data else None

        stages = [s for s in STAGES if self._counts[s]]
        return {
            "frames": self.frames,
            "dropped_frames": self.dropped,
            "reused_masks": self.reused,
            "wall_s": round(wall_s, 3),
            "fps": round(self.frames / wall_s, 2),
            "stage_ms": {s: mean(s) for s in stages},
            "stage_ms_p95": {s: pct(s, 95) for s in stages},
            "latency_ms": {
                "mean": mean("latency"), "median": pct("latency", 50), "p95": pct("latency", 95),
            },
            "wait_ms": {"mean": mean(WAIT), "median": pct(WAIT, 50), "p95": pct(WAIT, 95)},
            "cpu_percent": round(100.0 * cpu_s / wall_s, 1),
            "cpu_count": os.cpu_count(),
        }

    def write(self, path: Optional[str]) -> dict:
        """Write the summary as JSON to ``path`` (if given) and return it."""
        summary = self.summary()
        if path:
            write_report(path, (json.dumps(summary, indent=2) + "\n").encode(), "--stats")
            log.info("stats written to %s", path)
        return summary


def summary_line(summary: dict) -> str:
    """The stream's last log line, from :meth:`RunStats.summary`: frames, fps, median latency,
    the frames dropped where the pipeline fell behind a live source (a call shows them as
    stutter), and the median wait for the source's next frame where it waits."""
    parts = [f"{counted(summary['frames'], 'frame')} at {summary['fps']:.1f} fps"]
    latency = summary["latency_ms"]["median"]
    if latency is not None:
        parts.append(f"latency median {latency:.1f} ms")
    if summary["dropped_frames"]:
        parts.append(f"{counted(summary['dropped_frames'], 'frame')} dropped (the pipeline fell "
                     "behind the source)")
    waited = summary["wait_ms"]["median"]
    if waited is not None:
        parts.append(f"waited {waited:.1f} ms a frame (median) for the source")
    return "; ".join(parts)

"""Render time, said before and while it runs: pure functions, standard library only (the DAG's plan task,
`make render`, the render entrypoint and the gallery's live page all import them).

Before: a preset's measured CPU seconds per frame per core (renderlab.base.presets) scaled by the run's
samples and pixel count, times the frames. While rendering: the seconds the frames done so far took.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from renderlab.base.presets import PRESETS

# Frames whose times feed a chunk's ETA: the newest ones (a song's busy and quiet passages differ), and
# never the first of a run once there is another (it also pays the BVH build that persistent data keeps).
ETA_WINDOW = 8


@dataclass(frozen=True)
class Estimate:
    frames: int
    core_s_per_frame: float  # CPU seconds per frame on one core
    cores: float
    core_seconds: float  # the whole run, on one core
    task_seconds_per_frame: float  # one render task with `cores` cores

    @property
    def core_hours(self) -> float:
        return self.core_seconds / 3600

    def wall_seconds(self, parallel_tasks: int = 1) -> float:
        """The run's render time with this many render tasks at once (each with `cores` cores)."""
        return self.frames * self.task_seconds_per_frame / max(1, parallel_tasks)

    def line(self, parallel_tasks: int = 1) -> str:
        return (
            f"{self.frames} frames x {self.task_seconds_per_frame:.1f} s/frame on {self.cores:g} cores "
            f"= {duration(self.wall_seconds(parallel_tasks))} of render time"
            + (f" with {parallel_tasks} tasks at once" if parallel_tasks > 1 else "")
            + f" ({self.core_hours:.2f} core-hours)"
        )


def core_s_per_frame(preset: str, samples: int | None = None, resolution_percentage: int = 100) -> float:
    """CPU seconds per frame on one core: the preset's measured figure, scaled linearly by samples (Cycles'
    time per sample is near constant) and by the pixel count."""
    p = PRESETS[preset]
    return p.core_s_per_frame * ((samples or p.samples) / p.samples) * (resolution_percentage / 100) ** 2


def render_estimate(
    frames: int, preset: str, samples: int | None, resolution_percentage: int, cores: float
) -> Estimate:
    """What rendering `frames` frames costs: core-seconds, and seconds per frame on a `cores`-core task."""
    if frames < 0 or not cores > 0:
        raise ValueError(f"frames {frames} and cores {cores} must be >= 0 and > 0")
    per_core = core_s_per_frame(preset, samples, resolution_percentage)
    return Estimate(frames, per_core, cores, frames * per_core, per_core / cores)


def cores_of(quantity: str) -> float:
    """A Kubernetes CPU quantity ('2', '1.5', '500m') as cores."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def seconds_per_frame(frame_seconds: Sequence[float]) -> float | None:
    """The expected time of the next frame, from the times of the frames rendered so far (oldest first):
    the mean of the newest ETA_WINDOW, leaving out the first while there are others. None before any."""
    times = [t for t in frame_seconds if math.isfinite(t) and t >= 0]
    if not times:
        return None
    if len(times) > 1:
        times = times[1:]
    recent = times[-ETA_WINDOW:]
    return sum(recent) / len(recent)


def chunk_eta(frame_seconds: Sequence[float], remaining: int) -> float | None:
    """Seconds until a chunk is done: its remaining frames at the expected seconds per frame."""
    if remaining <= 0:
        return 0.0
    per_frame = seconds_per_frame(frame_seconds)
    return None if per_frame is None else remaining * per_frame


@dataclass(frozen=True)
class ChunkState:
    done: int
    total: int
    per_frame_s: float | None


def run_eta(chunks: Sequence[ChunkState], run_frames: int) -> float | None:
    """Seconds until every frame of the run is done. The chunks reporting are the ones that run (or ran);
    the frames no chunk has reported yet wait for a free task. Frames go at the chunks' median seconds per
    frame, as many at once as chunks are rendering now (at least one)."""
    done = sum(min(c.done, c.total) for c in chunks)
    remaining = max(0, run_frames - done)
    if remaining == 0:
        return 0.0
    rates = sorted(c.per_frame_s for c in chunks if c.per_frame_s is not None and c.per_frame_s > 0)
    if not rates:
        return None
    median = (
        rates[len(rates) // 2]
        if len(rates) % 2
        else (rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2
    )
    active = sum(1 for c in chunks if c.done < c.total)
    # Each running chunk's own remainder bounds the time from below: it cannot go faster than one task.
    own = max(
        ((c.total - c.done) * (c.per_frame_s or median) for c in chunks if c.done < c.total), default=0.0
    )
    return max(own, remaining * median / max(1, active))


def duration(seconds: float | None) -> str:
    """'1 h 05 min', '12 min 03 s', '42 s'; '-' for unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = round(max(0.0, seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h} h {m:02d} min"
    if m:
        return f"{m} min {sec:02d} s"
    return f"{sec} s"

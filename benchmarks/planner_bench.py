"""Benchmark: planning time against the note count at the densest song the build accepts, side by side.

    .venv/bin/python benchmarks/planner_bench.py [--at-once 64] [--notes 250,500,1000,2000]

Each song puts --at-once notes on one pitch at one tick (the --max-notes-at-once bound), one such chord per
beat, cycling over eight pitches: the case whose planning grew with the square of the note count before
the bound (5,000 notes at one tick: 22 s; 10,000: 86 s). Prints seconds, milliseconds per note and each
size's time ratio to the previous one beside the note ratio: near-linear planning keeps the two close.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import mido

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from blender_scripts import arrangement, planner, song  # noqa: E402

PITCHES = (60, 62, 64, 65, 67, 69, 71, 72)


def chords(path: Path, notes: int, at_once: int) -> Path:
    """`notes` notes in chords of `at_once` on one pitch, a beat apart (120 BPM)."""
    events = []
    for k in range(notes):
        tick = (k // at_once) * 480
        pitch = PITCHES[(k // at_once) % len(PITCHES)]
        events += [(tick, 1, pitch), (tick + 240, 0, pitch)]
    track, now = mido.MidiTrack(), 0
    for tick, on, pitch in sorted(events):
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=90 if on else 0, time=tick - now))
        now = tick
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    mid.tracks.append(track)
    mid.save(str(path))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--at-once", type=int, default=song.Limits().max_at_once)
    ap.add_argument("--notes", default="250,500,1000,2000")
    a = ap.parse_args()
    sizes = [int(n) for n in a.notes.split(",")]
    arr = arrangement.load(None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            tune = song.load(chords(Path(tmp) / f"chords-{n}.mid", n, a.at_once))
            t0 = time.perf_counter()
            _stage, plan = planner.place(tune, arr, 60, tune.end_time)
            rows.append((n, time.perf_counter() - t0, len(plan.marbles)))
    print(f"{'notes':>7} {'seconds':>8} {'ms/note':>8} {'x notes':>8} {'x time':>8}")
    for i, (n, s, placed) in enumerate(rows):
        prev = rows[i - 1] if i else None
        ratio = f"{n / prev[0]:8.2f} {s / prev[1]:8.2f}" if prev else f"{'-':>8} {'-':>8}"
        print(f"{n:>7} {s:>8.2f} {1000 * s / n:>8.2f} {ratio}  ({placed} marbles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

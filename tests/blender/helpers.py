"""Helpers for the content tests: run the real entrypoints in a subprocess, write small MIDI files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mido

ROOT = Path(__file__).resolve().parents[2]
DEPOT = ROOT / "depot" / "songs"


def run_cli(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", f"blender_scripts.{module}", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env, check=False,
    )  # fmt: skip


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


def write_midi(
    path: Path, tracks: list[list[tuple[float, int, float]]], bpm: float = 120, channel: int = 0
) -> Path:
    """tracks: [(beat, pitch, beats)] per track; type 1 with a conductor track."""
    mid = mido.MidiFile(type=1, ticks_per_beat=480)
    mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0)]))
    for notes in tracks:
        events = []
        for beat, pitch, beats in notes:
            events += [(round(beat * 480), 1, pitch), (round((beat + beats) * 480), 0, pitch)]
        track, now = mido.MidiTrack(), 0
        for tick, on, pitch in sorted(events):
            kind = "note_on" if on else "note_off"
            track.append(
                mido.Message(kind, note=pitch, velocity=90 if on else 0, channel=channel, time=tick - now)
            )
            now = tick
        mid.tracks.append(track)
    mid.save(str(path))
    return path

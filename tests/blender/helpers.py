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


def excerpt(src: Path, dst: Path, seconds: float) -> Path:
    """The first `seconds` of a MIDI file, every track kept: events from then on dropped, notes still sounding
    ended at the cut (the tempo map read from every track, as players read it)."""
    mid = mido.MidiFile(str(src))
    tempos = sorted(
        (tick, msg.tempo)
        for track in mid.tracks
        for tick, msg in zip(_ticks(track), track, strict=True)
        if msg.type == "set_tempo"
    )
    cut, tick, now, tempo = None, 0, 0.0, 500_000
    for t, new in [*tempos, (None, None)]:
        span = (mido.tick2second(t - tick, mid.ticks_per_beat, tempo)) if t is not None else float("inf")
        if now + span >= seconds:
            cut = tick + round(mido.second2tick(seconds - now, mid.ticks_per_beat, tempo))
            break
        now, tick, tempo = now + span, t, new
    out = mido.MidiFile(type=mid.type, ticks_per_beat=mid.ticks_per_beat)
    for track in mid.tracks:
        kept, last, sounding = mido.MidiTrack(), 0, set()
        for at, msg in zip(_ticks(track), track, strict=True):
            if at >= cut or msg.type == "end_of_track":
                continue
            kept.append(msg.copy(time=at - last))
            last = at
            if msg.type == "note_on" and msg.velocity > 0:
                sounding.add((msg.channel, msg.note))
            elif msg.type in ("note_on", "note_off"):
                sounding.discard((msg.channel, msg.note))
        for channel, note in sorted(sounding):
            kept.append(mido.Message("note_off", channel=channel, note=note, velocity=0, time=cut - last))
            last = cut
        out.tracks.append(kept)
    out.save(str(dst))
    return dst


def _ticks(track) -> list[int]:
    at, out = 0, []
    for msg in track:
        at += msg.time
        out.append(at)
    return out

"""Build the marble-music scene for one song.

    python -m blender_scripts.build --midi SONG.mid [--arrangement A.yaml] --out DIR [--fps 60]
    blender -b --python blender_scripts/build.py -- --midi SONG.mid --out DIR

Writes DIR/<song>.blend, DIR/<song>_loop.blend, DIR/<song>.wav (plus <song>_loop.wav) and
DIR/report.json, then prints one JSON line naming them. Everything is written in a temp folder inside DIR
(DIR/.build.tmp-<pid>: the same filesystem, so the final renames are atomic even when DIR is a mount point)
and moved in at the end, so a failure leaves nothing in DIR; a later run removes the temp folders of
killed runs (only those whose pid is gone). Bounds: --max-length (song seconds), --tempo-range (BPM),
--max-notes and --max-notes-at-once (notes on one pitch within 60 ms: planning grows with its square).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (blender --python): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    try:  # Blender's bundled Python has numpy but not these
        import mido  # noqa: F401
        import pydantic  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as exc:
        print(
            f"build: error: Python module {exc.name!r} is missing from {sys.executable}; install mido, "
            "pydantic and pyyaml into Blender's Python or put a site-packages that has them on PYTHONPATH",
            file=sys.stderr,
        )
        sys.exit(2)

from blender_scripts import arrangement as arrangement_mod
from blender_scripts import audio, planner, song
from blender_scripts.errors import ContentError, OutputError, output_error, unwrapped_output_error
from renderlab.base import cli, process_group

LEAD_PAD_S = 0.25
AUDIO_TAIL_S = 1.5
MAX_PAD_S = 60.0  # what lead-in, marble flights and the audio tail may add to the song's length


def main_span(tune: song.Song, plan: planner.Plan, fps: int) -> tuple[float, float]:
    """(lead-in, end) of the main scene in song seconds: it starts `lead_in` before the song (the first launch,
    padded, on a whole frame) and ends with the last marble in the collector or the audio's tail."""
    lead_in = math.ceil((max(0.0, -min(m.t_launch for m in plan.marbles)) + LEAD_PAD_S) * fps) / fps
    return lead_in, max([m.t_exit for m in plan.marbles] + [tune.end_time + AUDIO_TAIL_S])


def _parser() -> cli.Parser:
    p = cli.Parser(prog="blender_scripts.build", description="MIDI -> marble-music .blend files")
    p.add_argument("--midi", required=True, type=Path, help="standard MIDI file (type 0 or 1)")
    p.add_argument("--arrangement", type=Path, help="optional arrangement YAML")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--fps", type=int, default=60, help="frames per second (default 60)")
    d = song.Limits()
    p.add_argument(
        "--max-length",
        type=float,
        default=d.max_seconds,
        metavar="SECONDS",
        help=f"refuse songs longer than this (default {d.max_seconds:.0f})",
    )
    p.add_argument(
        "--tempo-range",
        default=f"{d.min_bpm:g}-{d.max_bpm:g}",
        metavar="MIN-MAX",
        help=f"refuse tempos outside this many BPM (default {d.min_bpm:g}-{d.max_bpm:g})",
    )
    p.add_argument(
        "--max-notes",
        type=int,
        default=d.max_notes,
        metavar="N",
        help=f"refuse songs with more notes than this (default {d.max_notes})",
    )
    p.add_argument(
        "--max-notes-at-once",
        type=int,
        default=d.max_at_once,
        metavar="N",
        help=f"refuse more notes than this on one pitch within {song.AT_ONCE_S * 1000:.0f} ms "
        f"(default {d.max_at_once}; planning time grows with its square)",
    )
    return p


def _parse(args: list[str]) -> argparse.Namespace:
    parser = _parser()
    ns = parser.parse_args(args)
    if ns.out.exists() and not ns.out.is_dir():
        raise ContentError(f"--out {ns.out} exists and is not a folder; pass a folder path")
    if not 1 <= ns.fps <= 240:
        raise ContentError(f"--fps {ns.fps} is out of range; use 1..240")
    if not 0 < ns.max_length <= 24 * 3600:
        raise ContentError(f"--max-length {ns.max_length:g} is out of range; give 1..86400 seconds")
    try:
        lo, hi = (float(x) for x in ns.tempo_range.split("-"))
    except ValueError:
        raise ContentError(f"--tempo-range {ns.tempo_range!r} is not MIN-MAX in BPM, e.g. 10-1000") from None
    if not 0 < lo <= hi < 1e6:
        raise ContentError(f"--tempo-range {ns.tempo_range}: need 0 < MIN <= MAX")
    if not 1 <= ns.max_notes <= 10_000_000:
        raise ContentError(f"--max-notes {ns.max_notes} is out of range; give 1..10000000")
    if not 1 <= ns.max_notes_at_once <= 10_000:
        raise ContentError(f"--max-notes-at-once {ns.max_notes_at_once} is out of range; give 1..10000")
    ns.limits = song.Limits(
        max_seconds=ns.max_length,
        min_bpm=lo,
        max_bpm=hi,
        max_notes=ns.max_notes,
        max_at_once=ns.max_notes_at_once,
    )
    return ns


TMP_PREFIX = ".build.tmp-"


def clean_leftovers(out: Path) -> list[str]:
    """Remove the temp folders of killed builds (their pid is gone): inside --out, and the older
    `.<out>.tmp-<pid>` beside it. A live build's folder is never touched."""
    places = [(out, TMP_PREFIX), (out.parent, f".{out.name}.tmp-")]
    removed = []
    for folder, prefix in places:
        try:
            names = [n for n in os.listdir(folder) if n.startswith(prefix)]
        except OSError:
            continue
        for name in names:
            pid = name[len(prefix) :]
            path = folder / name
            if (
                pid.isdigit()
                and not process_group.alive(int(pid))
                and path.is_dir()
                and not path.is_symlink()
            ):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
    return removed


def _prepare_out(out: Path) -> tuple[Path, bool]:
    """Make --out (saying whether this run made it) and this run's temp folder inside it."""
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f"{TMP_PREFIX}{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:
        raise output_error(e, e.filename or out, "create") from None
    return tmp, made


def build(args: list[str]) -> dict:
    ns = _parse(args)
    started = time.perf_counter()
    out = ns.out.absolute()
    for path in clean_leftovers(out):
        cli.progress(f"build: removed {path}, left by a build that was killed")
    tune = song.load(ns.midi, ns.limits)
    if tune.moved:
        shown = ", ".join(f"note {i} pitch {a}->{b}" for i, a, b in tune.moved[:5])
        cli.progress(
            f"build: {len(tune.moved)} pitched note(s) outside {song.PITCH_MIN}-{song.PITCH_MAX} (C1-C8) moved "
            f"by whole octaves into it: {shown}{' ...' if len(tune.moved) > 5 else ''} (report.json: pitches_moved)"
        )
    arr = arrangement_mod.load(ns.arrangement)
    arr.check_tracks(tune, str(ns.arrangement))
    fps = ns.fps
    period = song.loop_length(tune)
    cli.progress(f"build: {tune.name}: {len(tune.notes)} notes, planning")
    stage, plan = planner.place(tune, arr, fps, period)
    lanes = sum(len(e.lanes) for e in stage.elements.values())
    cli.progress(f"build: {tune.name}: {len(stage.elements)} elements, {lanes} lanes, every note placed")
    phases = {"parse_and_plan": time.perf_counter() - started}
    lead_in, end = main_span(tune, plan, fps)
    frame_end = math.ceil((lead_in + end) * fps) + 1
    loop_end = round(period * fps)
    # Every length the scenes, the audio and the frames are sized from stays within the bound (the song's
    # own is checked at load; lead-in, flights and the audio tail add seconds, never hours).
    longest = max(frame_end, loop_end) / fps
    if longest > ns.limits.max_seconds + MAX_PAD_S:
        raise ContentError(
            f"{ns.midi}: the scenes would last {longest:.0f} s, more than --max-length {ns.limits.max_seconds:.0f} s "
            f"plus {MAX_PAD_S:.0f} s of lead-in and tail; check the file's tempo and meter"
        )

    tmp, made = _prepare_out(out)
    ok = False
    try:
        result = _write(
            tmp,
            out,
            tune=tune,
            arr=arr,
            stage=stage,
            plan=plan,
            fps=fps,
            lead_in=lead_in,
            frame_end=frame_end,
            loop_end=loop_end,
            started=started,
            phases=phases,
        )
        for name in sorted(os.listdir(tmp), key=lambda n: n == "report.json"):  # the report lands last
            os.replace(tmp / name, out / name)
        ok = True
    except OSError as e:
        raise output_error(e, e.filename or out, "write") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if made and not ok:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if this run made it and it is empty: nothing half-written stays
    return result


def _write(tmp, out, *, tune, arr, stage, plan, fps, lead_in, frame_end, loop_end, started, phases) -> dict:  # noqa: PLR0914
    mark = time.perf_counter()

    def phase(key: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[key] = now - mark
        mark = now

    name = tune.name
    cli.progress("build: rendering the audio with FluidSynth (in worker processes, beside the scenes)")
    programs = {n.index: arr.program_for(tune, n.track, n.program) for n in tune.notes}
    pad = int(round(lead_in * audio.RATE))
    wav, loop_wav = tmp / f"{name}.wav", tmp / f"{name}_loop.wav"
    song_audio = audio.SongAudio(
        plan,
        programs,
        length_s=max(frame_end / fps - lead_in, plan.period + 4.0),
        main_samples=frame_end * audio.RATE // fps - pad,
        lead_in=pad,
        period_s=plan.period,
        wav=wav,
        loop_wav=loop_wav,
    )
    phase("start_audio")
    try:
        return _scenes(tmp, out, song_audio, tune=tune, arr=arr, stage=stage, plan=plan, fps=fps,
                       lead_in=lead_in, frame_end=frame_end, loop_end=loop_end, started=started,
                       phases=phases, programs=programs, phase=phase)  # fmt: skip
    except BaseException:
        song_audio.cancel()
        raise


def _scenes(tmp, out, song_audio, *, tune, arr, stage, plan, fps, lead_in, frame_end, loop_end, started,  # noqa: PLR0914
            phases, programs, phase) -> dict:  # fmt: skip
    import bpy

    phase("import_bpy")

    from blender_scripts import background, measure, scene, visibility

    name = tune.name
    builder = scene.SceneBuilder(plan, stage, arr, name, fps)
    cli.progress(f"build: main scene, {len(plan.marbles)} marbles, frames 1-{frame_end}")
    sc = builder.build("main", lead_in, frame_end)
    phase("main_scene")
    measured = {r["note_index"]: r for r in measure.impacts(sc)}
    phase("timing_check")
    seen, per_note = visibility.measure(sc)  # before the save: the look check reads its worst frame
    sight = {s["note_index"]: s for s in per_note}
    cli.progress(
        f"build: {seen['fraction']:.1%} of strikes visible, median marble {seen['median_px']:.1f} px at 1080p"
    )
    phase("visibility_check")
    empty = background.measure(sc)
    cli.progress(f"build: {empty['fraction']:.1%} of the frame is empty background (mean of sampled frames)")
    phase("background_check")
    song_audio.wait()  # the sound strips need the WAVs
    phase("audio_wait")
    builder.add_sound(sc, str(song_audio.wav), song_audio.wav.name)
    _save(bpy, tmp / f"{name}.blend")
    phase("save_main")

    cli.progress(f"build: loop scene, {plan.period:.3f} s, frames 1-{loop_end}")
    loop = builder.build("loop", 0.0, loop_end)
    builder.add_sound(loop, str(song_audio.loop_wav), song_audio.loop_wav.name)
    loop_seen, _ = visibility.measure(loop)
    loop_empty = background.measure(loop)
    _save(bpy, tmp / f"{name}_loop.blend")
    phase("loop_scene_and_save")

    notes = []
    for m, k, h in ((mb, k, h) for mb in plan.marbles for k, h in enumerate(mb.hits)):
        got = measured[h.note.index]
        notes.append(
            {
                "index": h.note.index,
                "track": h.note.track,
                "track_name": h.note.track_name,
                "channel": h.note.channel + 1,
                "pitch": h.note.pitch,
                "velocity": h.note.velocity,
                "program": programs[h.note.index],
                "time": h.note.time,
                "element": h.element.name,
                "lane": m.lane,
                "marble": f"marble_{m.note.index:05d}",
                "strike": k + 1,  # 2: the second note of a chain
                "launch_time": m.t_launch,
                "impact_time": got["impact_time"],
                "error": got["error"],
                "exit_time": m.t_exit,
                "visible": sight[h.note.index]["visible"] if h.note.index in sight else None,
                "marble_px": round(sight[h.note.index]["px"], 2) if h.note.index in sight else None,
            }
        )
    notes.sort(key=lambda n: (n["time"], n["index"]))
    files = {k: str(out / v) for k, v in
             (("blend", f"{name}.blend"), ("loop_blend", f"{name}_loop.blend"), ("wav", f"{name}.wav"),
              ("loop_wav", f"{name}_loop.wav"), ("report", "report.json"))}  # fmt: skip
    result = {
        **files,
        "notes": len(notes),
        "frames": [1, frame_end],
        "loop_frames": [1, loop_end],
        "fps": fps,
        "duration_s": frame_end / fps,
        "strikes_visible": seen["fraction"],
        "median_marble_px": seen["median_px"],
        "background_fraction": empty["fraction"],
    }
    report = {
        "song": name,
        "fps": fps,
        "lead_in_s": lead_in,
        "frame_of_song_time_0": 1 + lead_in * fps,
        "loop_period_s": plan.period,
        "loop_period_frames": plan.period * fps,  # the seam is exact when this is a whole number
        "loop_bars": len([t for t in tune.bar_times if 0 < t <= plan.period + 1e-9]),
        "marble_radius_m": plan.radius,
        "tiers": stage.tiers,  # rows of elements, one behind and above the other (layout.py)
        "elements": sorted(e.name for e in stage.all_elements()),
        "lanes": {e.name: len(e.lanes) for e in stage.elements.values()},  # busy elements get more
        "marbles": len(plan.marbles),
        "chains": sum(len(m.hits) > 1 for m in plan.marbles),  # marbles that strike a bar and its twin
        "max_timing_error_s": max(n["error"] for n in notes),
        "min_marble_distance_m": plan.min_distance(),
        "loop_min_marble_distance_m": plan.min_distance(loop=True),
        "separation_samples_per_frame": planner.STEPS_PER_FRAME,
        "strike_visibility": seen,  # blender_scripts/visibility.py: on screen, unoccluded, px at 1080p
        "loop_strike_visibility": loop_seen,
        "background": empty,  # blender_scripts/background.py: share of the frame showing only backdrop/world
        "loop_background": loop_empty,
        "build_time_s": time.perf_counter() - started,  # everything but writing this report
        "build_phases_s": {k: round(v, 4) for k, v in phases.items()},
        "notes": notes,
        "pitches_moved": [list(m) for m in tune.moved],  # [note index, pitch in the file, pitch used]
        "outputs": result,
    }
    tmp_report = tmp / "report.json"
    tmp_report.write_text(json.dumps(report, indent=1, sort_keys=True))
    return result


def _save(bpy, path: Path) -> None:
    try:
        bpy.ops.wm.save_as_mainfile(
            filepath=str(path), check_existing=False, relative_remap=False, compress=True
        )
    except RuntimeError as e:  # Blender reports a failed save (full, read-only) as a RuntimeError
        raise OutputError(
            f"cannot save {path}: {cli.one_line(str(e))} (free space or pick another --out)"
        ) from None


if __name__ == "__main__":
    cli.run_job("build", build, on_oserror=unwrapped_output_error)

"""Measures for the marble-music content, printed as figures (not a test).

    .venv/bin/python benchmarks/blender_bench.py [--midi FILE ...] [--presets demo,hd] [--samples N]
        [--resolution-percentage P] [--repeat N] [--before REF] [--skip-big] [--skip-stress]

1. impact timing error (|contact - note|, from the SAVED .blend F-curves at sub-frame resolution) and
   marble-marble minimum distance / marble diameter (8 samples per frame) on the demo songs, on generated
   songs (type 0 and 1, tempo changes, chords, fast repeats, drums), on a generated 10,000-note stress song
   and on any real-world MIDI files passed with --midi (e.g. the 21 files inside the music21 wheel);
2. scene build time and peak memory (RSS) for 1,000 / 5,000 / 10,000-note songs, against the targets
   (10 / 25 / 60 s, 2.5 GB on 2 cores);
3. determinism: the same input built twice gives identical reports, audio and keyframes;
4. render seconds per frame at each preset (Cycles on this machine's CPU) of frame 300 of ode_waltz and
   the middle frame of the generated dense pop song (every instrument family); with --before REF the same
   frames of the same songs built and rendered by the code at git REF (a temporary worktree), side by
   side: what the new look costs;
5. with --before REF and --sections build-before: each --midi song (else a 5,000-note one) built by the
   code now and at REF, alternating, twice each: the build-time ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mido
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
sys.path.insert(0, str(ROOT))  # run as a script from anywhere


def _rss_peaks(pid: int, stop: threading.Event, peaks: list[float]) -> None:
    """Sample every 50 ms the RSS of `pid` alone and summed over it and all its descendants (the build's
    audio workers); keep the peaks in MiB. A sum of RSS counts pages shared between them (libraries, the
    share files) more than once: an upper bound, which is what a memory target is checked against. (Not
    wait4's ru_maxrss: Linux carries the high-water mark across exec, so a child of this bench, which has
    loaded Blender to measure .blend files, would report this bench's size.)"""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:  # a child ended while its family was listed: next sample
            procs = [root]
        total = 0.0
        for proc in procs:
            with contextlib.suppress(psutil.Error):  # ended since the listing
                rss = proc.memory_info().rss / 2**20
                total += rss
                if proc is root:
                    peaks[0] = max(peaks[0], rss)
        peaks[1] = max(peaks[1], total)
        stop.wait(0.05)


def cli(module: str, *args, root: Path = ROOT) -> tuple[dict, float, float, float]:
    """Run an entrypoint (of the code under `root`); (JSON result, wall seconds, peak RSS in MiB of the
    entrypoint process alone, and summed over it and its children)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-m", f"blender_scripts.{module}", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    streams: dict[str, str] = {}
    stop, peaks = threading.Event(), [0.0, 0.0]
    threads = [
        threading.Thread(target=lambda k=k, f=f: streams.__setitem__(k, f.read()))
        for k, f in (("out", proc.stdout), ("err", proc.stderr))
    ] + [threading.Thread(target=_rss_peaks, args=(proc.pid, stop, peaks))]
    for t in threads:
        t.start()
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{module} failed:\n{streams['err'][-2000:]}")
    return json.loads(streams["out"].strip().splitlines()[-1]), wall, peaks[0], peaks[1]


def generated_song(path: Path, notes: int, seed: int, midi_type: int = 1, pace: float = 1.0) -> Path:
    """A seeded song: melody + chords + bass + drums, three tempo changes, fast repeated notes.
    `pace` scales the time between events (0.5: twice as dense)."""
    rng = np.random.default_rng(seed)
    tpb = 480
    events: dict[int, list[tuple[int, mido.Message]]] = {0: [], 1: [], 2: [], 3: []}
    beat, made = 0.0, 0
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    while made < notes:
        kind = rng.integers(0, 10)
        if kind < 4:  # melody, sometimes a quick repeat of one pitch
            pitch = int(72 + scale[rng.integers(0, 7)] + 12 * rng.integers(0, 2))
            reps = 4 if rng.random() < 0.15 else 1
            for r in range(reps):
                events[1].append((round((beat + r * 0.125) * tpb), pitch))
            made += reps
        elif kind < 6:  # chord
            root = int(60 + scale[rng.integers(0, 7)])
            for p in (root, root + 4, root + 7):
                events[2].append((round(beat * tpb), p))
            made += 3
        elif kind < 7:
            events[2].append((round(beat * tpb), int(43 + scale[rng.integers(0, 7)])))
            made += 1
        else:
            events[3].append((round(beat * tpb), int(rng.choice([36, 38, 42, 42, 46, 49]))))
            made += 1
        beat += pace * float(rng.choice([0.25, 0.5, 0.5, 1.0]))
    tempos = [(0, 132), (round(beat / 3 * tpb), 150), (round(2 * beat / 3 * tpb), 118)]
    mid = mido.MidiFile(type=midi_type, ticks_per_beat=tpb)
    tracks = []
    for ti in range(4):
        msgs = (
            [(t, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(b))) for t, b in tempos]
            if ti == 0
            else []
        )
        ch = 9 if ti == 3 else ti
        for tick, pitch in events[ti]:
            msgs.append((tick, mido.Message("note_on", channel=ch, note=pitch, velocity=90)))
            msgs.append((tick + tpb // 8, mido.Message("note_off", channel=ch, note=pitch, velocity=0)))
        tracks.append(msgs)
    if midi_type == 0:
        tracks = [[m for t in tracks for m in t]]
    for msgs in tracks:
        track, now = mido.MidiTrack(), 0
        for tick, msg in sorted(msgs, key=lambda tm: (tm[0], tm[1].type == "note_on")):
            track.append(msg.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    mid.save(str(path))
    return path


def measure_saved(blend: str) -> tuple[float, float, float, int, int]:
    """(max timing error s, min distance m, radius m, violations, penetrations) from the saved file."""
    import bpy

    from blender_scripts import measure

    bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False)
    scene = bpy.context.scene
    hits = measure.impacts(scene)
    clear = measure.clearance(scene)
    return (
        max(h["error"] for h in hits),
        clear["min_distance_m"],
        clear["radius_m"],
        clear["pairs_closer_than_2r"],
        len(clear["element_penetrations"]),
    )


DENSE = 0.5  # the big songs: ~12 notes/s, so 10,000 notes fit the build's 900 s length bound
TARGETS = {1000: (10.0, 2560.0), 5000: (25.0, 2560.0), 10000: (60.0, 2560.0)}  # s, MiB on 2 cores


def _before_tree(ref: str, tmp: Path) -> Path:
    """A temporary worktree of the code at `ref` (the 'before' of the render comparison)."""
    tree = tmp / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref],
                   check=True, capture_output=True)  # fmt: skip
    return tree


def main() -> None:  # noqa: PLR0914
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--midi", nargs="*", type=Path, default=[], help="real-world MIDI files to measure too")
    ap.add_argument("--presets", default="demo,hd")
    ap.add_argument("--samples", type=int, default=8, help="Cycles samples for the render timings")
    ap.add_argument("--resolution-percentage", type=int, default=100, help="shrinks each preset's frame")
    ap.add_argument("--repeat", type=int, default=1, help="renders of each frame, now and before in turn")
    ap.add_argument("--skip-big", action="store_true", help="skip the 1,000 / 5,000 / 10,000-note builds")
    ap.add_argument("--skip-stress", action="store_true", help="skip measuring the 10,000-note stress song")
    ap.add_argument("--before", help="git ref whose build+render to time side by side (e.g. main)")
    ap.add_argument(
        "--sections",
        default="songs,determinism,big,render",
        help="which measures to run (also: build-before, with --before)",
    )
    ns = ap.parse_args()
    sections = set(ns.sections.split(","))
    tmp = Path(tempfile.mkdtemp(prefix="blender-bench-"))
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    songs = [
        ("demo ode_waltz", ROOT / "depot/songs/ode_waltz/song.mid", None),
        ("demo frere_groove", ROOT / "depot/songs/frere_groove/song.mid", ROOT / "depot/songs/frere_groove/arrangement.yaml"),
        ("generated type0 300", generated_song(tmp / "gen0.mid", 300, 1, 0), None),
        ("generated type1 300", generated_song(tmp / "gen1.mid", 300, 2, 1), None),
    ] + [(f"real {p.name}", p, None) for p in ns.midi]  # fmt: skip
    if not ns.skip_stress and "songs" in sections:
        songs.append(("stress 10000", generated_song(tmp / "stress.mid", 10000, 7, pace=DENSE), None))
    if not ns.midi and "songs" in sections:
        print("note: no real-world MIDI files given (--midi); none are bundled or downloadable here\n")
    if "songs" in sections:
        print(
            f"{'song':24} {'notes':>6} {'variant':>7} {'max err (ms)':>12} {'min dist/2r':>11} {'<2r':>4} {'inside':>6} {'lanes':>5} {'r mm':>5} {'chains':>6} {'s':>5}"
        )
    main_blend, refused = None, 0
    for label, midi, arr in songs if "songs" in sections else []:
        extra = ["--arrangement", arr] if arr else []
        try:
            result, *_ = cli("build", "--midi", midi, *extra, "--out", tmp / label.replace(" ", "_"))
        except SystemExit as e:
            if not label.startswith("real"):
                raise
            refused += 1  # a finding to print, not a reason to stop measuring
            print(f"{label:24} REFUSED: {str(e).strip().splitlines()[-1][:150]}")
            continue
        main_blend = main_blend or result["blend"]
        report = json.loads(Path(result["report"]).read_text())
        lanes = sum(report.get("lanes", {}).values()) or "-"
        extra_cols = f"{report['marble_radius_m'] * 1e3:>5.1f} {report.get('chains', 0):>6} {report['build_time_s']:>5.1f}"
        for variant in ("blend", "loop_blend"):
            err, dist, r, bad, inside = measure_saved(result[variant])
            print(
                f"{label:24} {result['notes']:>6} {variant.split('_')[0]:>7} {err * 1e3:>12.5f} {dist / (2 * r):>11.3f} {bad:>4} {inside:>6} {lanes:>5} {extra_cols}"
            )
    if "songs" in sections:
        print(f"{len(songs) - refused} of {len(songs)} songs built, {refused} refused")

    if "determinism" in sections:
        print("\ndeterminism (ode_waltz built twice):", end=" ")
        a, *_ = cli("build", "--midi", songs[0][1], "--out", tmp / "det_a")
        b, *_ = cli("build", "--midi", songs[0][1], "--out", tmp / "det_b")
        ra, rb = (json.loads(Path(x["report"]).read_text()) for x in (a, b))
        for r in (ra, rb):
            r.pop("build_time_s"), r.pop("build_phases_s"), r.pop("outputs")
        same_wav = Path(a["wav"]).read_bytes() == Path(b["wav"]).read_bytes()
        print("identical report and audio" if ra == rb and same_wav else "DIFFERENT")

    if not ns.skip_big and "big" in sections:
        print()
        for count, (t_max, mem_max) in TARGETS.items():
            midi = generated_song(tmp / f"big{count}.mid", count, 7, pace=DENSE)
            result, wall, peak, tree = cli("build", "--midi", midi, "--out", tmp / f"big{count}")
            report = json.loads(Path(result["report"]).read_text())
            print(
                f"{count}-note song ({report['loop_period_s']:.0f} s): build {report['build_time_s']:.2f} s "
                f"(target {t_max:.0f}), whole process {wall:.2f} s, peak RSS {tree:.0f} MiB summed over the build and its "
                f"workers (target {mem_max:.0f}; the build process alone {peak:.0f}), max err {report['max_timing_error_s'] * 1e3:.5f} ms, "
                f"min dist/2r {report['min_marble_distance_m'] / (2 * report['marble_radius_m']):.3f}"
            )
            print("   phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in report["build_phases_s"].items()))

    compare = {"render", "build-before"} & sections
    if not compare:
        print(f"\noutputs kept in {tmp}")
        return
    trees = [("now", ROOT)] + ([(f"before ({ns.before})", _before_tree(ns.before, tmp))] if ns.before else [])
    try:
        if "build-before" in sections and ns.before:
            _compare_builds(trees, ns.midi or [generated_song(tmp / "cmp5000.mid", 5000, 7, pace=DENSE)], tmp)
        if "render" in sections:
            _render_section(trees, ns, tmp)
    finally:
        if ns.before:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "before")],
                           check=False, capture_output=True)  # fmt: skip
    print(f"\noutputs kept in {tmp}")


def _compare_builds(trees: list[tuple[str, Path]], midis: list[Path], tmp: Path) -> None:
    """Each song built by the code now and at --before, back to back, twice: build seconds and the ratio."""
    print(f"\nbuild time, now vs {trees[1][0]}, each twice, alternating (load {os.getloadavg()[0]:.1f}):")
    for midi in midis:
        times: dict[str, list[float]] = {name: [] for name, _ in trees}
        for _ in range(2):
            for name, tree in trees:
                result, *_ = cli("build", "--midi", midi, "--out", tmp / f"cmp_{name.split()[0]}", root=tree)
                times[name].append(json.loads(Path(result["report"]).read_text())["build_time_s"])
        now, before = (sum(t) / len(t) for t in times.values())
        print(
            f"  {midi.name:24} now {now:6.1f} s, before {before:6.1f} s: now / before = {now / before:.2f}x"
        )


def _render_section(trees: list[tuple[str, Path]], ns: argparse.Namespace, tmp: Path) -> None:
    """Render seconds per frame of the code now and at --before, on the same frames: frame 300 of
    ode_waltz (marimba only) and the middle of the generated dense pop song (every family, the drum kit)."""
    from blender_scripts import demo_songs

    pop = tmp / "dense_pop.mid"
    demo_songs.dense_pop().save(str(pop))
    shots = [("ode_waltz", ROOT / "depot/songs/ode_waltz/song.mid", 300), ("dense_pop", pop, None)]
    print(f"\nrender, Cycles, {ns.samples} samples (load {os.getloadavg()[0]:.1f}):")
    blends: dict[tuple[str, str], tuple[str, int]] = {}
    for song_name, midi, frame in shots:
        for name, tree in trees:
            built, *_ = cli("build", "--midi", midi, "--out", tmp / f"look_{song_name}_{name.split()[0]}",
                            root=tree)  # fmt: skip
            blends[(song_name, name)] = (
                built["blend"],
                frame or (built["frames"][0] + built["frames"][1]) // 2,
            )
    # Songs and presets outer, trees inner: each before/after pair is rendered back to back (in turn
    # first, --repeat times), so a change of machine load between the pairs does not skew a ratio.
    for song_name, _, _ in shots:
        for preset in [p for p in ns.presets.split(",") if p]:
            per_frame: dict[str, list[float]] = {name: [] for name, _ in trees}
            cpu: dict[str, list[float]] = {name: [] for name, _ in trees}
            for rep in range(ns.repeat):
                for name, tree in trees if rep % 2 == 0 else trees[::-1]:
                    blend, frame = blends[(song_name, name)]
                    before_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
                    result, wall, *_ = cli("render", "--blend", blend, "--frames", frame, "--out",
                                           tmp / f"r_{song_name}_{name.split()[0]}_{preset}_{rep}", "--preset",
                                           preset, "--samples", ns.samples, "--resolution-percentage",
                                           ns.resolution_percentage, root=tree)  # fmt: skip
                    used = resource.getrusage(resource.RUSAGE_CHILDREN)
                    # CPU seconds of the render process (Blender's start included): steadier than wall
                    # time on a machine other work is loading
                    cpu[name].append(
                        used.ru_utime + used.ru_stime - before_cpu.ru_utime - before_cpu.ru_stime
                    )
                    per_frame[name].append(result["per_frame_s"])
                    print(
                        f"  {song_name:10} {name:16} {preset:8} frame {frame:5} {result['resolution'][0]}x"
                        f"{result['resolution'][1]}  {result['per_frame_s']:.2f} s/frame on {result['device']} "
                        f"(process {wall:.1f} s, {cpu[name][-1]:.1f} CPU s, load {os.getloadavg()[0]:.1f})"
                    )
            if len(per_frame) == 2:
                now, before = (sum(v) / len(v) for v in per_frame.values())
                now_cpu, before_cpu_s = (sum(v) / len(v) for v in cpu.values())
                print(
                    f"  {song_name:10} {'':16} {preset:8} mean of {ns.repeat}: now {now:.2f} s, before "
                    f"{before:.2f} s, now / before = {now / before:.2f}x; process CPU now {now_cpu:.1f} s, "
                    f"before {before_cpu_s:.1f} s, {now_cpu / before_cpu_s:.2f}x"
                )


if __name__ == "__main__":
    main()

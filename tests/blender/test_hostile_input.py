"""Hostile and careless input to the content entrypoints (issue 14): bounded songs, refused or mapped values
that are said out loud, output folders that cannot be written, leftovers of killed runs, damaged frames."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import mido
import pytest

from blender_scripts import arrangement, song
from blender_scripts.errors import ContentError
from blender_scripts.render import clean_leftovers
from renderlab.base import png
from tests.fetch.conftest import tmpfs

from .helpers import ROOT, last_json, run_cli, write_midi


def _midi(path: Path, messages: list, tpb: int = 480) -> Path:
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    mid.tracks.append(mido.MidiTrack(messages))
    mid.save(str(path))
    return path


def _note(pitch: int = 60, after: int = 0, length: int = 480, channel: int = 0) -> list:
    return [
        mido.Message("note_on", note=pitch, velocity=90, time=after, channel=channel),
        mido.Message("note_off", note=pitch, velocity=0, time=length, channel=channel),
    ]


def one_error_line(proc: subprocess.CompletedProcess, name: str) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith(f"{name}: error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert proc.stdout.strip() == ""
    return errors[0]


# --- songs: bounds, named and overridable ------------------------------------------------------------


def test_tempo_zero_is_refused_naming_the_bound(tmp_path: Path):
    path = _midi(tmp_path / "t0.mid", [mido.MetaMessage("set_tempo", tempo=0), *_note()])
    with pytest.raises(ContentError, match=r"set_tempo at tick 0 is 0 us per beat.*--tempo-range"):
        song.load(path)


def test_tempo_range_is_a_bound_with_an_override(tmp_path: Path):
    slow = _midi(tmp_path / "slow.mid", [mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(5)), *_note()])
    with pytest.raises(ContentError, match=r"5 BPM, outside the tempo range 10-1000 BPM"):
        song.load(slow)
    assert song.load(slow, song.Limits(min_bpm=1)).end_time == pytest.approx(12.0)


def test_a_long_silence_is_refused_before_any_work_is_sized_from_it(tmp_path: Path):
    # 46 bytes: one note, then one after the largest delta a MIDI file can hold (about 2.9 days at 120 BPM).
    path = _midi(tmp_path / "silence.mid", [*_note(), *_note(62, after=0x0FFFFFFF)])
    t0 = time.monotonic()
    with pytest.raises(ContentError, match=r"longer than the 900 s bound.*--max-length"):
        song.load(path)
    assert time.monotonic() - t0 < 5
    minute = _midi(tmp_path / "minute.mid", [*_note(), *_note(62, after=480 * 2 * 60)])
    with pytest.raises(ContentError, match="longer than the 30 s bound"):
        song.load(minute, song.Limits(max_seconds=30))
    assert song.load(minute).end_time == pytest.approx(61.0)


def test_a_meter_of_zero_is_refused(tmp_path: Path):
    path = _midi(
        tmp_path / "ts.mid", [mido.MetaMessage("time_signature", numerator=0, denominator=4), *_note()]
    )
    with pytest.raises(ContentError, match="time signature 0/4 at tick 0 is not a meter"):
        song.load(path)


def test_out_of_range_pitches_are_moved_by_octaves_and_named(tmp_path: Path):
    path = _midi(tmp_path / "p.mid", [*_note(0), *_note(127), *_note(60), *_note(35, channel=9)])
    tune = song.load(path)
    assert [n.pitch for n in tune.notes] == [24, 115 - 12, 60, 35]
    assert tune.moved == ((0, 0, 24), (1, 127, 103))
    assert all(song.PITCH_MIN <= n.pitch <= song.PITCH_MAX for n in tune.notes if not n.is_percussion)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"tracks: {0: marimba}\nstyle: \xff\xfe\n", "is not UTF-8 text (byte 0xff at offset 28)"),
        (b"camera: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
        (b"tracks: {0: marimba\n  bad: [\n", "is not valid YAML at line 2, column 6"),
    ],
    ids=["non-utf8", "deep", "syntax"],
)
def test_bad_arrangement_files_are_one_clear_error(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "a.yaml"
    path.write_bytes(content)
    with pytest.raises(ContentError) as info:
        arrangement.load(path)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("case", ["tempo 0", "long silence", "non-utf8 arrangement", "bad tempo range"])
def test_build_cli_refuses_hostile_songs_in_one_line(tmp_path: Path, case: str):
    ok = write_midi(tmp_path / "ok.mid", [[(0, 60, 1)]])
    arr = tmp_path / "a.yaml"
    arr.write_bytes(b"style: \xff\n")
    args = {
        "tempo 0": ["--midi", _midi(tmp_path / "t0.mid", [mido.MetaMessage("set_tempo", tempo=0), *_note()])],
        "long silence": ["--midi", _midi(tmp_path / "s.mid", [*_note(), *_note(62, after=0x0FFFFFFF)])],
        "non-utf8 arrangement": ["--midi", ok, "--arrangement", arr],
        "bad tempo range": ["--midi", ok, "--tempo-range", "fast"],
    }[case]
    out = tmp_path / "out"
    proc = run_cli("build", *args, "--out", out, timeout=120)
    assert proc.returncode == 2
    one_error_line(proc, "build")
    assert not out.exists()


# --- output folders that cannot be written --------------------------------------------------------------


def test_build_into_proc_is_one_line_and_exit_3(tmp_path: Path):
    ok = write_midi(tmp_path / "ok.mid", [[(0, 60, 1)]])
    proc = run_cli("build", "--midi", ok, "--out", "/proc/renderlab-hostile/scene", timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "cannot create /proc/renderlab-hostile" in one_error_line(proc, "build")


def test_build_and_render_into_a_read_only_folder(tmp_path: Path):
    ok = write_midi(tmp_path / "ok.mid", [[(0, 60, 1)]])
    blend = tmp_path / "x.blend"
    blend.write_bytes(b"BLENDER")
    with tmpfs(tmp_path / "ro", "1m", readonly=True) as ro:
        proc = run_cli("build", "--midi", ok, "--out", ro / "scene", timeout=120)
        assert proc.returncode == 3, proc.stderr[-2000:]
        assert "Read-only file system" in one_error_line(proc, "build")
        proc = run_cli("render", "--blend", blend, "--frames", "1-2", "--out", ro / "frames", timeout=120)
        assert proc.returncode == 3, proc.stderr[-2000:]
        assert "not writable" in one_error_line(proc, "render")


def test_render_into_proc_is_one_line_and_exit_3(tmp_path: Path):
    blend = tmp_path / "x.blend"
    blend.write_bytes(b"BLENDER")
    proc = run_cli(
        "render", "--blend", blend, "--frames", "1", "--out", "/proc/renderlab-frames", timeout=120
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    one_error_line(proc, "render")


@pytest.mark.slow
@pytest.mark.bpy
def test_build_into_a_mount_point_and_onto_a_full_disk(tmp_path: Path):
    """--out is itself a mount point: every rename stays on its filesystem. A full one: one line, exit 3,
    nothing half-written."""
    ok = write_midi(tmp_path / "ok.mid", [[(0, 60, 1), (1, 64, 1)]])
    with tmpfs(tmp_path / "mnt", "64m") as mnt:
        result = last_json(run_cli("build", "--midi", ok, "--out", mnt, "--fps", "24"))
        assert Path(result["blend"]).parent == mnt and (mnt / "report.json").is_file()
        assert not [p for p in mnt.iterdir() if p.name.startswith(".build.tmp-")]
    with tmpfs(tmp_path / "full", "300k") as full:
        proc = run_cli("build", "--midi", ok, "--out", full / "scene", "--fps", "24")
        assert proc.returncode == 3, proc.stderr[-2000:]
        assert "No space left on device" in one_error_line(proc, "build") or "full" in proc.stderr
        assert not (full / "scene").exists()


# --- leftovers of killed runs -------------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
@pytest.mark.bpy
def test_a_rerun_cleans_what_a_killed_build_left(tmp_path: Path):
    ok = write_midi(tmp_path / "ok.mid", [[(0, 60, 1), (1, 64, 1)]])
    out = tmp_path / "scene"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "blender_scripts.build", "--midi", str(ok), "--out", str(out), "--fps", "24"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(p.name.startswith(".build.tmp-") for p in out.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "the build never made its temp folder"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = [p.name for p in out.iterdir()]
    assert left == [f".build.tmp-{proc.pid}"]
    legacy = tmp_path / f".scene.tmp-{_dead_pid()}"  # where earlier versions put theirs
    legacy.mkdir()
    live = out / f".build.tmp-{os.getpid()}"  # a running build's folder (this process is alive)
    live.mkdir()
    again = run_cli("build", "--midi", ok, "--out", out, "--fps", "24")
    last_json(again)
    assert "left by a build that was killed" in again.stderr
    assert not (out / f".build.tmp-{proc.pid}").exists() and not legacy.exists()
    assert live.exists()


def test_render_cleans_temp_frames_of_dead_runs_only(tmp_path: Path):
    dead, alive = _dead_pid(), os.getpid()
    for name in (f".frame_000001.tmp-{dead}.png", f".frame_000002.tmp-{alive}.png", ".frame_000003.tmp.png",
                 "frame_000004.png", ".frame_x.tmp.png"):  # fmt: skip
        (tmp_path / name).write_bytes(b"partial")
    assert sorted(clean_leftovers(tmp_path)) == [f".frame_000001.tmp-{dead}.png", ".frame_000003.tmp.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".frame_000002.tmp-{alive}.png",
        ".frame_x.tmp.png",
        "frame_000004.png",
    ]


# --- damaged frames ----------------------------------------------------------------------------------------


def write_png(path: Path, width: int = 64, height: int = 48, idat=lambda z: z, cut: int = 0) -> Path:
    """A real RGBA PNG with varied pixels; `idat` and `cut` damage its data behind valid CRCs."""
    rows = b"".join(b"\x00" + bytes((x * 7 + y * 13 + c) % 256 for x in range(width) for c in range(4))
                    for y in range(height))  # fmt: skip

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    data = idat(zlib.compress(rows[: len(rows) - cut]))
    path.write_bytes(png.SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def zero_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid - 64 : mid + 64] = bytes(128)
    path.write_bytes(bytes(data))


def test_a_frame_with_zeroed_middle_bytes_is_not_a_frame(tmp_path: Path):
    frame = write_png(tmp_path / "frame_000001.png")
    assert png.verify(frame) == (64, 48)
    zero_middle(frame)
    with pytest.raises(png.BadPNG, match="CRC"):
        png.verify(frame)
    from blender_scripts.render import png_size

    assert png_size(frame) is None  # a resumed render renders it again


def test_validate_fails_a_frame_with_zeroed_middle_bytes(tmp_path: Path):
    from renderlab.jobs import validate

    for n in (1, 2):
        write_png(tmp_path / f"frame_{n:06d}.png")
    assert validate.check_frames(tmp_path, 1, 2) == []
    zero_middle(tmp_path / "frame_000002.png")
    [problem] = validate.check_frames(tmp_path, 1, 2)
    assert "frame_000002.png: not a complete PNG" in problem and "CRC" in problem


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[: len(d) - 12],  # no IEND
        lambda d: d + b"junk",  # bytes after IEND
        lambda d: d[:8] + d[8:].replace(b"IHDR", b"IHDX", 1),  # first chunk renamed (its CRC fails too)
    ],
    ids=["truncated", "trailing", "no-ihdr"],
)
def test_other_damage_is_caught(tmp_path: Path, damage):
    frame = write_png(tmp_path / "f.png")
    frame.write_bytes(damage(frame.read_bytes()))
    assert png.size(frame) is None


@pytest.mark.parametrize(
    ("kw", "says"),
    [({"cut": 65}, "holds 12271 of the 12336 bytes"), ({"idat": lambda z: z[:-30]}, "of the 12336 bytes"),
     ({"idat": lambda z: z + b"xx"}, "after the end of the image data")],
    ids=["fewer-rows", "cut-stream", "trailing-stream"],
)  # fmt: skip
def test_image_data_behind_valid_crcs_must_fill_the_image(tmp_path: Path, kw, says):
    with pytest.raises(png.BadPNG, match=says):
        png.verify(write_png(tmp_path / "f.png", **kw))


@pytest.mark.slow
@pytest.mark.bpy
def test_render_resume_rerenders_a_frame_with_zeroed_middle_bytes(built, tmp_path: Path):
    blend = built["frere_groove"]["blend"]
    out = tmp_path / "frames"
    tiny = ("--resolution-percentage", "5", "--samples", "1", "--device", "cpu")
    last_json(run_cli("render", "--blend", blend, "--frames", "120-121", "--out", out, *tiny))
    zero_middle(out / "frame_000121.png")
    again = last_json(run_cli("render", "--blend", blend, "--frames", "120-121", "--out", out, *tiny))
    assert (again["rendered"], again["skipped"]) == (1, 1)
    assert png.verify(out / "frame_000121.png") == (32, 18)


# Issue 28, class 7: planning grows with the square of notes on one pitch at once; that count is bounded
# (--max-notes-at-once) and so is the note count (--max-notes), before any planning.


def test_thousands_of_notes_at_one_tick_are_refused_before_planning(tmp_path: Path):
    path = write_midi(tmp_path / "wall.mid", [[(0.0, 60, 1.0)] * 5000])
    with pytest.raises(ContentError, match=r"5000 notes on pitch 60 within 60 ms.*--max-notes-at-once"):
        song.load(path)
    loaded = song.load(path, song.Limits(max_at_once=5000))  # the bound is an option, not a wall
    assert len(loaded.notes) == 5000
    with pytest.raises(ContentError, match=r"5000 notes, more than the 4000 bound.*--max-notes"):
        song.load(path, song.Limits(max_at_once=5000, max_notes=4000))


def test_build_cli_names_the_note_bounds_in_one_line(tmp_path: Path):
    path = write_midi(tmp_path / "wall.mid", [[(0.0, 60, 1.0)] * 5000])
    proc = run_cli("build", "--midi", path, "--out", tmp_path / "o", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    [line] = proc.stderr.strip().splitlines()
    assert "--max-notes-at-once" in line and not (tmp_path / "o").exists()
    bad = run_cli("build", "--midi", path, "--out", tmp_path / "o", "--max-notes-at-once", "0")
    assert bad.returncode == 2 and "--max-notes-at-once 0 is out of range" in bad.stderr


# Issue 28, class 8: every length derived from the song is bounded before work, not only the song's own.


def _extreme_meter(tmp_path: Path) -> Path:
    """A tiny file: 10 BPM and a bar of 255 whole notes; one short note. The song lasts 3 s, its bar 102 min."""
    return _midi(
        tmp_path / "meter.mid",
        [mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(10)),
         mido.MetaMessage("time_signature", numerator=255, denominator=1), *_note(length=10)],
    )  # fmt: skip


def test_a_loop_of_hours_from_an_extreme_meter_is_refused_at_load(tmp_path: Path):
    path = _extreme_meter(tmp_path)
    assert path.stat().st_size < 80
    with pytest.raises(
        ContentError, match=r"its loop .* lasts 6120 s, longer than the 900 s bound.*--max-length"
    ):
        song.load(path)
    assert song.loop_length(song.load(path, song.Limits(max_seconds=7000))) == pytest.approx(6120)


def test_build_refuses_the_extreme_meter_in_one_line_before_writing(tmp_path: Path):
    proc = run_cli("build", "--midi", _extreme_meter(tmp_path), "--out", tmp_path / "o", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    [line] = proc.stderr.strip().splitlines()
    assert "its loop" in line and not (tmp_path / "o").exists()

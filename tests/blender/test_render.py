"""The render entrypoint with real Cycles on tiny frames: atomic output, resume, device and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blender_scripts.render import png_size

from .helpers import last_json, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.bpy]
TINY = ("--resolution-percentage", "5", "--samples", "1", "--device", "cpu")


def _frames(out: Path) -> list[str]:
    """Every file but the frames' provenance records (.frame_NNNNNN.png.made)."""
    return sorted(p.name for p in out.iterdir() if not p.name.endswith(".made"))


def test_renders_tiny_frames_then_resumes_a_half_rendered_range(built, tmp_path):
    blend = built["frere_groove"]["blend"]
    out = tmp_path / "frames"
    first = run_cli("render", "--blend", blend, "--frames", "120-121", "--out", out, *TINY)
    summary = last_json(first)
    assert (summary["rendered"], summary["skipped"]) == (2, 0)
    assert summary["resolution"] == [32, 18] and summary["device"] == "cpu"
    assert summary["per_frame_s"] > 0 and summary["seconds"] >= summary["per_frame_s"]
    assert _frames(out) == ["frame_000120.png", "frame_000121.png"]
    assert png_size(out / "frame_000120.png") == (32, 18)
    progress = [line for line in first.stderr.splitlines() if line.startswith("render: frame")]
    assert len(progress) == 2

    # an interrupted run: frame 121 cut short, a stale temp file left behind
    broken = (out / "frame_000121.png").read_bytes()
    (out / "frame_000121.png").write_bytes(broken[: len(broken) // 2])
    (out / ".frame_000122.tmp.png").write_bytes(b"partial")
    before = (out / "frame_000120.png").stat().st_mtime_ns
    again = last_json(run_cli("render", "--blend", blend, "--frames", "120-122", "--out", out, *TINY))
    assert (again["rendered"], again["skipped"]) == (2, 1)
    assert (out / "frame_000120.png").stat().st_mtime_ns == before  # valid frame untouched
    assert _frames(out) == ["frame_000120.png", "frame_000121.png", "frame_000122.png"]
    assert all(png_size(out / name) == (32, 18) for name in _frames(out))


def test_frames_of_another_scene_or_other_settings_are_rendered_again(built, tmp_path):
    """A folder holding another scene's frames used to 'resume' over them (same size,
    complete PNGs); each frame now records what made it and is reused only when that matches."""
    out = tmp_path / "frames"
    other = last_json(run_cli("render", "--blend", built["ode_waltz"]["blend"], "--frames", "1-2", "--out", out,
                              *TINY))  # fmt: skip
    assert other["rendered"] == 2 and other["resolution"] == [32, 18]
    blend = built["frere_groove"]["blend"]
    mine = last_json(run_cli("render", "--blend", blend, "--frames", "1-2", "--out", out, *TINY))
    assert (mine["rendered"], mine["skipped"]) == (2, 0)  # same size, other scene: rendered again
    same = last_json(run_cli("render", "--blend", blend, "--frames", "1-2", "--out", out, *TINY))
    assert (same["rendered"], same["skipped"]) == (0, 2)  # same maker: reused
    more = [*TINY[:2], "--samples", "2", *TINY[4:]]
    again = last_json(run_cli("render", "--blend", blend, "--frames", "1-2", "--out", out, *more))
    assert (again["rendered"], again["skipped"]) == (2, 0)  # other samples: rendered again


def test_preset_sizes_and_the_loop_scene_render(built, tmp_path):
    result = last_json(
        run_cli("render", "--blend", built["ode_waltz"]["loop_blend"], "--frames", "1", "--out", tmp_path,
                "--preset", "hd", "--resolution-percentage", "2", "--samples", "1", "--device", "cpu")
    )  # fmt: skip
    assert result["resolution"] == [38, 21] and result["rendered"] == 1
    assert png_size(tmp_path / "frame_000001.png") == (38, 21)


def _has_gpu() -> bool:
    import bpy

    prefs = bpy.context.preferences.addons["cycles"].preferences
    for backend in ("OPTIX", "CUDA", "HIP", "ONEAPI"):
        try:
            prefs.compute_device_type = backend
        except TypeError:
            continue
        prefs.refresh_devices()
        if any(d.type == backend for d in prefs.devices):
            return True
    return False


def test_gpu_request_never_falls_back_to_cpu(built, tmp_path):
    proc = run_cli("render", "--blend", built["ode_waltz"]["blend"], "--frames", "1-1", "--out", tmp_path / "f",
                   "--device", "gpu", "--resolution-percentage", "5", "--samples", "1")  # fmt: skip
    if _has_gpu():
        assert last_json(proc)["device"].startswith("gpu:")
    else:
        assert proc.returncode == 2
        assert "--device gpu: Cycles finds no GPU" in proc.stderr
        assert not (tmp_path / "f").exists()  # refused before any output folder is made


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ("5-2", "first frame is after the last"),
        ("a-b", "is not a range"),
        ("1-999999", "outside song.blend's range"),
    ],
)
def test_bad_frame_ranges(built, tmp_path, frames, message):
    proc = run_cli(
        "render", "--blend", built["ode_waltz"]["blend"], "--frames", frames, "--out", tmp_path, *TINY
    )
    assert proc.returncode == 2 and message in proc.stderr
    assert not [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert not list(tmp_path.glob("*.png"))


def test_missing_or_corrupt_blend(tmp_path):
    missing = run_cli("render", "--blend", tmp_path / "no.blend", "--frames", "1-2", "--out", tmp_path / "o")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    junk = tmp_path / "junk.blend"
    junk.write_bytes(b"BLENDER-v500" + b"\0" * 64)
    corrupt = run_cli("render", "--blend", junk, "--frames", "1-2", "--out", tmp_path / "o")
    assert corrupt.returncode == 2 and "cannot be opened by Blender" in corrupt.stderr
    assert not (tmp_path / "o").exists()
    assert not [line for line in corrupt.stdout.splitlines() if line.startswith("{")]


def test_vertical_preset_and_the_poster_still(built, tmp_path):
    from renderlab.base.presets import PRESETS

    blend = built["ode_waltz"]["blend"]
    vertical = last_json(run_cli("render", "--blend", blend, "--frames", "300", "--out", tmp_path / "v",
                                 "--preset", "vertical", "--resolution-percentage", "2", "--samples", "1",
                                 "--device", "cpu"))  # fmt: skip
    assert vertical["resolution"] == [
        PRESETS["vertical"].width * 2 // 100,
        PRESETS["vertical"].height * 2 // 100,
    ]
    assert vertical["resolution"][0] < vertical["resolution"][1]  # portrait
    poster = run_cli(
        "render", "--blend", blend, "--frames", "300-301", "--out", tmp_path / "p", "--preset", "poster"
    )
    assert poster.returncode == 2 and "renders one still frame" in poster.stderr
    assert not (tmp_path / "p").exists()


def test_look_check_tiles_frames_at_fixed_song_positions(built, tmp_path):
    sheet = tmp_path / "look" / "sheet.png"
    proc = run_cli("look", "--blend", built["ode_waltz"]["blend"], "--out", sheet, "--positions", "0.1,0.5,0.9,0.95",
                   "--resolution-percentage", "5", "--samples", "1", "--device", "cpu")  # fmt: skip
    result = last_json(proc)
    last = built["ode_waltz"]["frames"][1]
    worst = json.loads(Path(built["ode_waltz"]["report"]).read_text())["strike_visibility"]["least_visible"]
    # the fixed positions, then the build's least-visible moment as the last tile
    assert result["frames"] == [1 + round(f * (last - 1)) for f in (0.1, 0.5, 0.9, 0.95)] + [worst["frame"]]
    assert result["least_visible_frame"] == worst["frame"]
    assert png_size(sheet) == tuple(result["size"]) == (3 * 32 + 2 * 4, 2 * 18 + 4)  # 3 columns, 2 rows
    assert _frames(tmp_path / "look" / "sheet_frames") == sorted(
        f"frame_{f:06d}.png" for f in result["frames"]
    )
    bad = run_cli(
        "look", "--blend", built["ode_waltz"]["blend"], "--out", tmp_path / "x.png", "--positions", "2"
    )
    assert bad.returncode == 2 and "give fractions between 0 and 1" in bad.stderr


def test_sigterm_stops_a_render_that_is_a_containers_pid_1_between_frames(built, tmp_path):
    """As a render pod's entrypoint (PID 1 of its PID namespace, as the kubelet's runtime starts it): SIGTERM
    (pod deleted, Job killed) stops it at the next frame with exit 130, leaving only whole frames. Blender swallows
    the KeyboardInterrupt raised inside its render callback; the frame loop stops on its own check."""
    import os
    import subprocess
    import sys
    import time

    from renderlab.base import cli
    from tests import pid_namespace

    from .helpers import ROOT

    out = tmp_path / "frames"
    blend = built["frere_groove"]["blend"]
    cmd = [sys.executable, "-m", "blender_scripts.render", "--blend", str(blend), "--frames", "1-40", "--out",
           str(out), "--resolution-percentage", "20", "--samples", "2", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    errors = tmp_path / "stderr"
    with errors.open("w") as err:
        proc = pid_namespace.start(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err)
        deadline = time.monotonic() + 120
        while "render: frame 2 " not in errors.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, errors.read_text()[-2000:]
            time.sleep(0.1)
        stdout, _ = pid_namespace.terminate(proc, 60, "the render")
    log = errors.read_text()
    assert proc.returncode == cli.EXIT_INTERRUPTED, log[-2000:]
    # No result (Blender's own chatter goes to stdout too, never a JSON line), and the entrypoint's one line.
    assert not [ln for ln in stdout.splitlines() if ln.startswith("{")], stdout[-2000:]
    assert "render: interrupted" in log.splitlines(), log[-2000:]
    done = [p for p in out.iterdir() if p.name.startswith("frame_")]
    assert 2 <= len(done) < 40  # stopped early, and what it left is whole frames only
    assert all(png_size(p) == (128, 72) for p in done)


def test_a_full_share_stops_the_render_with_one_message_and_the_rerun_redoes_no_frame(built, tmp_path):
    """The share filling up mid-chunk: Blender says its write failed only on its own console, so the entrypoint
    names the full folder itself, in one line; once space is freed, a rerun renders only the missing frames."""
    import subprocess

    from blender_scripts.errors import OutputError
    from tests import fill_up

    share = tmp_path / "share"
    share.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(share)],
                           capture_output=True, text=True, check=False)  # fmt: skip
    if mount.returncode:
        pytest.fail(f"a small tmpfs cannot be mounted here (the check needs root): {mount.stderr.strip()}")
    try:
        blend, out = built["frere_groove"]["blend"], share / "frames"
        assert last_json(run_cli("render", "--blend", blend, "--frames", "120-120", "--out", out, *TINY))
        done = (out / "frame_000120.png").stat().st_mtime_ns
        filler = share / "filler"
        fill_up.fill(filler)
        full = run_cli("render", "--blend", blend, "--frames", "120-122", "--out", out, *TINY)
        assert full.returncode == OutputError.exit_code, full.stderr[-2000:]
        (last,) = [ln for ln in full.stderr.splitlines() if ln.startswith("render: error:")]
        assert "frame_000121.png" in last and "is full; free space on it" in last, last
        assert full.stderr.rstrip().endswith(last)  # the entrypoint's one message, last
        assert not [ln for ln in full.stdout.splitlines() if ln.startswith("{")]  # no result
        assert _frames(out) == ["frame_000120.png"]  # no partial frame left behind
        filler.unlink()
        again = last_json(run_cli("render", "--blend", blend, "--frames", "120-122", "--out", out, *TINY))
        assert (again["rendered"], again["skipped"]) == (2, 1)
        assert (out / "frame_000120.png").stat().st_mtime_ns == done
    finally:
        subprocess.run(["umount", "-l", str(share)], check=False)


def test_a_render_under_a_cpu_quota_starts_as_many_threads_as_the_quota_allows(built, tmp_path):
    """As in a Job's container, whose runtime mounts the container's own cgroup: a 1-CPU quota on a machine
    of more cores; Blender alone would start a thread per core, all throttled to the quota."""
    import os
    import subprocess
    import sys

    from .helpers import ROOT

    if (os.cpu_count() or 1) < 2:
        pytest.fail("the check needs a machine of 2 or more cores (a quota below its core count)")
    fake = tmp_path / "cgroup"
    fake.mkdir()
    (fake / "cpu.cfs_quota_us").write_text("100000\n")
    (fake / "cpu.cfs_period_us").write_text("100000\n")
    render = [sys.executable, "-m", "blender_scripts.render", "--blend", str(built["frere_groove"]["blend"]),
              "--frames", "120-120", "--out", str(tmp_path / "frames"), *TINY]  # fmt: skip
    if not os.path.isdir("/sys/fs/cgroup/cpu"):
        pytest.fail(
            "the check needs a cgroup v1 cpu controller at /sys/fs/cgroup/cpu to mount its stand-in over"
        )
    script = 'mount --bind "$0" /sys/fs/cgroup/cpu && exec "$@"'  # cpu,cpuacct too where cpu links to it
    proc = subprocess.run(["unshare", "--mount", "sh", "-c", script, str(fake), *render], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert last_json(proc)["rendered"] == 1
    assert (
        f"render: 1 render threads (the container's CPU limit; the node has {os.cpu_count()})" in proc.stderr
    )
    # Without a quota (this machine's own cgroup root): Blender's own choice, no line.
    plain = run_cli("render", "--blend", built["frere_groove"]["blend"], "--frames", "121-121", "--out",
                    tmp_path / "frames", *TINY)  # fmt: skip
    assert last_json(plain)["rendered"] == 1 and "render threads" not in plain.stderr

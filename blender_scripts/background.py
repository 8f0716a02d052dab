"""Empty background: how much of the frame shows nothing but the backdrop or the world.

Measured from a built scene with Blender's own queries (works on a freshly opened .blend): at SAMPLES
frames spread evenly over the scene's range, a ray goes from the camera through the centre of every cell
of a GRID over the frame (16:9, the presets' landscape frame) and `scene.ray_cast` on the evaluated
scene says what it meets first. A ray that meets nothing (the world) or an object marked
obj["renderlab_set"] == "backdrop" (blender_scripts/environment.py) is empty background; one that meets
the stage's boards is "stage", anything else (instruments, marbles, launchers, rack, tray) "machine".
The report gives the mean over the sampled frames, the worst frame and the mean of each class.
"""

from __future__ import annotations

import bpy

from blender_scripts import visibility

GRID = (48, 27)  # rays across and down the frame
SAMPLES = 16  # frames sampled over the scene's range, first and last included
TARGET = 0.25  # the showcase's bound on the mean (tests/blender/test_background.py)


def _kind(hit: bool, obj) -> str:
    if not hit:
        return "world"
    role = obj.original.get("renderlab_set")
    return "backdrop" if role == "backdrop" else "stage" if role == "stage" else "machine"


def frame_shares(scene: bpy.types.Scene, depsgraph, grid: tuple[int, int] = GRID) -> dict[str, float]:
    """Share of the rays through `grid` that first meet the world, the backdrop, the stage or the
    machine, at the scene's current frame."""
    cam = scene.camera
    origin = cam.matrix_world.translation.copy()
    # the frame's corners on the camera's image plane (camera space): top-right, bottom-right,
    # bottom-left, top-left
    tr, br, bl, tl = cam.data.view_frame(scene=scene)
    to_world = cam.matrix_world
    cols, rows = grid
    counts = {"world": 0, "backdrop": 0, "stage": 0, "machine": 0}
    for j in range(rows):
        v = (j + 0.5) / rows
        for i in range(cols):
            u = (i + 0.5) / cols
            local = bl + (br - bl) * u + (tl - bl) * v
            direction = (to_world @ local - origin).normalized()
            hit, _loc, _normal, _index, obj, _matrix = scene.ray_cast(depsgraph, origin, direction)
            counts[_kind(hit, obj)] += 1
    total = cols * rows
    return {k: n / total for k, n in counts.items()}


def sample_frames(first: int, last: int, samples: int = SAMPLES) -> list[int]:
    if samples < 1:
        raise ValueError(f"samples {samples}: need at least one frame to sample")
    if samples == 1 or last <= first:
        return [first]
    return sorted({round(first + k * (last - first) / (samples - 1)) for k in range(samples)})


def measure(scene: bpy.types.Scene, samples: int = SAMPLES, grid: tuple[int, int] = GRID) -> dict:
    """The report's figures: mean empty-background fraction (world + backdrop) over the sampled frames,
    the worst frame, and the mean share of each class. Leaves the scene at its frame and size."""
    if scene.camera is None:
        raise ValueError(f"scene {scene.name!r} has no camera: nothing to measure the frame of")
    per_frame = []
    with visibility.reference_frame(scene):
        for frame in sample_frames(scene.frame_start, scene.frame_end, samples):
            scene.frame_set(frame)
            shares = frame_shares(scene, bpy.context.evaluated_depsgraph_get(), grid)
            per_frame.append((frame, shares))
    empty = [s["world"] + s["backdrop"] for _, s in per_frame]
    worst = max(range(len(per_frame)), key=lambda k: empty[k])
    mean = {k: round(sum(s[k] for _, s in per_frame) / len(per_frame), 4) for k in per_frame[0][1]}
    return {
        "fraction": round(sum(empty) / len(empty), 4),
        "worst_frame": per_frame[worst][0],
        "worst_fraction": round(empty[worst], 4),
        "shares": mean,  # world, backdrop (empty), stage, machine: the mean share of the frame
        "frames": [f for f, _ in per_frame],
        "grid": list(grid),
        "target": TARGET,
    }

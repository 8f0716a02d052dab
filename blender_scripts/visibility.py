"""Strike visibility: is each note's strike on screen, as the viewer sees it, and how big is its marble?

Measured from a built scene with Blender's own camera and scene queries (works on a freshly opened .blend):
for every contact, at the frame that shows it (the rendered frame nearest the contact), the striking
marble's centre is projected with `world_to_camera_view` at 1080p; it is *in view* when it lies inside the
frame with EDGE_MARGIN to spare on every side and in front of the camera, and *unoccluded* when at least
one of a handful of rays from the camera to points on the marble (its centre and a ring around it, facing
the camera) reaches the marble first (`scene.ray_cast` on the evaluated scene: elements, stage, other
marbles all block). A strike is *visible* when both hold. Its width in pixels is the marble's diameter
projected at its depth on a 1920-pixel-wide (1080p) frame.

`summary` turns the per-note records into the report's figures: the visible fraction, the median marble
width, the worst passages (PASSAGE_S windows with the lowest visible fraction) and the least-visible
moment (the frame where the most strikes are missed around it), which the look check renders.
"""

from __future__ import annotations

import contextlib
import statistics

import bpy
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from blender_scripts import camera_rig

REF_SIZE = (1920, 1080)  # 1080p: the size the pixel widths and the margin are measured at
# of the frame's width/height, each side: a strike at the very edge is not "seen" (0.03; the camera rig's
# strikes_seen uses the same bound without Blender)
EDGE_MARGIN = round((1 - camera_rig.MEASURE_LIMIT) / 2, 6)
RING = 0.6  # ring rays aim this many radii off the centre, across the view direction
PASSAGE_S = 4.0  # the worst passages are windows of this length
WORST = 3  # how many worst passages the report names
MOMENT_S = 0.5  # the least-visible moment: the most strikes missed within this of a frame


def _rays(centre: Vector, cam: Vector, radius: float) -> list[Vector]:
    """Points on the marble to aim at: its centre and four on a ring facing the camera."""
    view = (centre - cam).normalized()
    side = view.cross(Vector((0.0, 0.0, 1.0)))
    if side.length < 1e-6:
        side = Vector((1.0, 0.0, 0.0))
    side.normalize()
    up = side.cross(view).normalized()
    r = RING * radius
    return [centre, centre + side * r, centre - side * r, centre + up * r, centre - up * r]


def _unoccluded(
    scene, depsgraph, marble: bpy.types.Object, cam: Vector, *, centre: Vector, radius: float
) -> bool:
    for point in _rays(centre, cam, radius):
        direction = point - cam
        dist = direction.length
        hit, _loc, _normal, _index, obj, _matrix = scene.ray_cast(
            depsgraph, cam, direction.normalized(), distance=dist
        )
        if hit and obj.original == marble:  # the first thing this ray meets is the marble itself
            return True
    return False


def _hits(scene: bpy.types.Scene) -> dict[int, list[tuple[bpy.types.Object, int, float]]]:
    """Shown frame -> [(marble, note index, note time)] for every contact inside the scene's frames."""
    fps = scene.render.fps / scene.render.fps_base
    offset = float(scene["renderlab_offset_s"])
    out: dict[int, list] = {}
    for obj in scene.collection.children["Marbles"].objects:
        shift = float(obj["shift_s"])
        for index, t in zip(obj["hit_notes"], obj["hit_times"], strict=True):
            frame = round(1 + (t + shift + offset) * fps)
            if scene.frame_start <= frame <= scene.frame_end:
                out.setdefault(frame, []).append((obj, int(index), float(t)))
    return out


@contextlib.contextmanager
def reference_frame(scene: bpy.types.Scene):
    """The scene's render size set to REF_SIZE (square pixels) while measuring; its size and current frame
    as they were afterwards."""
    r = scene.render
    saved = (r.resolution_x, r.resolution_y, r.resolution_percentage, r.pixel_aspect_x, r.pixel_aspect_y)
    saved_frame = scene.frame_current
    r.resolution_x, r.resolution_y = REF_SIZE
    r.resolution_percentage = 100
    r.pixel_aspect_x = r.pixel_aspect_y = 1.0
    try:
        yield
    finally:
        (r.resolution_x, r.resolution_y, r.resolution_percentage, r.pixel_aspect_x, r.pixel_aspect_y) = saved
        scene.frame_set(saved_frame)


def strikes(scene: bpy.types.Scene) -> list[dict]:
    """One record per contact shown in the scene: note index and time, the frame that shows it, whether
    it is in view / unoccluded / visible, and the marble's width in pixels at 1080p."""
    radius = float(scene["renderlab_marble_radius"])
    out = []
    with reference_frame(scene):
        for frame, hits in sorted(_hits(scene).items()):
            scene.frame_set(frame)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            cam = scene.camera
            data = cam.data
            cam_at = cam.matrix_world.translation.copy()
            sensor = data.sensor_height if data.sensor_fit == "VERTICAL" else data.sensor_width
            focal_px = data.lens / sensor * REF_SIZE[0]
            for marble, index, t in hits:
                centre = marble.matrix_world.translation.copy()
                co = world_to_camera_view(scene, cam, centre)
                in_view = (
                    co.z > data.clip_start
                    and EDGE_MARGIN <= co.x <= 1 - EDGE_MARGIN
                    and EDGE_MARGIN <= co.y <= 1 - EDGE_MARGIN
                )
                clear = (
                    _unoccluded(scene, depsgraph, marble, cam_at, centre=centre, radius=radius)
                    if in_view
                    else False
                )
                out.append(
                    {
                        "note_index": index,
                        "time": t,
                        "frame": frame,
                        "in_view": bool(in_view),
                        "unoccluded": bool(clear),
                        "visible": bool(in_view and clear),
                        "px": 2 * radius * focal_px / co.z if co.z > 0 else 0.0,
                    }
                )
    out.sort(key=lambda s: (s["time"], s["note_index"]))
    return out


def _passages(records: list[dict]) -> list[dict]:
    """Windows of PASSAGE_S starting at each strike, worst visible fraction first (more missed strikes
    break ties), no two overlapping; each is named by the span of its missed strikes (the whole window
    where none is missed)."""
    times = [s["time"] for s in records]
    windows = []
    j = 0
    for i, t0 in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < t0 + PASSAGE_S:
            j += 1
        part = records[i:j]
        seen = sum(s["visible"] for s in part)
        windows.append((seen / len(part), -(len(part) - seen), t0, part))
    windows.sort(key=lambda w: (w[0], w[1], w[2]))
    taken: list[float] = []
    chosen: list[dict] = []
    for fraction, _, t0, part in windows:
        if any(abs(t0 - t) < PASSAGE_S for t in taken):
            continue
        taken.append(t0)
        missed = [s["time"] for s in part if not s["visible"]]
        span = (missed[0], missed[-1]) if missed else (t0, part[-1]["time"])
        chosen.append(
            {
                "start_s": round(span[0], 4),
                "end_s": round(span[1], 4),
                "strikes": len(part),
                "visible": sum(s["visible"] for s in part),
                "fraction": round(fraction, 4),
            }
        )
        if len(chosen) == WORST:
            break
    return chosen


def _least_visible(records: list[dict]) -> dict:
    """The frame around which the most strikes are missed (within MOMENT_S); with none missed, the
    strike whose marble is smallest on screen."""
    missed = [s for s in records if not s["visible"]]
    if missed:
        times = [s["time"] for s in missed]
        best = max(missed, key=lambda s: (sum(abs(t - s["time"]) <= MOMENT_S for t in times), -s["time"]))
        count = sum(abs(t - best["time"]) <= MOMENT_S for t in times)
        return {"frame": best["frame"], "time_s": round(best["time"], 4), "missed_nearby": count}
    best = min(records, key=lambda s: (s["px"], s["time"]))
    return {"frame": best["frame"], "time_s": round(best["time"], 4), "missed_nearby": 0}


def summary(records: list[dict]) -> dict:
    """The report's figures from `strikes`' records."""
    if not records:
        return {"strikes": 0, "visible": 0, "fraction": 1.0, "median_px": 0.0, "worst_passages": []}
    seen = sum(s["visible"] for s in records)
    return {
        "strikes": len(records),
        "visible": seen,
        "fraction": round(seen / len(records), 4),
        "in_view": round(sum(s["in_view"] for s in records) / len(records), 4),
        "unoccluded": round(sum(s["unoccluded"] for s in records) / len(records), 4),
        "median_px": round(statistics.median(s["px"] for s in records), 2),
        "min_px": round(min(s["px"] for s in records), 2),
        "edge_margin": EDGE_MARGIN,
        "reference_size": list(REF_SIZE),
        "passage_s": PASSAGE_S,
        "worst_passages": _passages(records),
        "least_visible": _least_visible(records),
    }


def measure(scene: bpy.types.Scene) -> tuple[dict, list[dict]]:
    """(summary, per-note records) of `scene`; the least-visible frame is stored on the scene for the look
    check (`renderlab_least_visible_frame`)."""
    records = strikes(scene)
    figures = summary(records)
    if records:
        scene["renderlab_least_visible_frame"] = figures["least_visible"]["frame"]
        scene["renderlab_strikes_visible"] = figures["fraction"]
    return figures, records

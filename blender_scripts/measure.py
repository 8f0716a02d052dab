"""Measure a built scene from its F-curves alone (works on a freshly opened .blend).

- impact timing: per struck note, the sub-frame where the marble's lowest point meets the top of the
  note's element (coarse scan at 8 steps per frame within a frame of the note, then golden-section
  refinement of the V-shaped gap), turned back into song time and compared with the note time stored
  on the marble (a chain's marble stores both of its notes);
- separation: every pair of marbles in play at the same time, sampled at 8 steps per frame;
- clearance: no marble sample sinks into any element (sphere-box distance < radius - 0.1 mm);
- reactions: each element's own motion (delta transforms) at every contact on it, which must be 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix, Vector

from blender_scripts.planner import STEPS_PER_FRAME
from blender_scripts.scene import channelbag_fcurves

GOLDEN = (math.sqrt(5) - 1) / 2
PENETRATION_TOL = 1e-4


@dataclass
class Track:
    obj: bpy.types.Object
    loc: list  # three F-curves
    life: tuple[float, float]  # frames in play


def _tracks(scene: bpy.types.Scene) -> list[Track]:
    out = []
    for obj in sorted(scene.collection.children["Marbles"].objects, key=lambda o: o.name):
        curves = {(fc.data_path, fc.array_index): fc for fc in channelbag_fcurves(obj)}
        hide = curves[("hide_render", 0)]
        keys = sorted((k.co[0], k.co[1]) for k in hide.keyframe_points)
        start = next(f for f, v in keys if v < 0.5)
        end = next(f for f, v in keys if f > start and v > 0.5)
        out.append(Track(obj, [curves[("location", i)] for i in range(3)], (start, end)))
    return out


def _rest(element: bpy.types.Object) -> Matrix:
    """The element's transform at rest: its reaction (delta transforms) is 0 at every contact."""
    return Matrix.LocRotScale(element.location, element.rotation_euler, element.scale)


def _top(element: bpy.types.Object) -> float:
    return max((_rest(element) @ Vector(c)).z for c in element.bound_box)


def reaction_at(element: bpy.types.Object, frame: float) -> float:
    """How far the element's reaction has moved it at `frame` (max |value| of its delta curves)."""
    curves = [fc for fc in channelbag_fcurves(element) if fc.data_path.startswith("delta_")]
    return max((abs(fc.evaluate(frame)) for fc in curves), default=0.0)


def _boxes(scene: bpy.types.Scene) -> tuple[list[str], np.ndarray, np.ndarray]:
    names, lo, hi = [], [], []
    for el in scene.collection.children["Instruments"].objects:
        pts = np.array([tuple(_rest(el) @ Vector(c)) for c in el.bound_box])
        names.append(el.name)
        lo.append(pts.min(axis=0))
        hi.append(pts.max(axis=0))
    return names, np.array(lo), np.array(hi)


def contact_frame(
    track: Track, top: float, radius: float, window: tuple[float, float] | None = None
) -> tuple[float, float]:
    """(frame, gap) of the marble's first touch of the plane z = top: the first interior local minimum
    of the gap (the V of the bounce), refined by golden-section search."""
    zc = track.loc[2]

    def gap(f: float) -> float:
        return zc.evaluate(f) - radius - top

    a, b = window or track.life
    a, b = max(a, track.life[0]), min(b, track.life[1])
    step = 1.0 / STEPS_PER_FRAME
    frames = np.arange(math.ceil(a / step), math.floor(b / step) + 1) * step
    gaps = [gap(f) for f in frames]
    i = next((j for j in range(1, len(gaps) - 1) if gaps[j - 1] >= gaps[j] < gaps[j + 1]), None)
    if i is None:
        i = int(np.argmin(gaps))
    lo, hi = frames[max(i - 1, 0)], frames[min(i + 1, len(frames) - 1)]
    c, d = hi - GOLDEN * (hi - lo), lo + GOLDEN * (hi - lo)
    gc, gd = gap(c), gap(d)
    for _ in range(44):  # 0.618^44 of a quarter frame: far below a microsecond
        if gc < gd:
            hi, d, gd = d, c, gc
            c = hi - GOLDEN * (hi - lo)
            gc = gap(c)
        else:
            lo, c, gc = c, d, gd
            d = lo + GOLDEN * (hi - lo)
            gd = gap(d)
    f = (lo + hi) / 2
    return f, gap(f)


def impacts(scene: bpy.types.Scene) -> list[dict]:
    """Per struck note: the measured contact time (song seconds) and its error against the note. A
    marble strikes one note, or two in a chain; each contact is searched within a frame of its note."""
    fps = scene.render.fps / scene.render.fps_base
    offset = float(scene["renderlab_offset_s"])
    radius = float(scene["renderlab_marble_radius"])
    objects = bpy.data.objects
    out = []
    for tr in _tracks(scene):
        shift = float(tr.obj["shift_s"])
        for index, t_note, name in zip(
            tr.obj["hit_notes"], tr.obj["hit_times"], tr.obj["hit_elements"], strict=True
        ):
            el = objects[name]
            planned = 1 + (t_note + shift + offset) * fps
            f, g = contact_frame(tr, _top(el), radius, (planned - 1.0, planned + 1.0))
            x, y = tr.loc[0].evaluate(f), tr.loc[1].evaluate(f)
            dims = el.dimensions
            on_surface = abs(x - el.location.x) <= dims.x / 2 and abs(y - el.location.y) <= dims.y / 2
            t = (f - 1) / fps - offset - shift
            out.append(
                {
                    "marble": tr.obj.name,
                    "note_index": int(index),
                    "element": el.name,
                    "note_time": float(t_note),
                    "impact_time": t,
                    "error": abs(t - float(t_note)),
                    "gap_m": g,
                    "on_surface": on_surface,
                    "surface_moved": reaction_at(el, f),  # 0: the element is at rest at the contact
                    "in_scene": 1.0 <= f <= scene.frame_end + 1,
                }
            )
    return out


def _samples(tr: Track) -> tuple[int, np.ndarray]:
    k0 = math.ceil(tr.life[0] * STEPS_PER_FRAME)
    k1 = math.floor(tr.life[1] * STEPS_PER_FRAME - 1e-9)
    frames = np.arange(k0, k1 + 1) / STEPS_PER_FRAME
    pos = np.array([[fc.evaluate(f) for fc in tr.loc] for f in frames]).reshape(-1, 3)
    return k0, pos


def clearance(scene: bpy.types.Scene) -> dict:
    """Min marble-marble distance (and how many sampled pairs come closer than 2 radii), and how
    many marble samples sink into an element, all from the F-curves at 8 steps per frame."""
    radius = float(scene["renderlab_marble_radius"])
    tracks = _tracks(scene)
    sampled = sorted((_samples(tr) + (tr.obj.name,) for tr in tracks), key=lambda s: s[0])
    names, lo, hi = _boxes(scene)
    best, violations, pairs, inside = math.inf, 0, 0, []
    for i, (ka, pa, na) in enumerate(sampled):
        out = np.maximum(np.maximum(lo[None] - pa[:, None], 0), pa[:, None] - hi[None])
        dist = np.sqrt((out**2).sum(axis=2))  # sample x element
        bad = np.argwhere(dist < radius - PENETRATION_TOL)
        inside += [(na, names[j]) for j in sorted({int(j) for _, j in bad})]
        for kb, pb, _ in sampled[i + 1 :]:
            if kb > ka + len(pa) - 1:
                break
            s0, s1 = kb - ka, min(len(pa), kb - ka + len(pb))
            if s1 <= s0:
                continue
            d = np.sqrt(((pa[s0:s1] - pb[: s1 - s0]) ** 2).sum(axis=1))
            pairs += 1
            best = min(best, float(d.min()))
            violations += int(d.min() < 2 * radius - 1e-6)
    return {
        "min_distance_m": best,
        "radius_m": radius,
        "pairs_checked": pairs,
        "pairs_closer_than_2r": violations,
        "element_penetrations": inside,
        "samples_per_frame": STEPS_PER_FRAME,
    }

"""Turn a marble plan into a Blender scene with Blender's own data API (no operators in the hot path).

Time: song time t (the MIDI clock) maps to frame 1 + (t + offset) * fps; offset is the lead-in of the
main scene (so every launch is on screen) and 0 in the loop. Each marble path is keyed at launch, at the
exact (sub-frame) contact and at the collector, with FREE Bezier handles placed at 1/3 of each segment
along the marble's velocity: a cubic Bezier with those handles *is* the parabola, so Blender's own
interpolation reproduces the analytic flight (to float precision) and never dips into the element.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import bpy  # first: bmesh and mathutils only become importable once bpy is loaded

# isort: split
import bmesh
import numpy as np
from bpy_extras import anim_utils
from mathutils import Matrix, Vector

from blender_scripts import camera_rig, environment, materials, reactions, render
from blender_scripts.arrangement import Arrangement
from blender_scripts.layout import CYMBALS, FLOOR_Z, TIER_DY, TIER_DZ, TIER_TRAY, Element, Layout, drum_sound
from blender_scripts.planner import FLIGHT_TIMES, LAUNCH_Y, LAUNCH_Z, G, Marble, Plan

FLASH_DECAY_S = 0.15
FLASH_FLOOR = 0.02  # emission strength below this does not show
EMISSION = "Emission Strength"


def reset() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _collection(scene: bpy.types.Scene, name: str) -> bpy.types.Collection:
    coll = bpy.data.collections.new(name)
    scene.collection.children.link(coll)
    return coll


def _material(name: str, color: Iterable[float], metallic: float = 0.0, roughness: float = 0.4):
    mat = bpy.data.materials.new(name)
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    rgba = (*color, 1.0)
    bsdf.inputs["Base Color"].default_value = rgba
    bsdf.inputs["Metallic"].default_value = metallic
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Emission Color"].default_value = rgba
    bsdf.inputs[EMISSION].default_value = 0.0
    mat.diffuse_color = rgba
    return mat


def _box_mesh(name: str, sx: float, sy: float, sz: float, top: float) -> bpy.types.Mesh:
    """Axis-aligned box centred on x/y whose top face is at z=top."""
    xs, ys = (-sx / 2, sx / 2), (-sy / 2, sy / 2)
    zs = (top - sz, top)
    verts = [(x, y, z) for z in zs for y in ys for x in xs]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    return mesh


def _cylinder_mesh(name: str, radius: float, depth: float, top: float, segments: int = 32) -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    bmesh.ops.create_cone(bm, cap_ends=True, segments=segments, radius1=radius, radius2=radius, depth=depth)
    bmesh.ops.translate(bm, verts=bm.verts, vec=(0.0, 0.0, top - depth / 2))
    bm.to_mesh(mesh)
    bm.free()
    return mesh


def _strings_mesh(name: str, lanes, length: float, top: float, r: float) -> bpy.types.Mesh:
    """One taut string per lane along y (a course, like a piano's unison strings), tops at z=top."""
    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    thick = max(0.004, 0.25 * r)
    for x in lanes:
        made = bmesh.ops.create_cone(
            bm, cap_ends=True, segments=10, radius1=thick, radius2=thick, depth=length,
            matrix=Matrix.Translation((x, 0.0, top - thick)) @ Matrix.Rotation(math.pi / 2, 4, "X"),
        )  # fmt: skip
        del made
    bm.to_mesh(mesh)
    bm.free()
    return mesh


def _sort(seq, key) -> None:
    """Reorder a BMesh sequence by `key` (BMElemSeq.sort wants a number: each element's rank)."""
    rank = {elem: i for i, elem in enumerate(sorted(seq, key=key))}
    seq.sort(key=lambda elem: rank[elem])
    seq.index_update()


def _sphere_mesh(radius: float) -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new("marble")
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=24, v_segments=12, radius=radius)
    # create_uvsphere's face order follows memory addresses (it differs from one process to the next) and
    # Cycles builds its BVH in the mesh's order: two builds of one song rendered reflections a little apart
    # wherever a ray grazed an edge. Sorted, every build makes the same mesh.
    _sort(bm.verts, lambda v: (round(v.co.z, 7), round(v.co.y, 7), round(v.co.x, 7)))
    for seq in (bm.edges, bm.faces):
        _sort(seq, lambda e: sorted(v.index for v in e.verts))
    bm.to_mesh(mesh)
    bm.free()
    for poly in mesh.polygons:
        poly.use_smooth = True
    return mesh


def _spans(lay: Layout, pad: float, tier: int = 0) -> list[tuple[Element, float, float]]:
    """(element, x_lo, x_hi) of one tier's row: each element's share of the row, from half-way to its
    neighbours (the row's ends `pad` beyond the end elements), so segments under them meet."""
    row = sorted((e for e in lay.elements.values() if e.tier == tier), key=lambda e: e.x)
    lo, hi = _row_ends(lay, tier)
    cuts = [lo - pad, *((a.x + b.x) / 2 for a, b in itertools.pairwise(row)), hi + pad]
    return [(el, cuts[i], cuts[i + 1]) for i, el in enumerate(row)]


def _row_ends(lay: Layout, tier: int) -> tuple[float, float]:
    """x of a tier's row ends (one tier: the layout's)."""
    if lay.tiers == 1:
        return lay.x_min, lay.x_max
    row = [e for e in lay.elements.values() if e.tier == tier]
    return min(e.x - e.width / 2 for e in row), max(e.x + e.width / 2 for e in row)


LIFT_H = 0.5  # the return lift's top over the back tier's launchers
LIFT_BEHIND = 0.35  # and how far behind them it stands (behind their rack)
SHUTTER = 0.5  # frames the shutter stays open: a 180-degree shutter, the film look, at any fps


def _motion_blur(scene: bpy.types.Scene, marbles: bpy.types.Collection) -> None:
    """Cycles motion blur on the marbles only: a fast marble reads as a streak at 60 fps, while the
    instruments' reactions and the camera move stay sharp (their blur would only soften the frame)."""
    scene.render.use_motion_blur = True
    scene.render.motion_blur_shutter = SHUTTER
    scene.render.motion_blur_position = "CENTER"  # centred on the frame: a strike is blurred both ways
    moving = set(marbles.all_objects)
    for obj in scene.objects:
        obj.cycles.use_motion_blur = obj in moving


INTERPOLATION = {"CONSTANT": 0, "LINEAR": 1, "BEZIER": 2}  # the enum's values, for foreach_set
FREE = 0


def _set_keys(fc: bpy.types.FCurve, frames, values, interpolation: str, *, left=None, right=None) -> None:
    """Keys with explicit interpolation and FREE handles (never recomputed by Blender)."""
    n = len(frames)
    co = np.column_stack([np.asarray(frames, float), np.asarray(values, float)])
    kp = fc.keyframe_points
    kp.add(n)
    kp.foreach_set("interpolation", [INTERPOLATION[interpolation]] * n)
    kp.foreach_set("handle_left_type", [FREE] * n)
    kp.foreach_set("handle_right_type", [FREE] * n)
    kp.foreach_set("co", co.ravel())
    kp.foreach_set("handle_left", (np.asarray(left, float) if left else co - [0.3, 0.0]).ravel())
    kp.foreach_set("handle_right", (np.asarray(right, float) if right else co + [0.3, 0.0]).ravel())


class SceneBuilder:
    def __init__(self, plan: Plan, layout: Layout, arrangement: Arrangement, song_name: str, fps: int):
        self.plan, self.layout, self.arr, self.fps = plan, layout, arrangement, fps
        self.song_name = song_name

    def frame(self, t: float, offset: float) -> float:
        return 1.0 + (t + offset) * self.fps

    def build(self, variant: str, offset: float, frame_end: int):
        """variant 'main' (offset = lead-in) or 'loop' (offset 0, marbles copied across the seam)."""
        reset()
        scene = bpy.context.scene
        scene.name = f"{self.song_name}_{variant}"
        scene.render.fps = self.fps
        scene.frame_start, scene.frame_end = 1, frame_end
        scene["renderlab_variant"] = variant
        scene["renderlab_offset_s"] = offset
        scene["renderlab_period_s"] = self.plan.period
        scene["renderlab_marble_radius"] = self.plan.radius
        render.apply_settings(scene, render.DEFAULT_PRESET)  # render.py owns engine, size and samples
        self._world(scene)
        instruments = _collection(scene, "Instruments")
        marbles = _collection(scene, "Marbles")
        stage = _collection(scene, "Stage")
        elements = self._elements(instruments)
        period = self.plan.period if variant == "loop" else None
        self._flashes(elements, offset, period, frame_end)
        self._reactions(elements, offset, period)
        items = self.plan.loop_instances() if variant == "loop" else [(m, 0.0) for m in self.plan.marbles]
        self._marbles(marbles, items, offset)
        self._stage(stage, scene, items, offset)
        environment.build(_collection(scene, "Set"), self.layout)  # the boards and the backdrop around it
        self._camera(stage, scene, offset, frame_end, loop=variant == "loop")
        _motion_blur(scene, marbles)
        return scene

    def _world(self, scene: bpy.types.Scene) -> None:
        world = bpy.data.worlds.new("world")
        nodes, links = world.node_tree.nodes, world.node_tree.links
        bg = nodes["Background"]
        bg.inputs["Color"].default_value = (*self.arr.style.background, 1.0)
        bg.inputs["Strength"].default_value = 1.0
        # the camera sees the style's dark backdrop; chrome and metal reflect a brighter studio
        studio = nodes.new("ShaderNodeBackground")
        studio.inputs["Color"].default_value = (0.32, 0.33, 0.36, 1.0)
        path = nodes.new("ShaderNodeLightPath")
        mix = nodes.new("ShaderNodeMixShader")
        links.new(path.outputs["Is Camera Ray"], mix.inputs["Fac"])
        links.new(studio.outputs["Background"], mix.inputs[1])
        links.new(bg.outputs["Background"], mix.inputs[2])
        links.new(mix.outputs["Shader"], nodes["World Output"].inputs["Surface"])
        scene.world = world
        scene.view_settings.view_transform = "AgX"
        scene.view_settings.look = "AgX - Medium High Contrast"

    def _elements(self, coll: bpy.types.Collection) -> dict[str, bpy.types.Object]:
        out = {}
        for el in sorted(self.layout.all_elements(), key=lambda e: (e.y, e.x)):
            if el.is_pad:
                cymbal = drum_sound(el.pitch) in CYMBALS
                mesh = _cylinder_mesh(el.name, el.length / 2, 0.012 if cymbal else 0.06, el.top_z)
            elif el.instrument == "strings":
                mesh = _strings_mesh(el.name, el.lanes, el.length, el.top_z, self.plan.radius)
            else:
                mesh = _box_mesh(el.name, el.width, el.length, 0.025, el.top_z)
            mesh.materials.append(materials.material(el.name, materials.look_of(el)))
            obj = bpy.data.objects.new(el.name, mesh)
            obj.location = (el.x, el.y, 0.0)
            obj["instrument"], obj["pitch"] = el.instrument, el.pitch
            coll.objects.link(obj)
            out[el.name] = obj
        return out

    def _reactions(self, elements, offset: float, period: float | None) -> None:
        """Each element moves on its strikes (reactions.py): at rest at every contact."""
        strikes: dict[str, list[tuple[float, float]]] = {}
        by_name = {el.name: el for el in self.layout.all_elements()}
        for _, h in self.plan.hits():
            for shift in (0.0, -period) if period else (0.0,):
                strikes.setdefault(h.element.name, []).append((h.t + shift, h.note.velocity / 127))
        for name, hits in strikes.items():
            mo = reactions.motion(by_name[name])
            nxt = min(t for t, _ in hits) + 2 * period if period else None  # the first hit, next pass
            frames, values = reactions.curve(hits, mo, self.fps, offset, next_after=nxt)
            obj = elements[name]
            action = obj.animation_data.action if obj.animation_data else None
            if action is None:
                action = bpy.data.actions.new(f"{name}_react")
                obj.animation_data_create().action = action
            fc = action.fcurve_ensure_for_datablock(obj, mo.channel, index=mo.axis)
            _set_keys(fc, frames.tolist(), values.tolist(), "LINEAR")

    def _flashes(self, elements, offset: float, period: float | None, frame_end: int) -> None:
        """Emission that jumps at each strike and decays: the element's visible reaction."""
        strikes: dict[str, list[tuple[float, float]]] = {}
        for _, h in self.plan.hits():
            for shift in (0.0, -period) if period else (0.0,):  # the loop wraps tails into its start
                strikes.setdefault(h.element.name, []).append((h.t + shift, h.note.velocity / 127))
        peak = self.arr.style.flash_strength
        for name, obj in elements.items():
            hits = sorted(strikes.get(name, []))
            f = np.arange(1, frame_end + 1, dtype=float)
            t = (f - 1) / self.fps - offset
            env = np.zeros_like(t)
            # keyed until it fades below FLASH_FLOOR (invisible): fewer keys, less memory on long songs
            span = int(FLASH_DECAY_S * math.log(max(peak, 1e-3) / FLASH_FLOOR) * self.fps) + 2
            for th, vel in hits:
                i = int(np.searchsorted(t, th))
                env[i : i + span] += peak * vel * np.exp(-(t[i : i + span] - th) / FLASH_DECAY_S)
            env[env < FLASH_FLOOR] = 0.0
            keep = np.ones_like(env, dtype=bool)
            keep[1:-1] = (env[1:-1] != env[:-2]) | (env[1:-1] != env[2:])  # drop the middle of flat runs
            nt = obj.active_material.node_tree
            action = bpy.data.actions.new(f"{name}_flash")
            nt.animation_data_create().action = action
            fc = action.fcurve_ensure_for_datablock(
                nt, f'nodes["Principled BSDF"].inputs["{EMISSION}"].default_value'
            )
            _set_keys(fc, f[keep].tolist(), env[keep].tolist(), "LINEAR")

    def _marbles(self, coll, items: list[tuple[Marble, float]], offset: float) -> None:
        mesh = _sphere_mesh(self.plan.radius)
        mesh.materials.append(_material("marble", self.arr.style.marble_color, 1.0, 0.06))  # chrome
        for m, shift in items:
            suffix = "" if shift == 0 else ("_next" if shift > 0 else "_prev")
            obj = bpy.data.objects.new(f"marble_{m.note.index:05d}{suffix}", mesh)
            obj["note_index"], obj["note_time"], obj["shift_s"] = m.note.index, m.note.time, shift
            obj["element"], obj["track"], obj["pitch"] = m.element.name, m.note.track, m.note.pitch
            # every note this marble strikes, in order (two for a chain: the bar, then its twin)
            obj["hit_notes"] = [h.note.index for h in m.hits]
            obj["hit_times"] = [h.t for h in m.hits]
            obj["hit_elements"] = [h.element.name for h in m.hits]
            coll.objects.link(obj)
            self._animate(obj, m, shift + offset)

    def _animate(self, obj: bpy.types.Object, m: Marble, offset: float) -> None:
        fps = self.fps
        # knots: launch, every contact, the collector; each segment between them is one parabola
        # The planner owns the flight: the exit state is its, not a re-integration here.
        end, v_end = m.positions([m.t_exit])[0], m.velocities([m.t_exit])[0]
        times = [m.t_launch, *(h.t for h in m.hits), m.t_exit]
        points = [m.launch, *(h.point for h in m.hits), end]
        leaving = [m.v0, *(h.v_out for h in m.hits), v_end]  # velocity at the start of the next segment
        arriving = [m.v0, *(h.v_in for h in m.hits), v_end]  # velocity at the end of the last one
        frames = [self.frame(t, offset) for t in times]
        h = [(b - a) / 3 for a, b in zip(frames, frames[1:], strict=False)]
        h_left, h_right = [h[0], *h], [*h, h[-1]]  # handle lengths either side of each knot
        f0, f2 = frames[0], frames[-1]
        action = bpy.data.actions.new(obj.name)
        obj.animation_data_create().action = action
        for axis in range(3):
            p = [pt[axis] for pt in points]
            left = [
                (f - hl, v - a[axis] / fps * hl)
                for f, v, a, hl in zip(frames, p, arriving, h_left, strict=True)
            ]
            right = [
                (f + hr, v + b[axis] / fps * hr)
                for f, v, b, hr in zip(frames, p, leaving, h_right, strict=True)
            ]
            fc = action.fcurve_ensure_for_datablock(obj, "location", index=axis)
            _set_keys(fc, frames, p, "BEZIER", left=left, right=right)
        for prop in ("hide_render", "hide_viewport"):  # hidden until launch and once in the collector
            fc = action.fcurve_ensure_for_datablock(obj, prop)
            _set_keys(fc, (f0 - 1.0, f0, f2), (1.0, 0.0, 1.0), "CONSTANT")
        obj.location = tuple(m.launch)

    def _stage(self, coll, scene: bpy.types.Scene, items: list[tuple[Marble, float]], offset: float) -> None:
        lay, r = self.layout, self.plan.radius
        width = lay.x_max - lay.x_min
        centre = (lay.x_max + lay.x_min) / 2
        # tubes whose mouth is the launch point, aimed along the typical launch velocity; each kicks
        # forward on every launch from it
        tube = _cylinder_mesh("launcher", r * 1.4, 0.35, -r * 1.2, 16)
        tube.materials.append(_material("launcher", (0.55, 0.57, 0.62), 1.0, 0.25))
        aim = math.atan2(1.0 / FLIGHT_TIMES[0], (-LAUNCH_Z / FLIGHT_TIMES[0] + 0.5 * G * FLIGHT_TIMES[0]))
        launches: dict[tuple[float, int], list[float]] = {}
        for m, shift in items:
            launches.setdefault((round(float(m.launch[0]), 9), m.element.tier), []).append(m.t_launch + shift)
        columns = {
            (round(el.x + off, 9), el.tier): (el.launch_y, el.launch_z)
            for el in lay.elements.values()
            for off in el.lanes
        }
        for i, key in enumerate(sorted(columns)):
            obj = bpy.data.objects.new(f"launcher_{i:03d}", tube)
            obj.location = (key[0], *columns[key])
            obj.rotation_euler = (-aim, 0.0, 0.0)
            coll.objects.link(obj)
            self._kicks(obj, sorted(launches.get(key, [])), offset)
        # the launch rack and the rail under the bars follow the row's arc, one segment per element
        rack_mat = _material("launch_rack", (0.12, 0.12, 0.14), 0.6, 0.35)
        rail_mat = _material("rail", (0.18, 0.1, 0.05), 0.0, 0.5)
        for tier in range(lay.tiers):
            ty, tz = -tier * TIER_DY, tier * TIER_DZ
            for name, sy, sz, top, y_off, mat, pad in (
                ("launch_rack", 0.16, 0.3, LAUNCH_Z - 0.12, LAUNCH_Y - 0.05, rack_mat, 0.15),
                ("rail", 0.04, 0.3, -0.025, 0.0, rail_mat, 0.1),
            ):
                for el, lo, hi in _spans(lay, pad, tier):
                    # a chord of the arc from lo to hi: the segments meet end to end along the curve
                    y_lo, y_hi = lay.arc_y(lo) + ty, lay.arc_y(hi) + ty
                    seg = bpy.data.objects.new(
                        f"{name}_{el.name}", _box_mesh(name, math.hypot(hi - lo, y_hi - y_lo), sy, sz, top)
                    )
                    seg.data.materials.append(mat)
                    seg.location = ((lo + hi) / 2, (y_lo + y_hi) / 2 + y_off, tz)
                    seg.rotation_euler = (0.0, 0.0, math.atan2(y_hi - y_lo, hi - lo))
                    coll.objects.link(seg)
            if tier:
                self._tier_legs(coll, tier, rack_mat)
        tray_mat = _material("collector", (0.1, 0.08, 0.07), 0.0, 0.45)
        for tier in range(lay.tiers):
            # the catch tray spans every marble's landing (chains land farther, beyond the twin bars)
            ty = -tier * TIER_DY
            lo, hi = _row_ends(lay, tier)
            floor = next(e.floor_z for e in lay.elements.values() if e.tier == tier)
            landing = [float(m.positions([m.t_exit])[0][1]) for m, _ in items if m.element.tier == tier]
            if tier == 0:
                near, far = (
                    min(0.35, min(landing, default=1.15) - 0.2),
                    max(1.95, max(landing, default=1.15) + 0.2),
                )
            else:  # an upper tier's tray: only as deep as its landings, over the tier in front
                near, far = min(landing, default=ty) - 0.1, max(landing, default=ty) + 0.1
            tray = bpy.data.objects.new(
                "collector" if tier == 0 else f"collector_{tier}",
                _box_mesh("collector", hi - lo + 0.3, far - near, TIER_TRAY, floor),
            )
            tray.data.materials.append(tray_mat)
            tray.location = ((lo + hi) / 2, (near + far) / 2, 0.0)
            coll.objects.link(tray)
        for twin in lay.twins.values():  # each twin bar stands on a post, narrower than its lane spacing
            post = bpy.data.objects.new(
                f"{twin.name}_post",
                _box_mesh(
                    f"{twin.name}_post", 0.5 * twin.width, 0.03, twin.top_z - twin.floor_z - 0.03, -0.025
                ),
            )
            post.data.materials.append(_material(f"{twin.name}_post", (0.18, 0.1, 0.05), 0.0, 0.5))
            post.location = (twin.x, twin.y, twin.top_z)
            coll.objects.link(post)
        # the return path: a trough under the stage carries caught marbles back to the launch rack
        trough = bpy.data.objects.new(
            "return_trough", _box_mesh("return_trough", width + 0.2, 2.2, 0.02, 0.0)
        )
        trough.data.materials.append(_material("return_trough", (0.08, 0.08, 0.09), 0.8, 0.4))
        trough.location = (centre, 0.05, FLOOR_Z - 0.02)
        trough.rotation_euler = (math.atan2(-0.2, 2.2), 0.0, 0.0)
        coll.objects.link(trough)
        if lay.tiers > 1:
            self._return_lift(coll, rack_mat)
        self._lights(coll, width, centre, lay.tiers)

    def _return_lift(self, coll, mat) -> None:
        """Behind the back tier, the lift that carries caught marbles up to the upper tiers' launchers: a
        wall LIFT_H over their mouths, as wide as the widest tier (it also stands where the frame above a
        tiered machine would otherwise show only the backdrop)."""
        lay = self.layout
        back = lay.tiers - 1
        lo = min(_row_ends(lay, t)[0] for t in range(lay.tiers)) - 0.3
        hi = max(_row_ends(lay, t)[1] for t in range(lay.tiers)) + 0.3
        top = back * TIER_DZ + LAUNCH_Z + LIFT_H
        lift = bpy.data.objects.new(
            "return_lift", _box_mesh("return_lift", hi - lo, 0.1, top - environment.STAGE_Z, top)
        )
        lift.data.materials.append(mat)
        lift.location = ((lo + hi) / 2, LAUNCH_Y - back * TIER_DY - LIFT_BEHIND, 0.0)
        coll.objects.link(lift)

    def _tier_legs(self, coll, tier: int, mat) -> None:
        """An upper tier stands on legs at its row's ends, under its rail and its launch rack, down to the
        boards (behind the tier in front: nothing of it ever reaches that far back)."""
        lo, hi = _row_ends(self.layout, tier)
        ty, tz = -tier * TIER_DY, tier * TIER_DZ
        for y, bottom in ((ty, tz - 0.325), (ty + LAUNCH_Y - 0.05, tz + LAUNCH_Z - 0.42)):
            for side, x in (("l", lo - 0.1), ("r", hi + 0.1)):
                leg = bpy.data.objects.new(
                    f"tier_{tier}_leg_{side}_{'rail' if y == ty else 'rack'}",
                    _box_mesh("tier_leg", 0.05, 0.05, bottom - environment.STAGE_Z, bottom),
                )
                leg.data.materials.append(mat)
                leg.location = (x, y, 0.0)
                coll.objects.link(leg)

    def _kicks(self, obj, launches: list[float], offset: float) -> None:
        """The launcher jolts forward along its bore on each launch (where launches are far enough apart)."""
        frames, values, last = [], [], -math.inf
        for t in launches:
            f = self.frame(t, offset)
            if f - 2.0 <= last:
                continue
            frames += [f - 2.0, f, f + 4.0]
            values += [0.0, 0.02, 0.0]
            last = f + 4.0
        if not frames:
            return
        action = bpy.data.actions.new(f"{obj.name}_kick")
        obj.animation_data_create().action = action
        _set_keys(
            action.fcurve_ensure_for_datablock(obj, "delta_location", index=1), frames, values, "LINEAR"
        )

    def _camera(self, coll, scene, offset: float, frame_end: int, *, loop: bool) -> None:
        cam_cfg = self.arr.camera
        data = bpy.data.cameras.new("camera")
        data.lens = cam_cfg.lens
        data.sensor_width = camera_rig.SENSOR_MM
        data.clip_end = 400.0
        cam = bpy.data.objects.new("camera", data)
        target = bpy.data.objects.new("camera_target", None)
        coll.objects.link(target)
        coll.objects.link(cam)
        scene.camera = cam
        data.dof.use_dof = True
        data.dof.focus_object = target
        data.dof.aperture_fstop = 2.8
        if cam_cfg.location:  # a fixed camera from the arrangement
            target.location = Vector(cam_cfg.look_at or (0.0, -0.3, 0.2))
            cam.location = cam_cfg.location
            cam.rotation_euler = (target.location - cam.location).to_track_quat("-Z", "Y").to_euler()
            return
        start, end = (0.0, self.plan.period) if loop else (-offset, (frame_end - 1) / self.fps - offset)
        rig = camera_rig.path(self.plan, self.layout, cam_cfg.lens, start=start, end=end, loop=loop)
        frames = np.array([self.frame(t, offset) for t in rig.times])
        for obj, values in ((target, rig.target), (cam, rig.location)):
            action = bpy.data.actions.new(f"{obj.name}_move")
            obj.animation_data_create().action = action
            for axis in range(3):
                left, right = camera_rig.handles(frames, values[:, axis], rig.periodic)
                fc = action.fcurve_ensure_for_datablock(obj, "location", index=axis)
                _set_keys(fc, frames, values[:, axis], "BEZIER", left=left.tolist(), right=right.tolist())
            obj.location = tuple(values[0])
        track = cam.constraints.new("TRACK_TO")
        track.target = target
        track.track_axis, track.up_axis = "TRACK_NEGATIVE_Z", "UP_Y"
        scene["renderlab_min_marble_px"] = camera_rig.MIN_MARBLE_PX

    def _lights(self, coll, width: float, centre: float, tiers: int = 1) -> None:
        back_y, back_z = -(tiers - 1) * TIER_DY, (tiers - 1) * TIER_DZ  # the back tier's row
        key = bpy.data.lights.new("key", "AREA")
        key.energy = 300.0 + 80.0 * width
        key.size = max(1.5, width)
        key.shape = "RECTANGLE"
        key.size_y = 1.5
        obj = bpy.data.objects.new("key", key)
        obj.location = (centre + 0.5, 1.2, 2.6 + back_z)
        obj.rotation_euler = (math.radians(30), 0.0, 0.0)
        coll.objects.link(obj)
        rim = bpy.data.lights.new("rim", "AREA")
        rim.energy = 150.0 + 50.0 * width
        rim.size = max(1.0, width)
        obj = bpy.data.objects.new("rim", rim)
        obj.location = (centre, -2.2 + back_y, 1.6 + back_z)
        obj.rotation_euler = (math.radians(-55), 0.0, 0.0)
        coll.objects.link(obj)
        sun = bpy.data.lights.new("fill", "SUN")
        sun.energy = 0.25
        obj = bpy.data.objects.new("fill", sun)
        obj.rotation_euler = (math.radians(50), 0.0, math.radians(-35))
        coll.objects.link(obj)

    def add_sound(self, scene: bpy.types.Scene, wav_path: str, wav_name: str) -> None:
        """The song's WAV as a sound strip at frame 1, referenced next to the .blend."""
        seq = scene.sequence_editor_create()
        strip = seq.strips.new_sound("song", wav_path, channel=1, frame_start=1)
        strip.sound.filepath = f"//{wav_name}"
        scene.render.ffmpeg.audio_codec = "AAC"


def channelbag_fcurves(obj: bpy.types.ID):
    """The F-curves animating obj through its assigned action slot (Blender 5 layered actions)."""
    bag = anim_utils.animdata_get_channelbag_for_assigned_slot(obj.animation_data)
    return bag.fcurves if bag else []

"""Turn a marble plan into a Blender scene with Blender's own data API (no operators in the hot path).

Time: song time t (the MIDI clock) maps to frame 1 + (t + offset) * fps; offset is the lead-in of the
main scene (so every launch is on screen) and 0 in the loop. Each marble path is keyed at launch, at the
exact (sub-frame) contact and at the collector, with FREE Bezier handles placed at 1/3 of each segment
along the marble's velocity: a cubic Bezier with those handles *is* the parabola, so Blender's own
interpolation reproduces the analytic flight (to float precision) and never dips into the element.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterable

import bpy  # first: bmesh and mathutils only become importable once bpy is loaded

# isort: split
import bmesh
import numpy as np
from bpy_extras import anim_utils
from mathutils import Vector

from blender_scripts import render
from blender_scripts.arrangement import Arrangement
from blender_scripts.layout import CYMBALS, Element, Layout, drum_sound
from blender_scripts.planner import FLIGHT_TIMES, FLOOR_Z, LAUNCH_Y, LAUNCH_Z, G, Marble, Plan

FLASH_DECAY_S = 0.15
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


def _sphere_mesh(radius: float) -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new("marble")
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=24, v_segments=12, radius=radius)
    bm.to_mesh(mesh)
    bm.free()
    for poly in mesh.polygons:
        poly.use_smooth = True
    return mesh


def _element_color(el: Element, layout: Layout) -> tuple[float, float, float]:
    if el.is_pad:
        return (0.55, 0.45, 0.2) if drum_sound(el.pitch) in CYMBALS else (0.7, 0.1, 0.12)
    hue = {"marimba": 0.05, "vibraphone": 0.55, "glockenspiel": 0.75}[el.instrument]
    hue += 0.35 * (el.x - layout.x_min) / max(1e-6, layout.x_max - layout.x_min)
    return colorsys.hsv_to_rgb(hue % 1.0, 0.75, 0.8)


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

    def build(self, variant: str, offset: float, frame_end: int, wav_path: str, wav_name: str):
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
        items = self.plan.loop_instances() if variant == "loop" else [(m, 0.0) for m in self.plan.marbles]
        self._marbles(marbles, items, offset)
        self._stage(stage, scene)
        self._sound(scene, wav_path, wav_name)
        return scene

    def _world(self, scene: bpy.types.Scene) -> None:
        world = bpy.data.worlds.new("world")
        bg = world.node_tree.nodes["Background"]
        bg.inputs["Color"].default_value = (*self.arr.style.background, 1.0)
        bg.inputs["Strength"].default_value = 1.0
        scene.world = world

    def _elements(self, coll: bpy.types.Collection) -> dict[str, bpy.types.Object]:
        out = {}
        for el in sorted(self.layout.elements.values(), key=lambda e: e.x):
            if el.is_pad:
                mesh = _cylinder_mesh(el.name, el.length / 2, 0.06, el.top_z)
            else:
                mesh = _box_mesh(el.name, el.width, el.length, 0.025, el.top_z)
            mesh.materials.append(_material(el.name, _element_color(el, self.layout), 0.2, 0.35))
            obj = bpy.data.objects.new(el.name, mesh)
            obj.location = (el.x, 0.0, 0.0)
            obj["instrument"], obj["pitch"] = el.instrument, el.pitch
            coll.objects.link(obj)
            out[el.name] = obj
        return out

    def _flashes(self, elements, offset: float, period: float | None, frame_end: int) -> None:
        """Emission that jumps at each strike and decays: the element's visible reaction."""
        strikes: dict[str, list[tuple[float, float]]] = {}
        for m in self.plan.marbles:
            for shift in (0.0, -period) if period else (0.0,):  # the loop wraps tails into its start
                strikes.setdefault(m.element.name, []).append((m.t_impact + shift, m.note.velocity / 127))
        peak = self.arr.style.flash_strength
        for name, obj in elements.items():
            hits = sorted(strikes.get(name, []))
            f = np.arange(1, frame_end + 1, dtype=float)
            t = (f - 1) / self.fps - offset
            env = np.zeros_like(t)
            span = int(FLASH_DECAY_S * math.log(1e4 * max(peak, 1e-3)) * self.fps) + 2  # until < 1e-4
            for th, vel in hits:
                i = int(np.searchsorted(t, th))
                env[i : i + span] += peak * vel * np.exp(-(t[i : i + span] - th) / FLASH_DECAY_S)
            env[env < 1e-3] = 0.0
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
        mesh.materials.append(
            _material("marble", self.arr.style.marble_color, 0.35, 0.2)
        )  # reads on a dark stage
        for m, shift in items:
            suffix = "" if shift == 0 else ("_next" if shift > 0 else "_prev")
            obj = bpy.data.objects.new(f"marble_{m.note.index:05d}{suffix}", mesh)
            obj["note_index"], obj["note_time"], obj["shift_s"] = m.note.index, m.note.time, shift
            obj["element"], obj["track"], obj["pitch"] = m.element.name, m.note.track, m.note.pitch
            coll.objects.link(obj)
            self._animate(obj, m, shift + offset)

    def _animate(self, obj: bpy.types.Object, m: Marble, offset: float) -> None:
        fps = self.fps
        f0, f1, f2 = (self.frame(t, offset) for t in (m.t_launch, m.t_impact, m.t_exit))
        # The planner owns the flight: the exit state is its, not a re-integration here.
        end, v_end = m.positions([m.t_exit])[0], m.velocities([m.t_exit])[0]
        h_in, h_out = (f1 - f0) / 3, (f2 - f1) / 3
        action = bpy.data.actions.new(obj.name)
        obj.animation_data_create().action = action
        for axis in range(3):
            p = (m.launch[axis], m.impact[axis], end[axis])
            d_in = (m.v0[axis] / fps * h_in, m.v_in[axis] / fps * h_in)  # value change along each handle
            d_out = (m.v_out[axis] / fps * h_out, v_end[axis] / fps * h_out)
            fc = action.fcurve_ensure_for_datablock(obj, "location", index=axis)
            _set_keys(
                fc,
                (f0, f1, f2),
                p,
                "BEZIER",
                left=[
                    (f0 - h_in, p[0] - d_in[0]),
                    (f1 - h_in, p[1] - d_in[1]),
                    (f2 - h_out, p[2] - d_out[1]),
                ],
                right=[
                    (f0 + h_in, p[0] + d_in[0]),
                    (f1 + h_out, p[1] + d_out[0]),
                    (f2 + h_out, p[2] + d_out[1]),
                ],
            )
        for prop in ("hide_render", "hide_viewport"):  # hidden until launch and once in the collector
            fc = action.fcurve_ensure_for_datablock(obj, prop)
            _set_keys(fc, (f0 - 1.0, f0, f2), (1.0, 0.0, 1.0), "CONSTANT")
        obj.location = tuple(m.launch)

    def _stage(self, coll, scene: bpy.types.Scene) -> None:
        lay, r = self.layout, self.plan.radius
        width = lay.x_max - lay.x_min
        lanes = sorted({(el.x + off) for el in lay.elements.values() for off in el.lanes})
        # tubes whose mouth is the launch point, aimed along the typical launch velocity
        tube = _cylinder_mesh("launcher", r * 1.4, 0.35, -r * 1.2, 16)
        tube.materials.append(_material("launcher", (0.6, 0.62, 0.66), 1.0, 0.25))
        aim = math.atan2(1.0 / FLIGHT_TIMES[0], (-LAUNCH_Z / FLIGHT_TIMES[0] + 0.5 * G * FLIGHT_TIMES[0]))
        for i, x in enumerate(lanes):
            obj = bpy.data.objects.new(f"launcher_{i:03d}", tube)
            obj.location = (x, LAUNCH_Y, LAUNCH_Z)
            obj.rotation_euler = (-aim, 0.0, 0.0)
            coll.objects.link(obj)
        tray = bpy.data.objects.new("collector", _box_mesh("collector", width + 0.3, 1.6, 0.03, FLOOR_Z))
        tray.data.materials.append(_material("collector", (0.08, 0.08, 0.1), 0.0, 0.6))
        tray.location = (0.0, 1.15, 0.0)
        coll.objects.link(tray)
        floor = bpy.data.objects.new("floor", _box_mesh("floor", 40.0, 40.0, 0.01, FLOOR_Z - 0.04))
        floor.data.materials.append(_material("floor", (0.03, 0.03, 0.035), 0.0, 0.8))
        coll.objects.link(floor)
        rail = bpy.data.objects.new("rail", _box_mesh("rail", width + 0.2, 0.04, 0.3, -0.025))
        rail.data.materials.append(_material("rail", (0.1, 0.07, 0.05), 0.0, 0.5))
        rail.location = (0.0, 0.0, 0.0)
        coll.objects.link(rail)
        self._camera(coll, scene, width)
        self._lights(coll, width)

    def _camera(self, coll, scene, width: float) -> None:
        cam_cfg = self.arr.camera
        data = bpy.data.cameras.new("camera")
        data.lens = cam_cfg.lens
        cam = bpy.data.objects.new("camera", data)
        target = Vector(cam_cfg.look_at or (0.0, -0.3, 0.2))
        if cam_cfg.location:
            cam.location = cam_cfg.location
        else:  # wide enough for the row of elements plus launchers and collector
            half_fov = math.atan(data.sensor_width / 2 / data.lens)
            dist = max(width / 2 + 0.3, 1.25) / math.tan(half_fov)
            cam.location = target + Vector((0.0, 0.85, 0.42)).normalized() * dist
        cam.rotation_euler = (target - cam.location).to_track_quat("-Z", "Y").to_euler()
        coll.objects.link(cam)
        scene.camera = cam

    def _lights(self, coll, width: float) -> None:
        key = bpy.data.lights.new("key", "AREA")
        key.energy = 150.0 + 60.0 * width
        key.size = max(1.0, width)
        obj = bpy.data.objects.new("key", key)
        obj.location = (0.5, 0.8, 2.2)
        obj.rotation_euler = (math.radians(25), math.radians(10), 0.0)
        coll.objects.link(obj)
        sun = bpy.data.lights.new("fill", "SUN")
        sun.energy = 0.6
        obj = bpy.data.objects.new("fill", sun)
        obj.rotation_euler = (math.radians(50), 0.0, math.radians(-35))
        coll.objects.link(obj)

    def _sound(self, scene: bpy.types.Scene, wav_path: str, wav_name: str) -> None:
        """The song's WAV as a sound strip at frame 1, referenced next to the .blend."""
        seq = scene.sequence_editor_create()
        strip = seq.strips.new_sound("song", wav_path, channel=1, frame_start=1)
        strip.sound.filepath = f"//{wav_name}"
        scene.render.ffmpeg.audio_codec = "AAC"


def channelbag_fcurves(obj: bpy.types.ID):
    """The F-curves animating obj through its assigned action slot (Blender 5 layered actions)."""
    bag = anim_utils.animdata_get_channelbag_for_assigned_slot(obj.animation_data)
    return bag.fcurves if bag else []

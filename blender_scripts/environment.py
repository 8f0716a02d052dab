"""The set the machine stands on, procedural (Blender's own meshes and shader nodes, no downloaded assets).

A stage of dark wooden planks under the machine, reaching STAGE_BACK behind the launchers so that the
camera, which looks down at the machine from the audience side (+y), sees stage boards above the machine
rather than empty space; a cyclorama (a floor-to-wall sweep, as in a photo studio) closes the stage at the
back with a glowing gradient, from a warm band at the floor line up into night blue; spotlights throw pools
of light on the boards around the machine. Objects carry obj["renderlab_set"] = "stage" or "backdrop":
blender_scripts/background.py counts what the camera sees of the backdrop (and of nothing at all) as
empty background.
"""

from __future__ import annotations

import math

import bmesh
import bpy
from mathutils import Vector

from blender_scripts.layout import Layout
from blender_scripts.planner import FLOOR_Z, LAUNCH_Y

STAGE_Z = FLOOR_Z - 0.25  # the boards' top, under the collector and the return trough
STAGE_FRONT = 4.0  # y of the stage's front edge (the camera side)
STAGE_BACK = LAUNCH_Y - 4.5  # y where the boards meet the cyclorama's curve
STAGE_SIDE = 6.0  # metres of stage either side of the machine
CYC_RADIUS = 2.5  # the curve from the boards up into the wall: no visible corner
CYC_HEIGHT = 9.0  # the wall's top above the boards
PLANK_M = 0.18  # width of a board


def _noise(mat: bpy.types.Material, vector, scale: float, detail: float) -> bpy.types.Node:
    """A noise texture in `mat`'s tree, read at `vector` (a node output)."""
    noise = mat.node_tree.nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = scale
    noise.inputs["Detail"].default_value = detail
    mat.node_tree.links.new(vector, noise.inputs["Vector"])
    return noise


def _plank_material() -> bpy.types.Material:
    """Dark stained boards: a brick texture lays the planks (staggered joints), noise stretched along them
    gives the grain."""
    mat = bpy.data.materials.new("stage")
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    coord = nodes.new("ShaderNodeTexCoord")
    planks = nodes.new("ShaderNodeTexBrick")
    planks.offset, planks.offset_frequency = 0.5, 1
    planks.inputs["Scale"].default_value = 1.0
    planks.inputs["Brick Width"].default_value = 2.4  # boards along y: 2.4 m long, PLANK_M wide
    planks.inputs["Row Height"].default_value = PLANK_M
    planks.inputs["Mortar Size"].default_value = 0.004
    planks.inputs["Color1"].default_value = (0.075, 0.042, 0.026, 1.0)
    planks.inputs["Color2"].default_value = (0.05, 0.03, 0.02, 1.0)
    planks.inputs["Mortar"].default_value = (0.012, 0.008, 0.006, 1.0)
    swap = nodes.new("ShaderNodeMapping")  # the brick rows run along x: turn them to run along y
    swap.inputs["Rotation"].default_value = (0.0, 0.0, math.pi / 2)
    links.new(coord.outputs["Object"], swap.inputs["Vector"])
    links.new(swap.outputs["Vector"], planks.inputs["Vector"])
    grain_map = nodes.new("ShaderNodeMapping")
    grain_map.inputs["Scale"].default_value = (40.0, 1.0, 40.0)
    links.new(coord.outputs["Object"], grain_map.inputs["Vector"])
    grain = _noise(mat, grain_map.outputs["Vector"], scale=3.0, detail=4.0)
    mix = nodes.new("ShaderNodeMix")
    mix.data_type, mix.blend_type = "RGBA", "MULTIPLY"
    mix.inputs["Factor"].default_value = 0.5
    links.new(planks.outputs["Color"], mix.inputs["A"])
    links.new(grain.outputs["Color"], mix.inputs["B"])
    links.new(mix.outputs["Result"], bsdf.inputs["Base Color"])
    rough = nodes.new("ShaderNodeMapRange")
    rough.inputs["To Min"].default_value, rough.inputs["To Max"].default_value = 0.3, 0.6
    links.new(grain.outputs["Fac"], rough.inputs["Value"])
    links.new(rough.outputs["Result"], bsdf.inputs["Roughness"])
    mat.diffuse_color = (0.06, 0.035, 0.022, 1.0)
    return mat


def _backdrop_material() -> bpy.types.Material:
    """A glowing gradient up the wall (emission, so it reads the same under any key light): a warm band
    at the floor line fading into night blue, with soft clouds of noise so it is not a flat card."""
    mat = bpy.data.materials.new("backdrop")
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    for node in list(nodes):
        if node.bl_idname != "ShaderNodeOutputMaterial":
            nodes.remove(node)
    coord = nodes.new("ShaderNodeTexCoord")
    height = nodes.new("ShaderNodeSeparateXYZ")
    links.new(coord.outputs["Object"], height.inputs["Vector"])
    span = nodes.new("ShaderNodeMapRange")  # 0 at the floor line, 1 at the wall's top
    span.inputs["From Min"].default_value, span.inputs["From Max"].default_value = 0.0, CYC_HEIGHT * 0.6
    links.new(height.outputs["Z"], span.inputs["Value"])
    clouds = _noise(mat, coord.outputs["Object"], scale=0.35, detail=3.0)
    wobble = nodes.new("ShaderNodeMath")
    wobble.operation = "MULTIPLY_ADD"  # height + (clouds - 0.5) * 0.25
    wobble.inputs[1].default_value = 0.25
    offset = nodes.new("ShaderNodeMath")
    offset.operation = "SUBTRACT"
    offset.inputs[1].default_value = 0.5
    links.new(clouds.outputs["Fac"], offset.inputs[0])
    links.new(offset.outputs["Value"], wobble.inputs[0])
    links.new(span.outputs["Result"], wobble.inputs[2])
    ramp = nodes.new("ShaderNodeValToRGB")
    stops = ramp.color_ramp.elements
    stops[0].position, stops[0].color = 0.0, (0.14, 0.055, 0.022, 1.0)  # warm band at the floor line
    stops[1].position, stops[1].color = 1.0, (0.004, 0.006, 0.018, 1.0)  # night blue at the top
    mid = stops.new(0.3)
    mid.color = (0.035, 0.04, 0.11, 1.0)
    links.new(wobble.outputs["Value"], ramp.inputs["Fac"])
    glow = nodes.new("ShaderNodeEmission")
    glow.inputs["Strength"].default_value = 1.0
    links.new(ramp.outputs["Color"], glow.inputs["Color"])
    links.new(glow.outputs["Emission"], nodes["Material Output"].inputs["Surface"])
    mat.diffuse_color = (0.05, 0.04, 0.08, 1.0)
    return mat


def _cyclorama_mesh(width: float) -> bpy.types.Mesh:
    """A sweep across x: flat a little in front of the curve, a quarter circle of CYC_RADIUS, then the wall
    up to CYC_HEIGHT; in object space y = 0 is where the curve starts and z = 0 the boards' level."""
    profile = [(0.3, 0.0)]
    for k in range(13):
        a = k / 12 * math.pi / 2
        profile.append((-CYC_RADIUS * math.sin(a), CYC_RADIUS * (1 - math.cos(a))))
    profile.append((-CYC_RADIUS, CYC_HEIGHT))
    bm = bmesh.new()
    rows = [[bm.verts.new((x, y, z)) for y, z in profile] for x in (-width / 2, width / 2)]
    for i in range(len(profile) - 1):
        bm.faces.new((rows[0][i], rows[1][i], rows[1][i + 1], rows[0][i + 1]))
    mesh = bpy.data.meshes.new("backdrop")
    bm.to_mesh(mesh)
    bm.free()
    for poly in mesh.polygons:
        poly.use_smooth = True
    return mesh


def _spot(coll, name: str, at: tuple[float, float, float], aim: tuple[float, float, float], energy: float):
    light = bpy.data.lights.new(name, "SPOT")
    light.energy = energy
    light.spot_size = math.radians(40)
    light.spot_blend = 0.6
    light.shadow_soft_size = 0.3
    obj = bpy.data.objects.new(name, light)
    obj.location = at
    obj.rotation_euler = (Vector(aim) - Vector(at)).to_track_quat("-Z", "Y").to_euler()
    coll.objects.link(obj)
    return obj


def build(coll: bpy.types.Collection, layout: Layout) -> list[bpy.types.Object]:
    """The stage, the cyclorama and the lights on them, sized to the machine's row."""
    width = layout.x_max - layout.x_min
    centre = (layout.x_max + layout.x_min) / 2
    stage_w = width + 2 * STAGE_SIDE
    depth = STAGE_FRONT - STAGE_BACK + 0.3  # under the cyclorama's flat lip: no gap at the seam
    mesh = bpy.data.meshes.new("stage")
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=1.0)
    bmesh.ops.scale(bm, vec=(stage_w, depth, 0.1), verts=bm.verts)
    bmesh.ops.translate(bm, vec=(0.0, 0.0, -0.05), verts=bm.verts)  # top face at z = 0
    bm.to_mesh(mesh)
    bm.free()
    mesh.materials.append(_plank_material())
    stage = bpy.data.objects.new("stage", mesh)
    stage.location = (centre, (STAGE_FRONT + STAGE_BACK - 0.3) / 2, STAGE_Z)
    stage["renderlab_set"] = "stage"
    coll.objects.link(stage)
    cyc = bpy.data.objects.new("backdrop", _cyclorama_mesh(stage_w))
    cyc.data.materials.append(_backdrop_material())
    cyc.location = (centre, STAGE_BACK, STAGE_Z + 0.001)  # a millimetre over the boards: no z-fighting
    cyc["renderlab_set"] = "backdrop"
    coll.objects.link(cyc)
    made = [stage, cyc]
    # pools of warm light on the boards either side of the machine and behind it
    for k, dx in enumerate((-0.5 * width - 1.2, 0.5 * width + 1.2)):
        made.append(
            _spot(coll, f"stage_spot_{k}", (centre + dx, 0.5, 3.0), (centre + dx, -1.5, STAGE_Z), 400.0)
        )
    made.append(_spot(coll, "stage_spot_back", (centre, 0.0, 3.5), (centre, LAUNCH_Y - 3.0, STAGE_Z), 600.0))
    return made

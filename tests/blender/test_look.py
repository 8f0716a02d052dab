"""The look of the saved .blend: every instrument family (and the cymbals within the kit) has its own colour
and its own procedural material, told apart by numbers read from the file.

Colour distance is CIE 1976 ΔE*ab between the families' mean base colours (linear RGB -> XYZ, D65 ->
L*a*b*): 25 or more for every pair (2.3 is a just-noticeable difference; 25 reads as another colour, not
a shade). Near-white is L* above 85 with chroma C* below 20: no colour a family's ramp can shade is."""

from __future__ import annotations

import itertools
import math

import pytest

from blender_scripts.layout import CYMBALS, drum_sound

pytestmark = [pytest.mark.slow, pytest.mark.bpy]
MIN_DELTA_E = 25.0
WHITE_L, WHITE_CHROMA = 85.0, 20.0
FAMILIES = {"marimba", "vibraphone", "glockenspiel", "strings", "drums", "cymbal"}


def lab(rgb) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of a linear-RGB colour (Rec. 709 primaries, Blender's scene linear)."""
    r, g, b = rgb[:3]
    x = 0.4124 * r + 0.3576 * g + 0.1805 * b
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = 0.0193 * r + 0.1192 * g + 0.9505 * b

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    fx, fy, fz = f(x / 0.95047), f(y), f(z / 1.08883)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def test_lab_of_known_colours():
    assert lab((1.0, 1.0, 1.0)) == pytest.approx((100.0, 0.0, 0.0), abs=0.05)
    assert lab((0.0, 0.0, 0.0)) == pytest.approx((0.0, 0.0, 0.0), abs=1e-6)
    assert lab((1.0, 0.0, 0.0)) == pytest.approx((53.24, 80.09, 67.20), abs=0.1)  # sRGB red


def _base_colours(mat) -> list[tuple[float, ...]]:
    """Every colour Base Color can take: the stops of the ColorRamp feeding it, else its own value."""
    sock = mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"]
    if not sock.is_linked:
        return [tuple(sock.default_value)]
    node = sock.links[0].from_node
    assert node.bl_idname == "ShaderNodeValToRGB", f"{mat.name}: Base Color comes from {node.bl_idname}"
    return [tuple(e.color) for e in node.color_ramp.elements]


def _surface(mat) -> tuple:
    """What makes a surface: the texture nodes (type and settings) and how metallic it is."""
    texes = sorted(
        (n.bl_idname, getattr(n, "wave_type", ""), getattr(n, "bands_direction", ""),
         round(n.inputs["Scale"].default_value, 2))
        for n in mat.node_tree.nodes if n.bl_idname.startswith("ShaderNodeTex") and n.bl_idname != "ShaderNodeTexCoord"
    )  # fmt: skip
    metallic = mat.node_tree.nodes["Principled BSDF"].inputs["Metallic"].default_value
    return tuple(texes), round(metallic, 2)


def test_families_have_distinct_colours_and_procedural_materials(dense_pop):
    import bpy

    bpy.ops.wm.open_mainfile(filepath=str(dense_pop["blend"]), load_ui=False)
    scene = bpy.context.scene
    colours: dict[str, set] = {}
    surfaces: dict[str, set] = {}
    for obj in scene.collection.children["Instruments"].objects:
        family = obj["instrument"]
        if family == "drums" and drum_sound(obj["pitch"]) in CYMBALS:
            family = "cymbal"
        mat = obj.active_material
        colours.setdefault(family, set()).add(tuple(map(tuple, _base_colours(mat))))
        surfaces.setdefault(family, set()).add(_surface(mat))
    assert set(colours) == FAMILIES  # the song plays every family, and cymbals
    assert not bpy.data.images  # procedural: no image textures in the file
    mean = {}
    for family, ramps in colours.items():
        assert len(ramps) == 1 and len(surfaces[family]) == 1, f"{family}: its elements look different"
        (stops,) = ramps
        for stop in stops:
            L, a, b = lab(stop)
            assert not (L > WHITE_L and math.hypot(a, b) < WHITE_CHROMA), (family, stop, (L, a, b))
        mean[family] = lab([sum(c) / len(stops) for c in zip(*stops, strict=True)])
        (surface,) = surfaces[family]
        assert surface[0], f"{family}: no procedural texture drives its surface"
    for f1, f2 in itertools.combinations(sorted(mean), 2):
        delta = math.dist(mean[f1], mean[f2])
        assert delta >= MIN_DELTA_E, f"{f1} and {f2} are only {delta:.1f} ΔE*ab apart"
        assert surfaces[f1] != surfaces[f2], f"{f1} and {f2} share a material"

"""The instruments' materials: one look per family, procedural (Blender's own shader nodes, no image files).

Each family gets its own hue and its own surface, so a viewer tells the instruments apart at a glance:
rosewood marimba bars (grain), blue anodised aluminium vibraphone bars (brushed), gold glockenspiel bars
(polished), green wound strings, plum dyed-skin drum heads (fibrous) and hammered bronze cymbals. A look's
colour comes from a ColorRamp driven by a procedural texture, whose stops (dark, key, light) stay close
to the look's key colour: the ramp is the only thing that feeds Base Color, so its stops are the colours
the renderer can shade (tests/blender/test_look.py reads them from the saved .blend). The node named
"Principled BSDF" keeps its Emission Strength unlinked: scene.py keys it for each strike's flash.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy

from blender_scripts.layout import CYMBALS, Element, drum_sound

BSDF = "Principled BSDF"


@dataclass(frozen=True)
class Look:
    name: str
    key: tuple[float, float, float]  # linear RGB: the family's colour (ramp middle, viewport, flash)
    spread: float  # the ramp's dark/light stops: key * (1 - spread), key * (1 + spread), clipped to 1
    metallic: float
    roughness: tuple[float, float]  # roughness where the pattern is low / high
    pattern: str  # "grain", "brushed", "polished", "wound", "skin", "hammered"
    bump: float  # bump strength of the pattern (0: none)


def _lin(r: int, g: int, b: int) -> tuple[float, float, float]:
    """8-bit sRGB to linear RGB (what Blender's colour sockets hold)."""
    f = lambda c: c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4  # noqa: E731
    return (round(f(r / 255), 4), round(f(g / 255), 4), round(f(b / 255), 4))


# Hues spread round the wheel (CIE L*a*b* hue angles about 42, 70, 86, 154, 285 and 339 degrees), no
# two looks closer than 25 ΔE*ab and none near white: a family reads by its colour alone.
LOOKS = {
    "marimba": Look("rosewood", _lin(125, 48, 28), 0.35, 0.0, (0.35, 0.55), "grain", 0.15),
    "vibraphone": Look("anodised aluminium", _lin(55, 100, 185), 0.2, 0.6, (0.25, 0.38), "brushed", 0.05),
    "glockenspiel": Look("gold", _lin(222, 180, 70), 0.12, 0.6, (0.2, 0.3), "polished", 0.0),
    "strings": Look("green wound strings", _lin(50, 150, 95), 0.3, 0.6, (0.25, 0.4), "wound", 0.3),
    "drums": Look("plum dyed skin", _lin(150, 40, 120), 0.25, 0.0, (0.5, 0.7), "skin", 0.08),
    "cymbal": Look("hammered bronze", _lin(176, 118, 52), 0.25, 1.0, (0.22, 0.36), "hammered", 0.25),
}


def look_of(el: Element) -> Look:
    """The element's look: its family's, and the cymbals' own within the drum kit."""
    if el.is_pad and drum_sound(el.pitch) in CYMBALS:
        return LOOKS["cymbal"]
    try:
        return LOOKS[el.instrument]
    except KeyError:
        raise ValueError(f"element {el.name}: no look for instrument {el.instrument!r}") from None


def _pattern(nodes, links, pattern: str):
    """A 0..1 factor of the surface pattern, in the object's own coordinates (bars run along y)."""
    coord = nodes.new("ShaderNodeTexCoord")
    mapping = nodes.new("ShaderNodeMapping")
    links.new(coord.outputs["Object"], mapping.inputs["Vector"])
    if pattern == "grain":  # long wavy bands along the bar, broken up by noise: wood grain
        mapping.inputs["Scale"].default_value = (14.0, 1.5, 14.0)
        tex = nodes.new("ShaderNodeTexWave")
        tex.wave_type, tex.bands_direction = "BANDS", "X"
        tex.inputs["Scale"].default_value = 3.0
        tex.inputs["Distortion"].default_value = 6.0
        tex.inputs["Detail"].default_value = 3.0
        out = tex.outputs["Fac"]
    elif pattern == "brushed":  # fine streaks across the bar: brushed metal
        mapping.inputs["Scale"].default_value = (2.0, 300.0, 2.0)
        tex = nodes.new("ShaderNodeTexNoise")
        tex.inputs["Scale"].default_value = 4.0
        tex.inputs["Detail"].default_value = 2.0
        out = tex.outputs["Fac"]
    elif pattern == "wound":  # tight rings round the string: the winding
        tex = nodes.new("ShaderNodeTexWave")
        tex.wave_type, tex.bands_direction = "BANDS", "Y"
        tex.inputs["Scale"].default_value = 120.0
        out = tex.outputs["Fac"]
    elif pattern == "hammered":  # round dents: a hand-hammered cymbal
        tex = nodes.new("ShaderNodeTexVoronoi")
        tex.inputs["Scale"].default_value = 60.0
        out = tex.outputs["Distance"]
    elif pattern in ("skin", "polished"):  # fibres of a skin; a faint tarnish on polished metal
        tex = nodes.new("ShaderNodeTexNoise")
        tex.inputs["Scale"].default_value = 90.0 if pattern == "skin" else 6.0
        tex.inputs["Detail"].default_value = 6.0
        out = tex.outputs["Fac"]
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    links.new(mapping.outputs["Vector"], tex.inputs["Vector"])
    return out


def material(name: str, look: Look) -> bpy.types.Material:
    """A new material with `look`: pattern -> ColorRamp -> Base Color (and roughness, bump)."""
    mat = bpy.data.materials.new(name)
    tree = mat.node_tree
    nodes, links = tree.nodes, tree.links
    bsdf = nodes[BSDF]
    fac = _pattern(nodes, links, look.pattern)
    ramp = nodes.new("ShaderNodeValToRGB")
    stops = ramp.color_ramp.elements  # a new ramp has two stops, at 0 and 1
    dark = tuple(c * (1 - look.spread) for c in look.key)
    light = tuple(min(1.0, c * (1 + look.spread)) for c in look.key)
    stops[0].color, stops[1].color = (*dark, 1.0), (*light, 1.0)
    stops.new(0.5).color = (*look.key, 1.0)
    links.new(fac, ramp.inputs["Fac"])
    links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
    rough = nodes.new("ShaderNodeMapRange")
    rough.inputs["To Min"].default_value, rough.inputs["To Max"].default_value = look.roughness
    links.new(fac, rough.inputs["Value"])
    links.new(rough.outputs["Result"], bsdf.inputs["Roughness"])
    if look.bump:
        bump = nodes.new("ShaderNodeBump")
        bump.inputs["Strength"].default_value = look.bump
        bump.inputs["Distance"].default_value = 0.001
        links.new(fac, bump.inputs["Height"])
        links.new(bump.outputs["Normal"], bsdf.inputs["Normal"])
    if look.pattern == "brushed":
        bsdf.inputs["Anisotropic"].default_value = 0.6
    bsdf.inputs["Metallic"].default_value = look.metallic
    bsdf.inputs["Emission Color"].default_value = (*look.key, 1.0)
    bsdf.inputs["Emission Strength"].default_value = 0.0
    mat.diffuse_color = (*look.key, 1.0)
    mat["renderlab_look"] = look.name
    return mat

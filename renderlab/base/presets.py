"""Render presets: the one list every layer reads (render.py, the DAG's `preset` param, the settings).

Imports nothing but the standard library, so the Airflow bundle and the lab config can import it cheaply.
A preset with an fps asks for a scene built at that rate (the video's frame rate is the scene's);
`still` presets render exactly one frame (a poster).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    width: int
    height: int
    samples: int  # Cycles samples unless --samples says otherwise
    fps: int | None = None  # None: any scene rate
    still: bool = False
    description: str = ""


PRESETS: dict[str, Preset] = {
    "demo": Preset(640, 360, 32, description="quick look, any fps"),
    "hd": Preset(1920, 1080, 128, description="1080p at the scene's fps"),
    "4k": Preset(3840, 2160, 256, description="2160p at the scene's fps"),
    "1080p60": Preset(1920, 1080, 128, 60, description="1080p, 60 fps"),
    "4k60": Preset(3840, 2160, 256, 60, description="2160p, 60 fps (the showcase's)"),
    "vertical": Preset(1080, 1920, 128, 60, description="1080x1920 for phones, 60 fps"),
    "poster": Preset(3840, 2160, 512, still=True, description="one 2160p still frame"),
}
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)

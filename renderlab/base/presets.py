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
    # Measured CPU seconds per frame on one core at this preset's own settings (renderlab.base.estimate
    # scales it by samples and pixels): the plan's estimate and the trigger form's figure.
    core_s_per_frame: float = 0.0


# core_s_per_frame: frames 400-402 of ode_waltz on this repository's 2-core CI machine (Cycles CPU, shared
# with other work), demo at 50 % and 1080p at 20 % of their pixels, scaled to 100 % by the pixel count; the
# other sizes by pixels x samples from the 1080p figure.
PRESETS: dict[str, Preset] = {
    "demo": Preset(640, 360, 32, description="quick look, any fps", core_s_per_frame=62),
    "hd": Preset(1920, 1080, 128, description="1080p at the scene's fps", core_s_per_frame=1390),
    "4k": Preset(3840, 2160, 256, description="2160p at the scene's fps", core_s_per_frame=11100),
    "1080p60": Preset(1920, 1080, 128, 60, description="1080p, 60 fps", core_s_per_frame=1390),
    "4k60": Preset(3840, 2160, 256, 60, description="2160p, 60 fps (the showcase's)", core_s_per_frame=11100),
    "vertical": Preset(
        1080, 1920, 128, 60, description="1080x1920 for phones, 60 fps", core_s_per_frame=1390
    ),
    "poster": Preset(
        3840, 2160, 512, still=True, description="one 2160p still frame", core_s_per_frame=22200
    ),
}
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)

"""The optional per-song arrangement (YAML): instruments per track, marble size, bounce, camera, style."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from blender_scripts.errors import ContentError
from blender_scripts.song import Song

MALLETS = ("marimba", "vibraphone", "glockenspiel")
BARRED = (*MALLETS, "strings")  # pitched families, one element per pitch, laid out in this order
INSTRUMENTS = (*BARRED, "drums")
GM_PROGRAM = {"marimba": 12, "vibraphone": 11, "glockenspiel": 9, "strings": 24}  # the sound when named here


def gm_family(program: int) -> str:
    """The visible instrument family of a General MIDI program (0-127)."""
    if program in (8, 9, 10, 14, 112):  # celesta, glockenspiel, music box, tubular bells, tinkle bell
        return "glockenspiel"
    if program == 11 or 16 <= program <= 23 or 52 <= program <= 103:  # vibes, organs, voices, winds, pads
        return "vibraphone"
    if 24 <= program <= 46 or 48 <= program <= 51 or 104 <= program <= 107:  # guitars, basses, strings, harp
        return "strings"
    return "marimba"  # pianos, marimba, xylophone, dulcimer, timpani, pitched percussion


Finite = Annotated[float, Field(allow_inf_nan=False)]
Vec3 = tuple[Finite, Finite, Finite]  # NaN or inf would put the camera nowhere: black frames
Unit = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Rgb = tuple[Unit, Unit, Unit]
MAX_BYTES = 1 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Camera(_Strict):
    location: Vec3 | None = Field(None, description="camera position in metres; default frames every element")
    look_at: Vec3 | None = None
    lens: float = Field(30.0, gt=5, lt=300, description="focal length in mm")


class Style(_Strict):
    background: Rgb = (0.02, 0.025, 0.035)
    marble_color: Rgb = (0.85, 0.87, 0.9)
    flash_strength: float = Field(12.0, ge=0, le=100)


class Arrangement(_Strict):
    tracks: dict[str, str] = Field(
        default_factory=dict,
        description="track name or index -> instrument; default: channel 10 plays drums, others the family "
        "of their General MIDI program",
    )
    marble_radius: float | None = Field(
        None, ge=0.005, le=0.05, description="metres; default: sized to the song's density (0.014 - 0.03)"
    )
    restitution: float = Field(0.6, ge=0.3, le=0.95)
    camera: Camera = Camera()
    style: Style = Style()

    @field_validator("tracks", mode="before")
    @classmethod
    def _keys_as_text(cls, value: object) -> object:
        if isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
        return value

    @field_validator("tracks")
    @classmethod
    def _known_instruments(cls, value: dict[str, str]) -> dict[str, str]:
        for track, instrument in value.items():
            if instrument not in INSTRUMENTS:
                raise ValueError(
                    f"track {track!r} asks for unknown instrument {instrument!r}; pick one of {', '.join(INSTRUMENTS)}"
                )
        return value

    def instrument_for(self, song: Song, track: int, percussion: bool, program: int = 0) -> str:
        """The arrangement's instrument for the track, else the drum kit on channel 10, else the family
        of the note's General MIDI program."""
        name = song.track_names[track]
        for key in (name, str(track)):
            if key in self.tracks:
                return self.tracks[key]
        return "drums" if percussion else gm_family(program)

    def instrument_of(self, song: Song, note) -> str:
        return self.instrument_for(song, note.track, note.is_percussion, note.program)

    def program_for(self, song: Song, track: int, program: int) -> int:
        """The General MIDI program a note sounds with: the instrument this arrangement names for its
        track, else the program the song itself sets on the note's channel."""
        name = song.track_names[track]
        for key in (name, str(track)):
            if key in self.tracks:
                return GM_PROGRAM.get(self.tracks[key], program)
        return program

    def check_tracks(self, song: Song, source: str) -> None:
        known = set(song.track_names) | {str(i) for i in range(len(song.track_names))}
        missing = sorted(set(self.tracks) - known)
        if missing:
            raise ContentError(
                f"{source}: tracks {missing} are not in {song.name}.mid; its tracks are "
                + ", ".join(f"{i}={n!r}" for i, n in enumerate(song.track_names))
            )


def load(path: str | Path | None) -> Arrangement:
    if path is None:
        return Arrangement()
    path = Path(path)
    if not path.is_file():
        raise ContentError(f"arrangement {path} does not exist; pass --arrangement PATH or leave it out")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ContentError(f"cannot read arrangement {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ContentError(f"arrangement {path} is {len(raw)} bytes; an arrangement is a few KiB at most")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContentError(
            f"arrangement {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise ContentError(f"arrangement {path} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ContentError(f"arrangement {path} is nested too deeply to be an arrangement") from None
    if not isinstance(data, dict):
        raise ContentError(f"arrangement {path} must be a mapping of settings, not {type(data).__name__}")
    try:
        return Arrangement.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise ContentError(f"arrangement {path} is invalid: {problems}") from exc

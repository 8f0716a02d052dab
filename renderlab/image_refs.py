"""The image references `make images` built: one record, written once, read by one function.

`make images` (renderlab.images) writes the record after building (and pushing) the images:

    .cache/images/refs.json   (git-ignored; RENDERLAB_IMAGE_REFS names another file)
    {"blender": {"ref": "127.0.0.1:30500/renderlab-blender:<tag>", "digest": "sha256:...", ...}, "fetch": ...}

`references()` is the only reader: the pipeline settings take every Job's image from it (lab config ->
settings -> Airflow Variable), so no Job ever references a tag that was computed rather than built.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

REPO = Path(__file__).resolve().parents[1]
RECORD_ENV = "RENDERLAB_IMAGE_REFS"


class ImageRefError(ValueError):
    pass


class ImageRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ref: str  # what a Job's pod pulls: <registry>/renderlab-<name>:<content tag>
    digest: str  # the image's manifest digest (the pushed one when it was pushed)
    image_id: str  # the engine's local image id
    base: str  # the base image the Dockerfile's ARG BASE was given
    pushed_to: str | None = None  # where `make images` pushed it (the registry as the workstation sees it)
    size_bytes: int = 0


def record_path() -> Path:
    return Path(os.environ.get(RECORD_ENV) or REPO / ".cache" / "images" / "refs.json")


def load(path: Path | None = None) -> dict[str, ImageRef]:
    """Every recorded image; {} when `make images` has not run yet."""
    path = path or record_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as e:
        raise ImageRefError(f"{path}: unreadable image record ({e}); run `make images` again") from e
    try:
        return {name: ImageRef.model_validate(v) for name, v in raw.items()}
    except (ValidationError, AttributeError) as e:
        raise ImageRefError(f"{path}: not an image record ({e}); run `make images` again") from e


def references(path: Path | None = None) -> dict[str, str]:
    """image name -> the reference its Jobs use (the one reader: settings and tests go through here)."""
    return {name: r.ref for name, r in load(path).items()}


def write(refs: dict[str, ImageRef], path: Path | None = None) -> Path:
    """Merge these entries into the record (temp file, then rename: never half-written)."""
    path = path or record_path()
    merged = {**load(path), **refs}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    body = {name: r.model_dump() for name, r in sorted(merged.items())}
    tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path

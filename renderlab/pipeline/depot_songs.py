"""The song projects a trigger form can offer, listed cheaply enough to run while the DAG file is parsed.

Only a file:// depot named by the environment (AIRFLOW_VAR_RENDERLAB's ``depot``) is listed: one directory
scan for ``<project>/song.mid``, no settings model, no database, no network. A Perforce depot is not listed
(that would be a server round trip on every parse); the form's description says where to look instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

LIMIT = 200  # a suggestion list, not an inventory
# The song every default names (the DAG's param, `make render`, the trigger and demo CLIs, the depot seed): one
# of the bundled projects in depot/songs, which the lab's depot seed submits. The Makefile reads this line.
DEFAULT_SONG = "frere_groove"


def file_depot() -> Path | None:
    raw = os.environ.get("AIRFLOW_VAR_RENDERLAB")
    try:
        depot = json.loads(raw).get("depot") if raw else None
    except (json.JSONDecodeError, AttributeError):
        return None  # the tasks report a broken Variable; a form just offers nothing
    if not isinstance(depot, str) or not depot.startswith("file://"):
        return None
    return Path(unquote(urlparse(depot).path))


def listed(limit: int = LIMIT) -> list[str]:
    """Project names under a file:// depot, sorted; [] when there is none or it cannot be read."""
    depot = file_depot()
    if depot is None:
        return []
    try:
        with os.scandir(depot) as entries:
            names = sorted(e.name for e in entries if e.is_dir() and (Path(e.path) / "song.mid").is_file())
    except OSError:
        return []
    return names[:limit]

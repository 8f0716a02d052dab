"""The one JSON result line every fetch prints last on stdout (the pipeline parses it)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass
class FetchResult:
    changelist: int
    files_total: int
    files_transferred: int
    bytes_transferred: int
    files_removed: int
    seconds: float

    def json_line(self) -> str:
        doc = asdict(self)
        doc["seconds"] = round(self.seconds, 3)
        return json.dumps(doc, separators=(",", ":"))

"""The one JSON result line every fetch prints last on stdout (the pipeline parses it)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class FetchResult:
    changelist: int
    files_total: int
    files_transferred: int
    bytes_transferred: int
    files_removed: int
    seconds: float
    # file:// sources: symlinks are never followed; the first ones are named here, all are counted.
    skipped_symlinks: list[str] = field(default_factory=list)
    skipped_symlinks_total: int = 0

    def json_line(self) -> str:
        doc = asdict(self)
        doc["seconds"] = round(self.seconds, 3)
        return json.dumps(doc, separators=(",", ":"))

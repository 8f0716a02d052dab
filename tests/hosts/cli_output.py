"""Reading what a command on a lab host printed."""

from __future__ import annotations

import json


def json_list(out: str) -> list:
    """The JSON list that ends an `airflow ... -o json` command's output, after its log lines ('[warning  ] ...')."""
    decoder = json.JSONDecoder()
    for start in (i for i, c in enumerate(out) if c == "["):
        try:
            value, end = decoder.raw_decode(out, start)
        except ValueError:
            continue
        if isinstance(value, list) and not out[end:].strip():
            return value
    raise AssertionError(f"no JSON list ends the command's output ({len(out)} characters)")

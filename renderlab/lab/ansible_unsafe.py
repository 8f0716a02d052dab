"""Lab values handed to Ansible as data, never as templates.

Ansible evaluates Jinja in every string variable it reads, on the controller. A stack value is the user's
data, so the generated inventory marks every string unsafe: Ansible's JSON form `{"__ansible_unsafe": s}`,
which its loader (AnsibleJSONDecoder, used for every JSON inventory or vars file, and JSON is YAML) turns into
an AnsibleUnsafeText that templating leaves as it is. Keys stay plain: Ansible never templates them.
"""

from __future__ import annotations

import json
from typing import Any

KEY = "__ansible_unsafe"


def mark(value: Any) -> Any:
    """`value` with every string inside it (not the keys) wrapped as `{"__ansible_unsafe": s}`."""
    if isinstance(value, str):
        return {KEY: value}
    if isinstance(value, dict):
        return {k: mark(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mark(v) for v in value]
    return value


def plain(value: Any) -> Any:
    """The inverse of `mark`: what Ansible sees once it has read the file."""
    if isinstance(value, dict):
        if set(value) == {KEY} and isinstance(value[KEY], str):
            return value[KEY]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """The marked document as the text of an inventory or vars file (JSON, which Ansible reads as YAML)."""
    return json.dumps(mark(value), indent=1) + "\n"

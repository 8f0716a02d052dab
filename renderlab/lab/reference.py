"""The lab config reference, generated from the pydantic model and the commented example stack file.

One source: every key, its type, default and constraints come from `renderlab.lab.config.LabConfig`; the
explanation comes from the comment beside (or above) that key in Pulumi.example.yaml. The docs site builds
this page at build time (docs/hooks.py); nothing generated is committed.

    python -m renderlab.lab.reference [Pulumi.example.yaml] > reference.md
"""

from __future__ import annotations

import enum
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from renderlab.base import cli
from renderlab.lab import config as labconfig

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "Pulumi.example.yaml"


@dataclass
class Key:
    path: str  # e.g. proxmox.template.vmid; `<name>` stands for a key the user chooses
    type: str
    default: str  # "required" when the key has no default
    constraints: list[str]
    comment: str
    example: str


# --- the example file's comments -------------------------------------------------------------------------


def _comment_after(line: str, col: int) -> str:
    rest = line[col:]
    m = re.search(r"(?:^|\s)#\s?(.*)$", rest)
    return m.group(1).strip() if m else ""


def _comment_above(lines: list[str], row: int) -> str:
    """The block of full-line comments directly above `row` (a banner's dashes dropped)."""
    out: list[str] = []
    r = row - 1
    while r >= 0 and lines[r].strip().startswith("#"):
        out.insert(0, lines[r].strip().lstrip("#").strip().strip("-").strip())
        r -= 1
    return " ".join(x for x in out if x)


def example_comments(path: Path = EXAMPLE) -> tuple[dict[str, str], dict[str, str]]:
    """key path -> the example's comment for it, and key path -> the example's value (as written)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    comments: dict[str, str] = {}
    values: dict[str, str] = {}
    root = yaml.compose(text)
    config = next(v for k, v in root.value if k.value == "config")

    def walk(node: yaml.Node, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key, value in node.value:
            name = str(key.value).removeprefix(f"{labconfig.NAMESPACE}:")
            path_ = f"{prefix}.{name}" if prefix else name
            row = key.start_mark.line
            if isinstance(value, yaml.ScalarNode):
                after = _comment_after(lines[value.end_mark.line], value.end_mark.column)
                values[path_] = value.value if value.value != "" else "null"
            elif isinstance(value, yaml.SequenceNode) and value.flow_style:
                after = _comment_after(lines[value.end_mark.line], value.end_mark.column)
                values[path_] = lines[row][value.start_mark.column : value.end_mark.column]
            else:
                after = _comment_after(lines[row], key.end_mark.column + 1)
            # Inside a flow mapping ({a: 1, b: 2}) the comment above belongs to the whole mapping.
            above = "" if node.flow_style else _comment_above(lines, row)
            comments[path_] = " ".join(x for x in (above, after) if x)
            walk(value, path_)

    walk(config, "")
    return comments, values


# --- the model ----------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map of {_type_name(args[0])} to {_type_name(args[1])}"
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "section" if tp is not labconfig.SecureValue else "Pulumi secret `{secure: ...}`"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in tp)
    names = {"IPv4Address": "IPv4 address", "IPv4Network": "IPv4 network (CIDR)", "str": "string"}
    return names.get(getattr(tp, "__name__", str(tp)), getattr(tp, "__name__", str(tp)))


def _constraints(tp: Any, info: FieldInfo | None = None) -> list[str]:
    out: list[str] = []
    metadata = list(info.metadata) if info is not None else []
    stack = [tp]
    while stack:
        t = stack.pop()
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            stack.append(typing.get_args(t)[0])
            metadata += list(typing.get_args(t)[1:])
        elif origin in (typing.Union, types.UnionType):
            stack += [a for a in typing.get_args(t) if a is not type(None)]
    for m in metadata:
        for attr, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(m, getattr(annotated_types, attr.capitalize())):
                out.append(f"{word} {getattr(m, attr)}")
        if isinstance(m, annotated_types.MinLen):
            out.append(f"at least {m.min_length} item(s)" if tp is not str else f"min length {m.min_length}")
        if getattr(m, "pattern", None):
            out.append(f"matches `{m.pattern}`")
        if getattr(m, "min_length", None) and not isinstance(m, annotated_types.MinLen):
            out.append(f"min length {m.min_length}")
    return out


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default
    if value is PydanticUndefined and info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    if isinstance(value, BaseModel):
        return "(section defaults)"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _model_of(tp: Any) -> tuple[type[BaseModel] | None, str]:
    """The section model inside a field's type, and the path part a map adds (`<name>`)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _model_of(args[0])
    if origin in (typing.Union, types.UnionType):
        for a in args:
            m, extra = _model_of(a)
            if m is not None:
                return m, extra
    if origin is dict:
        m, extra = _model_of(args[1])
        return m, ".<name>" + extra
    if isinstance(tp, type) and issubclass(tp, BaseModel) and tp is not labconfig.SecureValue:
        return tp, ""
    return None, ""


def _validators(model: type[BaseModel]) -> dict[str, list[str]]:
    """field name -> the model's own extra checks on it, told by what the check says to a floating name."""
    out: dict[str, list[str]] = {}
    for name, dec in model.__pydantic_decorators__.field_validators.items():
        try:
            getattr(model, name)("latest")
            said = f"checked by `{model.__name__}.{name}`"
        except ValueError as e:
            said = "refuses e.g. `latest`: " + str(e).split(" is ", 1)[-1].split(": ", 1)[0]
        for field in dec.info.fields:
            out.setdefault(field, []).append(said)
    return out


def keys(model: type[BaseModel] = labconfig.LabConfig, prefix: str = "") -> list[Key]:
    comments, values = example_comments()
    return _keys(model, prefix, comments, values)


def _example_key(path: str, values: dict[str, str], comments: dict[str, str]) -> str:
    """Map a model path with `<name>` to the first matching key written in the example."""
    if "<name>" not in path:
        return path
    pattern = re.compile("^" + re.escape(path).replace(re.escape("<name>"), r"[^.]+") + "$")
    for k in list(values) + list(comments):
        if pattern.match(k):
            return k
    return path


def _keys(model: type[BaseModel], prefix: str, comments: dict[str, str], values: dict[str, str]) -> list[Key]:
    out: list[Key] = []
    checks = _validators(model)
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        tp = info.annotation
        sub, extra = _model_of(tp)
        cons = _constraints(tp, info) + [f"{c}" for c in checks.get(name, [])]
        if name in labconfig.SECRET_KEYS:
            cons.append("secret: set with `pulumi config set --secret`, never a plain value")
        ex = _example_key(path, values, comments)
        comment = comments.get(ex, "") or info.description or labconfig.SECRET_KEYS.get(name, "")
        if extra and sub is not None:  # a map of sections: the map itself, then each section's keys
            out.append(Key(path + extra, "map of name to section", _default(info), cons, comment, ""))
        elif sub is None or sub is labconfig.SecureValue:
            if typing.get_origin(tp) is dict:
                path += ".<name>"
                ex = _example_key(path, values, comments)
                comment = comments.get(ex, "") or comment
            out.append(Key(path, _type_name(tp), _default(info), cons, comment, values.get(ex, "")))
            continue
        else:
            out.append(Key(path, "section", _default(info), cons, comment, ""))
        if sub is not None:
            out += _keys(sub, path + extra, comments, values)
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") if text else ""


def markdown(example: Path = EXAMPLE) -> str:
    comments, values = example_comments(example)
    rows = _keys(labconfig.LabConfig, "", comments, values)
    lines = [
        # The tables are wide: give them the table of contents' room.
        "---",
        "hide:",
        "  - toc",
        "---",
        "",
        "# Lab config reference",
        "",
        "Generated when the site is built, from the pydantic model (`renderlab/lab/config.py`) and the comments "
        f"of `{example.name}`: every key of a stack file `Pulumi.<stack>.yaml`, written there as "
        f"`{labconfig.NAMESPACE}:<section>`. Unknown keys are refused, and `make check-config` lists every "
        "problem at once.",
        "",
        "`<name>` stands for a name you choose (a host name).",
        "",
    ]
    section = None
    for k in rows:
        top = k.path.split(".")[0]
        if top != section:
            section = top
            lines += ["", f"## `{top}`", "", "| key | type | default | constraints | what (from the example) | example |",
                      "|---|---|---|---|---|---|"]  # fmt: skip
        cons = "<br>".join(_cell(c) for c in k.constraints)
        ex = f"`{_cell(k.example)}`" if k.example else ""
        lines.append(f"| `{k.path}` | {k.type} | {k.default} | {cons} | {_cell(k.comment)} | {ex} |")
    lines += ["", "## Checks across sections", "",
              "Besides each key's own constraints, the whole file is checked (`lab_problems`):", ""]  # fmt: skip
    doc = labconfig.lab_problems.__doc__ or ""
    lines.append(" ".join(doc.split()))
    lines += ["", "Minimum sizes per role (cores, memory MiB, disk GiB):", "", "| role | cores | memory | disk |",
              "|---|---|---|---|"]  # fmt: skip
    for role, (cores, mem, disk) in labconfig.MIN_SIZE.items():
        lines.append(f"| `{role}` | {cores} | {mem} MiB | {disk} GiB |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = cli.Parser(
        prog="python -m renderlab.lab.reference", description="Print the lab config reference (Markdown)."
    )
    ap.add_argument(
        "stack_file",
        nargs="?",
        type=Path,
        default=EXAMPLE,
        help="the commented stack file (default: the example)",
    )
    a = ap.parse_args(argv)
    if not a.stack_file.is_file():
        print(
            f"reference: error: {a.stack_file} is not a file; pass a stack file such as Pulumi.example.yaml",
            file=sys.stderr,
        )
        return 1
    try:
        text = markdown(a.stack_file)
    except (UnicodeDecodeError, yaml.YAMLError) as e:  # its comments are read from the raw YAML
        reason = (
            "is not UTF-8 text" if isinstance(e, UnicodeDecodeError) else f"is not YAML ({cli.one_line(e)})"
        )
        print(f"reference: error: {a.stack_file} {reason}; pass a commented stack file", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(cli.guard("reference", main))

"""Loading a field-mapping file (YAML, or JSON) into a MappingConfig, with errors that name the line."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from schemas.mappings import MappingConfig


class MappingConfigError(ValueError):
    """The mapping file can't be used; the message names the file, the line and field, and why."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: {problems[0]}" if len(problems) == 1
                         else f"{path}:\n  " + "\n  ".join(problems))


def load_mappings(path: str | Path | None) -> MappingConfig:
    """The config in `path` (YAML, or JSON when it ends in .json), or the built-in defaults for None."""
    if path is None:
        return MappingConfig()
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingConfigError(name, [f"cannot read the file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise MappingConfigError(name, [f"not UTF-8 text (byte {exc.start})"]) from None
    # an empty file: every section keeps its default
    return mappings_from_data(_parse(name, text), name, text)


def mappings_from_data(data: Any, origin: str, text: str = "") -> MappingConfig:
    """A MappingConfig from already-parsed sections (a registry entry, a console form), or the error."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MappingConfigError(origin, [(f"the top level must be a mapping with contact/task/email_message "
                                           f"sections, not {type(data).__name__}")])
    try:
        config = MappingConfig.model_validate(data)
    except ValidationError as exc:
        raise MappingConfigError(origin, _explain(exc, text)) from None
    return config.model_copy(update={"origin": origin})


def parse_mappings_text(name: str, text: str) -> MappingConfig:
    """Mappings typed or uploaded as YAML (JSON is YAML too), with errors naming the line."""
    return mappings_from_data(_parse(name, text), name, text)


def _parse(name: str, text: str) -> Any:
    if name.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise MappingConfigError(name, [(f"line {exc.lineno} column {exc.colno}: invalid JSON: "
                                             f"{exc.msg}")]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        detail = getattr(exc, "problem", None) or str(exc)
        raise MappingConfigError(name, [f"{where}invalid YAML: {detail}"]) from None


_ENTRY = re.compile(r"^fields\[(\d+)\]\.target: ")


def _explain(error: ValidationError, text: str) -> list[str]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # JSON is YAML too, for line numbers
    except yaml.YAMLError:
        root = None
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        entry = _ENTRY.match(message)
        if entry:  # a section-level check naming one entry: point at that entry
            loc += ("fields", int(entry.group(1)), "target")
            message = message[entry.end():]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(top)"
        line = _line_of(root, loc)
        if item["type"] == "literal_error" and loc and loc[-1] == "policy":
            message = "unknown policy; use one of fill_blank, always, on_create, never"
        elif item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling)"
        problems.append(f"{'line ' + str(line) + ', ' if line else ''}{where}: {message}")
    return problems


def _line_of(node: Any, loc: Iterable[Any]) -> int | None:
    """The 1-based line of the YAML node at `loc`, or of its nearest existing parent."""
    if node is None:
        return None
    line: int = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            matches = [(k, v) for k, v in node.value if getattr(k, "value", None) == str(part)]
            if not matches:
                return line
            key, node = matches[0]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line

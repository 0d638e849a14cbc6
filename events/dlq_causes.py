"""Dead letters grouped by cause: workspace × error code × fields × message pattern, kept as a small index.

Three thousand letters failing on one validation rule are one cause, not three thousand rows:
their messages differ only in ids, numbers, addresses and quoted values, which `pattern_of`
replaces with placeholders. The dead-letter store (events/deadletter.py) writes each letter's
cause into its bucket's index as it keeps the letter, so grouping reads two small hashes and the
bucket's time index, never the letters themselves; this module is the pure part.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: characters of a pattern kept (a message can be 4,000 characters)
PATTERN_KEEP = 300
#: characters of the example message a cause keeps
EXAMPLE_KEEP = 500
#: hours the sparkline of a cause covers, one bar per hour
SPARK_HOURS = 24

_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"'[^']*'|\"[^\"]*\"|`[^`]*`|“[^”]*”|‘[^’]*’", "'…'"),
    (r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?", "<time>"),
    (r"https?://\S+", "<url>"),
    (r"<[^<>\s]+@[^<>\s]+>", "<message-id>"),
    (r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+", "<email>"),
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "<id>"),
    # Salesforce ids (15 or 18 characters with a digit), hex digests, and ids such as evt_01JDX6K8T3
    (r"\b(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?\b", "<id>"),
    (r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{12,}\b", "<id>"),
    (r"\b[A-Za-z]+_(?=[A-Za-z0-9_]*\d)[A-Za-z0-9_]+\b", "<id>"),
    (r"[-+]?\b\d+(?:[.,:]\d+)*\b", "<n>"),
    (r"\s+", " "),
))


def pattern_of(message: str) -> str:
    """The message with what varies between letters of one cause (ids, numbers, times, addresses,
    quoted values) replaced by placeholders; the same pattern when applied again."""
    text = message
    for rule, placeholder in _RULES:
        text = rule.sub(placeholder, text)
    return text.strip()[:PATTERN_KEEP]


@dataclass(frozen=True)
class Cause:
    """What a group of dead letters has in common."""

    workspace_id: str
    code: str
    fields: str
    pattern: str

    @property
    def key(self) -> str:
        text = "\0".join((self.workspace_id, self.code, self.fields, self.pattern))
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def cause_of(workspace_id: str | None, code: str, fields: Iterable[str], message: str) -> Cause:
    return Cause(workspace_id or "", code, ",".join(sorted(set(fields))), pattern_of(message))


def index_entry(cause: Cause, first_failure: float) -> str:
    return f"{cause.key} {first_failure:.3f}"


def describe(cause: Cause, example: str) -> str:
    return json.dumps({"workspace_id": cause.workspace_id, "code": cause.code, "fields": cause.fields,
                       "pattern": cause.pattern, "example": example[:EXAMPLE_KEEP]})


@dataclass
class Group:
    """One cause in one bucket, with its letters' count, first and last failure and an hourly sparkline."""

    bucket: str
    key: str
    workspace_id: str
    code: str
    fields: list[str]
    pattern: str
    example: str
    count: int = 0
    first_seen: float = float("inf")
    last_seen: float = 0.0
    #: letters whose last failure fell in each of the last SPARK_HOURS hours, oldest first
    spark: list[int] = field(default_factory=lambda: [0] * SPARK_HOURS)
    ids: list[str] = field(default_factory=list)
    #: one of its letters (the oldest)
    sample_id: str = ""


def group_bucket(bucket: str, timed: list[tuple[str, float]], index: dict[str, str], described: dict[str, str],
                 now: float, with_ids: bool = False) -> tuple[list[Group], list[str], list[str]]:
    """A bucket's groups from its time index (letter id, last failure), cause index and descriptions;
    also the index entries of letters no longer held and the descriptions no letter uses (to delete)."""
    groups: dict[str, Group] = {}
    start = now - SPARK_HOURS * 3600
    for record_id, last in timed:
        entry = index.get(record_id)
        if not entry:
            continue
        gkey, _, first = entry.partition(" ")
        group = groups.get(gkey)
        if group is None:
            about = _about(described.get(gkey))
            group = groups[gkey] = Group(bucket=bucket, key=gkey, workspace_id=str(about.get("workspace_id", "")),
                                         code=str(about.get("code", "")),
                                         fields=[f for f in str(about.get("fields", "")).split(",") if f],
                                         pattern=str(about.get("pattern", "")), example=str(about.get("example", "")),
                                         sample_id=record_id)
        group.count += 1
        group.first_seen = min(group.first_seen, _float(first, last))
        group.last_seen = max(group.last_seen, last)
        if last >= start:
            group.spark[min(int((last - start) // 3600), SPARK_HOURS - 1)] += 1
        if with_ids:
            group.ids.append(record_id)
    live = {record_id for record_id, _ in timed}
    stale = [record_id for record_id in index if record_id not in live]
    unused = [gkey for gkey in described if gkey not in groups]
    return sorted(groups.values(), key=lambda g: (-g.count, -g.last_seen, g.key)), stale, unused


def _about(raw: str | None) -> dict[str, Any]:
    try:
        found = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _float(text: str, default: float) -> float:
    try:
        return float(text)
    except ValueError:
        return default

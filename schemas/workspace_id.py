"""What a workspace id may look like: one pattern, shared by the workspace registry and the dead-letter store."""

from __future__ import annotations

import re
from typing import Any

#: A plausible Unify workspace id, anchored (usable as pydantic's `Field(pattern=...)`):
#: ASCII letters, digits, `_`, `.`, `-`, 1 to 64 characters. Anything else must never become
#: part of a Redis key.
WORKSPACE_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"

#: The dead-letter bucket of messages that name no known workspace; no workspace may be called this.
UNROUTED = "_unrouted"
#: Ids sfsync uses for itself, which the registry must refuse as workspace ids.
RESERVED_WORKSPACE_IDS = frozenset({UNROUTED})

_WORKSPACE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def is_workspace_id(value: Any) -> bool:
    """True when `value` is a string matching WORKSPACE_ID_PATTERN (no trailing newline slips through)."""
    return isinstance(value, str) and _WORKSPACE_ID.fullmatch(value) is not None

"""Redis key names of sfsync's own state, scoped by workspace so many orgs can share a Redis.

The workspace id sits in a hash tag (`sfsync:{ws}:...`): every key of one workspace lands in the
same Redis Cluster slot, so multi-key operations on one workspace's data stay possible there.
"""

PREFIX = "sfsync"

#: workspaces whose org's circuit breaker is open, scored by the time of their next probe (deployment-wide)
BREAKERS_OPEN = "sfsync:breakers:open"


def key(workspace_id: str, *parts: str) -> str:
    return ":".join((PREFIX, "{" + workspace_id + "}", *parts))


def workspace_pattern(workspace_id: str) -> str:
    """A SCAN pattern matching every key of one workspace (glob characters in the id escaped)."""
    escaped = "".join("\\" + c if c in "*?[]\\{}" else c for c in workspace_id)
    return f"{PREFIX}:\\{{{escaped}\\}}:*"

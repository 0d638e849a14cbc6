"""Redis key names of sfsync's own state, all scoped by workspace so many orgs can share a Redis."""

PREFIX = "sfsync"


def key(workspace_id: str, *parts: str) -> str:
    return ":".join((PREFIX, workspace_id, *parts))

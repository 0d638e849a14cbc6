"""The console's view of the workspaces: the registry's, and the one the environment defines."""

from __future__ import annotations

from typing import Any

from schemas.settings import Settings
from schemas.workspace import SalesforceConnection
from workspaces.directory import connection_from_settings
from workspaces.registry import Registry, WorkspaceNotFound
from workspaces.secrets import Keyring


def keyring_of(settings: Settings) -> Keyring:
    return Keyring(settings.secret_keys.get_secret_value() if settings.secret_keys else None)


def registered(registry: Registry) -> dict[str, dict[str, Any]]:
    """id -> the registry's view of each workspace, without secrets."""
    return {c.id: c.public() for c in registry.all(secrets=False)}


def connection_for(ws: str, settings: Settings, registry: Registry) -> SalesforceConnection | None:
    """How to sign in to the workspace's org (secrets opened), or None when it has no connection."""
    try:
        return registry.get(ws, secrets=True).salesforce
    except WorkspaceNotFound:
        pass
    if ws == settings.workspace_id and settings.salesforce_auth is not None:
        return connection_from_settings(settings)
    return None


def instance_url_of(ws: str, settings: Settings, registry: Registry) -> str | None:
    """The org's address as last connected (no secret), to link to its records; None when unknown."""
    try:
        public = registry.get(ws, secrets=False).salesforce_public
    except WorkspaceNotFound:
        public = None
    url = (public or {}).get("instance_url")
    if not url and ws == settings.workspace_id and settings.salesforce_auth is not None:
        url = settings.salesforce_instance_url
    return url.rstrip("/") if isinstance(url, str) and url.startswith(("https://", "http://")) else None

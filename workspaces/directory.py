"""A worker's view of the workspaces it serves: the registry, cached, plus the one-workspace environment shortcut."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis

from schemas.mappings_file import load_mappings
from schemas.settings import Settings, with_fresh_secrets
from schemas.workspace import SalesforceConnection
from workspaces.registry import Registry, WorkspaceConfig, WorkspaceNotFound
from workspaces.secrets import Keyring, SecretKeyError

log = logging.getLogger("sfsync.workspaces")

#: seconds between checks of the registry's version (a change is seen by every worker within this)
REFRESH_EVERY = 1.0


def connection_from_settings(settings: Settings) -> SalesforceConnection | None:
    """The environment's Salesforce credentials as a connection (None when they are not complete)."""
    auth = settings.salesforce_auth
    if auth is None:
        return None
    domain = settings.salesforce_domain
    where = {"login_url": domain} if domain.startswith(("http://", "https://")) else {"domain": domain}
    common = {"api_version": settings.salesforce_api_version, **where}
    if auth == "token":
        return SalesforceConnection(instance_url=settings.salesforce_instance_url,
                                    access_token=settings.salesforce_access_token, api_version=common["api_version"])
    if auth == "jwt":  # chosen only when the key file is set
        return SalesforceConnection(username=settings.salesforce_username, client_id=settings.salesforce_consumer_key,
                                    private_key=settings.salesforce_private_key_file.read_text(  # type: ignore[union-attr]
                                        encoding="utf-8"),
                                    **common)
    return SalesforceConnection(username=settings.salesforce_username, password=settings.salesforce_password,
                                security_token=settings.salesforce_security_token, **common)


def config_from_settings(settings: Settings) -> WorkspaceConfig:
    """The workspace the environment defines (SFSYNC_WORKSPACE_ID and its Salesforce credentials)."""
    fresh = with_fresh_secrets(settings)  # a rotated *_FILE secret is read again at each login
    mappings = None
    if settings.mappings is not None:
        mappings = load_mappings(settings.mappings).model_dump(mode="json", exclude_defaults=True)
    connection = connection_from_settings(fresh)
    return WorkspaceConfig(
        id=settings.workspace_id, name=settings.workspace_id, enabled=True,
        email_message_writeback=settings.email_message_writeback,
        max_latency_seconds=settings.flush_interval, api_usage_ceiling=settings.api_usage_ceiling,
        salesforce=connection, salesforce_public=connection.public() if connection else None,
        revision=0, mappings_version=None, mappings=mappings,
        match_leads=settings.match_leads, play_creates=settings.play_creates,
        late_contact_days=settings.late_contact_days, late_contact_max=settings.late_contact_max,
        skip_already_logged=settings.skip_already_logged)


class Directory:
    """Which workspaces exist and how to reach their orgs, re-read when the registry changes."""

    def __init__(self, settings: Settings, client: redis.Redis, keyring: Keyring | None = None):
        self.settings = settings
        self.registry = Registry(client, keyring or Keyring(settings.secret_keys.get_secret_value()
                                                            if settings.secret_keys else None),
                                 hosts=settings.salesforce_hosts)
        self._lock = threading.Lock()
        self._checked = 0.0
        self._version = -1
        self._cache: dict[str, WorkspaceConfig] = {}
        self._failed: dict[str, str] = {}

    @property
    def env_workspace(self) -> str | None:
        """The id the environment defines a workspace for, when it sets Salesforce credentials."""
        return self.settings.workspace_id if self.settings.salesforce_auth is not None else None

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < REFRESH_EVERY:
            return
        self._checked = now
        version = self.registry.version()
        if version != self._version:
            self._version = version
            self._cache, self._failed = {}, {}

    def get(self, workspace_id: str) -> WorkspaceConfig | None:
        """The workspace with its secrets, or None when this deployment does not serve it.

        SecretKeyError when its credentials cannot be opened (the events wait; nothing is lost).
        """
        with self._lock:
            self._refresh()
            if workspace_id in self._cache:
                return self._cache[workspace_id]
            if workspace_id in self._failed:
                raise SecretKeyError(self._failed[workspace_id])
        try:
            config = self.registry.get(workspace_id)
        except WorkspaceNotFound:
            config = None
        except SecretKeyError as exc:
            # once per registry change: the workspace's events wait parked until a key opens its credentials
            log.error("workspace %s cannot be served: %s", workspace_id, exc, extra={"workspace_id": workspace_id})
            with self._lock:
                self._failed[workspace_id] = str(exc)
            raise
        if config is None and workspace_id == self.env_workspace:
            config = config_from_settings(self.settings)
        with self._lock:
            if config is not None:
                self._cache[workspace_id] = config
        return config

    def for_login(self, workspace_id: str) -> WorkspaceConfig | None:
        """The workspace as a login needs it: the environment's secrets files are read again each time."""
        config = self.get(workspace_id)
        if config is not None and config.revision == 0:  # the environment's workspace
            config = config_from_settings(self.settings)
        return config

    def known(self, workspace_id: Any) -> bool:
        """Whether events of this workspace belong to this deployment (registered, or the environment's)."""
        if not isinstance(workspace_id, str):
            return False
        if workspace_id == self.settings.workspace_id:
            return True
        with self._lock:
            self._refresh()
            if workspace_id in self._cache:
                return True
        return bool(self.registry.redis.hexists("sfsync:{_registry}:workspaces", workspace_id))

    def ids(self) -> list[str]:
        """Every workspace served: the registry's enabled ones and the environment's."""
        ids = [c.id for c in self.registry.all() if c.enabled]
        env = self.env_workspace
        if env is not None and env not in ids:
            ids.append(env)
        return sorted(ids)

    def changed_since(self, version: int) -> bool:
        return self.registry.version() != version

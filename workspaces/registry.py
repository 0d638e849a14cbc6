"""The workspace registry in Redis: each workspace's org connection (credentials sealed), settings and mappings."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import redis
from pydantic import ValidationError

from events.keys import key, workspace_pattern
from events.parking import ParkingLot
from schemas.workspace import LATE_CONTACT_DAYS, LATE_CONTACT_MAX, SalesforceConnection, WorkspaceSpec, is_workspace_id
from workers.sync.mappings import MappingConfigError, mappings_from_data
from workspaces.secrets import Keyring

#: registry keys share one hash tag; `_registry` can never be a workspace id (ids start with a letter or digit)
ENTRIES = "sfsync:{_registry}:workspaces"
SEALED = "sfsync:{_registry}:secrets"
VERSION = "sfsync:{_registry}:version"
#: earlier mapping versions kept per workspace
MAPPING_HISTORY = 50
#: per-workspace settings of leads, late contacts and email logged elsewhere, stored as the file gives them
LEAD_AND_LATE_SETTINGS = ("match_leads", "play_creates", "late_contact_days", "late_contact_max",
                          "skip_already_logged")


class RegistryError(Exception):
    """A registry change was refused; nothing was changed. The message names the workspace and problem."""


class WorkspaceNotFound(RegistryError):
    def __init__(self, workspace_id: str):
        super().__init__(f"no workspace {workspace_id!r} in the registry (see `sfsync workspaces list`)")
        self.workspace_id = workspace_id


@dataclass(frozen=True)
class WorkspaceConfig:
    """What a worker needs of one workspace: settings, connection with its secrets, current mappings."""

    id: str
    name: str
    enabled: bool
    email_message_writeback: bool
    max_latency_seconds: float
    api_usage_ceiling: float
    #: the connection with its secrets (None when read without secrets, or not connected)
    salesforce: SalesforceConnection | None
    #: the connection without secrets, as stored (None: not connected)
    salesforce_public: dict[str, Any] | None
    revision: int
    mappings_version: int | None = None
    mappings: dict[str, Any] | None = None
    updated_at: float = 0.0
    match_leads: bool = False
    play_creates: str = "contact"
    late_contact_days: float = LATE_CONTACT_DAYS
    late_contact_max: int = LATE_CONTACT_MAX
    skip_already_logged: bool = True

    @property
    def uses_leads(self) -> bool:
        """Leads are matched or created: the CRM cycle reads their changes too."""
        return self.match_leads or self.play_creates == "lead"

    def public(self) -> dict[str, Any]:
        """Everything but secrets: for `show`, `list --json`, the console."""
        return {"id": self.id, "name": self.name, "enabled": self.enabled,
                "connected": self.salesforce_public is not None, "salesforce": self.salesforce_public,
                "email_message_writeback": self.email_message_writeback,
                "max_latency_seconds": self.max_latency_seconds, "api_usage_ceiling": self.api_usage_ceiling,
                **{name: getattr(self, name) for name in LEAD_AND_LATE_SETTINGS},
                "revision": self.revision, "mappings_version": self.mappings_version,
                "updated_at": self.updated_at}


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    mappings_saved: dict[str, int] = field(default_factory=dict)


def parse_registry_file(data: Any) -> list[WorkspaceSpec]:
    """Every workspace of a registry file, checked as a whole (RegistryError lists every problem)."""
    from schemas.workspace import RegistryFile

    try:
        specs = RegistryFile.model_validate(data).workspaces
    except ValidationError as exc:
        problems = []
        for item in exc.errors(include_url=False, include_input=False):
            where = ".".join(str(p) for p in item["loc"])
            message = item["msg"]
            if item["type"] == "extra_forbidden":
                message = _unknown_key(item["loc"])
            problems.append(f"{where}: {message}")
        raise RegistryError("the registry file is not valid: " + "; ".join(problems)) from None
    for spec in specs:
        if spec.mappings is not None:
            try:
                mappings_from_data(spec.mappings, f"workspace {spec.id} mappings")
            except MappingConfigError as exc:
                raise RegistryError(str(exc)) from None
    return specs


def _unknown_key(loc: tuple) -> str:
    """`unknown key; did you mean max_latency_seconds?` for a key no model of the registry file has."""
    import difflib

    from schemas.workspace import FILE_KEYS, RegistryFile, SalesforceConnection

    if len(loc) == 4 and loc[2] == "salesforce":
        known = [*SalesforceConnection.model_fields, *FILE_KEYS]
    elif len(loc) == 3:
        known = [*WorkspaceSpec.model_fields, "mappings_file"]
    else:
        known = list(RegistryFile.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return "unknown key" + (f"; did you mean {close[0]}?" if close else f" (known: {', '.join(sorted(known))})")


class Registry:
    def __init__(self, client: redis.Redis, keyring: Keyring):
        self.redis = client
        self.keyring = keyring

    # --- reading ------------------------------------------------------------------------
    def version(self) -> int:
        return int(self.redis.get(VERSION) or 0)

    def ids(self) -> list[str]:
        return sorted(v.decode() if isinstance(v, bytes) else v for v in self.redis.hkeys(ENTRIES))

    def _entry(self, workspace_id: str) -> dict[str, Any] | None:
        raw = self.redis.hget(ENTRIES, workspace_id)
        return json.loads(raw) if raw else None

    def get(self, workspace_id: str, *, secrets: bool = True) -> WorkspaceConfig:
        """One workspace; with `secrets`, its credentials decrypted (SecretKeyError if no key opens them)."""
        entry = self._entry(workspace_id)
        if entry is None:
            raise WorkspaceNotFound(workspace_id)
        return self._config(entry, secrets)

    def all(self, *, secrets: bool = False) -> list[WorkspaceConfig]:
        entries = [json.loads(v) for v in self.redis.hvals(ENTRIES)]
        return sorted((self._config(e, secrets) for e in entries), key=lambda c: c.id)

    def _config(self, entry: dict[str, Any], secrets: bool) -> WorkspaceConfig:
        ws = entry["id"]
        public = entry.get("salesforce")
        connection = None
        if public is not None and secrets:
            sealed = self.redis.hget(SEALED, ws)
            opened = self.keyring.open(sealed.decode() if isinstance(sealed, bytes) else sealed, ws) if sealed else {}
            connection = SalesforceConnection(**_public_fields(public), **opened)
        version, mappings = MappingVersions(self.redis).current(ws)
        return WorkspaceConfig(
            id=ws, name=entry.get("name", ""), enabled=entry.get("enabled", True),
            email_message_writeback=entry.get("email_message_writeback", True),
            max_latency_seconds=entry.get("max_latency_seconds", 5.0),
            api_usage_ceiling=entry.get("api_usage_ceiling", 0.8), salesforce=connection,
            salesforce_public=public, revision=entry.get("revision", 1), mappings_version=version,
            mappings=mappings, updated_at=entry.get("updated_at", 0.0),
            **{name: entry[name] for name in LEAD_AND_LATE_SETTINGS if name in entry})

    # --- changing -----------------------------------------------------------------------
    def plan(self, specs: list[WorkspaceSpec]) -> ApplyReport:
        """What `apply` would do, changing nothing: each workspace created, updated or unchanged, and the
        mapping versions that would be saved (numbered -1: the number is given when saved)."""
        report = ApplyReport()
        for spec in specs:
            getattr(report, self._outcome(spec)).append(spec.id)
            if spec.mappings is not None and MappingVersions(self.redis).differs(spec.id, spec.mappings):
                report.mappings_saved[spec.id] = -1
        return report

    def apply(self, specs: list[WorkspaceSpec], *, author: str = "cli",
              check: Callable[[WorkspaceSpec], None] | None = None) -> ApplyReport:
        """Create or update each workspace; `check` (e.g. a describe validation) runs on all before any change."""
        if any(s.salesforce is not None for s in specs):
            self.keyring.seal({})  # no key: refuse before changing anything
        if check is not None:
            for spec in specs:
                check(spec)
        plan = self.plan(specs)  # opens every stored secret first: a missing key refuses before any write
        report = ApplyReport(unchanged=list(plan.unchanged))
        for spec in specs:
            if spec.id not in plan.unchanged:
                outcome = self._put(spec)
                getattr(report, outcome).append(spec.id)
                if outcome == "updated" and spec.enabled:  # new credentials, or enabled again
                    self._parked_due(spec.id)
            if spec.id in plan.mappings_saved:
                version = MappingVersions(self.redis).set(spec.id, spec.mappings, author=author)
                if version is not None:
                    report.mappings_saved[spec.id] = version
        if report.created or report.updated:
            self._bump()
        return report

    def _new_entry(self, spec: WorkspaceSpec) -> dict[str, Any]:
        return {"id": spec.id, "name": spec.name, "enabled": spec.enabled,
                "email_message_writeback": spec.email_message_writeback,
                "max_latency_seconds": spec.max_latency_seconds, "api_usage_ceiling": spec.api_usage_ceiling,
                "salesforce": spec.salesforce.public() if spec.salesforce else None,
                **{name: getattr(spec, name) for name in LEAD_AND_LATE_SETTINGS}}

    def _outcome(self, spec: WorkspaceSpec) -> str:
        """created, updated or unchanged (SecretKeyError when the stored secrets cannot be opened)."""
        old = self._entry(spec.id)
        if old is None:
            return "created"
        sealed_now = self.redis.hget(SEALED, spec.id)
        if isinstance(sealed_now, bytes):
            sealed_now = sealed_now.decode()
        same_secrets = ((spec.salesforce is None and sealed_now is None) or
                        (spec.salesforce is not None and sealed_now is not None and
                         self.keyring.open(sealed_now, spec.id) == spec.salesforce.secrets()))
        entry = self._new_entry(spec)
        return "unchanged" if same_secrets and all(old.get(k) == v for k, v in entry.items()) else "updated"

    def _put(self, spec: WorkspaceSpec) -> str:
        old = self._entry(spec.id)
        entry = self._new_entry(spec)
        entry["revision"] = (old or {}).get("revision", 0) + 1
        entry["updated_at"] = time.time()
        pipe = self.redis.pipeline()
        pipe.hset(ENTRIES, spec.id, json.dumps(entry))
        if spec.salesforce is not None:
            pipe.hset(SEALED, spec.id, self.keyring.seal(spec.salesforce.secrets()))
        else:
            pipe.hdel(SEALED, spec.id)
        pipe.execute()
        return "updated" if old is not None else "created"

    def _update(self, workspace_id: str, **changes: Any) -> WorkspaceConfig:
        entry = self._entry(workspace_id)
        if entry is None:
            raise WorkspaceNotFound(workspace_id)
        entry.update(changes, revision=entry.get("revision", 0) + 1, updated_at=time.time())
        self.redis.hset(ENTRIES, workspace_id, json.dumps(entry))
        self._bump()
        return self.get(workspace_id, secrets=False)

    def set_enabled(self, workspace_id: str, enabled: bool) -> WorkspaceConfig:
        config = self._update(workspace_id, enabled=enabled)
        if enabled:
            self._parked_due(workspace_id)
        return config

    def _parked_due(self, workspace_id: str) -> None:
        """What parked the workspace's events (disabled, credentials refused) was just fixed: they are due
        now, so the next release (beat's, every 15 s) sends them instead of waiting out their park time."""
        ParkingLot(self.redis).make_due(workspace_id, time.time())

    def connect(self, workspace_id: str, connection: SalesforceConnection) -> WorkspaceConfig:
        """Store a new way to sign in (e.g. from the console's OAuth flow), sealed."""
        sealed = self.keyring.seal(connection.secrets())
        if self._entry(workspace_id) is None:
            raise WorkspaceNotFound(workspace_id)
        self.redis.hset(SEALED, workspace_id, sealed)
        config = self._update(workspace_id, salesforce=connection.public())
        self._parked_due(workspace_id)
        return config

    def disconnect(self, workspace_id: str) -> WorkspaceConfig:
        self.redis.hdel(SEALED, workspace_id)
        return self._update(workspace_id, salesforce=None)

    def remove(self, workspace_id: str) -> dict[str, int]:
        """Delete the workspace and all of its data in Redis; returns the keys deleted, by kind."""
        if not is_workspace_id(workspace_id):
            raise WorkspaceNotFound(workspace_id)
        existed = self.redis.hdel(ENTRIES, workspace_id)
        self.redis.hdel(SEALED, workspace_id)
        deleted = delete_workspace_data(self.redis, workspace_id)
        if existed:
            deleted["registry entry"] = 1
        self._bump()
        return deleted

    def rotate_keys(self) -> int:
        """Seal every stored credential again with the first key; returns how many were re-sealed."""
        self.keyring.seal({})  # no key: say so even when nothing is stored yet
        sealed = self.redis.hgetall(SEALED)
        rotated = {_text(ws): self.keyring.rotate(_text(token), _text(ws)) for ws, token in sealed.items()}
        if rotated:
            self.redis.hset(SEALED, mapping=rotated)
        return len(rotated)

    def _bump(self) -> None:
        self.redis.incr(VERSION)


def delete_workspace_data(client: redis.Redis, workspace_id: str) -> dict[str, int]:
    """Every `sfsync:{ws}:*` key of the workspace, its dead letters and its place in the deployment-wide
    indexes, deleted; counts by the key's first part (ledger, mappings, ...) and `dead letters`."""
    counts: dict[str, int] = {}
    # dead letters first, counted as letters rather than as the keys that hold them
    removed = _delete_dead_letters(client, workspace_id)
    if removed:
        counts["dead letters"] = removed
    batch: list[bytes] = []
    for name in client.scan_iter(match=workspace_pattern(workspace_id), count=1000):
        batch.append(name)
        kind = (name.decode() if isinstance(name, bytes) else name).split(":", 3)[2]
        counts[kind] = counts.get(kind, 0) + 1
        if len(batch) >= 500:
            client.delete(*batch)
            batch = []
    if batch:
        client.delete(*batch)
    _forget_in_indexes(client, workspace_id)
    return counts


def _forget_in_indexes(client: redis.Redis, workspace_id: str) -> None:
    """The deployment-wide sets that name workspaces (parked lots, open breakers, outcomes) forget this one."""
    from events.outcome_log import WORKSPACES as OUTCOME_WORKSPACES
    from events.parking import ParkingLot
    from workers.breaker import OPEN_SET

    pipe = client.pipeline()
    for lot in ("parked", "retries"):
        pipe.srem(ParkingLot(client, lot).index, workspace_id)
    pipe.zrem(OPEN_SET, workspace_id)
    pipe.srem(OUTCOME_WORKSPACES, workspace_id)
    pipe.execute()


def _delete_dead_letters(client: redis.Redis, workspace_id: str) -> int:
    """The workspace's dead letters (kept in the deployment-wide store); how many were deleted."""
    from events.deadletter import DeadLetterStore

    return DeadLetterStore(client).remove_workspace(workspace_id)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _public_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k in SalesforceConnection.model_fields}


class MappingVersions:
    """Each workspace's mappings, versioned: every save is a new version; rollback saves an old one again."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def _keys(self, ws: str) -> tuple[str, str]:
        return key(ws, "mappings", "versions"), key(ws, "mappings", "current")

    def current(self, ws: str) -> tuple[int | None, dict[str, Any] | None]:
        versions, current = self._keys(ws)
        number = self.redis.get(current)
        if number is None:
            return None, None
        raw = self.redis.hget(versions, number)
        return (int(number), json.loads(raw)["mappings"]) if raw else (None, None)

    @staticmethod
    def _normal(ws: str, mappings: dict[str, Any]) -> dict[str, Any]:
        return mappings_from_data(mappings, f"workspace {ws} mappings").model_dump(mode="json", exclude_defaults=True)

    def differs(self, ws: str, mappings: dict[str, Any]) -> bool:
        """Whether saving `mappings` would make a new version (they differ from the current one)."""
        _, now = self.current(ws)
        return now is None or now != self._normal(ws, mappings)

    def set(self, ws: str, mappings: dict[str, Any], *, author: str, note: str = "") -> int | None:
        """Save `mappings` (already validated) as the new current version; None when they equal the current."""
        normal = self._normal(ws, mappings)
        _, now = self.current(ws)
        if now is not None and now == normal:
            return None
        versions, current = self._keys(ws)
        number = self.redis.hincrby(versions, "next", 1)
        record = {"version": number, "saved_at": time.time(), "author": author, "note": note, "mappings": normal}
        pipe = self.redis.pipeline()
        pipe.hset(versions, str(number), json.dumps(record))
        pipe.set(current, number)
        if number > MAPPING_HISTORY:
            pipe.hdel(versions, str(number - MAPPING_HISTORY))
        pipe.incr(VERSION)
        pipe.execute()
        return number

    def history(self, ws: str) -> list[dict[str, Any]]:
        versions, _ = self._keys(ws)
        records = [json.loads(v) for k, v in self.redis.hgetall(versions).items() if k not in (b"next", "next")]
        return sorted(records, key=lambda r: r["version"], reverse=True)

    def get(self, ws: str, version: int) -> dict[str, Any] | None:
        raw = self.redis.hget(self._keys(ws)[0], str(version))
        return json.loads(raw) if raw else None

    def rollback(self, ws: str, version: int, *, author: str) -> int:
        """Save version `version` again as the newest (history is never rewritten)."""
        old = self.get(ws, version)
        if old is None:
            raise RegistryError(f"workspace {ws!r} has no mappings version {version} (see `sfsync mappings history {ws}`)")
        saved = self.set(ws, old["mappings"], author=author, note=f"rollback to version {version}")
        return saved if saved is not None else self.current(ws)[0]

"""The workspace registry in Redis: each workspace's org connection (credentials sealed), settings and mappings."""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import redis
from pydantic import ValidationError

from events.audit import AuditLog
from events.deadletter import DeadLetterStore
from events.keys import BREAKERS_OPEN, key, workspace_pattern
from events.outcome_log import WORKSPACES as OUTCOME_WORKSPACES
from events.parking import ParkingLot
from schemas.mappings_file import MappingConfigError, mappings_from_data
from schemas.salesforce_hosts import HostNotAllowed, HostPolicy
from schemas.workspace import (
    FILE_KEYS,
    LATE_CONTACT_DAYS,
    LATE_CONTACT_MAX,
    RegistryFile,
    SalesforceConnection,
    WorkspaceSpec,
    is_workspace_id,
)
from workspaces.secrets import Keyring, SecretKeyError, TamperedEntry

#: registry keys share one hash tag; `_registry` can never be a workspace id (ids start with a letter or digit)
ENTRIES = "sfsync:{_registry}:workspaces"
SEALED = "sfsync:{_registry}:secrets"
VERSION = "sfsync:{_registry}:version"
#: earlier mapping versions kept per workspace
MAPPING_HISTORY = 50
#: tries of one entry's re-sealing when other changes to the registry keep coming in between
RESEAL_TRIES = 20
#: who the audit log names for what the registry itself noticed or did
SYSTEM = "sfsync"
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
    #: the keys its emitters sign with (empty: events are accepted unsigned; also when read without secrets)
    emitter_keys: tuple[str, ...] = ()
    #: how many emitter keys it has, as its entry shows (readable without secrets)
    emitter_key_count: int = 0

    @property
    def uses_leads(self) -> bool:
        """Leads are matched or created: the CRM cycle reads their changes too."""
        return self.match_leads or self.play_creates == "lead"

    @property
    def signing_key(self) -> str | None:
        """The key sfsync signs with what it sends again for this workspace (retries, released parked events)."""
        return self.emitter_keys[0] if self.emitter_keys else None

    def public(self) -> dict[str, Any]:
        """Everything but secrets: for `show`, `list --json`, the console."""
        return {"id": self.id, "name": self.name, "enabled": self.enabled,
                "connected": self.salesforce_public is not None, "salesforce": self.salesforce_public,
                "email_message_writeback": self.email_message_writeback,
                "max_latency_seconds": self.max_latency_seconds, "api_usage_ceiling": self.api_usage_ceiling,
                **{name: getattr(self, name) for name in LEAD_AND_LATE_SETTINGS},
                "revision": self.revision, "mappings_version": self.mappings_version,
                "updated_at": self.updated_at, "signed_events": self.emitter_key_count > 0,
                "emitter_keys": self.emitter_key_count}


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    mappings_saved: dict[str, int] = field(default_factory=dict)


def parse_registry_file(data: Any) -> list[WorkspaceSpec]:
    """Every workspace of a registry file, checked as a whole (RegistryError lists every problem)."""
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
    if len(loc) == 4 and loc[2] == "salesforce":
        known = [*SalesforceConnection.model_fields, *FILE_KEYS]
    elif len(loc) == 3:
        known = [*WorkspaceSpec.model_fields, "mappings_file"]
    else:
        known = list(RegistryFile.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return "unknown key" + (f"; did you mean {close[0]}?" if close else f" (known: {', '.join(sorted(known))})")


class Registry:
    """Workspaces in Redis. A connection is used only as sealed: its clear copy in the entry is for showing,
    and an entry whose clear copy and seal disagree, or whose seal belongs to another workspace, is refused
    (audited, never used). Every host a connection names must be one `hosts` allows, when stored and when used.
    """

    def __init__(self, client: redis.Redis, keyring: Keyring,
                 hosts: HostPolicy = HostPolicy(),  # noqa: B008 - a frozen dataclass: one shared default is safe
                 audit: AuditLog | None = None):
        self.redis = client
        self.keyring = keyring
        self.hosts = hosts
        self.audit = audit or AuditLog(client)

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
        connection, keys = self._open(ws, entry) if secrets else (None, ())
        version, mappings = MappingVersions(self.redis).current(ws)
        return WorkspaceConfig(
            id=ws, name=entry.get("name", ""), enabled=entry.get("enabled", True),
            email_message_writeback=entry.get("email_message_writeback", True),
            max_latency_seconds=entry.get("max_latency_seconds", 5.0),
            api_usage_ceiling=entry.get("api_usage_ceiling", 0.8), salesforce=connection,
            salesforce_public=public, revision=entry.get("revision", 1), mappings_version=version,
            mappings=mappings, updated_at=entry.get("updated_at", 0.0), emitter_keys=keys,
            emitter_key_count=int(entry.get("emitter_keys") or 0),
            **{name: entry[name] for name in LEAD_AND_LATE_SETTINGS if name in entry})

    def _open(self, ws: str, entry: dict[str, Any]) -> tuple[SalesforceConnection | None, tuple[str, ...]]:
        """The workspace's connection and emitter keys as sealed; refused (audited) when the entry was changed
        outside sfsync. A seal is always opened when there is one: what it says wins over the entry's copy."""
        public = entry.get("salesforce")
        sealed = _text(self.redis.hget(SEALED, ws))
        try:
            if sealed is None:
                if public is not None or entry.get("emitter_keys"):
                    raise TamperedEntry(f"the registry entry of workspace {ws!r} says it is connected or signs its "
                                        "events but holds no sealed connection: it was changed outside sfsync and "
                                        "is not used")
                return None, ()
            opened = self.keyring.open_workspace(sealed, ws)
            if opened.earlier:
                # a seal in the earlier format always holds a dict: the connection's secrets
                connection = (self._reseal(ws, public, opened.connection, sealed)  # type: ignore[arg-type]  # as above
                              if public is not None else None)
            else:
                connection = _connection(ws, opened.connection) if opened.connection is not None else None
                if (connection.public() if connection else None) != public:
                    raise TamperedEntry(f"the registry entry of workspace {ws!r} shows a connection (URLs, "
                                        "username, client id) that differs from the sealed one: it was changed "
                                        "outside sfsync and is not used")
            if connection is not None:
                self.check_hosts(ws, connection)
        except SecretKeyError as exc:
            self.audit.record(user=SYSTEM, role="", action="registry_entry_refused", workspace=ws,
                              detail=f"{type(exc).__name__}: {exc}")
            raise
        return connection, opened.emitter_keys

    def _reseal(self, ws: str, public: dict[str, Any], secrets: dict[str, Any], old: str) -> SalesforceConnection:
        """An entry sealed by an earlier version (secrets only) sealed again whole, bound to its workspace,
        unless the registry changed meanwhile (then the change wins and is read next time)."""
        connection = _connection(ws, {**_public_fields(public), **secrets})
        self.check_hosts(ws, connection)
        new = self.keyring.seal_workspace(ws, connection.everything())
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(SEALED, ENTRIES)
                entry = pipe.hget(ENTRIES, ws)
                if _text(pipe.hget(SEALED, ws)) != old or not entry or json.loads(entry).get("salesforce") != public:
                    return connection
                pipe.multi()
                pipe.hset(SEALED, ws, new)
                pipe.execute()
            except redis.WatchError:
                return connection
        self.audit.record(user=SYSTEM, role="", action="registry_entry_resealed", workspace=ws,
                          detail="sealed by an earlier version (secrets only); now sealed whole and bound "
                                 f"to its workspace ({', '.join(f'{w} {u}' for w, u in connection.urls())})")
        return connection

    def check_hosts(self, ws: str, connection: SalesforceConnection) -> None:
        """SecretKeyError naming the URL when the connection would send credentials to a host not allowed."""
        for what, url in connection.urls():
            try:
                self.hosts.check(url, f"the {what} of workspace {ws!r}")
            except HostNotAllowed as exc:
                raise SecretKeyError(f"{exc}; its connection is not used") from None

    # --- changing -----------------------------------------------------------------------
    def _refuse_hosts(self, specs: list[WorkspaceSpec]) -> None:
        problems = []
        for spec in specs:
            if spec.salesforce is not None:
                try:
                    self.check_hosts(spec.id, spec.salesforce)
                except SecretKeyError as exc:
                    problems.append(str(exc).removesuffix("; its connection is not used"))
        if problems:
            raise RegistryError("; ".join(problems) + "; nothing was changed")

    def plan(self, specs: list[WorkspaceSpec]) -> ApplyReport:
        """What `apply` would do, changing nothing: each workspace created, updated or unchanged, and the
        mapping versions that would be saved (numbered -1: the number is given when saved)."""
        self._refuse_hosts(specs)
        report = ApplyReport()
        for spec in specs:
            getattr(report, self._outcome(spec)).append(spec.id)
            if spec.mappings is not None and MappingVersions(self.redis).differs(spec.id, spec.mappings):
                report.mappings_saved[spec.id] = -1
        return report

    def apply(self, specs: list[WorkspaceSpec], *, author: str = "cli",
              check: Callable[[WorkspaceSpec], None] | None = None) -> ApplyReport:
        """Create or update each workspace; `check` (e.g. a describe validation) runs on all before any change."""
        if any(self._sealed_part(s) for s in specs):
            self.keyring.seal({})  # no key: refuse before changing anything
        self._refuse_hosts(specs)
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
                # plan() names a workspace in mappings_saved only when its spec has mappings
                version = MappingVersions(self.redis).set(spec.id, spec.mappings,  # type: ignore[arg-type]  # as above
                                                          author=author)
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
                "emitter_keys": len(spec.emitter_keys or ()),
                **{name: getattr(spec, name) for name in LEAD_AND_LATE_SETTINGS}}

    @staticmethod
    def _sealed_part(spec: WorkspaceSpec) -> bool:
        return spec.salesforce is not None or bool(spec.emitter_keys)

    def _outcome(self, spec: WorkspaceSpec) -> str:
        """created, updated or unchanged (SecretKeyError when the stored secrets cannot be opened)."""
        old = self._entry(spec.id)
        if old is None:
            return "created"
        sealed_now = _text(self.redis.hget(SEALED, spec.id))
        same_secrets = ((not self._sealed_part(spec) and sealed_now is None) or
                        (self._sealed_part(spec) and sealed_now is not None and self._seals(spec, sealed_now)))
        entry = self._new_entry(spec)
        return "unchanged" if same_secrets and all(old.get(k) == v for k, v in entry.items()) else "updated"

    def _seals(self, spec: WorkspaceSpec, token: str) -> bool:
        """Whether `token` seals exactly the spec's connection and emitter keys in the current format
        (SecretKeyError when no key opens it; one sealed for another workspace or in the older format is to
        be written again)."""
        try:
            opened = self.keyring.open_workspace(token, spec.id)
        except TamperedEntry:
            return False
        return not opened.earlier and opened.connection == (spec.salesforce.everything() if spec.salesforce else
                                                            None) and opened.emitter_keys == spec.emitter_key_values()

    def _put(self, spec: WorkspaceSpec) -> str:
        old = self._entry(spec.id)
        entry = self._new_entry(spec)
        entry["revision"] = (old or {}).get("revision", 0) + 1
        entry["updated_at"] = time.time()
        pipe = self.redis.pipeline()
        pipe.hset(ENTRIES, spec.id, json.dumps(entry))
        if self._sealed_part(spec):
            pipe.hset(SEALED, spec.id, self.keyring.seal_workspace(
                spec.id, spec.salesforce.everything() if spec.salesforce else None, spec.emitter_key_values()))
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
        """Store a new way to sign in (e.g. from the console's OAuth flow), sealed whole with the workspace's
        emitter keys as they are."""
        self.check_hosts(workspace_id, connection)
        if self._entry(workspace_id) is None:
            raise WorkspaceNotFound(workspace_id)
        keys = self._kept_keys(workspace_id)
        self.redis.hset(SEALED, workspace_id, self.keyring.seal_workspace(workspace_id, connection.everything(), keys))
        config = self._update(workspace_id, salesforce=connection.public())
        self._parked_due(workspace_id)
        return config

    def _kept_keys(self, workspace_id: str) -> tuple[str, ...]:
        """The emitter keys a new connection (or none) is sealed with: the workspace's, which must open (a
        workspace that signs its events must not lose its keys because its entry was changed in Redis)."""
        try:
            return self.get(workspace_id).emitter_keys
        except SecretKeyError as exc:
            raise SecretKeyError(f"{exc}. To replace it, apply the workspace's registry file again (without "
                                 "`salesforce:` to disconnect it): that writes its connection and emitter keys "
                                 "anew") from None

    def disconnect(self, workspace_id: str) -> WorkspaceConfig:
        """Forget the way to sign in; the emitter keys, if any, stay sealed."""
        keys = self._kept_keys(workspace_id) if self._entry(workspace_id) else ()
        if keys:
            self.redis.hset(SEALED, workspace_id, self.keyring.seal_workspace(workspace_id, None, keys))
        else:
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
        """Seal every stored connection again with the first key (one written by an earlier version is sealed
        whole, bound to its workspace); returns how many were re-sealed.

        Each entry is re-sealed in a transaction of its own that is dropped when the registry changed since
        it was read (then read again): a disconnect, removal or new connection made meanwhile stands.
        A connection that no key opens stops the command before that entry; those before it stay re-sealed.
        """
        self.keyring.seal({})  # no key: say so even when nothing is stored yet
        rotated = 0
        for ws in sorted(w.decode() if isinstance(w, bytes) else w for w in self.redis.hkeys(SEALED)):
            rotated += self._rotate_one(ws)
        return rotated

    def _rotate_one(self, ws: str) -> int:
        for _ in range(RESEAL_TRIES):
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(SEALED, ENTRIES)
                    token, raw = _text(pipe.hget(SEALED, ws)), pipe.hget(ENTRIES, ws)
                    if token is None:
                        return 0  # disconnected or removed meanwhile
                    opened = self.keyring.open_workspace(token, ws)
                    if opened.earlier:
                        public = json.loads(raw).get("salesforce") if raw else None
                        if public is None:
                            return 0
                        # a seal in the earlier format always holds a dict: the connection's secrets
                        connection = _connection(ws, {**_public_fields(public),
                                                      **opened.connection})  # type: ignore[dict-item]  # as above
                        self.check_hosts(ws, connection)
                        new = self.keyring.seal_workspace(ws, connection.everything())
                    else:
                        new = self.keyring.rotate(token, ws)
                    pipe.multi()
                    pipe.hset(SEALED, ws, new)
                    pipe.execute()
                    return 1
                except redis.WatchError:
                    continue
        raise RegistryError(f"workspace {ws!r} changed {RESEAL_TRIES} times while being re-sealed; run "
                            "`sfsync workspaces rotate-keys` again")

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
    pipe = client.pipeline()
    for lot in ("parked", "retries"):
        pipe.srem(ParkingLot(client, lot).index, workspace_id)
    pipe.zrem(BREAKERS_OPEN, workspace_id)
    pipe.srem(OUTCOME_WORKSPACES, workspace_id)
    pipe.execute()


def _delete_dead_letters(client: redis.Redis, workspace_id: str) -> int:
    """The workspace's dead letters (kept in the deployment-wide store); how many were deleted."""
    return DeadLetterStore(client).remove_workspace(workspace_id)


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _connection(ws: str, data: dict[str, Any]) -> SalesforceConnection:
    try:
        return SalesforceConnection(**data)
    except (ValidationError, TypeError):
        raise TamperedEntry(f"the sealed connection of workspace {ws!r} is not a complete connection") from None


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

    def rollback(self, ws: str, version: int, *, author: str) -> int | None:
        """Save version `version` again as the newest (history is never rewritten). Returns the number now
        current: the new version's, or the current one's when its mappings are already those (None only when
        the workspace's mappings were removed meanwhile)."""
        old = self.get(ws, version)
        if old is None:
            raise RegistryError(f"workspace {ws!r} has no mappings version {version} (see `sfsync mappings history {ws}`)")
        saved = self.set(ws, old["mappings"], author=author, note=f"rollback to version {version}")
        return saved if saved is not None else self.current(ws)[0]

"""A worker process's runtime, built explicitly once after fork: Redis, the org connection, and the batch pipeline."""

from __future__ import annotations

import logging
import threading
from typing import Any, cast

import redis

from events.connection_state import ConnectionState
from events.contact_index import ContactIndex, CreationLocks
from events.deadletter import Retention
from events.late_contacts import LateContacts
from events.ledger import Ledger
from events.own_writes import OWN_WRITE_RETENTION, OwnWrites
from events.parking import UsageGauge
from events.redis_conn import connect
from events.rep_users import RepUsers
from schemas.codes import SESSION_CODES, ErrorCode
from schemas.events import Event
from schemas.mappings import MappingConfig
from schemas.settings import Settings
from workers.breaker import Breakers
from workers.decide import RetryPolicy
from workers.gate import StoredStanding
from workers.governor import Governor
from workers.login_gate import gated_login
from workers.observability import metrics
from workers.pipeline import Pipeline, SignatureCheck
from workers.redelivery import Redeliveries
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway, SharedDescribes
from workers.settle import Settler
from workers.sync.engine import SyncContext, sync_batch
from workers.sync.mappings import errors_and_warnings, mappings_from_data, usable_mappings, validate_mappings
from workers.sync.outcomes import Outcome, Retry, Waiting
from workspaces.directory import Directory
from workspaces.registry import WorkspaceConfig
from workspaces.secrets import SecretKeyError

log = logging.getLogger("sfsync.worker")


class OrgConnection:
    """One workspace's gateway and sync context, logged in lazily, and again by the next batch after a
    failed login (its events are retried or parked meanwhile, so this cannot hammer Salesforce).

    A new registry revision of the workspace (credentials, settings) logs in again; a new mappings
    version is applied to the next batch without logging in again.
    """

    def __init__(self, workspace_id: str, settings: Settings, directory: Directory, client: redis.Redis,
                 governor: Governor):
        self.workspace_id = workspace_id
        self.settings = settings
        self.directory = directory
        self.redis = client
        self.governor = governor
        self.state = ConnectionState(client)
        self.auth: str | None = None
        self._connected: bool | None = None
        self._context: SyncContext | None = None
        self._built_for: tuple[int, int | None] | None = None
        self._lock = threading.Lock()

    def context(self) -> SyncContext:
        config = self.directory.get(self.workspace_id)
        if config is None:
            raise SalesforceError(ErrorCode.WORKSPACE_NOT_SERVED, f"workspace {self.workspace_id!r} is no longer served")
        with self._lock:
            if self._context is not None and self._built_for == (config.revision, config.mappings_version):
                return self._context
            # _built_for is set whenever _context is
            if self._context is not None and self._built_for[0] == config.revision:  # type: ignore[index]
                # new mappings only: same session, mappings checked against the cached describe
                # the context's gateway is the SalesforceGateway _connect logged in with
                self._context = self._with_mappings(cast(SalesforceGateway, self._context.gateway), config)
                self._built_for = (config.revision, config.mappings_version)
                return self._context
            try:
                self._context = self._connect()
            except SalesforceError as error:
                if error.code in SESSION_CODES:
                    self.lost(error)
                raise
            self._built_for = (config.revision, config.mappings_version)
            self.connected()
            return self._context

    def sync(self, events: list[Event]) -> list[Outcome]:
        """The sync step for this workspace: connect (or reuse the connection), sync, and after a refused
        session log in again once and sync again (the ledger keeps it exactly-once). A connection that
        fails is every event's outcome; a session that cannot be renewed leaves the events with their
        INVALID_SESSION_ID outcome (they wait parked) and the connection shown lost."""
        try:
            context = self.context()
        except SalesforceError as error:
            return [Retry(error) for _ in events]
        outcomes = sync_batch(events, context)
        if _session_refused(outcomes):
            outcomes, context = self._after_session_refused(events, outcomes, context)
        usage = context.gateway.usage
        if usage is not None:
            self.governor.note(usage.used, usage.limit)
        return outcomes

    def _after_session_refused(self, events: list[Event], outcomes: list[Outcome], context: SyncContext
                               ) -> tuple[list[Outcome], SyncContext]:
        self.forget()
        refused = next(o.error for o in outcomes if isinstance(o, Retry) and o.error.code in SESSION_CODES)
        if self.can_renew:
            try:
                renewed = self.context()
            except SalesforceError as error:
                return [Retry(error) for _ in events], context
            outcomes = sync_batch(events, renewed)
            if not _session_refused(outcomes):
                return outcomes, renewed
        self.lost(refused)
        return outcomes, context

    def forget(self) -> None:
        """Log in again on the next batch (the session was refused)."""
        with self._lock:
            self._context = None

    @property
    def can_renew(self) -> bool:
        """Password, OAuth refresh-token and JWT logins can get a new session; a bare access token cannot."""
        return self.auth in ("password", "jwt", "oauth")

    def lost(self, error: SalesforceError) -> None:
        """The org refuses the credentials held: say so (status, /readyz, metric) until a login works."""
        self.state.mark_lost(self.workspace_id, error.code, error.message)
        metrics.set_connected(False, self.workspace_id)
        self._connected = False
        log.error("Salesforce connection of workspace %s lost; its events wait parked until it works again: %s",
                  self.workspace_id, error, extra={"workspace_id": self.workspace_id})

    def connected(self) -> None:
        if self._connected is not True:
            self.state.mark_connected(self.workspace_id)
            metrics.set_connected(True, self.workspace_id)
            self._connected = True

    def _connect(self) -> SyncContext:
        config = self.directory.for_login(self.workspace_id)
        if config is None or config.salesforce is None:
            self.auth = None
            raise SalesforceError(ErrorCode.LOGIN_FAILED, f"workspace {self.workspace_id!r} has no Salesforce connection: "
                                                  "connect its org (`sfsync workspaces apply` or the console)")
        self.auth = config.salesforce.auth
        gateway = gated_login(self.state, self.workspace_id, config.salesforce,
                              timeout=self.settings.salesforce_timeout, hosts=self.settings.salesforce_hosts,
                              shared=SharedDescribes(self.redis, self.workspace_id))
        try:
            return self._with_mappings(gateway, config)
        except SalesforceError:
            if gateway.usage is not None:  # a spent quota says so in its header
                self.governor.note(gateway.usage.used, gateway.usage.limit)
            raise

    def _with_mappings(self, gateway: SalesforceGateway, config: WorkspaceConfig) -> SyncContext:
        mappings, errors = usable_mappings_for(config, gateway)
        miss_ttl = int(min(self.settings.crm_sync_interval, 900))
        return SyncContext(
            gateway=gateway, mappings=mappings, workspace_id=self.workspace_id, ledger=Ledger(self.redis),
            index=ContactIndex(self.redis, miss_ttl=miss_ttl),
            locks=CreationLocks(self.redis), writeback_enabled=config.email_message_writeback,
            mapping_errors=tuple(errors), own_writes=OwnWrites(self.redis, retention=own_write_retention(self.settings)),
            users=RepUsers(self.redis), **lead_and_late_context(config, self.redis, miss_ttl))


def lead_and_late_context(config: WorkspaceConfig, client: redis.Redis, miss_ttl: int) -> dict[str, Any]:
    """The SyncContext fields of the workspace's leads, late contacts and already-logged settings."""
    waiting = Waiting(config.late_contact_days, config.late_contact_max) if config.late_contact_days > 0 else None
    return {"match_leads": config.match_leads, "play_creates": config.play_creates,
            "lead_index": ContactIndex.of_leads(client, miss_ttl=miss_ttl), "waiting": waiting,
            "late": LateContacts(client), "skip_already_logged": config.skip_already_logged}


def own_write_retention(settings: Settings) -> float:
    """Seconds sfsync's own Contact writes are remembered when no CRM cycle prunes them: a day, or
    two cycles and their overlap when that is longer (a cycle prunes them once it has read past them)."""
    return max(OWN_WRITE_RETENTION, 2 * settings.crm_sync_interval + settings.crm_sync_overlap)


def mappings_of(config: WorkspaceConfig) -> MappingConfig:
    if config.mappings is None:
        return MappingConfig()
    origin = (f"workspace {config.id} mappings version {config.mappings_version}" if config.mappings_version
              else f"workspace {config.id} mappings")
    return mappings_from_data(config.mappings, origin)


def usable_mappings_for(config: WorkspaceConfig, gateway: SalesforceGateway):
    """The workspace's mappings less the optional ones this org lacks (each logged), and the errors.

    Errors are kept on purpose: a worker only runs with them when its start-up check was
    skipped or the org changed since, and then the affected events must fail visibly into
    the dead-letter store (to be replayed once the mapping is fixed), not lose a field quietly.
    """
    config_ = mappings_of(config)
    errors, warnings = errors_and_warnings(validate_mappings(config_, gateway.describe))
    extra = {"workspace_id": config.id}
    for problem in errors:
        log.error("field mapping does not fit the org of %s; affected writes will fail: %s", config.id, problem,
                  extra=extra)
    for problem in warnings:
        log.warning("field mapping left out for %s: %s", config.id, problem, extra=extra)
    return usable_mappings(config_, warnings), errors


class WorkerRuntime:
    """Everything one worker process needs to sync batches of any workspace; passed explicitly to what uses it."""

    def __init__(self, settings: Settings, client: redis.Redis, directory: Directory):
        self.settings = settings
        self.redis = client
        self.directory = directory
        self.policy = RetryPolicy.from_settings(settings)
        # message-level state (deliveries, marks) is the deployment's, whichever workspaces a message names
        self.redeliveries = Redeliveries(client, settings.workspace_id, max_deliveries=settings.max_deliveries,
                                         visibility_timeout=settings.visibility_timeout)
        self.breakers = Breakers(client)
        self.standing = StoredStanding(directory, self.breakers, self.governor)
        self.pipeline = Pipeline(policy=self.policy, histories=self.redeliveries, signature=SignatureCheck(directory),
                                 standing=self.standing, orgs=self, breakers=self.breakers, settler=self._settler_for,
                                 batch_size=settings.batch_size, on_unreadable_credentials=self._credentials_unreadable)
        self.retention = Retention.from_settings(settings)
        self._connections: dict[str, OrgConnection] = {}
        self._settlers: dict[str, Settler] = {}
        self._lock = threading.Lock()

    @classmethod
    def build(cls, settings: Settings) -> "WorkerRuntime":
        client = connect(settings.redis_url.get_secret_value())
        return cls(settings, client, Directory(settings, client))

    # --- per workspace ------------------------------------------------------------------
    def connection(self, workspace_id: str) -> OrgConnection:
        """The workspace's connection, made on first use (its governor follows the workspace's ceiling)."""
        with self._lock:
            held = self._connections.get(workspace_id)
            if held is None:
                config = self.directory.get(workspace_id)
                ceiling = config.api_usage_ceiling if config else self.settings.api_usage_ceiling
                governor = Governor(UsageGauge(self.redis), workspace_id, ceiling)
                held = self._connections[workspace_id] = OrgConnection(
                    workspace_id, self.settings, self.directory, self.redis, governor)
            return held

    def governor(self, workspace_id: str) -> Governor:
        return self.connection(workspace_id).governor

    def settler(self, workspace_id: str | None = None) -> Settler:
        ws = workspace_id or self.settings.workspace_id
        with self._lock:
            held = self._settlers.get(ws)
            if held is None:
                held = self._settlers[ws] = Settler(self.redis, ws, known=self.directory.known,
                                                    retention=self.retention, policy=self.policy)
            return held

    def _settler_for(self, workspace_id: str | None) -> Settler:
        """A served workspace's own settler; events of no served workspace settle in the deployment's."""
        served = workspace_id is not None and self.directory.known(workspace_id)
        return self.settler(workspace_id if served else None)

    # --- the pipeline's steps that need this process's connections (workers/pipeline.py runs the batch)
    def sync(self, ws: str, events: list[Event]) -> list[Outcome]:
        """The pipeline's sync step: the workspace's events through its connection."""
        return self.connection(ws).sync(events)

    def _credentials_unreadable(self, ws: str, refused: SalesforceError) -> None:
        # the org cannot be reached until the key is fixed: shown as disconnected, events parked
        ConnectionState(self.redis).mark_lost(ws, refused.code, refused.message)


def _session_refused(outcomes: list[Outcome]) -> bool:
    return any(isinstance(o, Retry) and o.error.code == ErrorCode.INVALID_SESSION_ID for o in outcomes)


def prewarm(runtime: WorkerRuntime) -> None:
    """Log in and read describe when a pool process starts, so its first batch does not wait for it.

    In a thread: Celery gives a new pool process only seconds to report up, and a login during
    a Salesforce outage takes longer. A batch arriving meanwhile waits on the connection's lock.
    """
    def build() -> None:
        try:
            served = runtime.directory.ids()
        except Exception:  # Redis restarting: the first batches connect instead
            log.exception("could not read the workspaces this worker serves; their first batches will connect")
            return
        for ws in served:
            try:
                runtime.connection(ws).context()
            except SecretKeyError:
                pass  # the directory has logged why its credentials cannot be opened
            except SalesforceError as error:
                log.error("cannot reach the org of workspace %s: %s", ws, error, extra={"workspace_id": ws})
            except Exception:  # the first batch tries again and settles what fails
                log.exception("could not prepare the connection of workspace %s; its first batch will try again",
                              ws, extra={"workspace_id": ws})

    threading.Thread(target=build, name="sfsync-prewarm", daemon=True).start()

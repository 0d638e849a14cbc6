"""What the workspace commands share: opening the registry, naming the author, checking mappings against an org."""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field

from events.redis_conn import connect
from schemas.codes import ErrorCode
from schemas.mappings import MappingConfig
from schemas.salesforce_hosts import HostPolicy
from schemas.settings import SettingsError, load_settings
from schemas.workspace import SalesforceConnection
from workers.cli import exits
from workers.cli.exits import Failure
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway
from workers.sync.mappings import MappingProblem, errors_and_warnings, validate_mappings
from workspaces.registry import Registry
from workspaces.secrets import Keyring

#: seconds a login or describe of a command may take
ORG_TIMEOUT = 30.0
#: Salesforce error codes that mean the org did not answer (as opposed to answering "no")
UNREACHABLE_CODES = frozenset({"CONNECTION_ERROR", "TIMEOUT", "HTTP_5XX"})


def open_registry() -> Registry:
    """The registry of SFSYNC_REDIS_URL, with the keys of SFSYNC_SECRET_KEYS (SecretKeyError when malformed)."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise Failure(str(exc), exits.CONFIG) from None
    keys = settings.secret_keys.get_secret_value() if settings.secret_keys else None
    keyring = Keyring(keys)
    return Registry(connect(settings.redis_url.get_secret_value()), keyring, hosts=settings.salesforce_hosts)


def author() -> str:
    """Who made a change from the command line: the OS user, prefixed `cli:`."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in the environment (some containers)
        return "cli:unknown"


@dataclass
class OrgCheck:
    """The result of checking mappings against one org: its problems, or why it could not be asked."""

    errors: list[MappingProblem] = field(default_factory=list)
    warnings: list[MappingProblem] = field(default_factory=list)
    #: set when the org could not be asked (no connection, no answer, login refused)
    unreachable: str | None = None
    #: the Salesforce error code when the org could not be asked
    code: str | None = None

    @property
    def ok(self) -> bool:
        return self.unreachable is None and not self.errors


def check_against_org(connection: SalesforceConnection | None, config: MappingConfig, hosts: HostPolicy) -> OrgCheck:
    """Sign in with `connection` (to hosts `hosts` allows), read the describes the mappings need, and sort
    their problems."""
    if connection is None:
        return OrgCheck(unreachable="the workspace is not connected to an org", code=ErrorCode.NOT_CONNECTED)

    try:
        gateway = SalesforceGateway.from_connection(connection, ORG_TIMEOUT, hosts=hosts)
        problems = validate_mappings(config, gateway.describe)
    except SalesforceError as exc:
        return OrgCheck(unreachable=str(exc), code=exc.code)
    errors, warnings = errors_and_warnings(problems)
    return OrgCheck(errors=errors, warnings=warnings)

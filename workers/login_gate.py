"""Refused logins, rationed: a refused login is tried again after hours, then not at all until a person acts.

Salesforce counts every refused login against the integration user and locks it after the org's
limit (3, 5 or 10 invalid logins; 10 by default), which stops every integration that uses the user.
Workers would otherwise try a refused login at every batch, every release of parked work (15 s)
and every breaker probe. So all of them go through this gate, shared in Redis per workspace:

- a login refused with some credentials is tried again once, LOGIN_RETRY_AFTER later: at most
  MAX_REFUSED_LOGINS refused tries in all, fewer than the strictest lockout Salesforce offers;
- then logins of the workspace stop; its events wait parked. They start again when a person acts:
  `sfsync workspaces test WS` or the console's Test connection (either logs in once, whatever the
  gate says, and opens it when the login works), or new credentials (any change to them opens it);
- only one process makes the try that is due (a claim in Redis), and transient failures (the org did
  not answer) are not refusals: the breaker deals with those.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from events.connection_state import LOGIN_FIELDS, ConnectionState
from events.parking import ParkingLot
from schemas.codes import ErrorCode
from schemas.salesforce_hosts import HostPolicy
from schemas.workspace import SalesforceConnection
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway, SharedDescribes

#: refused logins with the same credentials before logins stop until a person acts
MAX_REFUSED_LOGINS = 2
#: seconds after a refused login before the next (and last) try
LOGIN_RETRY_AFTER = 2 * 3600.0
#: seconds one process holds the try that is due before another may make it (a login takes seconds)
CLAIM_LEASE = 120.0
#: the code a refused or held-back login reports (events wait parked under it)
REFUSED = ErrorCode.LOGIN_FAILED


@dataclass(frozen=True)
class LoginPolicy:
    max_refused: int = MAX_REFUSED_LOGINS
    retry_after: float = LOGIN_RETRY_AFTER

    def next_try(self, refused: int, last_refused_at: float) -> float | None:
        """When the next login may be made after `refused` refusals, the last at `last_refused_at`; None: not
        until a person acts."""
        if refused <= 0:
            return 0.0
        if refused >= self.max_refused:
            return None
        return last_refused_at + self.retry_after


POLICY = LoginPolicy()

Changes = dict[str, "str | None"]


def may_log_in(fields: dict[str, str], digest: str | Callable[[], str], now: float, policy: LoginPolicy = POLICY,
               lease: float = CLAIM_LEASE) -> tuple[bool, Changes]:
    """(may this process log in now, the state's fields to write: a value sets, None deletes).

    Nothing refused with these credentials: yes. Refused before: only once the policy's next try is due,
    and only for the one process that claims it (for `lease` seconds). `digest` may be given as a function:
    it is then computed only when a refusal is on record to compare it with (the digest is deliberately
    slow and memory-hungry, and a workspace whose logins work never needs it)."""
    refused = int(fields.get("login_refused") or 0)
    if refused and fields.get("login_fingerprint") != (digest() if callable(digest) else digest):
        return True, {name: None for name in LOGIN_FIELDS}  # other credentials: the count starts again
    if not refused:
        return True, {}
    due = policy.next_try(refused, float(fields.get("login_refused_at") or 0))
    if due is None or due > now or float(fields.get("login_claim_until") or 0) > now:
        return False, {}
    return True, {"login_claim_until": f"{now + lease:.3f}"}


def after_refusal(fields: dict[str, str], digest: str, now: float) -> tuple[None, Changes]:
    """The fields to write when a login with the credentials `digest` names was refused at `now`."""
    same = fields.get("login_fingerprint") == digest
    refused = (int(fields.get("login_refused") or 0) if same else 0) + 1
    return None, {"login_refused": str(refused), "login_refused_at": f"{now:.3f}", "login_fingerprint": digest,
                  "login_claim_until": None}


def fingerprint(connection: SalesforceConnection) -> str:
    """A digest of the credentials (slow to reverse: Redis keeps it beside the state)."""
    return _fingerprint(json.dumps(connection.everything(), sort_keys=True))


@lru_cache(maxsize=64)
def _fingerprint(text: str) -> str:
    # scrypt, not a plain hash: a password's digest must not be cheap to test guesses against
    return hashlib.scrypt(text.encode(), salt=b"sfsync login fingerprint", n=2 ** 14, r=8, p=1,
                          dklen=16).hex()


def held_back_reason(state: dict[str, str] | None, now: float, policy: LoginPolicy = POLICY) -> str | None:
    """Why logins of a workspace wait (for status and the console), or None when they do not."""
    fields = state or {}
    refused = int(fields.get("login_refused") or 0)
    if not refused:
        return None
    at = float(fields.get("login_refused_at") or now)
    nxt = policy.next_try(refused, at)
    if nxt is None:
        return (f"logins stopped after {refused} refused tries (the last {_clock(at)}) so that Salesforce does "
                "not lock the integration user: fix the credentials, then run `sfsync workspaces test WS`, use "
                "Test connection in the console, or give new credentials")
    if nxt > now:
        return f"login refused {_clock(at)}; the next (last) try is at {_clock(nxt)}"
    return f"login refused {_clock(at)}; the next try is due"


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


def gated_login(state: ConnectionState, workspace_id: str, connection: SalesforceConnection, *, timeout: float,
                hosts: HostPolicy, shared: SharedDescribes | None = None, now: float | None = None,
                policy: LoginPolicy = POLICY) -> SalesforceGateway:
    """A signed-in gateway, if the gate lets this process try; SalesforceError(LOGIN_FAILED) without calling
    Salesforce when it does not. A refusal is counted; a login that works opens the gate."""
    def digest() -> str:
        return fingerprint(connection)

    now = time.time() if now is None else now
    allowed, fields = state.change_login(workspace_id, lambda seen: may_log_in(seen, digest, now, policy))
    if not allowed:
        raise SalesforceError(REFUSED, held_back_reason(fields, now, policy) or
                              "another process is trying to log in to this org right now")
    try:
        gateway = SalesforceGateway.from_connection(connection, timeout, shared, hosts=hosts)
    except SalesforceError as error:
        if error.code == REFUSED:
            refused_at = time.time()
            state.change_login(workspace_id, lambda seen: after_refusal(seen, digest(), refused_at))
        else:
            state.release_login(workspace_id)
        raise
    state.login_worked(workspace_id)
    return gateway


def operator_login(state: ConnectionState, workspace_id: str, connection: SalesforceConnection, *, timeout: float,
                   hosts: HostPolicy) -> tuple[SalesforceGateway, bool]:
    """A login a person asked for (`workspaces test`, Test connection), made whatever the gate says:
    (the gateway, whether it opened a gate that refused logins had closed). Opening it makes the
    workspace's parked events due, so beat's next release sends them."""
    held = bool(int((state.read(workspace_id) or {}).get("login_refused") or 0))
    gateway = SalesforceGateway.from_connection(connection, timeout, hosts=hosts)
    state.login_worked(workspace_id)
    if held:
        state.mark_connected(workspace_id)
        ParkingLot(state.redis).make_due(workspace_id, time.time())
    return gateway, held

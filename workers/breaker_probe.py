"""The probe of orgs whose circuit breaker is open: one cheap call per org when it is due, and when the
org answers again, its breaker closes and its parked events are released (run by beat's tick)."""

from __future__ import annotations

import logging

import redis

from events.connection_state import ConnectionState
from workers.breaker import Breakers
from workers.login_gate import gated_login
from workers.parked import release_all

log = logging.getLogger("sfsync.breaker")


#: seconds one probe may take (an org that hangs counts as down)
PROBE_TIMEOUT = 5.0


def probe_due(app, client: redis.Redis, directory) -> list[str]:
    """Probe each org whose breaker is due (one worker per org per probe); returns the ones that closed.

    A probe is one `limits/` call. When it answers, the breaker closes and every parked event of
    the workspace goes back on its queue at once.
    """
    breakers = Breakers(client)
    closed = []
    for ws in breakers.due():
        if not breakers.claim_probe(ws):
            continue
        try:
            config = directory.for_login(ws)
            if config is None or config.salesforce is None:
                breakers.close(ws)  # nothing left to probe: its events settle on their own
                continue
            gated_login(ConnectionState(client), ws, config.salesforce, timeout=PROBE_TIMEOUT,
                        hosts=directory.settings.salesforce_hosts).limits()
        except Exception as exc:  # noqa: BLE001 - still down (or refusing), whatever the cause: the next probe comes later
            log.info("org of workspace %s still unavailable: %s", ws, str(exc)[:200], extra={"workspace_id": ws})
            continue
        if breakers.close(ws):
            released = release_all(app, client, ws, directory)
            log.info("org of workspace %s answers again: %d parked event(s) released", ws, released,
                     extra={"workspace_id": ws})
            closed.append(ws)
    return closed

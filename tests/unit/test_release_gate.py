"""The release of parked work asks the same gate as the pool (workers/gate.py): in-memory stores, no Redis."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from events.parking import ParkedMessage
from schemas.codes import ErrorCode
from workers.parked import release_workspace
from workers.salesforce.errors import SalesforceError
from workers.sync.outcomes import Retry
from workspaces.secrets import SecretKeyError

WS = "ws_acme"
EVENT = {"id": "evt_1", "type": "email.sent", "workspace_id": WS}


@dataclass
class Lot:
    entries: list = field(default_factory=lambda: [("m1", ParkedMessage("sfsync.email.sent", "email.sent", EVENT,
                                                                         {}, "API_USAGE_CEILING", 1.0))])
    removed: list = field(default_factory=list)

    def due(self, ws, now):
        return list(self.entries)

    def claim_due(self, ws, now, lease):
        return list(self.entries)

    def remove(self, ws, member):
        self.removed.append(member)
        return True


class App:
    def __init__(self):
        self.sent = []

    def send_task(self, name, **options):
        self.sent.append((name, options["queue"]))


class Directory:
    def __init__(self, config):
        self.config = config

    def get(self, ws):
        if isinstance(self.config, Exception):
            raise self.config
        return self.config


class Governor:
    def __init__(self, over):
        self.over = over

    def still_over(self, read_limits, recheck_after):
        return self.over

    def refusal(self):
        return Retry(SalesforceError(ErrorCode.API_USAGE_CEILING, "over"))


def runtime(config, breaker=False, over=False):
    breakers = SimpleNamespace(is_open=lambda ws: breaker,
                               refusal=lambda ws: Retry(SalesforceError(ErrorCode.ORG_UNAVAILABLE, "down")))
    return SimpleNamespace(settings=SimpleNamespace(salesforce_timeout=5), directory=Directory(config), redis=None,
                           breakers=breakers, governor=lambda ws: Governor(over))


ENABLED, DISABLED = SimpleNamespace(enabled=True, signing_key=None), SimpleNamespace(enabled=False, signing_key=None)


@pytest.mark.parametrize("config, breaker, over, released", [
    (ENABLED, False, False, 1),
    (DISABLED, False, False, 0),
    (ENABLED, True, False, 0),
    (ENABLED, False, True, 0),
    (SecretKeyError("no key"), False, False, 0),
    (None, False, False, 1),  # no longer served: released, and dead-lettered by the pool as it comes
], ids=["served", "disabled", "breaker-open", "over-quota", "unreadable-credentials", "unknown"])
def test_given_the_gates_verdict_when_parked_work_is_due_then_released_only_if_it_lets_the_workspace_through(
        config, breaker, over, released):
    app, lot = App(), Lot()
    assert release_workspace(app, runtime(config, breaker, over), lot, WS, now=10.0, recheck_after=60) == released
    assert len(app.sent) == released and len(lot.removed) == released

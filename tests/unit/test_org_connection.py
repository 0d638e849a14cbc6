"""The sync step's connection (runtime.OrgConnection.sync): a failed connection, and one renewal after a refused session."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from schemas.codes import ErrorCode
from workers import runtime as runtime_module
from workers.runtime import OrgConnection
from workers.salesforce.errors import SalesforceError
from workers.sync.outcomes import Retry, Written

REFUSED = Retry(SalesforceError(ErrorCode.INVALID_SESSION_ID, "Session expired or invalid"))
WRITTEN = Written("Task", "00T1", "0031")


class Governor:
    def __init__(self):
        self.noted = []

    def note(self, used, limit):
        self.noted.append((used, limit))


def context(name, used=None):
    usage = SimpleNamespace(used=used, limit=1000) if used is not None else None
    return SimpleNamespace(name=name, gateway=SimpleNamespace(usage=usage))


def connection(monkeypatch, *, auth, contexts, answers):
    """An OrgConnection whose contexts (or login failures) and sync_batch answers are scripted."""
    conn = OrgConnection("ws_acme", SimpleNamespace(), directory=None, client=None, governor=Governor())
    conn.auth = auth
    conn.lost_with = []
    conn.forgotten = 0
    contexts, answers = list(contexts), list(answers)

    def next_context():
        made = contexts.pop(0)
        if isinstance(made, Exception):
            raise made
        return made

    def forget():
        conn.forgotten += 1

    conn.context = next_context
    conn.forget = forget
    conn.lost = conn.lost_with.append
    synced = []
    monkeypatch.setattr(runtime_module, "sync_batch", lambda events, ctx: synced.append(ctx.name) or answers.pop(0))
    return conn, synced


def test_given_no_login_when_synced_then_every_event_waits_with_the_login_failure(monkeypatch):
    refused = SalesforceError(ErrorCode.LOGIN_FAILED, "no connection")
    conn, synced = connection(monkeypatch, auth=None, contexts=[refused], answers=[])
    assert conn.sync(["e1", "e2"]) == [Retry(refused), Retry(refused)]
    assert synced == []


def test_given_a_refused_session_that_can_be_renewed_when_synced_then_logged_in_again_once_and_synced_again(
        monkeypatch):
    conn, synced = connection(monkeypatch, auth="password", contexts=[context("old", 10), context("new", 12)],
                              answers=[[REFUSED], [WRITTEN]])
    assert conn.sync(["e1"]) == [WRITTEN]
    assert synced == ["old", "new"] and conn.forgotten == 1 and conn.lost_with == []
    assert conn.governor.noted == [(12, 1000)]  # the usage the renewed session reported


@pytest.mark.parametrize("auth, contexts, answers", [
    ("token", [context("old")], [[REFUSED]]),                               # a bare token cannot be renewed
    ("jwt", [context("old"), context("new")], [[REFUSED], [REFUSED]]),      # renewed, and refused again
])
def test_given_a_refused_session_that_cannot_be_renewed_when_synced_then_the_events_wait_and_the_org_is_lost(
        monkeypatch, auth, contexts, answers):
    conn, _ = connection(monkeypatch, auth=auth, contexts=contexts, answers=answers)
    assert conn.sync(["e1"]) == [REFUSED]
    assert [e.code for e in conn.lost_with] == ["INVALID_SESSION_ID"]


def test_given_the_login_fails_while_renewing_when_synced_then_every_event_gets_that_failure(monkeypatch):
    failure = SalesforceError(ErrorCode.LOGIN_FAILED, "refused")
    conn, _ = connection(monkeypatch, auth="oauth", contexts=[context("old"), failure], answers=[[REFUSED, REFUSED]])
    assert conn.sync(["e1", "e2"]) == [Retry(failure), Retry(failure)]

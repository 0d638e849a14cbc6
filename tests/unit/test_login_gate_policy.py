"""The login gate: a refused login is tried again once, hours later, then not until a person acts."""

from __future__ import annotations

import pytest

from workers.login_gate import (
    CLAIM_LEASE,
    LOGIN_RETRY_AFTER,
    MAX_REFUSED_LOGINS,
    POLICY,
    after_refusal,
    held_back_reason,
    may_log_in,
)

HOUR = 3600.0


@pytest.mark.parametrize("refused, last, expected", [
    (0, 0.0, 0.0),
    (1, 1000.0, 1000.0 + LOGIN_RETRY_AFTER),
    (2, 1000.0, None),
    (7, 1000.0, None),
])
def test_the_next_try_after_each_refusal(refused, last, expected):
    assert POLICY.next_try(refused, last) == expected


def test_fewer_refused_tries_than_the_strictest_lockout_salesforce_offers_and_hours_apart():
    assert MAX_REFUSED_LOGINS < 3  # Salesforce's lockout policies: 3, 5 or 10 invalid logins
    assert LOGIN_RETRY_AFTER >= HOUR


@pytest.mark.parametrize("fields, digest, now, allowed, changes", [
    ({}, "A", 0.0, True, {}),
    ({"state": "connected"}, "A", 0.0, True, {}),
    ({"login_refused": "1", "login_refused_at": "0", "login_fingerprint": "A"}, "A", 60.0, False, {}),
    ({"login_refused": "1", "login_refused_at": "0", "login_fingerprint": "A"}, "A", LOGIN_RETRY_AFTER, True,
     {"login_claim_until": f"{LOGIN_RETRY_AFTER + CLAIM_LEASE:.3f}"}),
    ({"login_refused": "1", "login_refused_at": "0", "login_fingerprint": "A",
      "login_claim_until": f"{LOGIN_RETRY_AFTER + 10:.3f}"}, "A", LOGIN_RETRY_AFTER, False, {}),
    ({"login_refused": "2", "login_refused_at": "0", "login_fingerprint": "A"}, "A", 1e9, False, {}),
    ({"login_refused": "2", "login_refused_at": "0", "login_fingerprint": "A"}, "B", 10.0, True,
     {"login_refused": None, "login_refused_at": None, "login_fingerprint": None, "login_claim_until": None}),
])
def test_who_may_log_in(fields, digest, now, allowed, changes):
    assert may_log_in(fields, digest, now) == (allowed, changes)


@pytest.mark.parametrize("fields, computed", [
    ({}, 0),  # nothing refused: a working login never pays for the (slow, 16 MB) digest
    ({"login_refused": "1", "login_refused_at": "0", "login_fingerprint": "A"}, 1),
])
def test_the_digest_is_computed_only_when_a_refusal_is_on_record(fields, computed):
    calls = []

    def digest() -> str:
        calls.append(1)
        return "A"

    as_function = may_log_in(fields, digest, LOGIN_RETRY_AFTER + 1)
    assert len(calls) == computed
    assert as_function == may_log_in(fields, "A", LOGIN_RETRY_AFTER + 1)


def test_a_refusal_counts_per_credentials():
    _, first = after_refusal({}, "A", 5.0)
    assert first == {"login_refused": "1", "login_refused_at": "5.000", "login_fingerprint": "A",
                     "login_claim_until": None}
    _, second = after_refusal({**first, "login_claim_until": "9"}, "A", 7.0)
    assert second["login_refused"] == "2"
    _, other = after_refusal(first, "B", 8.0)
    assert other["login_refused"] == "1"


def test_what_status_and_the_console_say():
    assert held_back_reason(None, 0.0) is None
    assert held_back_reason({"state": "connected"}, 0.0) is None
    waiting = held_back_reason({"login_refused": "1", "login_refused_at": "0"}, 60.0)
    assert "next (last) try is at 1970-01-01 02:00 UTC" in waiting
    stopped = held_back_reason({"login_refused": "2", "login_refused_at": "0"}, 60.0)
    assert "logins stopped after 2 refused tries" in stopped and "sfsync workspaces test" in stopped
    assert "Test connection" in stopped and "new credentials" in stopped


class Simulation:
    """Workers' processes asking the gate on a fake clock, against an org that refuses every login."""

    def __init__(self):
        self.fields: dict[str, str] = {}
        self.tries: list[float] = []

    def ask(self, digest: str, now: float) -> None:
        allowed, changes = may_log_in(self.fields, digest, now)
        self._apply(changes)
        if allowed:
            self.tries.append(now)
            self._apply(after_refusal(self.fields, digest, now)[1])

    def _apply(self, changes) -> None:
        for name, value in changes.items():
            if value is None:
                self.fields.pop(name, None)
            else:
                self.fields[name] = value


def test_a_day_of_batches_releases_and_probes_against_a_refusing_org_makes_two_logins_hours_apart():
    # given three worker processes each wanting to log in every second (batches), beat every 15 s,
    # and a breaker probe every minute, for two days, while the org refuses the credentials
    sim = Simulation()
    for second in range(2 * 24 * 3600):
        for _process in range(3):
            sim.ask("A", float(second))
        if second % 15 == 0:
            sim.ask("A", float(second))
        if second % 60 == 0:
            sim.ask("A", float(second))

    # then two logins were tried, hours apart, and none after
    assert len(sim.tries) == MAX_REFUSED_LOGINS
    assert sim.tries[1] - sim.tries[0] >= LOGIN_RETRY_AFTER
    assert "logins stopped" in held_back_reason(sim.fields, 2 * 24 * 3600.0)

    # when new credentials are given, the very next ask tries them
    sim.ask("B", 2 * 24 * 3600.0)
    assert len(sim.tries) == MAX_REFUSED_LOGINS + 1

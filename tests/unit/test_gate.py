"""The gate's table: which workspaces are held back, with which outcome, and which facts it had to read."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from schemas.codes import ErrorCode
from workers.gate import StoredStanding, gate
from workers.salesforce.errors import SalesforceError
from workers.sync.outcomes import DeadLetter, Retry
from workspaces.secrets import SecretKeyError

WS = "ws_acme"


@dataclass
class Config:
    enabled: bool = True


@dataclass
class Facts:
    """A Standing from a row of the table; it notes which facts the gate asked for."""

    config_: Config | SecretKeyError | None = field(default_factory=Config)
    breaker: bool = False
    quota: bool = False
    asked: list[str] = field(default_factory=list)

    def config(self, ws):
        self.asked.append("config")
        if isinstance(self.config_, SecretKeyError):
            raise self.config_
        return self.config_

    def breaker_open(self, ws):
        self.asked.append("breaker")
        return self.breaker

    def breaker_refusal(self, ws):
        return Retry(SalesforceError(ErrorCode.ORG_UNAVAILABLE, "down"))

    def over_quota(self, ws):
        self.asked.append("quota")
        return self.quota

    def quota_refusal(self, ws):
        return Retry(SalesforceError(ErrorCode.API_USAGE_CEILING, "900/1000"))


@pytest.mark.parametrize("facts, code, waits, asked", [
    (Facts(), None, None, ["config", "breaker", "quota"]),
    (Facts(config_=SecretKeyError("no key k1")), "LOGIN_FAILED", True, ["config"]),
    (Facts(config_=None), "WORKSPACE_NOT_SERVED", False, ["config"]),
    (Facts(config_=Config(enabled=False)), "WORKSPACE_DISABLED", True, ["config"]),
    (Facts(config_=Config(enabled=False), breaker=True, quota=True), "WORKSPACE_DISABLED", True, ["config"]),
    (Facts(breaker=True), "ORG_UNAVAILABLE", True, ["config", "breaker"]),
    (Facts(breaker=True, quota=True), "ORG_UNAVAILABLE", True, ["config", "breaker"]),
    (Facts(quota=True), "API_USAGE_CEILING", True, ["config", "breaker", "quota"]),
], ids=["served", "unreadable-credentials", "unknown", "disabled", "disabled-first", "breaker-open",
        "breaker-before-quota", "over-quota"])
def test_given_a_workspaces_standing_when_gated_then_held_back_by_the_first_rule_that_holds(facts, code, waits, asked):
    held = gate(WS, facts)
    if code is None:
        assert held is None
    else:
        assert (held.code, held.waits) == (code, waits)
        assert held.unreadable_credentials == (code == "LOGIN_FAILED")
        assert isinstance(held.outcome, Retry if waits else DeadLetter)
    assert facts.asked == asked


def test_given_an_unknown_workspace_when_gated_then_the_dead_letter_says_how_to_register_and_replay():
    held = gate("ws_new", Facts(config_=None))
    assert "ws_new" in held.outcome.message and "sfsync workspaces apply" in held.outcome.message


class Breakers:
    def __init__(self, open_):
        self.open = open_

    def is_open(self, ws):
        return self.open

    def refusal(self, ws):
        return Retry(SalesforceError(ErrorCode.ORG_UNAVAILABLE, "down"))


class Governor:
    def __init__(self, over):
        self.over = over

    def over_ceiling(self):
        return self.over

    def refusal(self):
        return Retry(SalesforceError(ErrorCode.API_USAGE_CEILING, "over"))


class Directory:
    def get(self, ws):
        return Config()


@pytest.mark.parametrize("stored, asked_again, held", [(False, None, None), (True, None, "API_USAGE_CEILING"),
                                                       (True, False, None), (False, True, "API_USAGE_CEILING")])
def test_given_stored_standing_when_the_quota_is_read_another_way_then_that_reading_decides(stored, asked_again, held):
    """The pool trusts the usage last reported; the release of parked work may ask Salesforce again."""
    over = None if asked_again is None else (lambda ws: asked_again)
    standing = StoredStanding(Directory(), Breakers(False), lambda ws: Governor(stored), over_quota=over)
    verdict = gate(WS, standing)
    assert (verdict.code if verdict else None) == held

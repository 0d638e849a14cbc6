"""The gate: whether a workspace's events may go to Salesforce now. One set of rules, read in one order,
for the pool (before a batch is synced) and for the release of parked work (before it is sent again).

A workspace is held back, in this order, when

1. its credentials cannot be opened (a secret key is missing): its events wait, LOGIN_FAILED;
2. no workspace of that id is served here: its events are dead-lettered, WORKSPACE_NOT_SERVED
   (replayed once it is registered);
3. it is disabled: its events wait, WORKSPACE_DISABLED;
4. its org's circuit breaker is open: its events wait, ORG_UNAVAILABLE;
5. the org's daily API usage is at or above the workspace's ceiling: its events wait, API_USAGE_CEILING.

`gate` is a pure function of what a `Standing` answers; the facts are asked lazily, in that order, so a
workspace held back by an early rule costs no Redis read for a later one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from schemas.codes import ErrorCode
from workers.salesforce.errors import SalesforceError
from workers.sync.outcomes import DeadLetter, Outcome, Retry
from workspaces.secrets import SecretKeyError


class Configured(Protocol):
    """The part of a workspace's configuration the gate reads."""

    @property
    def enabled(self) -> bool: ...


class Standing(Protocol):
    """What the gate asks about a workspace; each answer is read only when the rules before it let it pass."""

    def config(self, ws: str) -> Configured | None:
        """The workspace's configuration, None when it is not served; raises SecretKeyError when its
        credentials cannot be opened."""

    def breaker_open(self, ws: str) -> bool: ...

    def breaker_refusal(self, ws: str) -> Retry: ...

    def over_quota(self, ws: str) -> bool: ...

    def quota_refusal(self, ws: str) -> Retry: ...


@dataclass(frozen=True)
class Held:
    """The gate's verdict on a workspace held back: the outcome each of its events gets."""

    outcome: Outcome
    #: the workspace's credentials could not be opened (the pool shows it disconnected)
    unreadable_credentials: bool = False

    @property
    def code(self) -> str:
        return self.outcome.error.code if isinstance(self.outcome, Retry) else self.outcome.code  # type: ignore[union-attr]

    @property
    def waits(self) -> bool:
        """The events wait (parked, no attempt spent) rather than being dead-lettered."""
        return isinstance(self.outcome, Retry)


def gate(ws: str, standing: Standing) -> Held | None:
    """Whether the workspace's events are held back now, and how; None when they may be synced."""
    try:
        config = standing.config(ws)
    except SecretKeyError as error:
        # the org cannot be reached until the key is fixed: shown as disconnected, events parked
        return Held(Retry(SalesforceError(ErrorCode.LOGIN_FAILED, str(error))), unreadable_credentials=True)
    if config is None:
        return Held(DeadLetter(ErrorCode.WORKSPACE_NOT_SERVED,
                               f"no workspace {ws!r} is served by this deployment: register it "
                               "(`sfsync workspaces apply`), then replay this event"))
    if not config.enabled:
        return Held(Retry(SalesforceError(ErrorCode.WORKSPACE_DISABLED,
                                          f"workspace {ws!r} is disabled; its events wait until it is enabled")))
    if standing.breaker_open(ws):
        return Held(standing.breaker_refusal(ws))
    if standing.over_quota(ws):
        # parked instead of spending the org's last API calls (released as usage falls)
        return Held(standing.quota_refusal(ws))
    return None


class Directory_(Protocol):
    def get(self, ws: str) -> Configured | None: ...


class Breakers_(Protocol):
    def is_open(self, ws: str) -> bool: ...

    def refusal(self, ws: str) -> Retry: ...


class Governor_(Protocol):
    def over_ceiling(self) -> bool: ...

    def refusal(self) -> Retry: ...


class StoredStanding:
    """A `Standing` read from the stores: the directory, the breakers and each workspace's governor.

    `over_quota` decides how the quota is read: the pool trusts the usage Salesforce last reported;
    the release of parked work may ask Salesforce again (`Governor.still_over`).
    """

    def __init__(self, directory: Directory_, breakers: Breakers_, governor: Callable[[str], Governor_],
                 over_quota: Callable[[str], bool] | None = None):
        self.directory = directory
        self.breakers = breakers
        self.governor = governor
        self._over_quota = over_quota

    def config(self, ws: str) -> Configured | None:
        return self.directory.get(ws)

    def breaker_open(self, ws: str) -> bool:
        return self.breakers.is_open(ws)

    def breaker_refusal(self, ws: str) -> Retry:
        return self.breakers.refusal(ws)

    def over_quota(self, ws: str) -> bool:
        return self._over_quota(ws) if self._over_quota is not None else self.governor(ws).over_ceiling()

    def quota_refusal(self, ws: str) -> Retry:
        return self.governor(ws).refusal()

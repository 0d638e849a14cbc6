"""One batch from the queue to each event's outcome, as a line of steps:

    parse    the messages into events, or each one's problem            workers/messages.py
    history  deliveries, attempts and strikes of each                   workers/redelivery.py
    triage   poison and refused signatures out; fresh, redelivered      triage() below
             and suspect events apart
    gate     whether the workspace may reach Salesforce now             workers/gate.py
    sync     the events written in Salesforce                           workers/sync/engine.py
             (through the workspace's connection: workers/runtime.py)
    decide   what becomes of each event after its outcome               workers/decide.py
    settle   the decision carried out and recorded                      workers/settle.py

Every step that gives an event a fate gives it an `Outcome`; only `decide` turns an outcome into a
decision and only the settler acts on it. The steps take their stores through Protocols, so the
pipeline runs in unit tests on in-memory fakes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from events.signing import VERIFIED, verified
from schemas.codes import ErrorCode
from schemas.workspace import is_workspace_id
from workers.breaker import is_outage
from workers.decide import Clock, Decision, History, RetryPolicy, decide, poisoned
from workers.gate import Standing, gate
from workers.messages import BatchItem, _items
from workers.redelivery import first_failure_at
from workers.salesforce.errors import SalesforceError
from workers.sync.outcomes import SKIPPED_DUPLICATE_DELIVERY, DeadLetter, Outcome, Retry, Skipped, Written
from workspaces.secrets import SecretKeyError

log = logging.getLogger("sfsync.worker")

#: redelivered messages synced together; a group that dies is retried one message at a time
REDELIVERED_GROUP = 25

Groups = Sequence[tuple[str, str, list[Any]]]
Settled = list[tuple[BatchItem, Outcome, Decision]]


# --- the stores the steps take -------------------------------------------------------------

class Histories(Protocol):
    """Delivery counts and "being synced" marks (workers.redelivery.Redeliveries)."""

    def histories(self, items: list[BatchItem]) -> list[History]: ...

    def marked(self, items: list[BatchItem]) -> AbstractContextManager[None]: ...

    def finished(self, items: list[BatchItem]) -> None: ...


class Orgs(Protocol):
    """The sync step: a workspace's events synced through its connection (workers.runtime.WorkerRuntime).

    Failures of the connection itself (no login, a refused session) are outcomes, never raised."""

    def sync(self, ws: str, events: list[Any]) -> list[Outcome]: ...


class Breakers(Protocol):
    """The orgs' circuit breakers (workers.breaker.Breakers)."""

    def strike(self, workspace_id: str) -> bool: ...

    def trip(self, workspace_id: str, reason: str) -> None: ...

    def refusal(self, workspace_id: str) -> Retry: ...


class Settling(Protocol):
    """Carries out decisions (workers.settle.Settler)."""

    def settle(self, settled: Settled) -> Counter: ...


@dataclass
class Pipeline:
    policy: RetryPolicy
    histories: Histories
    #: INVALID_SIGNATURE for an item its workspace's emitter keys refuse, None when it may go on
    signature: Callable[[BatchItem], DeadLetter | None]
    standing: Standing
    orgs: Orgs
    breakers: Breakers
    #: the settler of a workspace (None: the deployment's own, for events naming no served workspace)
    settler: Callable[[str | None], Settling]
    batch_size: int
    clock: Callable[[], Clock] = lambda: Clock(time.time())
    #: a workspace's credentials could not be opened: show it disconnected
    on_unreadable_credentials: Callable[[str, SalesforceError], None] = lambda ws, error: None

    # --- the line -----------------------------------------------------------------------------
    def process_batch(self, groups: Groups) -> Counter:
        """Sync one batch, (task name, queue, messages) per event queue it holds messages of; every
        event ends written, skipped, retried, parked or dead-lettered."""
        items = parse(groups)
        histories = self.histories.histories(items)
        sorted_ = triage(items, histories, self.policy, self.signature)
        counts = self.settle(sorted_.refused)
        counts += self.run(sorted_.fresh)
        # Messages back after their worker died are synced in small marked groups, and a member of
        # a group that died is synced alone: a message that kills the process again is then named
        # by its marks and dead-lettered on its own instead of taking its neighbours with it.
        for group in _chunks(sorted_.again, REDELIVERED_GROUP) + [[pair] for pair in sorted_.alone]:
            with self.histories.marked([it for it, _ in group]):
                counts += self.run(group)
        self.histories.finished(items)
        return counts

    def run(self, pairs: list[tuple[BatchItem, History]]) -> Counter:
        """gate, sync, decide, settle: one workspace at a time, at most a batch at a time."""
        counts: Counter = Counter()
        for ws, group in _by_workspace(pairs, lambda pair: pair[0]).items():
            for chunk in _chunks(group, self.batch_size):
                outcomes = self.outcomes_of(ws, [it for it, _ in chunk])
                counts += self.settle([(it, history, outcome) for (it, history), outcome in zip(chunk, outcomes)])
        return counts

    def settle_failed_batch(self, groups: Groups) -> Counter:
        """A batch that failed unexpectedly (a bug, Redis lost mid-batch): each event is retried, spending
        an attempt (its delivery history is not read again: Redis may be what failed)."""
        error = SalesforceError(ErrorCode.INTERNAL_ERROR, "the batch failed unexpectedly (see the worker log)")
        return self.settle([(it, History(attempt=it.attempt, first_failure_at=first_failure_at(it)), Retry(error))
                            for it in parse(groups)])

    # --- the steps --------------------------------------------------------------------------
    def outcomes_of(self, ws: str | None, items: list[BatchItem]) -> list[Outcome]:
        """One outcome per item: invalid events refused, copies of one event synced once."""
        unique, position = _unique_events(items)
        synced = self.gate_and_sync(ws, [items[i].event for i in unique])
        outcomes: list[Outcome] = []
        for n, item in enumerate(items):
            if item.event is None:
                outcomes.append(DeadLetter(item.problem.code, item.problem.reason))  # type: ignore[union-attr]
                continue
            first = position[n]
            outcomes.append(synced[first] if unique[first] == n else copy_of(synced[first]))
        return outcomes

    def gate_and_sync(self, ws: str | None, events: list[Any]) -> list[Outcome]:
        if not events:
            return []
        # events that parsed name a workspace (the schema checks it): ws is never None here
        held = gate(ws, self.standing)  # type: ignore[arg-type]
        if held is not None:
            if held.unreadable_credentials:
                self.on_unreadable_credentials(ws, held.outcome.error)  # type: ignore[arg-type, union-attr]
            return [held.outcome] * len(events)
        return self.unless_outage(ws, self.orgs.sync(ws, events))  # type: ignore[arg-type]

    def unless_outage(self, ws: str, outcomes: list[Outcome]) -> list[Outcome]:
        """A second batch the org failed as a whole opens its breaker: the events wait parked, no attempt spent."""
        if not is_outage(outcomes):
            return outcomes
        reason = next(o.error for o in outcomes if isinstance(o, Retry))
        if not self.breakers.strike(ws):
            return outcomes  # a first failure is retried like any other
        self.breakers.trip(ws, f"{reason.code}: {reason.message}")
        log.warning("the org of workspace %s does not answer (%s); its events wait until a probe succeeds", ws,
                    reason.code, extra={"workspace_id": ws})
        refusal = self.breakers.refusal(ws)
        return [refusal if isinstance(o, Retry) else o for o in outcomes]

    def settle(self, triples: list[tuple[BatchItem, History, Outcome]]) -> Counter:
        """decide, then settle: each event through its own workspace's settler."""
        counts: Counter = Counter()
        clock = self.clock()
        for ws, group in _by_workspace(triples, lambda triple: triple[0]).items():
            counts += self.settler(ws).settle([(it, outcome, decide(outcome, history, self.policy, clock))
                                               for it, history, outcome in group])
        return counts


class Keys(Protocol):
    """The part of a workspace's configuration the signature check reads."""

    @property
    def emitter_keys(self) -> tuple[str, ...]: ...


class KeyDirectory(Protocol):
    def get(self, ws: str) -> Keys | None:
        """The workspace's configuration, None when not served; raises SecretKeyError when it cannot be opened."""


class SignatureCheck:
    """Triage's check of a signing workspace's events (the directory holds each workspace's emitter keys)."""

    def __init__(self, directory: KeyDirectory):
        self.directory = directory

    def __call__(self, item: BatchItem) -> DeadLetter | None:
        """INVALID_SIGNATURE when the item's workspace has emitter keys and its message is not signed with one
        of them; None when it is, or the workspace takes unsigned events. An item that passed is marked so
        that what sfsync sends of it again (retries, released parked events) is signed by sfsync."""
        ws = workspace_of(item)
        if ws is None:
            return None
        try:
            config = self.directory.get(ws)
        except SecretKeyError:
            return None  # it waits parked, unmarked: sent again unsigned, it is checked again then
        keys = config.emitter_keys if config is not None else ()
        if not keys:
            return None
        if verified(item.body, item.signature, keys):
            item.meta[VERIFIED] = True
            return None
        state = "carries no sfsync_signature header" if item.signature is None else \
            "carries a signature that none of its keys made"
        return DeadLetter(ErrorCode.INVALID_SIGNATURE, f"workspace {ws!r} accepts only events signed with its "
                                                       f"emitter keys; this message {state} (see docs/events.md, "
                                                       f"signed events)")


# --- pure steps ---------------------------------------------------------------------------

def parse(groups: Groups) -> list[BatchItem]:
    """The batch's events, each message read as the event task (and queue) it came for."""
    return [it for task_name, queue, requests in groups for r in requests for it in _items(r, task_name, queue)]


@dataclass
class Triaged:
    #: events refused before any sync: poison, refused signatures (with their outcome)
    refused: list[tuple[BatchItem, History, Outcome]]
    #: first deliveries, synced together
    fresh: list[tuple[BatchItem, History]]
    #: redelivered after their worker died, synced in small marked groups
    again: list[tuple[BatchItem, History]]
    #: in a group that died: synced alone
    alone: list[tuple[BatchItem, History]]


def triage(items: list[BatchItem], histories: list[History], policy: RetryPolicy,
           signature: Callable[[BatchItem], DeadLetter | None]) -> Triaged:
    """Poison and what a signing workspace refuses get their outcome at once; the rest is split into
    fresh, redelivered and suspect events."""
    out = Triaged([], [], [], [])
    for item, history in zip(items, histories):
        refused = poisoned(history, policy) or signature(item)
        if refused is not None:
            out.refused.append((item, history, refused))
        elif history.strikes:
            out.alone.append((item, history))
        elif history.deliveries > 1:
            out.again.append((item, history))
        else:
            out.fresh.append((item, history))
    return out


def copy_of(outcome: Outcome) -> Outcome:
    """A second copy of an event in the same batch: its first copy carries the outcome."""
    if isinstance(outcome, Written):
        return Written(outcome.sobject, outcome.record_id, outcome.contact_id, duplicate=True)
    return Skipped(SKIPPED_DUPLICATE_DELIVERY)


def workspace_of(item: BatchItem) -> str | None:
    """The event's workspace; for an item that did not parse, the one it names if plausible."""
    if item.event is not None:
        return item.event.workspace_id
    named = item.ids().get("workspace_id")
    return named if is_workspace_id(named) else None


def _by_workspace(things: list, item_of: Callable[[Any], BatchItem]) -> dict[str | None, list]:
    """Group by the event's workspace (None for what names no plausible one), keeping order within each."""
    groups: dict[str | None, list] = {}
    for thing in things:
        groups.setdefault(workspace_of(item_of(thing)), []).append(thing)
    return groups


def _chunks(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)]


def _unique_events(items: list[BatchItem]) -> tuple[list[int], dict[int, int]]:
    """Indexes of the first copy of each (workspace, event id), and each item's index into that list."""
    first: dict[tuple[str, str], int] = {}
    unique: list[int] = []
    position: dict[int, int] = {}
    for n, item in enumerate(items):
        if item.event is None:
            continue
        k = (item.event.workspace_id, item.event.id)
        if k not in first:
            first[k] = len(unique)
            unique.append(n)
        position[n] = first[k]
    return unique, position

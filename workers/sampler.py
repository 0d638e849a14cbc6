"""The backlog's sample for the charts (events/rollup.py): taken every SAMPLE_EVERY seconds by one worker of the fleet."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import bootsteps

from events.keys import key
from events.overflow import Overflow
from events.parking import ParkingLot
from events.redis_conn import connect
from events.rollup import Rollup
from events.topology import ALL_QUEUES
from workspaces.registry import Registry
from workspaces.secrets import Keyring

log = logging.getLogger("sfsync.worker")

#: seconds between two samples of the backlog (whichever worker's timer comes first takes it)
SAMPLE_EVERY = 10.0
#: held by the worker taking a sample, so a fleet of workers samples once per interval
LOCK = "sfsync:rollup:sampler"
#: kombu's hash of delivered, unacknowledged messages
UNACKED = "unacked"


def sample_backlog(client: redis.Redis, env_workspace: str, now: float | None = None) -> bool:
    """Take one sample unless another worker took it within the interval; True when this call took it.

    Per workspace: retries and parked work waiting, overflow entries, and the org's API use when
    a worker saw it since the last sample (an idle org's gauge is not written again). For the
    deployment: the event queues' depth and the unacknowledged messages.
    """
    now = time.time() if now is None else now
    if not client.set(LOCK, f"{now:.3f}", nx=True, px=int(SAMPLE_EVERY * 900)):
        return False

    overflow = Overflow(client)
    waiting = sorted(set(ParkingLot(client, "retries").workspaces()) | set(ParkingLot(client, "parked").workspaces()))
    in_overflow = overflow.pending(overflow.workspaces())
    served = sorted({*Registry(client, Keyring(None)).ids(), env_workspace, *waiting, *in_overflow})
    pipe = client.pipeline(transaction=False)
    for ws in waiting:
        pipe.zcard(key(ws, "retries"))
        pipe.zcard(key(ws, "parked"))
    for ws in served:
        pipe.hgetall(key(ws, "api_usage"))
    for queue in ALL_QUEUES:
        pipe.llen(queue)
    pipe.hlen(UNACKED)
    answers = pipe.execute()
    backlogs: dict[str, dict[str, int]] = {ws: {"retries": 0, "parked": 0, "overflow": n}
                                           for ws, n in in_overflow.items()}
    for n, ws in enumerate(waiting):
        entry = backlogs.setdefault(ws, {"retries": 0, "parked": 0, "overflow": 0})
        entry["retries"], entry["parked"] = int(answers[2 * n]), int(answers[2 * n + 1])
    api: dict[str, tuple[int, int]] = {}
    for ws, raw in zip(served, answers[2 * len(waiting):2 * len(waiting) + len(served)]):
        try:
            if float(raw["at"]) >= now - 2 * SAMPLE_EVERY:
                api[ws] = (int(raw["used"]), int(raw["limit"]))
        except (KeyError, ValueError):
            continue
    depths = answers[2 * len(waiting) + len(served):]
    Rollup(client).sample(backlogs, api, {"queued": sum(int(d) for d in depths[:-1]), "unacked": int(depths[-1])},
                          now=now)
    return True


class BacklogSampler(bootsteps.StartStopStep):
    """A consumer step: samples the backlog on the consumer's timer (armed again at every consumer start)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)
    name = "sfsync.BacklogSampler"

    def __init__(self, parent: Any, **kwargs: Any):
        super().__init__(parent, **kwargs)
        self.tref = None
        self.client = None

    def start(self, parent: Any) -> None:
        settings = parent.app.sfsync_settings
        self.client = self.client or connect(settings.redis_url.get_secret_value(), socket_timeout=5)
        self.tref = parent.timer.call_repeatedly(SAMPLE_EVERY, self._sample, (settings.workspace_id,))

    def _sample(self, env_workspace: str) -> None:
        try:
            sample_backlog(self.client, env_workspace)
        except Exception:  # a timer must survive a Redis restart; the next tick tries again
            log.warning("could not sample the backlog; trying again", exc_info=True)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop

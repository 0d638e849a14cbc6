"""Replays started from the console: run in a thread through the same code as `sfsync dlq replay`, progress in Redis."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time

from events.deadletter import DeadLetterFilter, DeadLetterStore, ReplayResult
from workers.cli.dlq import SigningKeys, replay_selection
from events.audit import AuditLog

log = logging.getLogger(__name__)

#: seconds a replay waits for its events' outcomes (as `sfsync dlq replay`'s default)
OUTCOME_TIMEOUT = 120.0
#: seconds past the outcome wait after which an unfinished replay is taken for stopped
STALE_AFTER = 600
#: seconds a finished replay's progress stays readable
KEEP = 24 * 3600


def _job_key(job_id: str) -> str:
    return f"sfsync:web:job:{job_id}"


class ReplayJobs:
    def __init__(self, store: DeadLetterStore, broker_url: str, audit: AuditLog, timeout: float = OUTCOME_TIMEOUT,
                 signing_keys: SigningKeys | None = None):
        self.redis, self.store, self.broker_url, self.audit, self.timeout = store.redis, store, broker_url, audit, timeout
        self.signing_keys = signing_keys

    def start(self, selection: DeadLetterFilter, *, user: dict, ip: str, workspace: str = "") -> str:
        """Begin replaying what `selection` picks now; returns the job's id for `read`."""
        ids = [r.id for r in self.store.select(selection)]
        job_id = secrets.token_hex(8)
        self.redis.hset(_job_key(job_id), mapping={"state": "replaying", "total": len(ids), "done": 0,
                                                   "user": user["user"], "started": f"{time.time():.0f}"})
        self.redis.expire(_job_key(job_id), KEEP)
        self.audit.record(user=user["user"], role=user["role"], action="replay", ip=ip, workspace=workspace,
                          ids=ids, detail=f"replay of {len(ids)} dead letter(s) started; job {job_id}")
        # the ids picked now are replayed, not what the filter matches by the time the thread runs
        pinned = DeadLetterFilter.of(ids=ids) if ids else selection
        thread = threading.Thread(target=self._run, args=(job_id, pinned, user, ip, workspace, bool(ids)),
                                  name=f"replay-{job_id}", daemon=True)
        thread.start()
        return job_id

    def _run(self, job_id: str, selection: DeadLetterFilter, user: dict, ip: str, workspace: str,
             anything: bool) -> None:
        name = _job_key(job_id)

        def replayed(result: ReplayResult) -> None:
            self.redis.hset(name, mapping={"state": "waiting", "replayed": len(result.replayed)})

        try:
            if not anything:
                result, counts = ReplayResult(), {"replayed": 0, "not_replayed": 0}
            else:
                result, counts = replay_selection(self.store, selection, self.broker_url, wait=True,
                                                  signing_keys=self.signing_keys,
                                                  timeout=self.timeout,
                                                  on_progress=lambda _: self.redis.hincrby(name, "done", 1),
                                                  on_replayed=replayed)
        except Exception as exc:  # the page must say the replay broke, not spin forever
            log.exception("console replay %s failed", job_id)
            self.redis.hset(name, mapping={"state": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]})
            return
        problems = [{"id": i, "reason": reason} for i, reason in result.failed + result.skipped]
        self.redis.hset(name, mapping={"state": "done", "counts": json.dumps(counts),
                                       "problems": json.dumps(problems[:200])})
        self.audit.record(user=user["user"], role=user["role"], action="replay_finished", ip=ip,
                          workspace=workspace, ids=[r.id for r in result.replayed],
                          detail=", ".join(f"{k}={v}" for k, v in counts.items()) + f"; job {job_id}")

    def read(self, job_id: str) -> dict | None:
        raw = self.redis.hgetall(_job_key(job_id)) if job_id.isalnum() else {}
        if not raw:
            return None
        job = dict(raw)
        job["total"], job["done"] = int(raw.get("total", 0)), int(raw.get("done", 0))
        job["counts"] = json.loads(raw["counts"]) if raw.get("counts") else None
        job["problems"] = json.loads(raw["problems"]) if raw.get("problems") else []
        job["id"] = job_id
        # a console stopped mid-replay leaves its job unfinished: say so instead of polling forever
        if job["state"] in ("replaying", "waiting") and \
                time.time() - float(raw.get("started", 0)) > self.timeout + STALE_AFTER:
            job["state"], job["error"] = "failed", ("the replay stopped without finishing (was the console "
                                                    "restarted?); what it replayed is out of the dead letters, "
                                                    "what it did not is still there")
        return job

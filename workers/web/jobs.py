"""Replays started from the console: run in a thread through the same code as `sfsync dlq replay`, progress in Redis.

A job's hash says what it replays, how far it is (put back on the queues, then outcomes as the
workers record them) and, once done, which events were written (with their Salesforce records)
and which failed again (their dead letters), so the page can link to both.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import Counter
from typing import Any

from events.audit import AuditLog
from events.deadletter import DeadLetterFilter, DeadLetterStore, ReplayResult
from workers.replay import SigningKeys, replay_selection

log = logging.getLogger(__name__)

#: seconds a replay waits for its events' outcomes (as `sfsync dlq replay`'s default)
OUTCOME_TIMEOUT = 120.0
#: seconds past the outcome wait after which an unfinished replay is taken for stopped
STALE_AFTER = 600
#: seconds a finished replay's progress stays readable
KEEP = 24 * 3600
#: events listed per outcome on a finished replay's pages (the counts cover all)
LISTED = 2000
#: seconds between two writes of the live outcome counts
PROGRESS_EVERY = 0.5


def _job_key(job_id: str) -> str:
    return f"sfsync:web:job:{job_id}"


def outcome_counts(replayed: int, found: dict[str, dict[str, str]]) -> dict[str, int]:
    """What the replayed events have become so far: written, failed again, skipped, still pending."""
    by = Counter(entry.get("outcome", "") for entry in found.values())
    return {"written": by["written"] + by["written_late"] + by["duplicate"], "failed_again": by["dead_lettered"],
            "skipped": sum(n for k, n in by.items() if k.startswith("skipped_")),
            "pending": max(replayed - len(found), 0)}


class ReplayJobs:
    def __init__(self, store: DeadLetterStore, broker_url: str, audit: AuditLog, timeout: float = OUTCOME_TIMEOUT,
                 signing_keys: SigningKeys | None = None):
        self.redis, self.store, self.broker_url, self.audit, self.timeout = store.redis, store, broker_url, audit, timeout
        self.signing_keys = signing_keys
        self._running = 0
        self._lock = threading.Lock()

    def running(self) -> int:
        """Replays this console runs now (the fleet shows it as its work in flight)."""
        return self._running

    def start(self, selection: DeadLetterFilter, *, user: dict, ip: str, workspace: str = "", what: str = "",
              back: str = "/dead-letters") -> str:
        """Begin replaying what `selection` picks now; returns the job's id for `read`.
        `what` says in words what is replayed, `back` where the page links back to."""
        ids = [r.id for r in self.store.select(selection)]
        job_id = secrets.token_hex(8)
        self.redis.hset(_job_key(job_id), mapping={"state": "replaying", "total": len(ids), "done": 0,
                                                   "user": user["user"], "started": f"{time.time():.0f}",
                                                   "what": what[:300], "back": back[:300]})
        self.redis.expire(_job_key(job_id), KEEP)
        self.audit.record(user=user["user"], role=user["role"], action="replay", ip=ip, workspace=workspace,
                          ids=ids, detail=f"replay of {len(ids)} dead letter(s) started; job {job_id}")
        # the ids picked now are replayed, not what the filter matches by the time the thread runs
        pinned = DeadLetterFilter.of(ids=ids) if ids else selection
        thread = threading.Thread(target=self._run, args=(job_id, pinned, user, ip, workspace, bool(ids)),
                                  name=f"replay-{job_id}", daemon=True)
        with self._lock:
            self._running += 1
        thread.start()
        return job_id

    def _run(self, job_id: str, selection: DeadLetterFilter, user: dict, ip: str, workspace: str,
             anything: bool) -> None:
        try:
            self._replay(job_id, selection, user, ip, workspace, anything)
        finally:
            with self._lock:
                self._running -= 1

    def _replay(self, job_id: str, selection: DeadLetterFilter, user: dict, ip: str, workspace: str,
                anything: bool) -> None:
        name = _job_key(job_id)
        state: dict[str, Any] = {"replayed": 0, "written_at": 0.0}

        def replayed(result: ReplayResult) -> None:
            state["replayed"] = len(result.replayed)
            self.redis.hset(name, mapping={"state": "waiting", "replayed": len(result.replayed),
                                           "live": json.dumps(outcome_counts(len(result.replayed), {}))})

        def heard(found: dict[str, dict[str, str]]) -> None:
            if time.monotonic() - state["written_at"] >= PROGRESS_EVERY:
                state["written_at"] = time.monotonic()
                self.redis.hset(name, "live", json.dumps(outcome_counts(state["replayed"], found)))
            state["found"] = found

        try:
            if not anything:
                result, counts = ReplayResult(), {"replayed": 0, "not_replayed": 0}
            else:
                result, counts = replay_selection(self.store, selection, self.broker_url, wait=True,
                                                  signing_keys=self.signing_keys,
                                                  timeout=self.timeout,
                                                  on_progress=lambda _: self.redis.hincrby(name, "done", 1),
                                                  on_replayed=replayed, on_outcomes=heard)
        except Exception as exc:  # the page must say the replay broke, not spin forever
            log.exception("console replay %s failed", job_id)
            self.redis.hset(name, mapping={"state": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]})
            return
        found: dict[str, dict[str, str]] = state.get("found", {})
        letters = {r.event_id: r.id for r in result.replayed if r.event_id}
        written, failed_again = [], []
        for event_id, entry in found.items():
            outcome = entry.get("outcome", "")
            if outcome in ("written", "written_late", "duplicate"):
                written.append({"event_id": event_id, "workspace": entry.get("workspace_id", ""),
                                "outcome": outcome, "sobject": entry.get("sobject", ""),
                                "record_id": entry.get("record_id", ""), "contact_id": entry.get("contact_id", "")})
            elif outcome == "dead_lettered" and event_id in letters:
                failed_again.append(letters[event_id])
        pending = [{"event_id": r.event_id, "workspace": r.workspace_id or ""}
                   for r in result.replayed if r.event_id and r.event_id not in found]
        problems = [{"id": i, "reason": reason} for i, reason in result.failed + result.skipped]
        self.redis.hset(name, mapping={"state": "done", "counts": json.dumps(counts),
                                       "live": json.dumps(outcome_counts(len(result.replayed), found)),
                                       "problems": json.dumps(problems[:200]),
                                       "written": json.dumps(written[:LISTED]),
                                       "failed_again": json.dumps(failed_again[:LISTED]),
                                       "pending": json.dumps(pending[:LISTED]),
                                       "finished": f"{time.time():.0f}"})
        self.audit.record(user=user["user"], role=user["role"], action="replay_finished", ip=ip,
                          workspace=workspace, ids=[r.id for r in result.replayed],
                          detail=", ".join(f"{k}={v}" for k, v in counts.items()) + f"; job {job_id}")

    def read(self, job_id: str) -> dict | None:
        raw = self.redis.hgetall(_job_key(job_id)) if job_id.isalnum() else {}
        if not raw:
            return None
        job: dict[str, Any] = dict(raw)
        job["total"], job["done"] = int(raw.get("total", 0)), int(raw.get("done", 0))
        job["replayed"] = int(raw.get("replayed", 0) or 0)
        for field, empty in (("counts", None), ("live", None), ("problems", []), ("written", []),
                             ("failed_again", []), ("pending", [])):
            job[field] = json.loads(raw[field]) if raw.get(field) else empty
        job["id"] = job_id
        job.setdefault("what", "")
        job.setdefault("back", "/dead-letters")
        # a console stopped mid-replay leaves its job unfinished: say so instead of polling forever
        if job["state"] in ("replaying", "waiting") and \
                time.time() - float(raw.get("started", 0)) > self.timeout + STALE_AFTER:
            job["state"], job["error"] = "failed", ("the replay stopped without finishing (was the console "
                                                    "restarted?); what it replayed is out of the dead letters, "
                                                    "what it did not is still there")
        return job

"""The anchor: a Celery app whose batch task writes the batch to Salesforce as plainly as possible, configured and batched like sfsync's workers.

It tells the benchmark what Celery, kombu, Redis and the Salesforce writes alone cost on this
machine, so sfsync's throughput can be quoted as a share of it. It receives the same bundles
sfsync receives (`events.publish.bundles`, up to 5 events a message, one workspace a bundle),
buckets them per workspace with the same batch task (`workers/consumer/`: one bucket per
workspace for all its queues), and writes each batch with one `composite/sobjects` collection
call per workspace and event type, up to 200 records, to that workspace's org. What it leaves out is sfsync's own work: parsing
and checking events, the contact lookup, the idempotency ledger, mappings, outcomes and retries.
Start it with `python -m celery --app benchmarks.bare_app:app worker --queues bench.bare.email.sent,...`.

It deliberately does not import `workers.app`: that module builds the sfsync app at import
time (and may connect Celery signals), which must not leak into the anchor's worker; the
side-effect-free `workers.celery_config` gives it the same configuration.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
import requests
from celery import Celery
from kombu import Queue

from events.topology import EVENT_QUEUES
from schemas.settings import load_settings
from workers.consumer.task import BatchTask
from workers.celery_config import celery_config

#: the anchor's queues and tasks, one per sfsync event queue; nothing of sfsync listens there
QUEUES = {queue: f"bench.bare.{queue}" for queue in EVENT_QUEUES}


def route(queue: str) -> tuple[str, str]:
    """(task, queue) of the anchor for a message sfsync would get on `queue`."""
    return f"bench.bare.{queue}.batch", QUEUES[queue]

#: Redis keys the anchor task bumps so the harness can see the burst end without polling queues
DONE_KEY = "bench:bare:done"
LAST_KEY = "bench:bare:last"
#: collection calls that failed (the harness reports them: the anchor must not fail quietly)
ERRORS_KEY = "bench:bare:errors"
#: JSON {workspace id: {"url": instance URL, "token": access token}}: the orgs the anchor writes to
ORGS_ENV = "BENCH_BARE_ORGS"
#: records per collection call (Salesforce's limit, and sfsync's batch size)
COLLECTION = 200
API_VERSION = "59.0"

_settings = load_settings()
_redis_url = _settings.redis_url.get_secret_value()
_orgs: dict[str, dict[str, str]] = json.loads(os.environ.get(ORGS_ENV) or "{}")

# current: a pool process finds the batch task through the current app
app = Celery("sfsync-bare", set_as_current=True)
# the same acks, prefetch, serializer and transport settings as sfsync's workers; only the queue differs
app.conf.update(celery_config(_settings))
app.conf.update(task_queues=[Queue(q, routing_key=q) for q in QUEUES.values()], task_routes={},
                task_default_queue=QUEUES["email.sent"])

_client: redis.Redis | None = None
_http: requests.Session | None = None


def events_of(messages) -> list[dict[str, Any]]:
    """The events of a batch's messages (a message carries one event, or a bundle of them)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        args = message.arguments()  # held packed by the consumer, as sfsync's messages are
        arg = args[0] if args else None
        items = arg if isinstance(arg, list) else [arg]
        out.extend(json.loads(e) if isinstance(e, (str, bytes)) else e for e in items if e)
    return out


def task_record(event: dict[str, Any]) -> dict[str, Any]:
    """The plainest Task for an event: no contact lookup, no HTML conversion, no mapping."""
    data = event.get("data") or {}
    return {"attributes": {"type": "Task"}, "TaskSubtype": "Email", "Status": "Completed",
            "Subject": str(data.get("subject") or "")[:255], "Description": str(data.get("body_html") or "")[:32000]}


def write(events: list[dict[str, Any]]) -> int:
    """One collection call per (workspace, event type) and 200 records, to that workspace's org; failed calls."""
    global _http
    if _http is None:
        _http = requests.Session()
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for event in events:
        groups.setdefault((event.get("workspace_id", ""), event.get("type", "")), []).append(event)
    failed = 0
    for (ws, _), group in groups.items():
        org = _orgs.get(ws)
        if org is None:
            continue
        for start in range(0, len(group), COLLECTION):
            records = [task_record(e) for e in group[start:start + COLLECTION]]
            try:
                response = _http.post(f"{org['url']}/services/data/v{API_VERSION}/composite/sobjects",
                                      json={"allOrNone": False, "records": records},
                                      headers={"Authorization": f"Bearer {org['token']}"}, timeout=60)
                failed += not response.ok
            except requests.RequestException:
                failed += 1
    return failed


class NoopBatch(BatchTask):
    abstract = True

    def run_batch(self, messages, drain=None):
        global _client
        events = events_of(messages)
        failed = write(events)
        # then one Redis round trip per batch, so the harness sees completion (sfsync's batch also
        # ends with one pipelined write of its outcomes)
        if _client is None:
            _client = redis.Redis.from_url(_redis_url)
        pipe = _client.pipeline(transaction=False)
        pipe.incrby(DONE_KEY, len(events))
        pipe.set(LAST_KEY, f"{time.time():.6f}")
        if failed:
            pipe.incrby(ERRORS_KEY, failed)
        pipe.execute()
        return len(events)


def noop(*args, **kwargs):
    raise RuntimeError("runs in batches through the consumer")


for _queue in EVENT_QUEUES:
    _task, _anchor_queue = route(_queue)
    app.task(base=NoopBatch, name=_task, queue=_anchor_queue, flush_every=_settings.batch_size,
             flush_interval=_settings.flush_interval, acks_late=True, ignore_result=True)(noop)

"""The anchor: a Celery app whose batch task does nothing, configured and batched like sfsync's workers.

It tells the benchmark what Celery, kombu and Redis alone cost on this machine, so sfsync's
throughput can be quoted as a share of it. Start it with
`python -m celery --app benchmarks.bare_app:app worker --queues bench.bare ...`.

It deliberately does not import `workers.app`: that module builds the sfsync app at import
time (and may connect Celery signals), which must not leak into the anchor's worker; the
side-effect-free `workers.celery_config` gives it the same configuration.
"""

from __future__ import annotations

import time

import redis
from celery import Celery
from kombu import Queue

from schemas.settings import load_settings
from workers.batching import BatchTask
from workers.celery_config import celery_config

#: the anchor's task and queue; nothing of sfsync listens there
TASK = "bench.bare.noop"
QUEUE = "bench.bare"
#: Redis keys the anchor task bumps so the harness can see the burst end without polling queues
DONE_KEY = "bench:bare:done"
LAST_KEY = "bench:bare:last"

_settings = load_settings()
_redis_url = _settings.redis_url.get_secret_value()

# current: a pool process finds the batch task through the current app
app = Celery("sfsync-bare", set_as_current=True)
# the same acks, prefetch, serializer and transport settings as sfsync's workers; only the queue differs
app.conf.update(celery_config(_settings))
app.conf.update(task_queues=[Queue(QUEUE, routing_key=QUEUE)], task_routes={}, task_default_queue=QUEUE)

_client: redis.Redis | None = None


class NoopBatch(BatchTask):
    abstract = True

    def run_batch(self, queue, messages):
        # the only work: one Redis round trip per batch, so the harness sees completion (sfsync's
        # batch also ends with one pipelined write of its outcomes)
        global _client
        if _client is None:
            _client = redis.Redis.from_url(_redis_url)
        pipe = _client.pipeline(transaction=False)
        pipe.incrby(DONE_KEY, len(messages))
        pipe.set(LAST_KEY, f"{time.time():.6f}")
        pipe.execute()
        return len(messages)


@app.task(base=NoopBatch, name=TASK, queue=QUEUE, flush_every=_settings.batch_size,
          flush_interval=_settings.flush_interval, acks_late=True, ignore_result=True)
def noop(*args, **kwargs):
    raise RuntimeError("runs in batches through the consumer")

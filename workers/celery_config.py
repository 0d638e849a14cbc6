"""Celery configuration built from Settings, with no side effects (the benchmark's anchor reuses it)."""

from __future__ import annotations

from events.topology import CONTROL_QUEUE, ROUTES, declarations
from schemas.redis_url import kombu_broker
from schemas.settings import Settings


def celery_config(settings: Settings) -> dict:
    url = settings.redis_url.get_secret_value()
    transport = {
        "visibility_timeout": settings.visibility_timeout,
        # sweep for a dead worker's unacked messages every ~30 s instead of kombu's ~100 s
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 3,
        # the sweep's lock: kombu holds it 300 s by default, and a lock whose release a Sentinel
        # failover lost (replication is asynchronous) would stop every sweep that long, stranding
        # the messages whose acks the failover lost too. Two sweeps at once are safe (each
        # restore is a WATCHed transaction), so a short lock costs nothing
        "unacked_mutex_expire": 30,
        "socket_timeout": 30,
        "socket_connect_timeout": 10,
        "health_check_interval": 30,
    }
    config = dict(
        broker_url=url,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # a worker keeps a bucket per workspace: it may hold three batches' worth of messages per
        # process, so the buckets of several workspaces fill while one is written (memory grows with it)
        worker_prefetch_multiplier=max(settings.batch_size, 1) * 3,
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        worker_soft_shutdown_timeout=max(settings.flush_interval * 5, 10.0),
        worker_enable_soft_shutdown_on_idle=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_queues=declarations(),
        task_routes={task: {"queue": queue, "exchange": queue, "routing_key": queue}
                     for task, queue in ROUTES.values()},
        task_default_queue=CONTROL_QUEUE,
        timezone="UTC",
        enable_utc=True,
    )
    broker = kombu_broker(url, socket_timeout=transport["socket_timeout"],
                          socket_connect_timeout=transport["socket_connect_timeout"])
    config["broker_url"] = broker.url
    transport.update(broker.transport_options)
    if broker.use_ssl is not None:
        config["broker_use_ssl"] = broker.use_ssl
    return config

"""The Redis list item for a Celery protocol-2 task message, byte for byte as kombu stores it."""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from typing import Any

from celery import VERSION as CELERY_VERSION
from celery.utils.saferepr import saferepr

from events.signing import HEADER, signature

#: the body's third element: no callbacks, errbacks, chain or chord
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

#: the `ignore_result` header of a task sent without the option: Celery 5.7 sends null, earlier False
IGNORE_RESULT_HEADER = None if tuple(CELERY_VERSION[:2]) >= (5, 7) else False

#: Celery's limit on the argsrepr header, in characters
ARGSREPR_MAXSIZE = 1024


def _origin() -> str:
    """The `origin` header Celery sends: gen<pid>@<host>."""
    return f"gen{os.getpid()}@{socket.gethostname()}"


def task_headers(task_name: str, task_id: str, args: list[Any], extra: dict[str, Any] | None = None,
                 kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The headers Celery's protocol 2 gives a task sent with no eta, expiry, group or parent."""
    headers = {
        "lang": "py", "task": task_name, "id": task_id, "shadow": None, "eta": None, "expires": None,
        "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
        "parent_id": None, "argsrepr": saferepr(args, ARGSREPR_MAXSIZE),
        "kwargsrepr": saferepr(kwargs or {}, ARGSREPR_MAXSIZE),
        "origin": _origin(), "ignore_result": IGNORE_RESULT_HEADER, "replaced_task_nesting": 0,
        "stamped_headers": None, "stamps": {},
    }
    headers.update(extra or {})
    return headers


def message_body(args: list[Any], kwargs: dict[str, Any] | None = None) -> bytes:
    """A protocol-2 message body: [args, kwargs, embed] as JSON, the bytes a signature covers."""
    return json.dumps([args, kwargs or {}, EMBED]).encode("utf-8")


def queue_item(task_name: str, queue: str, args: list[Any], *, task_id: str | None = None,
               headers: dict[str, Any] | None = None, kwargs: dict[str, Any] | None = None,
               signing_key: str | None = None) -> str:
    """The JSON text to LPUSH onto `queue` so a Celery worker runs `task_name(*args, **kwargs)`; with
    `signing_key`, header sfsync_signature signs the body (events/signing.py).

    The exchange is the default one (""), the routing key the queue: on Redis the list is
    chosen by the push itself, and an unacknowledged message goes back to the routing key.
    """
    task_id = task_id or str(uuid.uuid4())
    body = message_body(args, kwargs)
    if signing_key is not None:
        headers = {**(headers or {}), HEADER: signature(body, signing_key)}
    item = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": task_headers(task_name, task_id, args, headers, kwargs),
        "properties": {
            "correlation_id": task_id,
            "reply_to": str(uuid.uuid4()),
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(item)

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
from schemas.workspace import is_workspace_id

#: the body's third element: no callbacks, errbacks, chain or chord
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

#: the `ignore_result` header of a task sent without the option: Celery 5.7 sends null, earlier False
IGNORE_RESULT_HEADER = None if tuple(CELERY_VERSION[:2]) >= (5, 7) else False

#: Celery's limit on the argsrepr header, in characters
ARGSREPR_MAXSIZE = 1024

#: sfsync's own headers on every message it publishes (emitters in other languages set them too,
#: see docs/events.md): the workspace of the message's events, and how many events it carries.
#: Workers schedule by the first (fair share, the overflow's sieve) and never by Celery's
#: informational `argsrepr`, which other Celery clients leave out.
WORKSPACE_HEADER = "sfsync_workspace"
EVENTS_HEADER = "sfsync_events"
#: the prefix of the headers a pool process is handed with a message (Celery's stay behind)
OWN_HEADER_PREFIX = "sfsync_"


def sfsync_headers(workspace_id: str | None, events: int) -> dict[str, Any]:
    """The headers sfsync adds to a message carrying `events` events of `workspace_id` (None: the
    events name no workspace id, and the header is left out)."""
    headers: dict[str, Any] = {EVENTS_HEADER: events}
    if is_workspace_id(workspace_id):
        headers[WORKSPACE_HEADER] = workspace_id
    return headers


def declared_workspace(headers: Any) -> str | None:
    """The workspace a message's `sfsync_workspace` header names, when it is a workspace id."""
    value = headers.get(WORKSPACE_HEADER) if isinstance(headers, dict) else None
    return value if is_workspace_id(value) else None


def first_event(args: Any) -> dict[str, Any] | None:
    """The first event of a message's arguments, parsed: the event itself (an object, or a string
    of its JSON), or the first of a bundle (an array, or a string of it). None when there is none
    to read (the pool process dead-letters such a message with its reason)."""
    first = args[0] if isinstance(args, (list, tuple)) and args else None
    for _ in range(2):  # a bundle sent as JSON text is parsed, then its first event read
        if isinstance(first, (str, bytes, bytearray)):
            try:
                first = json.loads(first)
            except (ValueError, RecursionError):
                return None
        if isinstance(first, list):
            first = first[0] if first else None
    return first if isinstance(first, dict) else None


def named_workspace(args: Any) -> str | None:
    """The workspace id the first event of a message's arguments names, read from the parsed body."""
    value = (first_event(args) or {}).get("workspace_id")
    return value if is_workspace_id(value) else None


def workspace_of(headers: Any, args: Any) -> str:
    """The workspace a message is scheduled under: its `sfsync_workspace` header, else (a message
    of an emitter that does not set it) what its first event names; "" when neither says.

    Scheduling only: the pool process parses every event and writes each to its own workspace's
    org, so a header that names another workspace than the events do misplaces nothing.
    """
    return declared_workspace(headers) or named_workspace(args) or ""


def sfsync_headers_of(headers: Any) -> dict[str, Any]:
    """The `sfsync_*` headers of a message (what a pool process may read besides the arguments)."""
    if not isinstance(headers, dict):
        return {}
    return {name: value for name, value in headers.items()
            if isinstance(name, str) and name.startswith(OWN_HEADER_PREFIX)}


def _origin() -> str:
    """The `origin` header Celery sends: gen<pid>@<host>."""
    return f"gen{os.getpid()}@{socket.gethostname()}"


def task_headers(task_name: str, task_id: str, args: list[Any], extra: dict[str, Any] | None = None,
                 kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The headers Celery's protocol 2 gives a task sent with no eta, expiry, group or parent."""
    headers: dict[str, Any] = {
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

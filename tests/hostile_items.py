"""Raw Redis queue items as any emitter could push them: a valid kombu envelope, and it with one path corrupted."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from typing import Any

#: put at a path, removes the field instead of setting it
MISSING = object()

#: Celery's protocol-2 embed, as Celery itself sends it
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def task_envelope(args: list[Any], *, task: str = "sfsync.email.sent", queue: str = "email.sent",
                  kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The envelope kombu's Redis transport stores for a Celery task message (what `send_task` pushes)."""
    task_id = str(uuid.uuid4())
    body = json.dumps([args, kwargs or {}, EMBED]).encode()
    return {
        "body": base64.b64encode(body).decode(), "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"lang": "py", "task": task, "id": task_id, "shadow": None, "eta": None, "expires": None,
                    "group": None, "group_index": None, "retries": 0, "timelimit": [None, None],
                    "root_id": task_id, "parent_id": None, "argsrepr": "(...)", "kwargsrepr": "{}",
                    "origin": "hostile@test", "ignore_result": True},
        "properties": {"correlation_id": task_id, "reply_to": "", "delivery_mode": 2, "priority": 0,
                       "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
                       "delivery_info": {"exchange": queue, "routing_key": queue}},
    }


def corrupted(envelope: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of `envelope` with the field at `path` set to `value` (or removed, for MISSING)."""
    out = copy.deepcopy(envelope)
    node: Any = out
    for name in path[:-1]:
        if not isinstance(node.get(name), dict):
            node[name] = {}
        node = node[name]
    if value is MISSING:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return out


def with_body(envelope: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The envelope carrying `body` (base64-encoded, as kombu does) instead of its own."""
    return {**envelope, "body": base64.b64encode(body).decode()}


def item(envelope: dict[str, Any]) -> str:
    """The queue item: the envelope as JSON text (ASCII escapes keep lone surrogates writable)."""
    return json.dumps(envelope)


def nested(depth: int, leaf: Any = 1) -> Any:
    """A value nested `depth` levels deep (alternating objects and arrays), built without recursion."""
    value = leaf
    for level in range(depth):
        value = {"x": value} if level % 2 else [value]
    return value


def deep_json_text(depth: int) -> str:
    """JSON text `depth` levels deep, too deep for Python's recursive JSON decoder beyond ~1,000."""
    return "[" * depth + "]" * depth


#: one corruption per envelope field kombu or Celery reads: (path, bad value, text the reason must contain)
ENVELOPE_CORRUPTIONS: list[tuple[tuple[str, ...], Any, str]] = [
    (("properties",), MISSING, "properties"),
    (("properties",), None, "properties"),
    (("properties",), "x", "properties"),
    (("properties", "delivery_info"), MISSING, "properties.delivery_info: missing"),
    (("properties", "delivery_info"), None, "properties.delivery_info"),
    (("properties", "delivery_info"), {}, "properties.delivery_info.exchange: missing"),
    (("properties", "delivery_info"), "email.sent", "properties.delivery_info"),
    (("properties", "delivery_info", "routing_key"), MISSING, "properties.delivery_info.routing_key: missing"),
    (("properties", "delivery_info", "routing_key"), 7, "properties.delivery_info.routing_key"),
    (("properties", "delivery_info", "exchange"), [], "properties.delivery_info.exchange"),
    (("properties", "delivery_tag"), None, "properties.delivery_tag"),
    (("properties", "delivery_tag"), {"a": 1}, "properties.delivery_tag"),
    (("properties", "delivery_tag"), [1, 2], "properties.delivery_tag"),
    (("properties", "delivery_tag"), MISSING, "properties.delivery_tag: missing"),
    (("properties", "body_encoding"), "rot13", "properties.body_encoding"),
    (("properties", "body_encoding"), 64, "properties.body_encoding"),
    (("properties", "priority"), "high", "properties.priority"),
    (("headers",), ["task", "sfsync.email.sent"], "headers: must be an object"),
    (("headers",), "sfsync.email.sent", "headers: must be an object"),
    (("headers",), None, "headers: must be an object"),
    (("headers", "task"), 42, "headers.task: must be a string"),
    (("headers", "task"), None, "headers.task"),
    (("headers", "task"), ["sfsync.email.sent"], "headers.task: must be a string"),
    (("headers", "task"), MISSING, "headers.task: missing"),
    (("headers", "task"), "celery.chord_unlock", "not an sfsync event task"),
    (("headers", "task"), "celery.backend_cleanup", "not an sfsync event task"),
    (("headers", "task"), "sfsync.release_parked", "not an sfsync event task"),
    (("headers", "task"), "sfsync.email.bounced", "not an sfsync event task"),
    (("headers", "id"), None, "headers.id"),
    (("headers", "id"), 12345, "headers.id"),
    (("headers", "id"), "has spaces in it", "headers.id"),
    (("headers", "timelimit"), [1], "headers.timelimit"),
    (("headers", "timelimit"), "soon", "headers.timelimit"),
    (("headers", "retries"), "many", "headers.retries"),
    (("headers", "eta"), "not a date", "headers.eta: not an ISO 8601 date-time"),
    (("headers", "expires"), "2026-13-45", "headers.expires: not an ISO 8601 date-time"),
    (("headers", "eta"), 5, "headers.eta"),
    (("headers", "deep"), nested(40), "nested deeper than"),
    (("body",), None, "body: must be a string"),
    (("body",), 17, "body: must be a string"),
    (("body",), "!!! not base64", "not valid base64"),
    (("content-type",), 3, "content-type"),
    (("content-type",), "application/x-python-serialize", "application/x-python-serialize"),
    (("content-encoding",), {"utf": 8}, "content-encoding"),
]

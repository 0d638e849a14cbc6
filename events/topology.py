"""Queue and task names: the wire contract between emitters and workers (documented in the README)."""

from __future__ import annotations

from kombu import Exchange, Queue

#: event type -> (Celery task name, Redis queue). One queue per event type.
ROUTES: dict[str, tuple[str, str]] = {
    "email.sent": ("sfsync.email.sent", "email.sent"),
    "email.replied": ("sfsync.email.replied", "email.replied"),
    "contact.updated": ("sfsync.contact.updated", "contact.updated"),
}

#: beat-driven housekeeping (parked-work release, CRM sync cycle) runs here, apart from event traffic
CONTROL_QUEUE = "sfsync.control"

#: events for Unify (salesforce.contact.changed) are pushed here as JSON lines, see events/outbound.py
OUTBOUND_QUEUE = "unify.outbound"

EVENT_QUEUES = tuple(queue for _, queue in ROUTES.values())
ALL_QUEUES = EVENT_QUEUES + (CONTROL_QUEUE,)


def route_for(event_type: str) -> tuple[str, str]:
    """(task name, queue) for an event type; KeyError for an unknown one."""
    return ROUTES[event_type]


def declarations() -> list[Queue]:
    """kombu queues, each bound to a direct exchange of its own name with its name as routing key."""
    return [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ALL_QUEUES]

"""Pydantic v2 models of sfsync's data: events, settings, mappings, dead letters. No I/O."""

from schemas.events import (
    ContactUpdated,
    EmailReplied,
    EmailSent,
    Event,
    InvalidEvent,
    parse_event,
)

__all__ = ["ContactUpdated", "EmailReplied", "EmailSent", "Event", "InvalidEvent", "parse_event"]

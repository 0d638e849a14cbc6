"""The dead-letter record: an event that could not be written, with everything support needs to act."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

#: failures a record remembers (the most recent ones); `first_failure_at` keeps the very first
HISTORY_KEEP = 20
#: characters of each earlier failure's message kept in the history
HISTORY_MESSAGE_KEEP = 500


class Failure(BaseModel):
    """One time the event failed; `replayed_at` is set once support replayed it after this failure."""

    model_config = ConfigDict(frozen=True)

    at: AwareDatetime
    error_code: str
    error_message: str
    replayed_at: AwareDatetime | None = None


class DeadLetterRecord(BaseModel):
    """Frozen; `id` is stable so support can show, replay or purge exactly this entry."""

    model_config = ConfigDict(frozen=True)

    id: str
    event_id: str | None = None
    event_type: str | None = None
    workspace_id: str | None = None
    #: before `event` in the stored JSON, so the store's retention script finds it without parsing the event
    error_code: str
    #: the original message argument as received: the event object, or raw text when it was not JSON
    event: Any = None
    error_message: str
    error_fields: list[str] = Field(default_factory=list)
    attempts: int = 1
    first_failure_at: AwareDatetime
    last_failure_at: AwareDatetime
    sfsync_version: str
    task_name: str | None = None
    queue: str | None = None
    #: for messages Celery could not decode: the message's content type and Celery task id, if any
    content_type: str | None = None
    task_id: str | None = None
    #: True when `event` holds only the start of an oversized raw body
    truncated: bool = False
    #: this event's failures, oldest first, the last one being this record's own error; kept
    #: across replays (at most HISTORY_KEEP); empty in records written before it existed
    history: list[Failure] = Field(default_factory=list)

    def age_seconds(self, now: datetime) -> float:
        return (now - self.last_failure_at).total_seconds()


class ReplayedRecord(BaseModel):
    """What the store remembers of a replayed dead letter, so a re-failure continues its record."""

    model_config = ConfigDict(frozen=True)

    id: str
    event_id: str | None = None
    workspace_id: str | None = None
    attempts: int
    first_failure_at: AwareDatetime
    history: list[Failure]

"""The dead-letter record: an event that could not be written, with everything support needs to act."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class DeadLetterRecord(BaseModel):
    """Frozen; `id` is stable so support can show, replay or purge exactly this entry."""

    model_config = ConfigDict(frozen=True)

    id: str
    event_id: str | None = None
    event_type: str | None = None
    workspace_id: str | None = None
    #: the original message argument as received: the event object, or raw text when it was not JSON
    event: Any = None
    error_code: str
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

    def age_seconds(self, now: datetime) -> float:
        return (now - self.last_failure_at).total_seconds()

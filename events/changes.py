"""What one Contact change is: its (Id, SystemModstamp) pair, and the forms that pair takes in Redis."""

from __future__ import annotations

from datetime import datetime, timezone

from events.keys import key


def parse_modstamp(text: str) -> int:
    """Milliseconds since the epoch of a Salesforce datetime (`2026-11-26T18:03:00.412+0000`)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return round(moment.timestamp() * 1000)


def change_key(contact_id: str, modstamp_ms: int) -> str:
    """What makes one change one change: the contact and the SystemModstamp it was read at."""
    return f"{contact_id}@{modstamp_ms}"


def handled_set(ws: str) -> str:
    """The sorted set of changes the CRM cycle has handled (`change_key` members, scored by stamp)."""
    return key(ws, "crm", "handled")

"""Salesforce timestamp formats: parsing date/datetime values and printing them as the API does."""
from __future__ import annotations

from datetime import date, datetime, timezone
from functools import lru_cache


def format_millis(millis: int) -> str:
    """`2026-11-26T18:03:00.412+0000`, the form the REST API returns datetimes in."""
    return _second(millis // 1000) + f"{millis % 1000:03d}+0000"


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    """`2026-11-26T18:03:00.` for a second since the epoch (a burst of writes stamps the same few)."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")


def parse_datetime(text: str, *, require_offset: bool) -> str | None:
    """Canonical UTC string for an ISO datetime, or None when it isn't one.

    Canonical strings sort like the instants they stand for, so comparisons stay string ones.
    """
    if not isinstance(text, str) or len(text) < 19 or text[10:11] not in ("T", "t"):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        if require_offset:
            return None
        moment = moment.replace(tzinfo=timezone.utc)
    millis = round(moment.timestamp() * 1000)
    return format_millis(millis)


def parse_date(text: str) -> str | None:
    """`YYYY-MM-DD` for a date value, or None."""
    if not isinstance(text, str) or len(text) != 10:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        return None

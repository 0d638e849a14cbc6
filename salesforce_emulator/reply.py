"""The value every data-API handler returns: status, JSON body (or None) and a route label for counters."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from .errors import ApiError, json_parser_error


@dataclass
class Reply:
    status: int
    body: object = None
    headers: dict = field(default_factory=dict)

    @classmethod
    def error(cls, error: ApiError) -> "Reply":
        return cls(error.status, error.body())


def parse_json(raw: object) -> object:
    """Request bodies arrive as bytes over HTTP and already parsed inside composite."""
    if not isinstance(raw, (bytes, bytearray, str)):
        return raw
    if not raw or not raw.strip():
        raise json_parser_error("No content to map due to end-of-input")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise json_parser_error(f"Unexpected character in JSON body: {exc}") from None


def json_object(raw: object) -> dict:
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise json_parser_error("Cannot deserialize instance of SObject from START_ARRAY value "
                                "or request may be missing a required field")
    return body

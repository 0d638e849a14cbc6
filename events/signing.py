"""Signed events: a workspace's emitters sign each message's body with one of its keys (HMAC-SHA256).

An emitter that may push to the event queues can name any workspace in its events. A workspace with
emitter keys accepts only messages whose header `sfsync_signature` is `v1=` followed by the hex
HMAC-SHA256 of the message body's exact bytes (the JSON text that the Celery message carries, before
its base64 transport encoding) under one of its keys; anything else is dead-lettered
INVALID_SIGNATURE. Nothing here imports Celery: any emitter can compute the same value.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Any

from schemas.codes import ErrorCode

#: the message header that carries the signature
HEADER = "sfsync_signature"
#: the signature's scheme, before the hex digest
SCHEME = "v1="
#: the dead-letter code of a message a signing workspace refuses
INVALID_SIGNATURE = ErrorCode.INVALID_SIGNATURE
#: the mark an event that passed its workspace's check carries in its retry meta while sfsync holds it (parked,
#: retried): only such an event is signed by sfsync when sent again. A message cannot set it: the meta a
#: message brings is read without it
VERIFIED = "verified"


def signature(body: bytes, key: str) -> str:
    """The header's value for `body` under `key`."""
    return SCHEME + hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verified(body: bytes | None, sent: Any, keys: Sequence[str]) -> bool:
    """Whether `sent` (the header's value) signs `body` under one of `keys`."""
    if not isinstance(body, (bytes, bytearray)) or not isinstance(sent, str) or not sent.startswith(SCHEME):
        return False
    return any(hmac.compare_digest(sent.encode("ascii", "replace"), signature(bytes(body), key).encode("ascii"))
               for key in keys)


def new_key() -> str:
    """A fresh emitter key: 32 random bytes, url-safe base64."""
    return secrets.token_urlsafe(32)

"""Encryption of the registry's connections at rest: Fernet keys from SFSYNC_SECRET_KEYS, the first encrypts.

A workspace's whole connection (URLs, domain, username, client id and the secrets) and its emitter
keys are sealed as one Fernet token that names the workspace it belongs to. Fernet authenticates what
it encrypts, so an entry changed in Redis does not open, and one copied under another workspace opens
as the other's and is refused. Tokens written before this format held a connection's secrets alone
(`open_workspace` says so: the registry re-seals them in the current format the first time it opens
them).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


#: the sealed payload's format: {"format": 2, "workspace": id, "connection": {...every field...} or null,
#: "emitter_keys": [...]}
SEALED_FORMAT = 2


class Sealed(NamedTuple):
    """What a workspace's token holds: its connection's fields (secrets included; None: not connected), its
    emitter keys, and whether it was written in the earlier format (a connection's secrets alone)."""

    connection: dict[str, Any] | None
    emitter_keys: tuple[str, ...]
    earlier: bool


class SecretKeyError(Exception):
    """The keys are missing or malformed, or none of them opens a stored secret; the message says which."""


class TamperedEntry(SecretKeyError):
    """A registry entry was changed outside sfsync (or copied from another workspace): it is never used."""


class Keyring:
    """Comma-separated Fernet keys: the first encrypts, every one decrypts (so keys can be rotated)."""

    def __init__(self, keys: str | None):
        raw = [k.strip() for k in (keys or "").split(",") if k.strip()]
        self.count = len(raw)
        fernets = []
        for n, key in enumerate(raw, 1):
            try:
                fernets.append(Fernet(key.encode("ascii")))
            except (ValueError, UnicodeEncodeError):
                raise SecretKeyError(f"SFSYNC_SECRET_KEYS: key {n} of {len(raw)} is not a Fernet key (32 "
                                     "url-safe base64-encoded bytes; make one with `sfsync workspaces new-key`)") from None
        self._fernet = MultiFernet(fernets) if fernets else None

    @property
    def usable(self) -> bool:
        return self._fernet is not None

    def _require(self) -> MultiFernet:
        if self._fernet is None:
            raise SecretKeyError("SFSYNC_SECRET_KEYS is not set: the workspace registry keeps credentials "
                                 "encrypted and needs at least one key (make one with `sfsync workspaces new-key`)")
        return self._fernet

    def seal(self, secrets: dict[str, Any]) -> str:
        """Any JSON object, sealed with the first key (SecretKeyError when there is none)."""
        return self._require().encrypt(json.dumps(secrets, sort_keys=True).encode()).decode("ascii")

    def open(self, token: str, workspace_id: str) -> Any:
        """The JSON value `token` seals: whatever was sealed, so the caller checks it is the object it expects
        (SecretKeyError when no key opens it)."""
        try:
            data = self._require().decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SecretKeyError(f"the credentials of workspace {workspace_id!r} do not open with SFSYNC_SECRET_KEYS "
                                 f"(of its {self.count} key(s), none opens them): they were sealed with another key "
                                 "(add it, then `sfsync workspaces rotate-keys`) or changed outside sfsync "
                                 "(connect the org again)") from None
        return json.loads(data)

    def seal_workspace(self, workspace_id: str, connection: dict[str, Any] | None,
                       emitter_keys: Sequence[str] = ()) -> str:
        """The whole connection (every field, secrets included) and the emitter keys, sealed and bound to
        `workspace_id`."""
        return self.seal({"format": SEALED_FORMAT, "workspace": workspace_id, "connection": connection,
                          "emitter_keys": list(emitter_keys)})

    def open_workspace(self, token: str, workspace_id: str) -> Sealed:
        """What `token` seals for `workspace_id`.

        TamperedEntry when the token was sealed for another workspace; SecretKeyError when no key opens it.
        """
        data = self.open(token, workspace_id)
        if not isinstance(data, dict):
            raise TamperedEntry(f"the sealed connection of workspace {workspace_id!r} is not one sfsync wrote")
        if "format" not in data:
            return Sealed(data, (), True)
        connection, keys = data.get("connection"), data.get("emitter_keys")
        if data.get("format") != SEALED_FORMAT or not isinstance(connection, (dict, type(None))) or \
                not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise TamperedEntry(f"the sealed connection of workspace {workspace_id!r} has a format this version "
                                f"does not read ({str(data.get('format'))[:20]})")
        if data.get("workspace") != workspace_id:
            raise TamperedEntry(f"the sealed connection stored under workspace {workspace_id!r} belongs to another "
                                "workspace: it was copied there outside sfsync and is not used")
        return Sealed(connection, tuple(keys), False)

    def rotate(self, token: str, workspace_id: str = "?") -> str:
        """The same secrets sealed with the first key (Fernet keeps the original timestamp)."""
        try:
            return self._require().rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError):
            raise SecretKeyError(f"the credentials of workspace {workspace_id!r} are sealed with a key that is not "
                                 "in SFSYNC_SECRET_KEYS: keep the old key in the list (after the new first "
                                 "one) until `sfsync workspaces rotate-keys` has run; nothing was re-sealed") from None


def new_key() -> str:
    """A fresh Fernet key (32 random bytes, url-safe base64) for SFSYNC_SECRET_KEYS."""
    return Fernet.generate_key().decode("ascii")

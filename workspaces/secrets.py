"""Encryption of the registry's credentials at rest: Fernet keys from SFSYNC_SECRET_KEYS, the first encrypts."""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretKeyError(Exception):
    """The keys are missing or malformed, or none of them opens a stored secret; the message says which."""


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

    def seal(self, secrets: dict[str, str]) -> str:
        return self._require().encrypt(json.dumps(secrets, sort_keys=True).encode()).decode("ascii")

    def open(self, token: str, workspace_id: str) -> dict[str, str]:
        try:
            data = self._require().decrypt(token.encode("ascii"))
        except InvalidToken:
            raise SecretKeyError(f"the credentials of workspace {workspace_id!r} were encrypted with a key that "
                                 f"is not in SFSYNC_SECRET_KEYS (of its {self.count} key(s), none opens them): "
                                 "add the key they were sealed with, then `sfsync workspaces rotate-keys`") from None
        return json.loads(data)

    def rotate(self, token: str, workspace_id: str = "?") -> str:
        """The same secrets sealed with the first key (Fernet keeps the original timestamp)."""
        try:
            return self._require().rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise SecretKeyError(f"the credentials of workspace {workspace_id!r} are sealed with a key that is not "
                                 "in SFSYNC_SECRET_KEYS: keep the old key in the list (after the new first "
                                 "one) until `sfsync workspaces rotate-keys` has run; nothing was re-sealed") from None


def new_key() -> str:
    """A fresh Fernet key (32 random bytes, url-safe base64) for SFSYNC_SECRET_KEYS."""
    return Fernet.generate_key().decode("ascii")

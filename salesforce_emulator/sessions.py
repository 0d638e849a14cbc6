"""Who is signed in, across every org: access tokens, refresh tokens and authorization codes."""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field

#: authorization codes are single-use and die after ten minutes, as Salesforce's do
CODE_LIFETIME_SECONDS = 600


@dataclass
class AccessToken:
    value: str
    org: str
    user_id: str
    issued: float = field(default_factory=time.monotonic)
    #: the org's preset token: no session TTL applies to it, only expiry by the admin API or a reset
    preset: bool = False
    #: the refresh token this one was issued with; revoking that one ends this one too
    refresh_token: str | None = None

    def live(self, ttl: float | None) -> bool:
        return self.preset or ttl is None or time.monotonic() - self.issued < ttl


@dataclass
class RefreshToken:
    value: str
    org: str
    user_id: str
    client_id: str
    scope: str


@dataclass
class AuthorizationCode:
    value: str
    org: str
    user_id: str
    client_id: str
    redirect_uri: str
    scope: str
    challenge: str | None
    challenge_method: str
    expires: float = field(default_factory=lambda: time.monotonic() + CODE_LIFETIME_SECONDS)

    def verifier_ok(self, verifier: str | None) -> bool:
        """PKCE (RFC 7636): the verifier must hash (S256) or be equal (plain) to the challenge."""
        if self.challenge is None:
            return True
        if not verifier:
            return False
        if self.challenge_method == "S256":
            digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
            expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        else:
            expected = verifier
        return secrets.compare_digest(expected.encode(), self.challenge.encode())


class Sessions:
    """The one token table of the emulator: a data-API call finds its org through its bearer token."""

    def __init__(self):
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.codes: dict[str, AuthorizationCode] = {}

    def add_preset(self, value: str, org: str, user_id: str) -> AccessToken:
        token = AccessToken(value, org, user_id, preset=True)
        self.access[value] = token
        return token

    def issue_access(self, org: str, org_id: str, user_id: str, refresh_token: str | None = None) -> AccessToken:
        # Salesforce access tokens start with the org id's first 15 characters and a "!"
        token = AccessToken(f"{org_id[:15]}!emu.{secrets.token_urlsafe(24)}", org, user_id,
                            refresh_token=refresh_token)
        self.access[token.value] = token
        return token

    def issue_refresh(self, org: str, user_id: str, client_id: str, scope: str) -> RefreshToken:
        token = RefreshToken(f"5Aep861emu.{secrets.token_urlsafe(32)}", org, user_id, client_id, scope)
        self.refresh[token.value] = token
        return token

    def issue_code(self, **fields) -> AuthorizationCode:
        code = AuthorizationCode(f"aPrxemu.{secrets.token_urlsafe(24)}", **fields)
        self.codes[code.value] = code
        return code

    def take_code(self, value: str) -> AuthorizationCode | None:
        """The code if it is still good; the first redemption ends it, whether or not the exchange succeeds."""
        code = self.codes.pop(value, None)
        if code is None or time.monotonic() >= code.expires:
            return None
        return code

    def revoke(self, value: str) -> bool:
        """End an access token, or a refresh token and every access token issued with it."""
        if self.access.pop(value, None) is not None:
            return True
        if self.refresh.pop(value, None) is None:
            return False
        for token in [t for t in self.access.values() if t.refresh_token == value]:
            del self.access[token.value]
        return True

    def expire_access(self, org: str) -> int:
        """End every access token of an org, the preset one included; refresh tokens still work."""
        ended = [t.value for t in self.access.values() if t.org == org]
        for value in ended:
            del self.access[value]
        return len(ended)

    def revoke_refresh(self, org: str) -> int:
        ended = [t.value for t in self.refresh.values() if t.org == org]
        for value in ended:
            self.revoke(value)
        return len(ended)

    def forget(self, org: str) -> None:
        """Drop everything an org issued (on reset or deletion)."""
        self.expire_access(org)
        self.revoke_refresh(org)
        for value in [c.value for c in self.codes.values() if c.org == org]:
            del self.codes[value]

    def count(self, org: str) -> dict[str, int]:
        return {"access_tokens": sum(1 for t in self.access.values() if t.org == org),
                "refresh_tokens": sum(1 for t in self.refresh.values() if t.org == org)}

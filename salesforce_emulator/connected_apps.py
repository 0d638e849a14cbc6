"""Connected apps: the OAuth clients that may sign users of any org in, and where they may send them back."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

#: the connected app every emulator has, as a service has one app for all its customers' orgs
DEFAULT_CLIENT_ID = "3MVG9emulator.sfsync.default.connected.app"
DEFAULT_CLIENT_SECRET = "sfsync-emulator-client-secret"
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: the documented way to make a client fail: a secret starting "wrong"
_BAD_SECRET_PREFIX = "wrong"


@dataclass(frozen=True)
class ConnectedApp:
    client_id: str
    client_secret: str
    #: the callback URLs it may redirect to, exactly; empty: any http(s) URL on a loopback host
    redirect_uris: tuple[str, ...] = ()
    #: the org whose integration user the client-credentials flow runs as (None: the default org)
    org: str | None = None

    def allows_redirect(self, uri: str | None) -> bool:
        if not uri:
            return False
        if self.redirect_uris:
            return uri in self.redirect_uris
        parts = urlsplit(uri)
        return parts.scheme in ("http", "https") and parts.hostname in _LOOPBACK_HOSTS

    def secret_ok(self, secret: str | None) -> bool:
        # mypy does not narrow through bool(secret)
        return (bool(secret) and not secret.startswith(_BAD_SECRET_PREFIX)  # type: ignore[union-attr]
                and secrets.compare_digest(secret.encode(), self.client_secret.encode()))  # type: ignore[union-attr]

    def describe(self) -> dict:
        return {"client_id": self.client_id, "client_secret": self.client_secret,
                "redirect_uris": list(self.redirect_uris), "org": self.org}


def default_app() -> ConnectedApp:
    return ConnectedApp(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)


class ConnectedApps:
    """Every app by client id; the default one can't be removed."""

    def __init__(self):
        self.apps: dict[str, ConnectedApp] = {DEFAULT_CLIENT_ID: default_app()}

    def get(self, client_id: str | None) -> ConnectedApp | None:
        return self.apps.get(client_id or "")

    def add(self, body: dict, org_names) -> ConnectedApp:
        """A new app from an admin definition; raises ValueError with a readable reason."""
        client_id = body.get("client_id") or f"3MVG9emu.{secrets.token_urlsafe(24)}"
        secret = body.get("client_secret") or secrets.token_hex(32)
        uris = body.get("redirect_uris") or []
        org = body.get("org")
        if not isinstance(client_id, str) or not isinstance(secret, str):
            raise ValueError("client_id and client_secret must be strings")
        if client_id in self.apps:
            raise ValueError(f"a connected app with client_id {client_id} exists")
        if not isinstance(uris, list) or not all(isinstance(u, str) and urlsplit(u).scheme for u in uris):
            raise ValueError("redirect_uris must be a list of absolute URLs")
        if org is not None and org not in org_names:
            raise ValueError(f"no org named {org}")
        app = ConnectedApp(client_id, secret, tuple(uris), org)
        self.apps[client_id] = app
        return app

    def reset(self) -> None:
        self.apps = {DEFAULT_CLIENT_ID: default_app()}

"""Every org the emulator holds, the sessions that reach them and which org a username signs in to."""
from __future__ import annotations

import re
import threading

from .auth import password_ok
from .connected_apps import ConnectedApps
from .ids import make_id
from .org import DEFAULT_FEATURES, DEFAULT_ORG, DEFAULT_TOKEN, ORG_ID_SPACING, Org, OrgSettings
from .sessions import AccessToken, Sessions

#: org names go into URLs and username domains (`integration@acme.example`)
_ORG_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")


def settings_from_json(body: dict) -> OrgSettings:
    """An org's settings from an admin request; raises ValueError with a readable reason."""
    features = body.get("features") or {}
    if not isinstance(features, dict) or any(k not in DEFAULT_FEATURES or not isinstance(v, bool)
                                             for k, v in features.items()):
        raise ValueError(f"features must map {', '.join(DEFAULT_FEATURES)} to true/false")
    limit = body.get("daily_api_requests", OrgSettings.daily_api_requests)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError("daily_api_requests must be a non-negative integer")
    lockout = body.get("lockout_after", OrgSettings.lockout_after)
    if isinstance(lockout, bool) or not isinstance(lockout, int) or lockout < 1:
        raise ValueError("lockout_after must be a positive integer")
    return OrgSettings({**DEFAULT_FEATURES, **features}, limit, session_ttl(body.get("session_ttl_seconds")), lockout)


def session_ttl(value: object) -> float | None:
    """A session TTL from an admin request: seconds > 0, or None for sessions that live until reset."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
        raise ValueError("session_ttl_seconds must be a positive number or null")
    return value


class Orgs:
    """The orgs by name; the `default` one always exists. One lock guards every org and the token table."""

    def __init__(self, token: str = DEFAULT_TOKEN, data_file: str | None = None):
        self.lock = threading.RLock()
        self.sessions = Sessions()
        self.apps = ConnectedApps()
        self.by_name: dict[str, Org] = {}
        #: created orgs are numbered and never renumbered, so a deleted org's ids and tokens stay dead
        self._created = 0
        self.default = Org(token, data_file, lock=self.lock)
        self._add(self.default)

    def _add(self, org: Org) -> None:
        self.by_name[org.name] = org
        self.sessions.add_preset(org.preset_token, org.name, org.api_user_id)

    def get(self, name: str) -> Org | None:
        return self.by_name.get(name)

    def create(self, name: str, settings: OrgSettings) -> Org:
        if not isinstance(name, str) or not _ORG_NAME.match(name):
            raise ValueError("id must be 1-40 lowercase letters, digits or hyphens")
        if name in self.by_name:
            raise KeyError(name)
        self._created += 1
        org_id = make_id("00D", self._created)
        token = f"{org_id[:15]}!emu.{name}.preset"
        org = Org(token, name=name, org_id=org_id, id_base=self._created * ORG_ID_SPACING, settings=settings,
                  lock=self.lock)
        self._add(org)
        return org

    def delete(self, name: str) -> bool:
        if name == DEFAULT_ORG or self.by_name.pop(name, None) is None:
            return False
        self.sessions.forget(name)
        return True

    def reset(self, org: Org) -> None:
        """One org back to how it was created: records, settings, faults and every token it issued."""
        org.reset()
        self.sessions.forget(org.name)
        self.sessions.add_preset(org.preset_token, org.name, org.api_user_id)

    def reset_all(self) -> None:
        """Only the default org, fresh, and only the default connected app."""
        for name in [n for n in self.by_name if n != DEFAULT_ORG]:
            self.delete(name)
        self.apps.reset()
        self.reset(self.default)

    # who is calling ----------------------------------------------------------------------

    def resolve(self, token: str | None) -> tuple[Org, AccessToken] | None:
        """The org and session a bearer token stands for, if it is still live."""
        session = self.sessions.access.get(token or "")
        org = self.by_name.get(session.org) if session else None
        if org is None or not session.live(org.session_ttl):  # type: ignore[union-attr]  # org: only with a session
            return None
        return org, session  # type: ignore[return-value]

    def sign_in(self, username: str | None, *, any_username: bool) -> tuple[Org, str] | None:
        """The org and user id a username signs in as.

        A username of a user in a created org signs in to that org; a username in a created org's domain
        (`…@acme.example`) that names no user there fails. With `any_username`, every other username signs in to
        the default org (as its matching user, else its integration user), as the emulator always allowed.
        """
        if not username:
            return None
        for org in sorted(self.by_name.values(), key=lambda o: o.name == DEFAULT_ORG):
            user_id = org.active_user(username)
            if user_id is not None:
                return org, user_id
        domain = username.rpartition("@")[2].lower()
        if any(domain == f"{name}.example" for name in self.by_name if name != DEFAULT_ORG):
            return None
        return (self.default, self.default.api_user_id) if any_username else None

    def password_sign_in(self, username: str | None, password: str | None) -> tuple[Org, str] | None:
        """A username-password login, as Salesforce counts it: an invalid one counts against the user, a
        locked-out user is refused even with the right password, and a good one starts the count again."""
        if not username:
            return None
        org = self.username_owner(username) or self.default
        if org.locked_out(username):
            return None
        signed_in = self.sign_in(username, any_username=True) if password_ok(password) else None
        if signed_in is None:
            org.failed_logins[username.lower()] += 1
            return None
        org.failed_logins.pop(username.lower(), None)
        return signed_in

    def username_owner(self, username: str) -> Org | None:
        """The org that has a user with this username; usernames are unique across orgs, as in Salesforce."""
        return next((org for org in self.by_name.values() if org.unique_owner("User", "Username", username)),
                    None)

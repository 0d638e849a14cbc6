"""Console users and roles: the local users file (YAML, argon2 hashes) and the mapping of OIDC claims to roles."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: what each role may do, lowest first: viewer reads; support also replays; admin also purges and removes
ROLES = ("viewer", "support", "admin")
#: the group or role claim value that grants each console role (docs/console.md): only these sfsync-* names, so
#: a group an organisation made for something else (plain `admin`, say) never opens the console
CLAIM_VALUES = {role: {f"sfsync-{role}"} for role in ROLES}
#: the claims an identity provider's roles are read from, first found wins
ROLE_CLAIMS = ("roles", "groups")

_hasher = PasswordHasher()


class UsersFileError(Exception):
    """The users file cannot be read or holds an invalid entry; the message names the file and entry."""


@dataclass(frozen=True)
class User:
    username: str
    role: str
    password_hash: str = ""


def allows(role: str | None, needed: str) -> bool:
    """True when `role` is `needed` or above it."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def hash_password(password: str) -> str:
    """An argon2id hash of `password`, as the users file holds it."""
    if len(password) < 8:
        raise ValueError("a console password needs at least 8 characters")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


#: verified against when the username is unknown, so a wrong name costs as long as a wrong password
_DUMMY_HASH = _hasher.hash("not a password of anyone")


def load_users(path: Path) -> dict[str, User]:
    """username -> User from a users file (`users: [{username, password_hash, role}, ...]`)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise UsersFileError(f"cannot read the users file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsersFileError(f"the users file {path} is not valid YAML: {exc}") from None
    entries = data.get("users") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise UsersFileError(f"the users file {path} needs a top-level `users:` list")
    users: dict[str, User] = {}
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) and entry.get(k)
                                                  for k in ("username", "password_hash", "role")):
            raise UsersFileError(f"{path}: user {number} needs username, password_hash and role")
        if entry["role"] not in ROLES:
            raise UsersFileError(f"{path}: user {entry['username']!r} has role {entry['role']!r}; "
                                 f"use one of {', '.join(ROLES)}")
        users[entry["username"]] = User(entry["username"], entry["role"], entry["password_hash"])
    return users


class Roles:
    """Each password user's current role, read from the users file again whenever it changes."""

    def __init__(self, path: Path | None):
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._roles: dict[str, str] = {}

    def role_of(self, username: str) -> str | None:
        """The user's role now; None when they are no longer in the file (or it cannot be read: fail closed)."""
        if self.path is None:
            return None
        try:
            stat = self.path.stat()
            if self._seen != (stat.st_mtime_ns, stat.st_size):
                self._roles = {u.username: u.role for u in load_users(self.path).values()}
                self._seen = (stat.st_mtime_ns, stat.st_size)
        except (OSError, UsersFileError):
            self._seen, self._roles = None, {}
            return None
        return self._roles.get(username)


#: argon2 verifications running at once (each takes tens of milliseconds and ~100 MB/s of memory bandwidth)
VERIFY_AT_ONCE = 2
#: sign-ins waiting for a verification beyond which more are answered "busy" instead of queued
VERIFY_WAITING = 32


class VerifierBusy(Exception):
    """Too many sign-ins are waiting for a password check; this one was not tried."""


class Verifier:
    """Password checks off the event loop (in threads), a few at a time: a flood of sign-ins makes sign-ins
    wait, never the pages of people already signed in."""

    def __init__(self, at_once: int = VERIFY_AT_ONCE, waiting: int = VERIFY_WAITING):
        self._slots = asyncio.Semaphore(at_once)
        self._room = at_once + waiting
        self._in = 0

    async def authenticate(self, path: Path, username: str, password: str) -> User | None:
        """The user when the password is theirs; UsersFileError when the file cannot be read."""
        if self._in >= self._room:
            raise VerifierBusy()
        self._in += 1
        try:
            async with self._slots:
                return await asyncio.to_thread(lambda: authenticate(load_users(path), username, password))
        finally:
            self._in -= 1


def authenticate(users: dict[str, User], username: str, password: str) -> User | None:
    user = users.get(username)
    if user is None:
        verify_password(_DUMMY_HASH, password)
        return None
    return user if verify_password(user.password_hash, password) else None


def save_user(path: Path, username: str, password: str, role: str) -> bool:
    """Add or replace one user in the users file (created if missing); True when the user was new."""
    if role not in ROLES:
        raise UsersFileError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not username.strip() or any(c.isspace() for c in username):
        raise UsersFileError("a username must be non-empty and hold no spaces")
    existing = load_users(path) if path.exists() else {}
    new = username not in existing
    existing[username] = User(username, role, hash_password(password))
    data = {"users": [{"username": u.username, "password_hash": u.password_hash, "role": u.role}
                      for u in existing.values()]}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return new


def role_from_claims(claims: dict) -> str | None:
    """The highest console role an identity provider's `roles` or `groups` claim grants, or None."""
    for claim in ROLE_CLAIMS:
        values = claims.get(claim)
        if values is None:
            continue
        granted = set(_as_list(values))
        for role in reversed(ROLES):
            if granted & CLAIM_VALUES[role]:
                return role
        return None
    return None


def _as_list(values) -> Iterable[str]:
    if isinstance(values, str):
        return values.replace(",", " ").split()
    return [str(v) for v in values] if isinstance(values, (list, tuple)) else []

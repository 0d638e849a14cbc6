"""A workspace as declared in a registry file: its Salesforce connection, settings and mappings."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeGuard

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from schemas.mappings_file import load_mappings

#: workspace ids name Redis keys (inside a `{...}` hash tag) and URLs: letters, digits, `_ . -`
WORKSPACE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_WORKSPACE_ID = re.compile(WORKSPACE_ID_PATTERN)

#: fields of a Salesforce connection that are secrets: stored encrypted, never shown
SECRET_NAMES = ("access_token", "password", "security_token", "client_secret", "refresh_token", "private_key")

AuthKind = Literal["token", "password", "oauth", "jwt"]
#: what a play's "Sync to Salesforce" node creates for a person nobody matches
PlayCreates = Literal["contact", "lead"]
#: days an email without a Contact waits for one by default, and how many may wait per workspace
LATE_CONTACT_DAYS = 30.0
LATE_CONTACT_MAX = 100_000

#: characters an emitter key needs at least (`sfsync workspaces new-emitter-key` makes 43)
MIN_EMITTER_KEY_LENGTH = 32
#: emitter keys a workspace may hold at once (the first signs what sfsync sends again; all verify)
MAX_EMITTER_KEYS = 8


def parse_emitter_keys(text: str) -> list[str]:
    """The keys of an emitter keys file: one per line; blank lines and lines starting with # are skipped.
    ValueError (quoting no key) when one is too short, or there are none or too many."""
    keys = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    check_emitter_keys(keys)
    return keys


def check_emitter_keys(keys: list[str]) -> None:
    if not keys:
        raise ValueError("no emitter key in it (one key per line)")
    if len(keys) > MAX_EMITTER_KEYS:
        raise ValueError(f"{len(keys)} emitter keys; at most {MAX_EMITTER_KEYS} (the first signs, all verify)")
    for n, key in enumerate(keys, start=1):
        if len(key) < MIN_EMITTER_KEY_LENGTH or any(c.isspace() for c in key):
            raise ValueError(f"emitter key {n} has {len(key)} characters or holds a space; a key needs at least "
                             f"{MIN_EMITTER_KEY_LENGTH} (make one with `sfsync workspaces new-emitter-key`)")


def is_workspace_id(value: Any) -> TypeGuard[str]:
    # fullmatch: with `match`, `$` would also accept the id followed by a newline
    return isinstance(value, str) and bool(_WORKSPACE_ID.fullmatch(value))


class SalesforceConnection(BaseModel):
    """How sfsync signs in to one org; exactly one of the four ways must be complete."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_url: str | None = None
    login_url: str | None = None
    domain: str | None = None
    username: str | None = None
    client_id: str | None = None
    api_version: str = Field(default="59.0", pattern=r"^\d{2}\.0$")
    access_token: SecretStr | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    private_key: SecretStr | None = None

    @field_validator("instance_url", "login_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http://)")
        return value.rstrip("/") if value else value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9.-]{1,200}", value):
            raise ValueError("must be `login`, `test` or a My Domain host name (letters, digits, dots, hyphens)")
        return value

    @model_validator(mode="after")
    def _one_way(self) -> "SalesforceConnection":
        if self.login_url and self.domain:
            raise ValueError("give login_url or domain, not both")
        if self.auth is None:
            raise ValueError(
                "no complete way to sign in: give instance_url + access_token, or username + password "
                "(+ security_token), or client_id + client_secret + refresh_token (OAuth), or "
                "username + client_id + private_key (JWT bearer)")
        return self

    @property
    def auth(self) -> AuthKind | None:
        if self.refresh_token and self.client_id:
            return "oauth"
        if self.username and self.client_id and self.private_key:
            return "jwt"
        if self.username and self.password:
            return "password"
        if self.instance_url and self.access_token:
            return "token"
        return None

    @property
    def login_host(self) -> str:
        """The URL logins and token requests go to."""
        if self.login_url:
            return self.login_url
        domain = self.domain or "login"
        host = domain if "." in domain else f"{domain}.salesforce.com"
        return f"https://{host}"

    def public(self) -> dict[str, Any]:
        """Everything but the secrets, plus which secrets are set (for `show`, the console, logs)."""
        data = self.model_dump(exclude=set(SECRET_NAMES), exclude_none=True)
        data["auth"] = self.auth
        data["secrets_set"] = sorted(n for n in SECRET_NAMES if getattr(self, n) is not None)
        return data

    def secrets(self) -> dict[str, str]:
        return {n: getattr(self, n).get_secret_value() for n in SECRET_NAMES if getattr(self, n) is not None}

    def everything(self) -> dict[str, Any]:
        """Every field that is set, secrets in clear: what the registry seals as one."""
        return {**self.model_dump(exclude=set(SECRET_NAMES), exclude_none=True), **self.secrets()}

    def urls(self) -> list[tuple[str, str]]:
        """(what, URL) of every host this connection sends credentials or data to."""
        found = [("login URL", self.login_host)]
        if self.instance_url:
            found.append(("instance URL", self.instance_url))
        return found


class WorkspaceSpec(BaseModel):
    """One workspace of a registry file, with its secrets and mappings read in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str = Field(default="", max_length=200)
    salesforce: SalesforceConnection | None = None
    email_message_writeback: bool = True
    #: seconds an event may wait for company before its batch is written (the API economy's price)
    max_latency_seconds: float = Field(default=5.0, ge=0.1, le=3600)
    #: share of the daily API allowance above which sfsync slows down and then parks this org's work
    api_usage_ceiling: float = Field(default=0.8, gt=0, le=1)
    enabled: bool = True
    #: the field mappings (the sections of a mappings file); None keeps what the registry holds
    mappings: dict[str, Any] | None = None
    # --- leads, late contacts, email logged elsewhere (their defaults keep the rules for Contacts as they were)
    #: an unconverted Lead with one of the person's addresses is the record when no Contact has any
    match_leads: bool = False
    #: what a play's "Sync to Salesforce" node creates when nobody matches
    play_creates: PlayCreates = "contact"
    #: days an email skipped for no match waits for its Contact (or Lead) to appear; 0: it never waits
    late_contact_days: float = Field(default=LATE_CONTACT_DAYS, ge=0, le=3650)
    #: emails waiting at most, per workspace; the oldest go first
    late_contact_max: int = Field(default=LATE_CONTACT_MAX, ge=1, le=10_000_000)
    #: an EmailMessage whose Message-ID is already in the org (logged by another integration) is skipped
    skip_already_logged: bool = True
    #: keys the workspace's emitters sign their messages with (header sfsync_signature); None: events of this
    #: workspace are accepted unsigned
    emitter_keys: list[SecretStr] | None = None

    @field_validator("emitter_keys")
    @classmethod
    def _emitter_keys(cls, value: list[SecretStr] | None) -> list[SecretStr] | None:
        if value is not None:
            check_emitter_keys([k.get_secret_value() for k in value])
        return value

    def emitter_key_values(self) -> tuple[str, ...]:
        return tuple(k.get_secret_value() for k in self.emitter_keys or ())

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not is_workspace_id(value):
            raise ValueError(f"{value!r} is not a workspace id: 1 to 64 letters, digits, `_`, `.` or `-`, "
                             "starting with a letter or digit")
        return value


class RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspaces: list[WorkspaceSpec]

    @model_validator(mode="after")
    def _unique(self) -> "RegistryFile":
        seen: set[str] = set()
        for spec in self.workspaces:
            if spec.id in seen:
                raise ValueError(f"workspace {spec.id!r} is declared twice")
            seen.add(spec.id)
        return self


#: `<name>_file` keys a registry file may use instead of an inline secret (or mappings)
FILE_KEYS = {f"{n}_file": n for n in SECRET_NAMES}


def resolve_files(data: Any, base: Path) -> Any:
    """Replace `*_file` keys (secrets, `mappings_file`) by the files' contents, relative to `base`.

    Problems are ValueErrors naming the workspace and key, so a file is checked as a whole before
    anything is changed.
    """
    if not isinstance(data, dict) or not isinstance(data.get("workspaces"), list):
        return data
    out, problems = [], []

    def read(reader: Callable[[Path, str], Any], path: Path, where: str) -> Any:
        try:
            return reader(path, where)
        except ValueError as exc:  # every unreadable file is named, not only the first
            problems.append(str(exc))
            return None

    for n, spec in enumerate(data["workspaces"]):
        if not isinstance(spec, dict):
            out.append(spec)
            continue
        spec = dict(spec)
        where = f"workspaces[{n}] ({spec.get('id', '?')})"
        if "mappings_file" in spec:
            if spec.get("mappings") is not None:
                problems.append(f"{where}: give mappings or mappings_file, not both")
            spec["mappings"] = read(_read_mappings, base / str(spec.pop("mappings_file")), where)
        if "emitter_keys_file" in spec:
            if spec.get("emitter_keys") is not None:
                problems.append(f"{where}: give emitter_keys or emitter_keys_file, not both")
            spec["emitter_keys"] = read(_read_emitter_keys, base / str(spec.pop("emitter_keys_file")), where)
        sf = spec.get("salesforce")
        if isinstance(sf, dict):
            sf = dict(sf)
            for file_key, name in FILE_KEYS.items():
                if file_key in sf:
                    if sf.get(name) is not None:
                        problems.append(f"{where}.salesforce: give {name} or {file_key}, not both")
                    sf[name] = read(_read, base / str(sf.pop(file_key)), f"{where}.salesforce.{file_key}")
            spec["salesforce"] = sf
        out.append(spec)
    if problems:
        raise ValueError("; ".join(problems))
    return {**data, "workspaces": out}


def _read(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None


def _read_emitter_keys(path: Path, where: str) -> list[str]:
    text = _read(path, f"{where}.emitter_keys_file")
    try:
        return parse_emitter_keys(text)
    except ValueError as exc:
        raise ValueError(f"{where}.emitter_keys_file ({path}): {exc}") from None


def _read_mappings(path: Path, where: str) -> dict[str, Any]:
    try:
        config = load_mappings(path)
    except ValueError as exc:
        raise ValueError(f"{where}.mappings_file: {exc}") from None
    return config.model_dump(mode="json", exclude={"origin"}, exclude_defaults=True)

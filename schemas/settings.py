"""sfsync's configuration, read from SFSYNC_* environment variables."""

from __future__ import annotations

import difflib
import ipaddress
import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.redis_url import SENTINEL_SCHEMES, is_sentinel_url, parse_sentinel_url
from schemas.salesforce_hosts import HostNotAllowed, HostPolicy
from schemas.workspace import LATE_CONTACT_DAYS, LATE_CONTACT_MAX, PlayCreates

DEFAULT_REDIS_URL = "redis://localhost:6379/0"

#: Variables that may instead be given as NAME_FILE pointing at a file holding the secret.
SECRET_FIELDS = (
    "salesforce_access_token",
    "salesforce_password",
    "salesforce_security_token",
    "sentry_dsn",
    "redis_url",
    "secret_keys",
    "web_secret_key",
    "web_oidc_client_secret",
)

#: SFSYNC_ variables read by the project's own tools rather than by the service; never refused.
TOOL_VARIABLES = frozenset({
    "SFSYNC_TEST_REDIS_URL",   # tests/conftest.py: the Redis the test suite uses
    "SFSYNC_BENCH_REDIS_URL",  # benchmarks/run.py: the Redis the benchmark uses
    "SFSYNC_SIGNING_KEY_FILE",  # examples/node/emit.js: the file holding the emitter key it signs with
    # docker-compose.yml: the host ports it publishes, its images, the console's users file
    "SFSYNC_EMULATOR_PORT", "SFSYNC_CONSOLE_PORT", "SFSYNC_FLOWER_PORT", "SFSYNC_IMAGE", "SFSYNC_TOOLS_IMAGE",
    "SFSYNC_REDIS_IMAGE", "SFSYNC_PYTHON_IMAGE", "SFSYNC_CONSOLE_USERS_FILE",
    "SFSYNC_CONTAINERS_DIR",   # tools/container_images.sh: where it keeps podman's settings and its lock
    "SFSYNC_UPDATE_LOOKS",     # tests/web/test_console_looks.py: renew the console's reference screenshots
})

#: URL schemes the Redis client (and kombu's Redis transport) understand; sentinel(s):// see schemas/redis_url.py
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", *SENTINEL_SCHEMES)


class SettingsError(Exception):
    """Start-up configuration is missing or malformed; the message names each variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SFSYNC_", extra="ignore", frozen=True)

    # --- Redis: broker, dead-letter store, idempotency ledger, contact index
    redis_url: SecretStr = SecretStr(DEFAULT_REDIS_URL)

    # --- Salesforce: one of three ways to authenticate
    salesforce_instance_url: str | None = None
    salesforce_access_token: SecretStr | None = None
    salesforce_username: str | None = None
    salesforce_password: SecretStr | None = None
    salesforce_security_token: SecretStr | None = None
    salesforce_domain: str = "login"
    salesforce_consumer_key: str | None = None
    salesforce_private_key_file: Path | None = None
    salesforce_api_version: str = Field(default="59.0", pattern=r"^\d{2}\.0$")
    #: seconds; HTTP timeout of one Salesforce call
    salesforce_timeout: float = Field(default=30.0, gt=0, le=600)
    #: hosts besides Salesforce's own (comma-separated `host`, `host:port`, `host:*`) that logins, token and
    #: data calls may go to, over http:// too: the emulator, tests, the demo. Empty: Salesforce's hosts only
    salesforce_allowed_hosts: str = ""

    #: comma-separated Fernet keys sealing the workspace registry's credentials; the first seals, all open
    secret_keys: SecretStr | None = None

    # --- Sync behaviour
    #: the Unify workspace whose Salesforce org this deployment writes to; events of others are refused
    workspace_id: str = Field(default="default", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")
    mappings: Path | None = None
    email_message_writeback: bool = True
    #: events per batch (one SOQL lookup and one composite write per batch); Salesforce caps at 200
    batch_size: int = Field(default=200, ge=1, le=200)
    #: seconds a partial batch waits before it is flushed
    flush_interval: float = Field(default=1.0, gt=0, le=60)
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    # the environment's workspace: leads, late contacts, email logged elsewhere (schemas/workspace.py)
    match_leads: bool = False
    play_creates: PlayCreates = "contact"
    late_contact_days: float = Field(default=LATE_CONTACT_DAYS, ge=0, le=3650)
    late_contact_max: int = Field(default=LATE_CONTACT_MAX, ge=1, le=10_000_000)
    skip_already_logged: bool = True

    # --- Delivery guarantees
    max_attempts: int = Field(default=8, ge=1, le=100)
    #: seconds; first retry delay, doubled each attempt, with full jitter
    retry_backoff: float = Field(default=2.0, gt=0)
    #: seconds; cap of one retry delay; kept well under the visibility timeout
    retry_backoff_max: float = Field(default=300.0, gt=0)
    #: seconds since an event's first failure before it may be dead-lettered (with max_attempts spent):
    #: a transient failure is retried at least this long, so an outage cannot exhaust it faster
    retry_budget: float = Field(default=6 * 3600.0, ge=0)
    #: seconds; Redis hands an unacknowledged message out again after this long. Workers renew the
    #: messages they hold every 10 s, so this only decides how soon a dead worker's messages come back
    visibility_timeout: int = Field(default=60, ge=30)
    #: seconds a stopping worker gives running batches before it stops their processes and hands their
    #: messages back (kept under Kubernetes' default 30 s grace period)
    shutdown_grace: float = Field(default=15.0, ge=1, le=600)
    #: deliveries of one message before it is dead-lettered as a poison message
    max_deliveries: int = Field(default=5, ge=1)
    #: replicas that must confirm each published bundle (Redis WAIT); 0 publishes through Celery without waiting
    publish_replicas: int = Field(default=0, ge=0, le=16)
    #: seconds parked work waits (daily API quota spent, or usage above the ceiling) before release is tried
    park_interval: float = Field(default=900.0, ge=1)

    # --- Dead-letter retention, per workspace: one workspace's failures must never fill Redis
    #: seconds a dead letter is kept after its last failure (default 30 days); older ones are dropped
    dlq_max_age: float = Field(default=30 * 86400.0, gt=0)
    #: dead letters kept per workspace; past it the oldest are dropped first
    dlq_max_per_workspace: int = Field(default=50_000, ge=1)

    # --- Back from Salesforce
    #: seconds between CRM sync cycles (Unify's own: 900)
    crm_sync_interval: float = Field(default=900.0, ge=1)
    #: seconds each CRM cycle re-reads before its watermark: changes whose transaction commits late
    crm_sync_overlap: float = Field(default=60.0, ge=0, le=3600)
    #: seconds the very first CRM cycle looks back (None: the overlap); see docs/crm-sync.md
    crm_sync_lookback: float | None = Field(default=None, ge=0)

    # --- API economy
    #: share of the daily API allowance above which sfsync slows down and parks work
    api_usage_ceiling: float = Field(default=0.8, gt=0, le=1)

    # --- Operations
    sentry_dsn: SecretStr | None = None
    environment: str = "production"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    health_port: int | None = Field(default=None, ge=1, le=65535)
    #: address /metrics and /livez, /readyz bind (they name workspaces and disconnection codes): every
    #: interface by default, as a container needs for its orchestrator's probes; 127.0.0.1 on a shared host
    monitoring_host: str = Field(default="0.0.0.0", pattern=r"^[0-9A-Za-z.:-]{1,253}$")

    # --- The web console (`sfsync web`, docs/console.md)
    #: address the console binds; on a loopback address its session cookie may travel over plain HTTP
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8088, ge=1, le=65535)
    #: signs the console's session cookies and CSRF tokens; required by `sfsync web`
    web_secret_key: SecretStr | None = None
    #: OpenID Connect sign-in: the issuer (its /.well-known/openid-configuration is read) and the client
    web_oidc_issuer: str | None = None
    web_oidc_client_id: str | None = None
    web_oidc_client_secret: SecretStr | None = None
    #: YAML list of local console users (username, argon2 password hash, role)
    web_users_file: Path | None = None
    #: reverse proxies (comma-separated addresses or networks) whose X-Forwarded-For and X-Forwarded-Proto the
    #: console believes; empty: none, the address a request comes from is the client's
    web_trusted_proxies: str = ""
    #: the console's address as browsers reach it (https://sfsync.example.com): the OAuth redirect_uri is built
    #: from it, other Host headers are refused, and with https its cookie is Secure and HSTS is sent
    web_public_url: str | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level_any_case(cls, value: Any) -> Any:
        # `--loglevel info` works, so SFSYNC_LOG_LEVEL=info must too
        return value.upper() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not url.startswith(REDIS_SCHEMES):
            scheme = url.split("://", 1)[0] + "://" if "://" in url else "no scheme"
            raise ValueError(f"must start with redis://, rediss:// (TLS), unix://, sentinel:// or "
                             f"sentinels:// (Sentinel, TLS), not {scheme}")
        if is_sentinel_url(url):
            parse_sentinel_url(url)  # its ValueError names the problem without quoting a password
        return value

    @field_validator("web_trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        for entry in (e.strip() for e in value.split(",")):
            if entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(f"{entry[:80]!r} is not an address or network (10.0.0.5, 10.0.0.0/8)") from None
        return value

    @field_validator("web_public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("https", "http") or not parts.hostname or parts.path not in ("", "/") or \
                parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must be just the scheme and host (and port) browsers reach the console at, "
                             "e.g. https://sfsync.example.com")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("salesforce_allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, value: str) -> str:
        HostPolicy.parse(value)  # its ValueError names the entry
        return value

    @model_validator(mode="after")
    def _auth_is_complete(self) -> "Settings":
        if self.salesforce_instance_url and not self.salesforce_instance_url.startswith(
                ("http://", "https://")):
            raise ValueError("SFSYNC_SALESFORCE_INSTANCE_URL must start with https:// (or http://)")
        hosts = self.salesforce_hosts
        try:
            if self.salesforce_instance_url:
                hosts.check(self.salesforce_instance_url, "SFSYNC_SALESFORCE_INSTANCE_URL")
            hosts.check(self.salesforce_login_url, "SFSYNC_SALESFORCE_DOMAIN")
        except HostNotAllowed as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def salesforce_hosts(self) -> HostPolicy:
        """Where Salesforce credentials and data may go: Salesforce's hosts and SFSYNC_SALESFORCE_ALLOWED_HOSTS."""
        return HostPolicy.parse(self.salesforce_allowed_hosts)

    @property
    def salesforce_login_url(self) -> str:
        """The login host SFSYNC_SALESFORCE_DOMAIN names: a URL as given, `login`/`test`, or a My Domain host."""
        domain = self.salesforce_domain
        if domain.startswith(("http://", "https://")):
            return domain.rstrip("/")
        return f"https://{domain if '.' in domain else domain + '.salesforce.com'}"

    @property
    def salesforce_auth(self) -> Literal["token", "password", "jwt", None]:
        if self.salesforce_instance_url and self.salesforce_access_token:
            return "token"
        if self.salesforce_username and self.salesforce_consumer_key and self.salesforce_private_key_file:
            return "jwt"
        if self.salesforce_username and self.salesforce_password:
            return "password"
        return None

    def require_salesforce(self) -> None:
        """Fail, naming the variables, when no complete Salesforce credential is set."""
        if self.salesforce_auth is not None:
            # "jwt" is only chosen when the key file is set
            if self.salesforce_auth == "jwt" and not self.salesforce_private_key_file.is_file():  # type: ignore[union-attr]
                raise SettingsError(
                    f"SFSYNC_SALESFORCE_PRIVATE_KEY_FILE: no such file: {self.salesforce_private_key_file}")
            return
        partial = []
        if self.salesforce_instance_url and not self.salesforce_access_token:
            partial.append("SFSYNC_SALESFORCE_INSTANCE_URL is set but SFSYNC_SALESFORCE_ACCESS_TOKEN is missing")
        if self.salesforce_access_token and not self.salesforce_instance_url:
            partial.append("SFSYNC_SALESFORCE_ACCESS_TOKEN is set but SFSYNC_SALESFORCE_INSTANCE_URL is missing")
        if self.salesforce_username and not (self.salesforce_password or self.salesforce_consumer_key):
            partial.append("SFSYNC_SALESFORCE_USERNAME is set but neither SFSYNC_SALESFORCE_PASSWORD "
                           "nor SFSYNC_SALESFORCE_CONSUMER_KEY + SFSYNC_SALESFORCE_PRIVATE_KEY_FILE")
        hint = ("set SFSYNC_SALESFORCE_INSTANCE_URL + SFSYNC_SALESFORCE_ACCESS_TOKEN, or "
                "SFSYNC_SALESFORCE_USERNAME + SFSYNC_SALESFORCE_PASSWORD (+ SFSYNC_SALESFORCE_SECURITY_TOKEN), "
                "or SFSYNC_SALESFORCE_USERNAME + SFSYNC_SALESFORCE_CONSUMER_KEY + SFSYNC_SALESFORCE_PRIVATE_KEY_FILE")
        raise SettingsError("Salesforce credentials incomplete: " + ("; ".join(partial) or "none set") +
                            f". {hint}")


def _read_secret_files(environ: dict[str, str]) -> dict[str, str]:
    """Resolve SFSYNC_X_FILE variables (Docker/Kubernetes secrets) into SFSYNC_X values."""
    resolved: dict[str, str] = {}
    for field in SECRET_FIELDS:
        name = f"SFSYNC_{field.upper()}"
        path = environ.get(f"{name}_FILE")
        if not path or environ.get(name):
            continue
        try:
            resolved[name] = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    return resolved


def with_fresh_secrets(settings: Settings, environ: dict[str, str] | None = None) -> Settings:
    """`settings` with every secret given as SFSYNC_X_FILE read again: a rotated secret file (a
    Kubernetes secret, a refreshed access token) takes effect at the next login without a restart."""
    env = dict(os.environ if environ is None else environ)
    fresh = {name[len("SFSYNC_"):].lower(): SecretStr(value)
             for name, value in _read_secret_files(env).items()}
    return settings.model_copy(update=fresh) if fresh else settings


def known_variables() -> frozenset[str]:
    """Every SFSYNC_ name sfsync or its tools read: settings, *_FILE secrets, tool variables."""
    names = {f"SFSYNC_{field.upper()}" for field in Settings.model_fields}
    names.update(f"SFSYNC_{field.upper()}_FILE" for field in SECRET_FIELDS)
    return frozenset(names | TOOL_VARIABLES)


def unknown_variables(environ: dict[str, str]) -> list[str]:
    """One line per SFSYNC_ variable nobody reads, with the closest known name when there is one."""
    known = known_variables()
    problems = []
    for name in sorted(n for n in environ if n.startswith("SFSYNC_") and n not in known):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        problems.append(f"{name}" + (f" (did you mean {close[0]}?)" if close else ""))
    return problems


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build Settings from the environment, turning validation errors into one clear message.

    An SFSYNC_ variable no one reads is refused: a typo in the Redis URL's name would
    otherwise run silently against the default.
    """
    env = dict(os.environ if environ is None else environ)
    unknown = unknown_variables(env)
    if unknown:
        raise SettingsError("unknown variable(s): " + "; ".join(unknown))
    env.update(_read_secret_files(env))
    secret_files = {f"SFSYNC_{field.upper()}_FILE" for field in SECRET_FIELDS}
    scoped = {k[len("SFSYNC_"):].lower(): v for k, v in env.items()
              if k.startswith("SFSYNC_") and k not in secret_files}
    scoped.update(overrides)
    try:
        return Settings.model_validate({k: v for k, v in scoped.items() if k in Settings.model_fields})
    except ValidationError as exc:
        problems = []
        for item in exc.errors(include_url=False, include_input=False):
            field = str(item["loc"][0]) if item["loc"] else ""
            message = item["msg"].removeprefix("Value error, ")
            # a check across settings names its variables itself
            problems.append(f"SFSYNC_{field.upper()}: {message}" if field else message)
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None

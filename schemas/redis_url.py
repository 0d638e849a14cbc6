"""Redis Sentinel addresses in SFSYNC_REDIS_URL: parsed once, handed to redis-py and kombu alike.

The form follows kombu's `sentinel://` transport: every sentinel is an address of its own,
separated by `;`. The Redis credentials (ACL user and password of the primary and replicas), the
database and the query may be written on any of the addresses (usually the last), and must agree
where written more than once:

    sentinel://:s3cret@10.0.0.1:26379;sentinel://10.0.0.2:26379;sentinel://10.0.0.3:26379/0?master_name=sfsync

`sentinels://` is the same over TLS with verified certificates, to the sentinels and to the primary.
Query parameters: `master_name` (default `mymaster`), `sentinel_username` and `sentinel_password`
(when the sentinels themselves require AUTH), and with `sentinels://` `ssl_cert_reqs`
(required, optional, none), `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

SENTINEL_SCHEMES = ("sentinel://", "sentinels://")
DEFAULT_MASTER_NAME = "mymaster"
DEFAULT_SENTINEL_PORT = 26379
TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
QUERY_OPTIONS = ("master_name", "sentinel_username", "sentinel_password", *TLS_OPTIONS)
CERT_REQS = ("required", "optional", "none")


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEMES)


@dataclass(frozen=True)
class SentinelAddress:
    """Where the sentinels are, which primary they watch, and how to log in to both."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str = DEFAULT_MASTER_NAME
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: bool = False
    tls_options: dict[str, str] = field(default_factory=dict)

    def _tls_kwargs(self) -> dict[str, Any]:
        if not self.tls:
            return {}
        # certificates are checked unless the URL says otherwise, as with rediss://
        return {"ssl": True, "ssl_cert_reqs": "required", **self.tls_options}

    def sentinel_kwargs(self) -> dict[str, Any]:
        """redis-py keyword arguments for the connections to the sentinels themselves."""
        kwargs = self._tls_kwargs()
        if self.sentinel_username:
            kwargs["username"] = self.sentinel_username
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        return kwargs

    def primary_kwargs(self) -> dict[str, Any]:
        """redis-py keyword arguments for the connections to the primary (`Sentinel.master_for`)."""
        kwargs = {"db": self.db, **self._tls_kwargs()}
        if self.username:
            kwargs["username"] = self.username
        if self.password:
            kwargs["password"] = self.password
        return kwargs

    def kombu_url(self) -> str:
        """The broker URL as kombu's sentinel transport reads it: kombu takes credentials and the
        database from whichever address it is connected through, so each one carries them."""
        auth = ""
        if self.username or self.password:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password or '', safe='')}@"
        return ";".join(f"sentinel://{auth}{_host(host)}:{port}/{self.db}" for host, port in self.sentinels)

    def kombu_transport_options(self, *, socket_timeout: float, socket_connect_timeout: float) -> dict[str, Any]:
        """`master_name` and `sentinel_kwargs` for kombu's sentinel channel; the sentinels get the
        timeouts explicitly, since redis-py gives them none once sentinel_kwargs is set."""
        return {"master_name": self.master_name,
                "sentinel_kwargs": {"socket_timeout": socket_timeout,
                                    "socket_connect_timeout": socket_connect_timeout, **self.sentinel_kwargs()}}

    def kombu_ssl(self) -> dict[str, Any] | None:
        """`broker_use_ssl` for the primary's connections; None without TLS."""
        if not self.tls:
            return None

        reqs = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
        options: dict[str, Any] = {k: v for k, v in self.tls_options.items() if k != "ssl_cert_reqs"}
        options["ssl_cert_reqs"] = reqs[self.tls_options.get("ssl_cert_reqs", "required")]
        return options

    def display(self) -> str:
        """The addresses without any credential: what messages and `status` may show."""
        scheme = "sentinels" if self.tls else "sentinel"
        hosts = ";".join(f"{scheme}://{_host(host)}:{port}" for host, port in self.sentinels)
        return f"{hosts}/{self.db}?master_name={self.master_name}"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _agreed(values: list[Any], what: str) -> Any:
    distinct = {v for v in values if v not in (None, "")}
    if len(distinct) > 1:
        raise ValueError(f"the sentinel addresses give different {what}")
    return distinct.pop() if distinct else None


def parse_sentinel_url(url: str) -> SentinelAddress:
    """The sentinels, master name, database and credentials of a sentinel(s):// URL; ValueError
    naming the problem (never quoting a password) when it is malformed."""
    parts = [p for p in url.split(";") if p.strip()]
    if not parts:
        raise ValueError("no sentinel address given")
    scheme = url.split("://", 1)[0]
    if scheme not in ("sentinel", "sentinels"):
        raise ValueError("a sentinel address must start with sentinel:// or sentinels:// (TLS)")
    sentinels, users, passwords, dbs = [], [], [], []
    query: dict[str, str] = {}
    for number, part in enumerate(parts, 1):
        if not part.startswith(f"{scheme}://"):
            raise ValueError(f"sentinel address {number} does not start with {scheme}:// like the first one")
        split = urlsplit(part)
        try:
            host, port = split.hostname, split.port or DEFAULT_SENTINEL_PORT
        except ValueError:
            raise ValueError(f"sentinel address {number} has a port that is not a number from 1 to 65535") from None
        if not host:
            raise ValueError(f"sentinel address {number} has no host")
        sentinels.append((host, port))
        users.append(unquote(split.username) if split.username else None)
        passwords.append(unquote(split.password) if split.password else None)
        dbs.append(_database(split.path, number))
        for name, value in parse_qsl(split.query, keep_blank_values=True):
            if name not in QUERY_OPTIONS:
                raise ValueError(f"unknown query parameter {name!r}; known: {', '.join(QUERY_OPTIONS)}")
            if query.setdefault(name, value) != value:
                raise ValueError(f"query parameter {name!r} is given twice with different values")
    tls_options = {k: v for k, v in query.items() if k in TLS_OPTIONS}
    if tls_options and scheme != "sentinels":
        raise ValueError(f"{', '.join(tls_options)} needs sentinels:// (TLS)")
    if tls_options.get("ssl_cert_reqs", "required") not in CERT_REQS:
        raise ValueError(f"ssl_cert_reqs must be one of {', '.join(CERT_REQS)}")
    master_name = query.get("master_name", DEFAULT_MASTER_NAME)
    if not master_name:
        raise ValueError("master_name is empty")
    return SentinelAddress(
        sentinels=tuple(sentinels), master_name=master_name, db=_agreed(dbs, "databases") or 0,
        username=_agreed(users, "usernames"), password=_agreed(passwords, "passwords"),
        sentinel_username=query.get("sentinel_username") or None,
        sentinel_password=query.get("sentinel_password") or None,
        tls=scheme == "sentinels", tls_options=tls_options)


def _database(path: str, number: int) -> int | None:
    text = path.strip("/")
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"sentinel address {number} names database {text!r}; a database is a number")
    return int(text)


@dataclass(frozen=True)
class KombuBroker:
    """What kombu needs for SFSYNC_REDIS_URL: its broker URL, extra transport options, and
    `broker_use_ssl` (None when the connection is plain TCP)."""

    url: str
    transport_options: dict[str, Any]
    use_ssl: dict[str, Any] | None


def kombu_broker(url: str, *, socket_timeout: float, socket_connect_timeout: float) -> KombuBroker:
    """The broker settings of a redis://, rediss://, sentinel:// or sentinels:// URL, shared by the
    worker and the publisher so both check TLS certificates the same way."""
    if is_sentinel_url(url):
        address = parse_sentinel_url(url)
        options = address.kombu_transport_options(socket_timeout=socket_timeout,
                                                  socket_connect_timeout=socket_connect_timeout)
        return KombuBroker(address.kombu_url(), options, address.kombu_ssl())
    if url.startswith("rediss://"):
        # kombu turns a bare rediss:// (or an empty dict, which is falsy) into CERT_NONE with only a
        # warning; naming ssl_cert_reqs keeps certificates checked, and ssl_* URL parameters still override
        return KombuBroker(url, {}, {"ssl_cert_reqs": ssl.CERT_REQUIRED})
    return KombuBroker(url, {}, None)

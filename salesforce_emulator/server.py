"""Running the emulator: `serve()` blocks (CLI), `EmulatorServer` runs it in a thread for tests."""
from __future__ import annotations

import socket
import threading
import time

import requests
import uvicorn
from simple_salesforce import Salesforce

from .app import build_app
from .client import AdminClient, http_session
from .org import DEFAULT_TOKEN, Org
from .orgs import Orgs

HOST = "127.0.0.1"
#: seconds between snapshot writes when --data is given
SAVE_INTERVAL = 2.0


def _config(orgs: Orgs, port: int) -> uvicorn.Config:
    return uvicorn.Config(build_app(orgs), host=HOST, port=port, log_level="warning", access_log=False,
                          lifespan="off")


def _autosave(org: Org, stop: threading.Event) -> None:
    while not stop.wait(SAVE_INTERVAL):
        if org.dirty:
            org.save()


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1")


def serve(host: str = HOST, port: int = 8765, data_file: str | None = None, token: str = DEFAULT_TOKEN,
          allow_non_loopback: bool = False) -> None:
    """Run until interrupted. Only loopback is served unless `allow_non_loopback` is given: the admin API
    has no authentication (a container's own network, as docker-compose.yml runs it, is the exception)."""
    if not is_loopback(host) and not allow_non_loopback:
        raise ValueError("the Salesforce emulator binds loopback only (its admin API has no authentication); "
                         "inside a container, --allow-non-loopback lets it listen on " + host)
    orgs = Orgs(token=token, data_file=data_file)
    org = orgs.default
    config = _config(orgs, port)
    config.host = host
    stop = threading.Event()
    if data_file:
        threading.Thread(target=_autosave, args=(org, stop), daemon=True, name="emulator-autosave").start()
    try:
        uvicorn.Server(config).run()
    finally:
        stop.set()
        if data_file:
            org.save()


class EmulatorServer:
    """The emulator on a free (or given) port in a daemon thread; a context manager."""

    def __init__(self, port: int = 0, token: str = DEFAULT_TOKEN, data_file: str | None = None):
        self.orgs = Orgs(token=token, data_file=data_file)
        #: the default org (the only one persisted to `data_file`)
        self.org = self.orgs.default
        self.token = token
        # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on such sockets, and without it every
        # keep-alive response waits ~40 ms for a delayed ACK
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((HOST, port))
        self.port = self._socket.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        self.admin = AdminClient(self.url)
        self._server = uvicorn.Server(_config(self.orgs, self.port))
        self._thread: threading.Thread | None = None

    def start(self) -> "EmulatorServer":
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        daemon=True, name=f"salesforce-emulator-{self.port}")
        self._thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/_admin/features", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"the Salesforce emulator did not answer on {self.url}")

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._socket.close()
        if self.org.data_file:
            self.org.save()

    def __enter__(self) -> "EmulatorServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def session(self):
        """A requests.Session that sends simple-salesforce's https URLs here over http."""
        return http_session(self.url)

    def salesforce(self, version: str = "59.0", token: str | None = None, **kwargs):
        """simple-salesforce on the default org's preset token, or on `token` (which picks its org)."""
        return Salesforce(instance_url=self.url, session_id=token or self.token, session=self.session(),
                          version=version, **kwargs)

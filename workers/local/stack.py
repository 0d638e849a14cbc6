"""Real worker and beat processes on this machine, for the demo, the integration tests and the benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from events.topology import ALL_QUEUES

#: seconds a worker gets to report ready
READY_TIMEOUT = 60.0


def local_hosts(*urls: str) -> str:
    """SFSYNC_SALESFORCE_ALLOWED_HOSTS for local servers (the emulator): each URL's host, on any port."""
    # a URL without a host would give None here, which sorted() cannot order with the others
    hosts = sorted({urlsplit(u).hostname for u in urls if u})  # type: ignore[type-var]
    return ",".join(f"{h}:*" for h in hosts)


def stack_env(*, redis_url: str, instance_url: str, access_token: str, workspace_id: str,
              **overrides: object) -> dict[str, str]:
    """Environment for sfsync processes pointed at a local Redis and Salesforce (emulator): the emulator's
    host is the one SFSYNC_SALESFORCE_ALLOWED_HOSTS lists (it speaks plain http on a loopback port)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFSYNC_")}
    env.update({
        "SFSYNC_REDIS_URL": redis_url,
        "SFSYNC_SALESFORCE_INSTANCE_URL": instance_url,
        "SFSYNC_SALESFORCE_ACCESS_TOKEN": access_token,
        "SFSYNC_WORKSPACE_ID": workspace_id,
        "SFSYNC_SALESFORCE_ALLOWED_HOSTS": local_hosts(instance_url),
        "PYTHONUNBUFFERED": "1",
    })
    for name, value in overrides.items():
        if value is not None:
            env[f"SFSYNC_{name.upper()}"] = str(value)
    return env


@dataclass
class ManagedProcess:
    """A child process whose output goes to a log file we can read back."""

    argv: list[str]
    env: dict[str, str]
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkstemp(prefix="sfsync-", suffix=".log")[1]))
    proc: subprocess.Popen | None = None

    def start(self) -> "ManagedProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, text: str, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:  # type: ignore[union-attr]  # called after start()
                raise RuntimeError(f"{self.argv[:4]} exited with {self.proc.returncode}:\n{self.output()[-4000:]}")  # type: ignore[union-attr]
            time.sleep(0.1)
        raise TimeoutError(f"{self.argv[:4]} did not print {text!r} in {timeout}s:\n{self.output()[-4000:]}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.running:
            try:
                os.killpg(self.proc.pid, sig)  # type: ignore[union-attr]  # running: it has one
            except ProcessLookupError:
                pass

    def terminate(self, timeout: float = 30.0) -> int | None:
        """Warm shutdown (SIGTERM), then SIGKILL if it lingers; returns the exit code."""
        if self.proc is None:
            return None
        self.signal_group(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group: the crash case, nothing gets to clean up."""
        self.signal_group(signal.SIGKILL)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass


def worker_process(env: dict[str, str], *, concurrency: int = 1, queues: tuple[str, ...] = ALL_QUEUES,
                   name: str | None = None, extra: tuple[str, ...] = ()) -> ManagedProcess:
    # the real entry point (`sfsync worker`), less its start-up mapping check: tests of a
    # refused mapping need a worker that reaches Salesforce with it
    argv = [sys.executable, "-m", "workers.cli", "worker", "--skip-mapping-check",
            "--queues", ",".join(queues), "--concurrency", str(concurrency), "--loglevel", "INFO",
            "--pool", "prefork", "--without-heartbeat",
            "--hostname", name or f"sfsync-{os.getpid()}-{time.monotonic_ns()}@%h", *extra]
    return ManagedProcess(argv, env)


def start_worker(env: dict[str, str], **kwargs) -> ManagedProcess:
    """Start a worker and wait until it consumes; a worker that fails to start is killed, not left behind."""
    process = worker_process(env, **kwargs).start()
    try:
        process.wait_for(" ready.")
    except BaseException:
        process.kill()
        raise
    return process


def beat_process(env: dict[str, str]) -> ManagedProcess:
    """`sfsync beat`; its schedule lives in memory (workers/beat_scheduler.py), so it needs no file."""
    argv = [sys.executable, "-m", "workers.cli", "beat", "--loglevel", "INFO"]
    return ManagedProcess(argv, env)

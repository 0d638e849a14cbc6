"""Podman for the tests of what ships: the base images, the image build, and everything removed afterwards."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: seconds the first run may take to install podman and make the base images from Debian packages
BASE_IMAGES_TIMEOUT = 1800
#: seconds one image build may take (its dependency layer is cached after the first)
BUILD_TIMEOUT = 900
#: one container test at a time on this machine: the builds share podman's store and two cores
SESSION_LOCK = Path(os.environ.get("SFSYNC_CONTAINERS_DIR", "/var/tmp/sfsync-containers")) / "session.lock"


def host_ca_bundle() -> str | None:
    """The CA bundle pip trusts here, passed to the build: a TLS-inspecting proxy's CA may only be in it."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@dataclass
class Podman:
    """Runs podman (and podman-compose) with this machine's settings, every command's output in one log."""

    env: dict[str, str]
    log: Path
    #: what tools/container_images.sh printed: CONTAINERS_CONF, PYTHON_IMAGE, REDIS_IMAGE
    base: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 120, check: bool = True, program: str = "podman",
            env: dict[str, str] | None = None, quiet: bool = False) -> subprocess.CompletedProcess:
        """Run one command; `quiet` keeps a poll's output out of the log (a failure shows it)."""
        command = [program, *args]
        result = subprocess.run(command, env={**self.env, **(env or {})}, capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL, cwd=REPO)
        if not quiet:
            with self.log.open("a") as out:
                out.write(f"\n$ {' '.join(command)}\n{result.stdout[-20_000:]}{result.stderr[-20_000:]}"
                          f"(exit {result.returncode})\n")
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command[:6])} exited {result.returncode}:\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def timed(self, label: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        started = time.monotonic()
        try:
            return self.run(*args, **kwargs)
        finally:
            self.timings[label] = round(time.monotonic() - started, 1)

    def image_ids(self) -> set[str]:
        return set(self.run("images", "--all", "--quiet", "--no-trunc").stdout.split())

    def compose(self, project: str, *args: str, timeout: float = 300, check: bool = True,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return self.run("--project-name", project, "--file", str(REPO / "docker-compose.yml"), *args,
                        program=podman_compose(), timeout=timeout, check=check, env=env)

    def leftovers(self, label_filter: str) -> dict[str, list[str]]:
        """Containers, pods, volumes and networks that carry `label_filter` (key=value)."""
        found = {}
        for kind, args in (("containers", ("ps", "--all", "--format", "{{.Names}}")),
                           ("pods", ("pod", "ps", "--format", "{{.Name}}")),
                           ("volumes", ("volume", "ls", "--format", "{{.Name}}")),
                           ("networks", ("network", "ls", "--format", "{{.Name}}"))):
            names = self.run(*args, "--filter", f"label={label_filter}").stdout.split()
            if names:
                found[kind] = names
        return found


def podman_compose() -> str:
    beside = Path(sys.executable).parent / "podman-compose"
    found = str(beside) if beside.exists() else shutil.which("podman-compose")
    if not found:
        raise RuntimeError("podman-compose is missing: it is in the test extra (pip install -e '.[test]')")
    return found


class SessionLock:
    """An exclusive lock on the machine's container tests, held for a test session's container tests."""

    def __init__(self, timeout: float = BASE_IMAGES_TIMEOUT):
        self.timeout = timeout
        self.handle = None

    def __enter__(self) -> "SessionLock":
        SESSION_LOCK.parent.mkdir(parents=True, exist_ok=True)
        self.handle = SESSION_LOCK.open("w")
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another container test held {SESSION_LOCK} for {self.timeout}s") from None
                time.sleep(2)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def base_images(log: Path) -> dict[str, str]:
    """Runs tools/container_images.sh (installs podman, makes the base images once); returns what it prints."""
    with log.open("a") as out:
        result = subprocess.run(["bash", str(REPO / "tools" / "container_images.sh")], stdout=subprocess.PIPE,
                                stderr=out, text=True, timeout=BASE_IMAGES_TIMEOUT, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise AssertionError(f"tools/container_images.sh exited {result.returncode}; see {log}:\n"
                             f"{log.read_text()[-3000:]}")
    return dict(line.split("=", 1) for line in result.stdout.split() if "=" in line)

"""Fixtures for the tests of what ships: podman set up, the image built from this tree, all removed afterwards."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.deploy.podman import BUILD_TIMEOUT, REPO, Podman, SessionLock, base_images, host_ca_bundle

ARTIFACTS = REPO / "test-artifacts"
#: the image of the Dockerfile's dependency stage, kept between runs as the build cache
DEPS_CACHE = "localhost/sfsync-build-cache/deps:latest"
#: what the container tests measured, printed at the end of the session
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def podman(tmp_path_factory) -> Iterator[Podman]:
    """Podman with the machine's settings; the base images made (once per machine) from Debian packages."""
    log = tmp_path_factory.mktemp("podman") / "podman.log"
    with SessionLock():
        started = time.monotonic()
        made = base_images(log)
        TIMINGS["base images (tools/container_images.sh)"] = round(time.monotonic() - started, 1)
        env = {**os.environ, "CONTAINERS_CONF": made["CONTAINERS_CONF"]}
        tool = Podman(env, log, base=made)
        try:
            yield tool
        finally:
            TIMINGS.update(tool.timings)
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "podman.log").write_text(log.read_text(errors="replace")[-400_000:])


@pytest.fixture(scope="session")
def images(podman) -> Iterator[dict[str, str]]:
    """The production and the tools image built from this tree under tags of this session; removed after."""
    tag = f"localhost/sfsync-test:{os.getpid()}"
    built = {"runtime": tag, "tools": f"localhost/sfsync-tools-test:{os.getpid()}"}
    before = podman.image_ids()
    previous_deps = podman.run("image", "inspect", "--format", "{{.Id}}", DEPS_CACHE, check=False).stdout.strip()
    secrets = []
    if host_ca_bundle():
        secrets = ["--secret", f"id=ca-certificates,src={host_ca_bundle()}"]
    common = ["build", "--network", "host", "--build-arg", f"PYTHON_IMAGE={podman.base['PYTHON_IMAGE']}",
              *secrets, "--file", str(REPO / "deploy" / "Dockerfile")]
    try:
        # the dependency stage, tagged so that removing this session's images never removes it: the next
        # build reuses it until a lock file changes
        podman.timed("build dependency stage", *common, "--target", "deps", "--tag", DEPS_CACHE, str(REPO),
                     timeout=BUILD_TIMEOUT)
        podman.timed("build runtime image", *common, "--tag", built["runtime"], str(REPO), timeout=BUILD_TIMEOUT)
        podman.timed("build tools image", *common, "--target", "tools", "--tag", built["tools"], str(REPO),
                     timeout=BUILD_TIMEOUT)
        yield built
    finally:
        for name in built.values():
            podman.run("rmi", "--force", name, check=False)
        # the builder's layers of this tree (not its dependency layers, which later builds reuse)
        for _ in range(5):
            tree = set(podman.run("images", "--all", "--quiet", "--no-trunc", "--filter",
                                  "label=org.sfsync.layer=tree").stdout.split()) - before
            if not tree:
                break
            for image in tree:
                podman.run("rmi", image, check=False)
        current_deps = podman.run("image", "inspect", "--format", "{{.Id}}", DEPS_CACHE, check=False).stdout.strip()
        if previous_deps and previous_deps != current_deps:  # the lock files changed: the old stage is unused
            podman.run("rmi", previous_deps, check=False)


def pytest_runtest_logreport(report) -> None:
    """Adds up the container tests' own time (setup, run, teardown; the base images and builds included)."""
    if "containers" in report.keywords:
        label = "container tests in all (setup, run and teardown, builds included)"
        TIMINGS[label] = round(TIMINGS.get(label, 0.0) + report.duration, 1)


def pytest_terminal_summary(terminalreporter) -> None:
    """Where the container tests' time went (CI's log keeps it: the first run on a machine is the slow one)."""
    if TIMINGS:
        terminalreporter.section("container tests: seconds")
        for label, seconds in sorted(TIMINGS.items(), key=lambda item: item[0].startswith("container tests")):
            terminalreporter.write_line(f"{seconds:8.1f}  {label}")

"""What ships runs: the image built from this tree, and docker-compose.yml brought up with podman-compose.

Given / when / then against real containers (podman, the base images made from Debian packages by
tools/container_images.sh), the emulator and a real Redis; nothing is left behind, even on failure.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request

import pytest

from events.outcome_log import OutcomeLog
from events.publish import publish_many
from events.redis_conn import free_port
from tests.conftest import WORKSPACE, wait_until
from tests.deploy.podman import REPO
from tests.factories import email_event
from workers.web.users import save_user

pytestmark = [pytest.mark.containers, pytest.mark.timeout(2400)]

#: the image runs as this user, never root
IMAGE_UID = "10001"
CONSOLE_PASSWORD = "compose-console-password"


def top_level_packages() -> list[str]:
    """The repository's importable packages that ship (what pyproject.toml's package search finds)."""
    excluded = {"tests", "benchmarks", "tools", "examples", "build", "dist"}
    return sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name not in excluded)


def container_env(**values: str) -> list[str]:
    args = []
    for name, value in values.items():
        args += ["--env", f"{name}={value}"]
    return args


def _logs(podman, name: str) -> str:
    result = podman.run("logs", name, check=False, quiet=True)
    return result.stdout + result.stderr


def _wait_for_log(podman, name: str, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in _logs(podman, name):
        assert time.monotonic() < deadline, f"{name} did not print {text!r} in {timeout}s:\n" \
                                            f"{_logs(podman, name)[-3000:]}"
        time.sleep(0.5)


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_given_the_image_when_each_command_runs_then_it_works_as_the_unprivileged_user(
        podman, images, redis_url, redis_client, emulator):
    image = images["runtime"]
    # given: the image built from this tree
    help_text = podman.run("run", "--rm", image, "--help").stdout
    for command in ("worker", "beat", "web", "status", "publish", "dlq", "workspaces", "mappings"):
        assert f"  {command} " in help_text, f"`sfsync {command}` missing from the image's --help"
    assert podman.run("run", "--rm", "--entrypoint", "id", image, "-u").stdout.strip() == IMAGE_UID
    packages = top_level_packages()
    assert {"events", "schemas", "workers", "workspaces"} <= set(packages)
    imports = "; ".join(f"import {p}" for p in packages) + "; import workers.app, workers.web.app"
    podman.run("run", "--rm", "--entrypoint", "python", image, "-c", imports)

    emulator.admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"}])
    port = free_port()
    env = container_env(
        SFSYNC_REDIS_URL=redis_url, SFSYNC_WORKSPACE_ID=WORKSPACE,
        SFSYNC_SALESFORCE_INSTANCE_URL=emulator.url, SFSYNC_SALESFORCE_ACCESS_TOKEN=emulator.token,
        SFSYNC_SALESFORCE_ALLOWED_HOSTS=emulator.url.split("://", 1)[1],
        SFSYNC_FLUSH_INTERVAL="0.3", SFSYNC_WEB_PORT=str(port),
        SFSYNC_WEB_SECRET_KEY="image-test-console-key-0123456789",
        SFSYNC_SECRET_KEYS="42x6tF3kjmZN32Ou_yWYVgPnXJ6HikIjJ14IPcl19MI=",
        SFSYNC_WEB_USERS_FILE="/home/sfsync/users.yaml")
    run = ["run", "--network", "host", *env]

    # when: `status` runs against this session's Redis and the emulator
    status = podman.run(*run, "--rm", image, "status", "--json")
    # then: it reads them
    report = json.loads(status.stdout)
    assert "error" not in report, report
    assert report["workspace_id"] == WORKSPACE and set(report["queues"]) >= {"email.sent", "email.replied"}

    names = {role: f"sfsync-test-{os.getpid()}-{role}" for role in ("worker", "beat", "web")}
    try:
        # when: a worker, beat and the console start from the image
        podman.run(*run, "--detach", "--name", names["worker"], image, "worker", "--concurrency", "1")
        podman.run(*run, "--detach", "--name", names["beat"], image, "beat")
        podman.run(*run, "--detach", "--name", names["web"], "--entrypoint", "/bin/sh", image, "-ec",
                   "echo 'users: []' > /home/sfsync/users.yaml; exec sfsync web")
        _wait_for_log(podman, names["worker"], " ready.")
        event = email_event(subject="Written from the image")
        publish_many([event], broker_url=redis_url)
        # then: the worker writes the event, beat runs its schedule and the console answers
        outcome = OutcomeLog(redis_client).wait_final(WORKSPACE, {event["id"]}, 60, poll=0.3)
        assert outcome.get(event["id"], {}).get("outcome") == "written", _logs(podman, names["worker"])[-3000:]
        assert [m["Subject"] for m in emulator.admin.records("EmailMessage")] == ["Written from the image"]
        _wait_for_log(podman, names["beat"], "beat: Starting")
        wait_until(lambda: _http_status(f"http://127.0.0.1:{port}/login") == 200, timeout=60,
                   what="the console's sign-in page")
        for name in names.values():
            assert podman.run("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true", \
                _logs(podman, name)[-3000:]
    finally:
        for name in names.values():
            podman.run("rm", "--force", "--time", "20", name, check=False)
    assert not podman.run("ps", "--all", "--quiet", "--filter", f"name=sfsync-test-{os.getpid()}-").stdout.strip()


def _chromium(playwright):
    """Debian's Chromium, launched here: the `page` fixture is parametrized by browser for the whole
    session, and pytest would then run every browser test of the suite right after this one."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "no Chromium on PATH: bash tools/ensure_chromium.sh installs it (make test does)"
    return playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])


def test_given_docker_compose_yml_when_brought_up_then_events_are_written_and_the_console_signs_in(
        podman, images, tmp_path, playwright):
    project = f"sfsync-test-{os.getpid()}"
    users = tmp_path / "console-users.yaml"
    save_user(users, "ada", CONSOLE_PASSWORD, "admin")
    users.chmod(0o644)  # the console reads it as uid 10001
    ports = {"SFSYNC_EMULATOR_PORT": free_port(), "SFSYNC_CONSOLE_PORT": free_port(),
             "SFSYNC_FLOWER_PORT": free_port()}
    env = {"SFSYNC_IMAGE": images["runtime"], "SFSYNC_TOOLS_IMAGE": images["tools"],
           "SFSYNC_REDIS_IMAGE": podman.base["REDIS_IMAGE"], "SFSYNC_CONSOLE_USERS_FILE": str(users),
           **{k: str(v) for k, v in ports.items()}}
    label = f"io.podman.compose.project={project}"
    try:
        # given: docker-compose.yml brought up as shipped, with this tree's images
        started = time.monotonic()
        podman.compose(project, "up", "--detach", env=env, timeout=600)
        containers = podman.run("ps", "--all", "--format", "{{.Names}}", "--filter", f"label={label}").stdout.split()
        services = sorted({name.removeprefix(f"{project}_").rsplit("_", 1)[0] for name in containers})
        assert services == ["beat", "console", "emulator", "flower", "keys", "redis", "worker"], containers
        workers = [n for n in containers if n.startswith(f"{project}_worker_")]
        assert len(workers) == 2, containers
        for worker in workers:
            _wait_for_log(podman, worker, " ready.", timeout=180)
        podman.timings["compose up until the workers are ready"] = round(time.monotonic() - started, 1)

        # when: the sample events are published the documented way
        podman.compose(project, "--profile", "demo", "run", "--rm", "publish", env=env, timeout=300)

        # then: they are written in the emulator (its admin API answers loopback only: asked from inside)
        def records(sobject: str) -> list[dict]:
            script = ("import json; from salesforce_emulator import AdminClient; "
                      f"print(json.dumps(AdminClient('http://127.0.0.1:8765').records({sobject!r})))")
            return json.loads(podman.run("exec", f"{project}_emulator_1", "python", "-c", script,
                                         quiet=True).stdout)

        wait_until(lambda: {m.get("Unify_Event_Id__c") for m in records("EmailMessage")}
                   >= {"evt_compose_1", "evt_compose_2"}, timeout=120, what="the sample events written in the emulator")
        assert {c["Email"] for c in records("Contact")} >= {"jane.doe@acme.example", "sam.lee@globex.example"}
        # and Flower answers on its published port
        wait_until(lambda: _http_status(f"http://127.0.0.1:{ports['SFSYNC_FLOWER_PORT']}/") == 200, timeout=60,
                   what="Flower")

        # when: an admin signs in to the console through its published port
        console = f"http://127.0.0.1:{ports['SFSYNC_CONSOLE_PORT']}"
        wait_until(lambda: _http_status(f"{console}/login") == 200, timeout=60, what="the console")
        browser = _chromium(playwright)
        try:
            page = browser.new_page()
            page.goto(f"{console}/login")
            page.get_by_label("Username").fill("ada")
            page.get_by_label("Password").fill(CONSOLE_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{console}/")
            # then: the overview shows the workspace the workers serve
            assert WORKSPACE in page.locator("#overview").inner_text()
        finally:
            browser.close()
    finally:
        down = podman.compose(project, "down", "--volumes", "--remove-orphans", "--timeout", "20", env=env,
                              check=False, timeout=300)
    assert down.returncode == 0, down.stderr[-3000:]
    # and nothing is left behind: containers, pods, volumes, networks
    assert podman.leftovers(label) == {}
    assert not podman.run("pod", "ps", "--quiet", "--filter", f"name={project}").stdout.strip()

"""Console fixtures: one `sfsync web` process per session on real Redis, users of each role, the system Chromium."""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import WORKSPACE
from workers.local.stack import ManagedProcess, stack_env
from workers.web.users import save_user

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: the console process's log, copied next to a failed test's screenshot
CONSOLE_LOGS: list[Path] = []
#: secrets the console holds; no page may ever show one
SECRET_KEY = "console-secret-key-never-shown-0123456789"
REDIS_PASSWORD = "redis-password-never-shown-42"
#: seals the registry's credentials, for the console and the workers of these tests (a constant: pytest
#: imports this file as `web.conftest` while the tests import it as `tests.web.conftest`)
SECRET_KEYS = "42x6tF3kjmZN32Ou_yWYVgPnXJ6HikIjJ14IPcl19MI="
#: the emulator's host, as SFSYNC_SALESFORCE_ALLOWED_HOSTS names it for the console and the workers
LOCAL_HOSTS = "127.0.0.1:*"
PASSWORDS = {"ada": "admin-password-1", "sam": "support-password-1", "val": "viewer-password-1"}
ROLES = {"ada": "admin", "sam": "support", "val": "viewer"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no Chromium on PATH: run `bash tools/ensure_chromium.sh` (make test does)")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Debian's Chromium, not a Playwright download (which cannot be fetched here)."""
    return {**browser_type_launch_args, "executable_path": _chromium(), "args": ["--no-sandbox"]}


def with_password(redis_url: str) -> str:
    """The test Redis's URL with credentials: the default user takes any password when it has none set."""
    return re.sub(r"^redis://", f"redis://default:{REDIS_PASSWORD}@", redis_url)


@pytest.fixture(scope="session")
def users_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("console") / "users.yaml"
    for name, password in PASSWORDS.items():
        save_user(path, name, password, ROLES[name])
    return path


def start_console(redis_url: str, emulator_server, users_file: Path, log_dir: Path,
                  **settings: str) -> tuple[str, ManagedProcess]:
    """`sfsync web` as a real process on a free port (settings given by name, e.g. web_public_url=...):
    its base URL and process, started; the caller terminates it."""
    port = free_port()
    env = stack_env(redis_url=with_password(redis_url), instance_url=emulator_server.url,
                    access_token=emulator_server.token, workspace_id=WORKSPACE)
    env.update({"SFSYNC_WEB_SECRET_KEY": SECRET_KEY, "SFSYNC_WEB_USERS_FILE": str(users_file),
                "SFSYNC_WEB_PORT": str(port), "SFSYNC_SECRET_KEYS": SECRET_KEYS})
    env.update({f"SFSYNC_{name.upper()}": value for name, value in settings.items()})
    log = log_dir / f"console-{port}.log"
    process = ManagedProcess([sys.executable, "-m", "workers.cli", "web"], env, log_path=log).start()
    try:
        process.wait_for("Application startup complete", timeout=30)
    except BaseException:
        process.kill()
        raise
    CONSOLE_LOGS.append(log)
    return f"http://127.0.0.1:{port}", process


@pytest.fixture(scope="session")
def console(redis_url, emulator_server, users_file, tmp_path_factory):
    """`sfsync web` as a real process on a free port, for the whole session; yields its base URL."""
    url, process = start_console(redis_url, emulator_server, users_file, tmp_path_factory.mktemp("console-log"))
    try:
        yield url
    finally:
        process.terminate(timeout=10)


@pytest.fixture
def own_console(redis_url, emulator_server, tmp_path):
    """`own_console(users_file=..., **settings)`: a console process of the test's own, stopped after it
    (`own_console.processes` lists them, for their output)."""
    started: list[ManagedProcess] = []

    def start(users_file: Path, **settings: str) -> str:
        url, process = start_console(redis_url, emulator_server, users_file, tmp_path, **settings)
        started.append(process)
        return url

    start.processes = started
    yield start
    for process in started:
        process.terminate(timeout=10)


def form_token(html: str) -> str:
    """The CSRF token of a page's first form."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def signed_in(base: str, username: str, password: str | None = None, **client_options) -> httpx.Client:
    """An HTTP client signed in to the console at `base` through its sign-in form."""
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=15, **client_options)
    token = form_token(client.get("/login").text)
    answer = client.post("/login", data={"username": username, "password": password or PASSWORDS[username],
                                         "csrf_token": token, "next": "/"})
    assert answer.status_code == 303, f"sign-in of {username} answered {answer.status_code}"
    return client


def sign_in(page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORDS[username])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser test leaves a screenshot of its page in test-artifacts/."""
    outcome = yield
    report = outcome.get_result()
    page = item.funcargs.get("page") if hasattr(item, "funcargs") else None
    if report.when == "call" and report.failed and page is not None:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", item.nodeid)[-150:]
        try:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        except Exception as exc:  # noqa: BLE001 - a crashed page must not hide the test's own failure
            os.write(2, f"no screenshot of {item.nodeid}: {exc}\n".encode())
        for n, log in enumerate(CONSOLE_LOGS, start=1):
            (ARTIFACTS / f"{name}.console-{n}.log").write_text(log.read_text(errors="replace")[-100_000:])


def registry(redis_client):
    from workspaces.registry import Registry
    from workspaces.secrets import Keyring

    from schemas.salesforce_hosts import HostPolicy

    return Registry(redis_client, Keyring(SECRET_KEYS), hosts=HostPolicy.parse(LOCAL_HOSTS))

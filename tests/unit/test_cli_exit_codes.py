"""One table of exit codes (workers/cli/exits.py, README's "Exit codes"), every command held to it: usage errors
are never taken for an unreachable dependency, a missing file never for invalid data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from workers.cli import exits, main

REPO = Path(__file__).resolve().parents[2]
#: nothing listens on port 1
CLOSED = "redis://127.0.0.1:1/0"
KEY = "ZmRqa2xzamZka2xzamZrbGRzamZrbGRzamZrbGRzamY="
EVENT_LINE = (REPO / "deploy" / "compose" / "events.jsonl").read_text().splitlines()[0]


def _leaves(group: click.Group, path=()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _leaves(command, (*path, name))
        else:
            yield (*path, name), command


LEAVES = list(_leaves(main))


def run(argv, *, env=None, input=None):
    return CliRunner().invoke(main, list(argv), env={"SFSYNC_REDIS_URL": CLOSED, **(env or {})}, input=input)


def test_the_readme_table_is_the_table_of_the_code():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("**Exit codes**"):]
    rows = dict(re.findall(r"^\| `(\d+)` \| (.+?) \|$", section[:section.index("\n\n", section.index("| code"))],
                           re.MULTILINE))
    assert {int(code) for code in rows} == set(exits.TABLE)
    for code, meaning in exits.TABLE.items():
        assert rows[str(code)].startswith(meaning), code


@pytest.mark.parametrize("path", [p for p, c in LEAVES if not c.context_settings.get("ignore_unknown_options")],
                         ids=" ".join)
def test_given_an_unknown_option_when_any_command_runs_then_it_is_a_usage_error(path):
    result = run([*path, "--no-such-option"])
    assert result.exit_code == exits.USAGE, result.output
    assert "No such option" in result.output


@pytest.mark.parametrize("argv", [
    ["worker", "--concurrency", "0"], ["beat", "--loglevel"], ["dlq", "replay"], ["dlq", "purge"],
    ["dlq", "list", "--older-than", "soon"], ["demo", "--port", "0"], ["emulator", "--port", "70000"],
    ["dlq"], ["web", "add-user", "ada"], ["--bogus"],
], ids=" ".join)
def test_given_a_wrong_command_line_when_run_then_it_is_a_usage_error_not_an_outage(argv):
    result = run(argv)
    assert result.exit_code == exits.USAGE, result.output


@pytest.mark.parametrize("argv", [
    ["publish", "/no/such/events.jsonl"], ["workspaces", "apply", "/no/such/workspaces.yaml"],
    ["mappings", "set", "ws_x", "/no/such/mappings.yaml"], ["mappings", "validate", "/no/such/mappings.yaml"],
], ids=" ".join)
def test_given_a_missing_input_file_when_run_then_it_says_no_input(argv):
    result = run(argv, env={"SFSYNC_SECRET_KEYS": KEY})
    assert result.exit_code == exits.NO_INPUT, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("argv", [
    ["status"], ["publish", "-"], ["dlq", "list"], ["dlq", "show", "dl_x"], ["dlq", "replay", "--all", "--no-wait"],
    ["dlq", "purge", "--all", "--yes"], ["workspaces", "list"], ["workspaces", "show", "ws_x"],
    ["workspaces", "test", "ws_x"], ["workspaces", "disable", "ws_x"], ["workspaces", "enable", "ws_x"],
    ["workspaces", "remove", "ws_x", "--yes"], ["workspaces", "rotate-keys"], ["mappings", "show", "ws_x"],
    ["mappings", "history", "ws_x"], ["mappings", "rollback", "ws_x", "1"],
], ids=" ".join)
def test_given_redis_unreachable_when_run_then_it_says_unavailable(argv):
    result = run(argv, env={"SFSYNC_SECRET_KEYS": KEY}, input=EVENT_LINE + "\n")
    assert result.exit_code == exits.UNAVAILABLE, result.output
    assert "127.0.0.1:1" in result.output


@pytest.mark.parametrize("argv", [["status"], ["dlq", "list"], ["workspaces", "list"], ["publish", "-"],
                                  ["mappings", "validate"], ["web"]], ids=" ".join)
def test_given_a_misspelt_setting_when_run_then_it_says_config(argv):
    result = run(argv, env={"SFSYNC_REDIS_URLL": CLOSED}, input=EVENT_LINE + "\n")
    assert result.exit_code == exits.CONFIG, result.output
    assert "did you mean SFSYNC_REDIS_URL?" in result.output


def test_given_an_invalid_event_when_published_then_it_says_data_and_json_tells_which_line():
    result = run(["publish", "--json", "-"], input='{"id": "evt_1"}\n')
    assert result.exit_code == exits.DATA, result.output
    report = json.loads(result.stdout)
    assert report["published"] == 0 and report["invalid_lines"] == [1]
    assert report["errors"][0]["line"] == 1 and report["errors"][0]["code"]


def test_given_a_registry_file_with_a_misspelt_key_when_applied_then_it_says_data(tmp_path):
    path = tmp_path / "workspaces.yaml"
    path.write_text("workspaces:\n  - id: ws_a\n    max_latency_secnds: 5\n")
    result = run(["workspaces", "apply", str(path), "--dry-run"], env={"SFSYNC_SECRET_KEYS": KEY})
    assert result.exit_code == exits.DATA, result.output


def test_given_mappings_that_do_not_validate_when_checked_offline_then_it_says_data(tmp_path):
    path = tmp_path / "mappings.yaml"
    path.write_text("contact:\n  fields:\n    - {source: no_such_source, target: FirstName}\n")
    result = run(["mappings", "validate", str(path), "--offline"])
    assert result.exit_code == exits.DATA, result.output


def test_given_an_output_file_that_cannot_be_created_when_writing_the_schema_then_it_says_so_in_one_line():
    result = run(["schema", "-o", "/no/such/dir/event.schema.json"])
    assert result.exit_code == exits.CANT_CREATE, result.output
    assert "cannot write /no/such/dir/event.schema.json" in result.output and "Traceback" not in result.output

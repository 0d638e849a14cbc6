"""Every CLI failure is one line naming the cause and the host, with a documented exit code; ids never wrap."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from schemas.deadletter import DeadLetterRecord
from workers.cli import exits, main
from workers.cli.dlq import render_dead_letters

REPO = Path(__file__).resolve().parents[2]
#: nothing listens on port 1; the password must never be printed
CLOSED = "redis://sfsync:hunter2@127.0.0.1:1/0"
EVENT_LINE = (REPO / "deploy" / "compose" / "events.jsonl").read_text().splitlines()[0]


def _env(**extra: str) -> dict[str, str]:
    return {"SFSYNC_REDIS_URL": CLOSED, "SFSYNC_SALESFORCE_ALLOWED_HOSTS": "127.0.0.1:*", **extra}


def _assert_one_line_with_host(result, code: int, host: str = "127.0.0.1:1") -> None:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert host in lines[0] and "hunter2" not in result.output + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("argv", [
    ["dlq", "list"], ["dlq", "show", "dl_x"], ["dlq", "replay", "--all", "--no-wait"],
    ["dlq", "purge", "--all", "--yes"], ["dlq", "replay", "--all", "--dry-run"],
])
def test_given_redis_down_when_a_dlq_command_runs_then_one_line_names_the_host_and_exit_says_unavailable(argv):
    result = CliRunner().invoke(main, argv, env=_env())
    _assert_one_line_with_host(result, exits.UNAVAILABLE)
    assert "Redis unreachable at redis://127.0.0.1:1/0" in result.stderr


@pytest.mark.parametrize("argv", [
    ["workspaces", "list"], ["workspaces", "show", "ws_x"], ["workspaces", "disable", "ws_x"],
    ["workspaces", "rotate-keys"], ["mappings", "history", "ws_x"], ["mappings", "show", "ws_x"],
])
def test_given_redis_down_when_a_workspace_command_runs_then_one_line_names_the_host_and_exit_says_unavailable(argv):
    key = "ZmRqa2xzamZka2xzamZrbGRzamZrbGRzamZrbGRzamY="
    result = CliRunner().invoke(main, argv, env=_env(SFSYNC_SECRET_KEYS=key))
    _assert_one_line_with_host(result, exits.UNAVAILABLE)


@pytest.mark.parametrize("keys, says", [("not-a-key", "key 1 of 1 is not a Fernet key"),
                                         ("", "SFSYNC_SECRET_KEYS is not set")])
def test_given_a_bad_or_missing_secret_key_when_rotating_then_one_line_says_so_and_exit_says_config(keys, says):
    result = CliRunner().invoke(main, ["workspaces", "rotate-keys"], env=_env(SFSYNC_SECRET_KEYS=keys))
    assert result.exit_code == exits.CONFIG, result.output
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_given_redis_down_when_publishing_then_one_line_names_the_host_and_exit_says_unavailable():
    result = CliRunner().invoke(main, ["publish", "-"], input=EVENT_LINE + "\n", env=_env())
    _assert_one_line_with_host(result, exits.UNAVAILABLE)


def test_given_redis_down_when_status_runs_then_it_names_the_host_and_exit_says_unavailable():
    result = CliRunner().invoke(main, ["status"], env=_env())
    assert result.exit_code == exits.UNAVAILABLE
    assert "Redis unreachable at redis://127.0.0.1:1/0" in result.output
    assert "hunter2" not in result.output


def test_given_salesforce_down_when_validating_mappings_then_the_host_is_named_and_exit_is_2():
    result = CliRunner().invoke(main, ["mappings", "validate"], env=_env(
        SFSYNC_SALESFORCE_INSTANCE_URL="http://127.0.0.1:1", SFSYNC_SALESFORCE_ACCESS_TOKEN="t"))
    assert result.exit_code == exits.UNAVAILABLE, result.output
    assert "127.0.0.1:1" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379/0", "localhost:6379"])
def test_given_a_redis_url_with_a_wrong_scheme_when_a_command_runs_then_it_says_so_and_exit_says_config(url):
    result = CliRunner().invoke(main, ["dlq", "list"], env={"SFSYNC_REDIS_URL": url})
    assert result.exit_code == exits.CONFIG
    assert "SFSYNC_REDIS_URL" in result.stderr and "redis://" in result.stderr
    assert "KeyError" not in result.stderr and "Traceback" not in result.stderr


def test_given_a_misspelt_variable_when_a_command_runs_then_it_is_refused_with_a_suggestion_and_exit_says_config():
    result = CliRunner().invoke(main, ["dlq", "list"], env={"SFSYNC_REDIS_UR": "redis://127.0.0.1:1/0"})
    assert result.exit_code == exits.CONFIG
    assert "did you mean SFSYNC_REDIS_URL?" in result.stderr


def test_given_redis_down_when_dlq_list_runs_as_a_process_then_stderr_has_one_line_and_no_traceback(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("SFSYNC_")}
    env["SFSYNC_REDIS_URL"] = CLOSED
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        code = subprocess.run([sys.executable, "-m", "workers.cli", "dlq", "list"], cwd=REPO, env=env,
                              stdout=stdout, stderr=stderr, timeout=60).returncode
    text = err.read_text()
    assert code == exits.UNAVAILABLE, text
    assert text.strip().count("\n") == 0 and "127.0.0.1:1" in text
    assert "Traceback" not in text and "hunter2" not in text + out.read_text()


def _record(record_id: str) -> DeadLetterRecord:
    now = datetime.now(timezone.utc)
    return DeadLetterRecord(id=record_id, event_id="evt_01JDX6K8T3ABCDEFGHJKMNPQRS", event_type="email.sent",
                            workspace_id="ws_acme", error_code="INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                            error_message="bad value for restricted picklist field: Unify_Sequence_Status__c",
                            first_failure_at=now, last_failure_at=now, sfsync_version="0.1.0")


LONG_ID = "dl_3f9c2b7e41d84a0c9e5f6a7b8c9d0e1f_email.sent_0001"


@pytest.mark.parametrize("width", [40, 60, 80, 200])
def test_given_a_terminal_of_any_width_when_listing_dead_letters_then_every_id_is_whole_on_one_line(width):
    buffer = io.StringIO()
    render_dead_letters([_record(LONG_ID), _record(LONG_ID[:-1] + "2")],
                        Console(file=buffer, width=width, force_terminal=True, color_system=None))
    lines = buffer.getvalue().splitlines()
    for whole in (LONG_ID, LONG_ID[:-1] + "2", "evt_01JDX6K8T3ABCDEFGHJKMNPQRS"):
        assert any(whole in line for line in lines), "\n".join(lines)


def test_given_output_is_not_a_terminal_when_listing_dead_letters_then_each_is_one_tab_separated_line(capsys):
    render_dead_letters([_record(LONG_ID)], Console(file=io.StringIO(), width=40, force_terminal=False))
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "1 dead letter(s)"
    assert lines[1].split("\t")[0] == LONG_ID and "evt_01JDX6K8T3ABCDEFGHJKMNPQRS" in lines[1].split("\t")


def test_given_a_non_loopback_host_when_the_emulator_starts_without_the_flag_then_it_is_a_usage_error():
    from click.testing import CliRunner

    from workers.cli import main

    result = CliRunner().invoke(main, ["emulator", "--host", "0.0.0.0"])
    assert result.exit_code == exits.USAGE and "--allow-non-loopback" in result.output

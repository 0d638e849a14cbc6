"""Unknown SFSYNC_ names are refused with a suggestion; the log level takes any case; Redis URLs need a Redis scheme."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from schemas.settings import TOOL_VARIABLES, SettingsError, known_variables, load_settings

REPO = Path(__file__).resolve().parents[2]


def test_given_a_typo_in_a_variable_name_when_loaded_then_it_is_refused_with_the_close_name():
    with pytest.raises(SettingsError, match=r"SFSYNC_REDIS_UR \(did you mean SFSYNC_REDIS_URL\?\)"):
        load_settings({"SFSYNC_REDIS_UR": "redis://redis.internal:6379/0"})


def test_given_several_unknown_names_when_loaded_then_every_one_is_named():
    with pytest.raises(SettingsError) as caught:
        load_settings({"SFSYNC_WORKSPACE": "ws_a", "SFSYNC_BATCHSIZE": "10", "SFSYNC_ZZZ": "1"})
    message = str(caught.value)
    assert "SFSYNC_WORKSPACE (did you mean SFSYNC_WORKSPACE_ID?)" in message
    assert "SFSYNC_BATCHSIZE (did you mean SFSYNC_BATCH_SIZE?)" in message
    assert "SFSYNC_ZZZ" in message


def test_given_secret_file_variants_and_tool_variables_when_loaded_then_they_are_accepted(tmp_path):
    token = tmp_path / "token"
    token.write_text("t0ken")
    settings = load_settings({"SFSYNC_SALESFORCE_ACCESS_TOKEN_FILE": str(token),
                              "SFSYNC_SALESFORCE_INSTANCE_URL": "https://acme.my.salesforce.com",
                              "SFSYNC_TEST_REDIS_URL": "redis://127.0.0.1:6379/3",
                              "SFSYNC_BENCH_REDIS_URL": "redis://127.0.0.1:6379/4"})
    assert settings.salesforce_access_token.get_secret_value() == "t0ken"


def test_given_a_private_key_file_when_loaded_then_it_is_read_as_a_setting_not_a_secret_file(tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----")
    settings = load_settings({"SFSYNC_SALESFORCE_USERNAME": "integration@acme.example",
                              "SFSYNC_SALESFORCE_CONSUMER_KEY": "3MVG9",
                              "SFSYNC_SALESFORCE_PRIVATE_KEY_FILE": str(key)})
    assert settings.salesforce_private_key_file == key
    assert settings.salesforce_auth == "jwt"


def test_given_every_sfsync_name_the_tree_uses_when_checked_then_each_is_known():
    # what the project's own code, docs and deployment files name must never be refused; the
    # test files that misspell names on purpose are left out
    found = subprocess.run(["git", "grep", "-ohE", r"SFSYNC_[A-Z0-9_]+", "--", ".",
                            ":!tests/unit/test_settings_names.py", ":!tests/unit/test_cli_failures.py",
                            ":!tests/unit/test_cli_exit_codes.py"],
                           cwd=REPO, capture_output=True, text=True, timeout=30).stdout.split()
    names = {n for n in found if not re.fullmatch(r"SFSYNC_(X|X_FILE)?", n)}
    assert names, "git grep found no SFSYNC_ names"
    assert names - known_variables() == set()
    assert TOOL_VARIABLES <= known_variables()


@pytest.mark.parametrize("given", ["info", "Info", "INFO", "debug", "warning"])
def test_given_a_log_level_in_any_case_when_loaded_then_it_is_accepted(given):
    assert load_settings({"SFSYNC_LOG_LEVEL": given}).log_level == given.upper()


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "rediss://u:p@redis.internal:6380/1",
                                 "unix:///run/redis.sock"])
def test_given_a_redis_scheme_when_loaded_then_the_url_is_accepted(url):
    assert load_settings({"SFSYNC_REDIS_URL": url}).redis_url.get_secret_value() == url


@pytest.mark.parametrize("url", ["http://redis.internal:6379/0", "redis.internal:6379", "amqp://u:hunter2@mq/"])
def test_given_a_non_redis_scheme_when_loaded_then_the_variable_is_named_and_the_password_is_not(url):
    with pytest.raises(SettingsError, match=r"SFSYNC_REDIS_URL: .*must start with redis://") as caught:
        load_settings({"SFSYNC_REDIS_URL": url})
    assert "hunter2" not in str(caught.value)

"""Settings come from SFSYNC_* variables or *_FILE secrets; errors name the variable; secrets never show."""

from __future__ import annotations

import logging

import pytest

from schemas.settings import SettingsError, load_settings

TOKEN = "00Dsecret!token-value-123"


def test_given_token_auth_when_loaded_then_secret_hidden_from_repr_and_logs(caplog):
    settings = load_settings({"SFSYNC_SALESFORCE_INSTANCE_URL": "https://acme.my.salesforce.com",
                              "SFSYNC_SALESFORCE_ACCESS_TOKEN": TOKEN,
                              "SFSYNC_REDIS_URL": "rediss://sfsync:redispass@redis.internal:6380/0"})
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("settings: %s %r", settings, settings)
    assert settings.salesforce_auth == "token"
    for text in (repr(settings), str(settings), caplog.text):
        assert TOKEN not in text and "redispass" not in text
    assert settings.salesforce_access_token.get_secret_value() == TOKEN


def test_given_secret_files_when_loaded_then_values_read_from_them(tmp_path):
    token_file, password_file = tmp_path / "token", tmp_path / "password"
    token_file.write_text(TOKEN + "\n")
    password_file.write_text("hunter2\n")
    settings = load_settings({"SFSYNC_SALESFORCE_INSTANCE_URL": "https://acme.my.salesforce.com",
                              "SFSYNC_SALESFORCE_ACCESS_TOKEN_FILE": str(token_file),
                              "SFSYNC_SALESFORCE_PASSWORD_FILE": str(password_file)})
    assert settings.salesforce_access_token.get_secret_value() == TOKEN
    assert settings.salesforce_password.get_secret_value() == "hunter2"


def test_given_an_unreadable_secret_file_when_loaded_then_the_variable_is_named(tmp_path):
    with pytest.raises(SettingsError, match="SFSYNC_SALESFORCE_ACCESS_TOKEN_FILE: cannot read"):
        load_settings({"SFSYNC_SALESFORCE_ACCESS_TOKEN_FILE": str(tmp_path / "missing")})


@pytest.mark.parametrize("env, named", [
    ({"SFSYNC_BATCH_SIZE": "500"}, "SFSYNC_BATCH_SIZE"),
    ({"SFSYNC_BATCH_SIZE": "many"}, "SFSYNC_BATCH_SIZE"),
    ({"SFSYNC_VISIBILITY_TIMEOUT": "5"}, "SFSYNC_VISIBILITY_TIMEOUT"),
    ({"SFSYNC_LOG_LEVEL": "LOUD"}, "SFSYNC_LOG_LEVEL"),
    ({"SFSYNC_WORKSPACE_ID": "has space"}, "SFSYNC_WORKSPACE_ID"),
    ({"SFSYNC_SALESFORCE_INSTANCE_URL": "ftp://x"}, "SFSYNC_SALESFORCE_INSTANCE_URL"),
])
def test_given_a_malformed_setting_when_loaded_then_the_error_names_it(env, named):
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


@pytest.mark.parametrize("env, fragment", [
    ({}, "none set"),
    ({"SFSYNC_SALESFORCE_ACCESS_TOKEN": TOKEN}, "SFSYNC_SALESFORCE_INSTANCE_URL is missing"),
    ({"SFSYNC_SALESFORCE_INSTANCE_URL": "https://acme.my.salesforce.com"}, "SFSYNC_SALESFORCE_ACCESS_TOKEN is missing"),
    ({"SFSYNC_SALESFORCE_USERNAME": "u@x.example"}, "SFSYNC_SALESFORCE_PASSWORD"),
])
def test_given_incomplete_salesforce_credentials_when_required_then_what_is_missing_is_named(env, fragment):
    settings = load_settings(env)
    with pytest.raises(SettingsError, match=fragment) as caught:
        settings.require_salesforce()
    assert TOKEN not in str(caught.value)

"""The console's configuration, users file, role mapping and `sfsync web` helpers, without a browser."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from schemas.settings import SECRET_FIELDS, SettingsError, load_settings
from workers.cli import exits
from workers.cli import main as cli
from workers.web.app import ConsoleConfig, is_loopback
from workers.web.security import safe_next
from workers.web.users import UsersFileError, authenticate, load_users, role_from_claims, save_user

KEY = "k" * 32


def test_without_a_secret_key_the_console_refuses_to_start_and_says_how_to_make_one(tmp_path):
    settings = load_settings({}, web_users_file=str(tmp_path / "users.yaml"))
    with pytest.raises(SettingsError, match=r"SFSYNC_WEB_SECRET_KEY .* python -c"):
        ConsoleConfig.from_settings(settings)


def test_without_a_way_to_sign_in_the_console_refuses_to_start():
    with pytest.raises(SettingsError, match=r"SFSYNC_WEB_USERS_FILE .* SFSYNC_WEB_OIDC_ISSUER"):
        ConsoleConfig.from_settings(load_settings({}, web_secret_key=KEY))


def test_half_an_oidc_configuration_is_refused_naming_the_three_variables():
    with pytest.raises(SettingsError, match="SFSYNC_WEB_OIDC_CLIENT_ID and SFSYNC_WEB_OIDC_CLIENT_SECRET"):
        ConsoleConfig.from_settings(load_settings({}, web_secret_key=KEY, web_oidc_issuer="https://idp.example"))


def test_the_secret_key_may_come_from_a_file_and_is_a_secret_setting(tmp_path):
    (tmp_path / "key").write_text(KEY + "\n")
    settings = load_settings({"SFSYNC_WEB_SECRET_KEY_FILE": str(tmp_path / "key")})
    assert settings.web_secret_key.get_secret_value() == KEY
    assert {"web_secret_key", "web_oidc_client_secret"} <= set(SECRET_FIELDS)
    assert KEY not in repr(settings)


def test_cookies_are_secure_unless_the_console_binds_a_loopback_address(tmp_path):
    save_user(tmp_path / "u.yaml", "ada", "a-long-password", "admin")
    for host, secure in (("127.0.0.1", False), ("localhost", False), ("::1", False), ("0.0.0.0", True),
                         ("10.1.2.3", True)):
        settings = load_settings({}, web_secret_key=KEY, web_users_file=str(tmp_path / "u.yaml"), web_host=host)
        assert ConsoleConfig.from_settings(settings).secure_cookies is secure, host
    assert is_loopback("127.0.0.2") and not is_loopback("console.internal")


def test_a_users_file_entry_with_an_unknown_role_stops_start_up_naming_the_user(tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text(yaml.safe_dump({"users": [{"username": "eve", "password_hash": "x", "role": "root"}]}))
    with pytest.raises(UsersFileError, match="'eve' has role 'root'; use one of viewer, support, admin"):
        load_users(path)


def test_add_user_stores_an_argon2_hash_that_signs_in_and_never_the_password(tmp_path):
    path = tmp_path / "users.yaml"
    result = CliRunner().invoke(cli, ["web", "add-user", "sam", "--role", "support", "--users-file", str(path),
                                      "--password-stdin"], input="correct horse battery\n")
    assert result.exit_code == 0, result.output
    assert "added sam (support)" in result.output
    text = path.read_text()
    assert "$argon2id$" in text and "correct horse battery" not in text
    users = load_users(path)
    assert authenticate(users, "sam", "correct horse battery").role == "support"
    assert authenticate(users, "sam", "wrong") is None and authenticate(users, "nobody", "x") is None


def test_a_short_password_is_refused_by_add_user(tmp_path):
    result = CliRunner().invoke(cli, ["web", "add-user", "sam", "--role", "viewer", "--users-file",
                                      str(tmp_path / "u.yaml"), "--password-stdin"], input="short\n")
    assert result.exit_code == exits.DATA and "at least 8 characters" in result.output


def test_the_console_without_its_secret_key_exits_with_one_clear_line():
    result = CliRunner().invoke(cli, ["web"], env={"SFSYNC_WEB_SECRET_KEY": ""})
    assert result.exit_code == exits.CONFIG and "SFSYNC_WEB_SECRET_KEY" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("claims", "role"), [
    ({"groups": ["staff", "sfsync-support"]}, "support"),
    ({"roles": ["sfsync-viewer", "sfsync-admin"]}, "admin"),
    ({"roles": "sfsync-viewer"}, "viewer"),
    ({"roles": "viewer"}, None),  # plain names are some other application's groups
    ({"groups": ["admin", "support"]}, None),
    ({"groups": ["sfsync:admin", "SFSYNC-ADMIN"]}, None),
    ({"groups": ["staff"]}, None),
    ({"email": "a@b.example"}, None),
    ({"roles": [], "groups": ["sfsync-admin"]}, None),  # the roles claim is present and grants nothing
])
def test_an_identity_providers_roles_or_groups_claim_gives_the_highest_console_role(claims, role):
    assert role_from_claims(claims) == role


@pytest.mark.parametrize(("target", "safe"), [
    ("/dead-letters?code=X", "/dead-letters?code=X"), ("//evil.example/x", "/"), ("https://evil.example", "/"),
    ("", "/"), (None, "/"), ("/\\evil.example", "/"),
])
def test_after_sign_in_only_a_path_on_this_site_is_followed(target, safe):
    assert safe_next(target) == safe

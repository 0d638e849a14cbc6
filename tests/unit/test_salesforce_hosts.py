"""Where Salesforce credentials may go: Salesforce's hosts over https on 443, and the hosts the setting lists."""

from __future__ import annotations

import pytest

from schemas.salesforce_hosts import HostNotAllowed, HostPolicy
from schemas.settings import SettingsError, load_settings
from workspaces.secrets import Keyring, TamperedEntry, new_key

SALESFORCE_ONLY = HostPolicy()
LISTED = HostPolicy.parse("127.0.0.1:*, emulator:8080, sf.internal")


@pytest.mark.parametrize("url", [
    "https://login.salesforce.com", "https://test.salesforce.com", "https://acme.my.salesforce.com",
    "https://acme--uat.sandbox.my.salesforce.com/services/oauth2/token", "https://na1.salesforce.com:443/x",
    "https://acme.lightning.force.com", "https://acme.my.salesforce-setup.com", "https://ACME.my.salesforce.com",
    "https://acme.cloudforce.com", "https://acme.my.salesforce.mil", "https://acme.my.sfcrmproducts.cn",
])
def test_salesforces_own_hosts_over_https_are_allowed(url):
    assert SALESFORCE_ONLY.allows(url)


@pytest.mark.parametrize("url, why", [
    ("http://169.254.169.254", "plain http"),
    ("http://login.salesforce.com", "plain http"),
    ("https://169.254.169.254", "not a Salesforce host"),
    ("http://127.0.0.1:8080", "plain http"),
    ("https://user:pw@10.0.0.5:8443", "no user:password@"),
    ("https://login.salesforce.com@attacker.example", "no user:password@"),
    ("https://attacker.example\\@login.salesforce.com", "no user:password@"),
    ("https://login.salesforce.com.attacker.example", "not a Salesforce host"),
    ("https://evilsalesforce.com", "not a Salesforce host"),
    ("https://salesforce.com.", "not an https://host URL"),
    ("https://acme.my.salesforce.com:8443", "port 443"),
    ("ftp://login.salesforce.com", "not an https://host URL"),
    ("//login.salesforce.com", "not an https://host URL"),
    ("https://[::1]", "not a Salesforce host"),
    ("", "not an https://host URL"),
])
def test_anything_else_is_refused_saying_why(url, why):
    with pytest.raises(HostNotAllowed, match=why):
        SALESFORCE_ONLY.check(url)


@pytest.mark.parametrize("url, allowed", [
    ("http://127.0.0.1:4567", True), ("https://127.0.0.1:1", True), ("http://emulator:8080", True),
    ("http://emulator:8081", False), ("http://emulator", False), ("https://sf.internal", True),
    ("http://sf.internal", True), ("https://sf.internal:444", False), ("http://127.0.0.2:4567", False),
    ("https://acme.my.salesforce.com", True),
])
def test_listed_hosts_are_allowed_on_their_ports_over_http_too(url, allowed):
    assert LISTED.allows(url) is allowed


@pytest.mark.parametrize("text", ["http://127.0.0.1", "host/path", "a b", "host:port", "host:70000x", "*"])
def test_a_malformed_setting_is_refused_at_start_naming_the_variable(text):
    with pytest.raises(SettingsError, match="SFSYNC_SALESFORCE_ALLOWED_HOSTS"):
        load_settings({"SFSYNC_SALESFORCE_ALLOWED_HOSTS": text})


def test_the_environments_instance_url_must_be_allowed_naming_the_variable():
    with pytest.raises(SettingsError, match=r"SFSYNC_SALESFORCE_INSTANCE_URL .* plain http"):
        load_settings({"SFSYNC_SALESFORCE_INSTANCE_URL": "http://127.0.0.1:9", "SFSYNC_SALESFORCE_ACCESS_TOKEN": "t"})
    with pytest.raises(SettingsError, match=r"SFSYNC_SALESFORCE_DOMAIN .* not a Salesforce host"):
        load_settings({"SFSYNC_SALESFORCE_DOMAIN": "https://attacker.example"})
    assert load_settings({"SFSYNC_SALESFORCE_INSTANCE_URL": "http://127.0.0.1:9", "SFSYNC_SALESFORCE_ACCESS_TOKEN": "t",
                          "SFSYNC_SALESFORCE_ALLOWED_HOSTS": "127.0.0.1:*"}).salesforce_auth == "token"


def test_a_sealed_connection_names_its_workspace_and_does_not_open_as_anothers():
    keyring = Keyring(new_key())
    token = keyring.seal_workspace("ws_a", {"instance_url": "https://a.my.salesforce.com", "access_token": "t"},
                                   ["k" * 40])

    assert keyring.open_workspace(token, "ws_a") == ({"instance_url": "https://a.my.salesforce.com",
                                                      "access_token": "t"}, ("k" * 40,), False)
    with pytest.raises(TamperedEntry, match="another workspace"):
        keyring.open_workspace(token, "ws_b")


def test_a_token_of_the_earlier_format_holds_the_secrets_alone_and_says_so():
    keyring = Keyring(new_key())

    assert keyring.open_workspace(keyring.seal({"access_token": "t"}), "ws_a") == ({"access_token": "t"}, (), True)

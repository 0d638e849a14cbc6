"""The HTTP session every Salesforce call goes through: simple-salesforce's https:// URLs sent where they
belong (a plain-http emulator, a custom login host), and only to hosts the policy allows."""

from __future__ import annotations

from urllib.parse import urlparse

import requests

from schemas.salesforce_hosts import HostPolicy


class RewritingSession(requests.Session):
    """A requests.Session that sends simple-salesforce's hard-coded https:// URLs where they belong, and
    only where Salesforce credentials and data may go.

    simple-salesforce builds every URL as https://{host}/...; for a plain-http server (the
    emulator) or a custom login host, the prefix is rewritten before the request leaves. Every
    request, logins and token calls included, is then checked against the host policy (Salesforce's
    hosts over https, or those SFSYNC_SALESFORCE_ALLOWED_HOSTS lists), and redirects are never
    followed: a 3xx answer is an answer, so a login's form cannot be carried to another host.
    """

    def __init__(self, rewrites: dict[str, str], hosts: HostPolicy, timeout: float | None = None):
        super().__init__()
        self.rewrites = dict(rewrites)
        self.hosts = hosts
        self.default_timeout = timeout

    def request(self, method, url, *args, **kwargs):  # noqa: D102 - requests' signature
        for prefix, target in self.rewrites.items():
            if url.startswith(prefix):
                url = target + url[len(prefix):]
                break
        self.hosts.check(url, "a Salesforce request")
        if self.default_timeout is not None:
            kwargs.setdefault("timeout", self.default_timeout)
        kwargs["allow_redirects"] = False
        return super().request(method, url, *args, **kwargs)


def _origin(url: str) -> str:
    parts = urlparse(url)
    return f"{parts.scheme}://{parts.netloc}"


def build_session(instance_url: str | None = None, login_url: str | None = None, *, hosts: HostPolicy,
                  timeout: float | None = 30.0) -> RewritingSession:
    """A session that honours http:// instance and login URLs, and goes nowhere `hosts` does not allow."""
    rewrites: dict[str, str] = {}
    for url in (instance_url, login_url):
        if url and url.startswith("http://"):
            rewrites["https://" + urlparse(url).netloc] = _origin(url)
    if login_url:
        rewrites["https://login.salesforce.com"] = _origin(login_url)
    return RewritingSession(rewrites, hosts, timeout=timeout)

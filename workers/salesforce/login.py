"""Signing in to one org with whichever way its connection gives: access token, password, OAuth refresh token, JWT."""

from __future__ import annotations

from urllib.parse import urlparse

import requests
from simple_salesforce import Salesforce

from schemas.salesforce_hosts import HostNotAllowed, HostPolicy
from schemas.codes import ErrorCode
from schemas.workspace import SalesforceConnection
from workers.salesforce.errors import SalesforceError
from workers.salesforce.session import RewritingSession, build_session


def sign_in(connection: SalesforceConnection, timeout: float = 30.0, *, hosts: HostPolicy) -> Salesforce:
    """A logged-in client; a failed login is a SalesforceError (LOGIN_FAILED when the org refused it,
    transient when it did not answer). An OAuth refresh token the org no longer honours
    (`invalid_grant`) is LOGIN_FAILED: the connection must be renewed by a person. Credentials go
    only to hosts `hosts` allows (LOGIN_FAILED naming the host otherwise)."""
    auth = connection.auth
    login_url = connection.login_host
    session = build_session(connection.instance_url, login_url, hosts=hosts, timeout=timeout)
    # simple-salesforce builds https://<domain>.salesforce.com; the session rewrites it to login_url
    domain = "login"
    version = connection.api_version
    # `auth` names a way to sign in only when every field that way needs is set (SalesforceConnection.auth),
    # so each secret read below is there (the `type: ignore`s that say `auth`)
    try:
        if auth == "token":
            return Salesforce(instance_url=connection.instance_url,
                              session_id=connection.access_token.get_secret_value(),  # type: ignore[union-attr]  # auth
                              version=version, session=session)
        if auth == "oauth":
            instance_url, access_token = refresh_access_token(connection, session, timeout)
            session = build_session(instance_url, login_url, hosts=hosts, timeout=timeout)
            return Salesforce(instance_url=instance_url, session_id=access_token, version=version, session=session)
        if auth == "jwt":
            return Salesforce(username=connection.username, consumer_key=connection.client_id,
                              privatekey=connection.private_key.get_secret_value(),  # type: ignore[union-attr]  # auth
                              domain=domain,
                              version=version, session=session)
        token = connection.security_token
        return Salesforce(username=connection.username,
                          password=connection.password.get_secret_value(),  # type: ignore[union-attr]  # auth
                          security_token=token.get_secret_value() if token else "", domain=domain,
                          version=version, session=session)
    except SalesforceError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure is a failed login, said by its kind (it carries no secrets)
        raise login_error(exc, auth, login_url if auth != "token"
                          else connection.instance_url) from None  # type: ignore[arg-type]  # auth: "token" has one


def connect(settings) -> Salesforce:
    """Log in to Salesforce with whichever credential the settings carry."""
    settings.require_salesforce()
    version = settings.salesforce_api_version
    domain = settings.salesforce_domain
    login_url = domain if domain.startswith(("http://", "https://")) else None
    session = build_session(settings.salesforce_instance_url, login_url, hosts=settings.salesforce_hosts,
                            timeout=settings.salesforce_timeout)
    sf_domain = "login" if login_url else domain
    try:
        if settings.salesforce_auth == "token":
            return Salesforce(instance_url=settings.salesforce_instance_url,
                              session_id=settings.salesforce_access_token.get_secret_value(),
                              version=version, session=session)
        if settings.salesforce_auth == "jwt":
            return Salesforce(username=settings.salesforce_username,
                              consumer_key=settings.salesforce_consumer_key,
                              privatekey_file=str(settings.salesforce_private_key_file),
                              domain=sf_domain, version=version, session=session)
        token = settings.salesforce_security_token
        return Salesforce(username=settings.salesforce_username,
                          password=settings.salesforce_password.get_secret_value(),
                          security_token=token.get_secret_value() if token else "",
                          domain=sf_domain, version=version, session=session)
    except Exception as exc:  # noqa: BLE001 - any failure is a failed login, said by its kind (it carries no secrets)
        raise login_error(exc, settings.salesforce_auth, login_url or settings.salesforce_instance_url
                          or f"{sf_domain}.salesforce.com") from None


def login_error(exc: Exception, auth: str | None, host: str) -> SalesforceError:
    """A failed login as a SalesforceError: refused credentials are LOGIN_FAILED; an org that did
    not answer (connection refused, timeout, 5xx page) is transient, like any other outage."""
    where = f"Salesforce login to {urlparse(host).netloc or host} failed ({auth})"
    if isinstance(exc, HostNotAllowed):
        return SalesforceError(ErrorCode.LOGIN_FAILED, f"{where}: {exc}")
    if isinstance(exc, requests.RequestException):
        error = SalesforceError.from_exception(exc)
        return SalesforceError(error.code, f"{where}: {error.message}")
    status = getattr(exc, "code", None)
    if (isinstance(status, int) and (status >= 500 or status == 429)) or "JSONDecodeError" in repr(exc.__cause__):
        return SalesforceError(ErrorCode.HTTP_5XX, f"{where}: the login host answered {status}", status=503)
    return SalesforceError(ErrorCode.LOGIN_FAILED, f"{where}: {type(exc).__name__}: {str(exc)[:200]}")


def refresh_access_token(connection: SalesforceConnection, session: RewritingSession,
                         timeout: float) -> tuple[str, str]:
    """(instance URL, access token) from the OAuth 2.0 refresh-token grant, for a connection whose `auth` is
    "oauth" (it has a refresh token and a client id)."""
    url = f"{connection.login_host}/services/oauth2/token"
    form = {"grant_type": "refresh_token",
            "refresh_token": connection.refresh_token.get_secret_value(),  # type: ignore[union-attr]  # "oauth"
            "client_id": connection.client_id}
    if connection.client_secret is not None:
        form["client_secret"] = connection.client_secret.get_secret_value()
    host = urlparse(connection.login_host).netloc
    try:
        response = session.post(url, data=form, timeout=timeout)
    except requests.RequestException as exc:
        error = SalesforceError.from_exception(exc)
        raise SalesforceError(error.code, f"Salesforce token refresh at {host} failed: {error.message}") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise SalesforceError(ErrorCode.HTTP_5XX, f"Salesforce token refresh at {host}: the host answered "
                                          f"{response.status_code}", status=503)
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
        reason = token_error(body, response.status_code)
        raise SalesforceError(ErrorCode.LOGIN_FAILED, f"Salesforce token refresh at {host} refused ({reason}); "
                                              "connect the org again")
    instance_url = body.get("instance_url") or connection.instance_url
    try:
        session.hosts.check(str(instance_url), "the instance URL of the token response")
    except HostNotAllowed as exc:
        raise SalesforceError(ErrorCode.LOGIN_FAILED, f"Salesforce token refresh at {host}: {exc}") from None
    return str(instance_url).rstrip("/"), str(body["access_token"])


#: OAuth 2.0 error codes (RFC 6749 5.2, and Salesforce's own) shown as they are; any other text is not
OAUTH_ERRORS = frozenset({"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                          "unsupported_grant_type", "invalid_scope", "inactive_user", "inactive_org",
                          "rate_limit_exceeded", "invalid_app_access", "access_denied"})


def token_error(body, status: int) -> str:
    """What a refused token call says, from a fixed list: the host's free text is neither shown nor kept
    (a host that is not Salesforce's could put anything there)."""
    code = body.get("error") if isinstance(body, dict) else None
    return code if code in OAUTH_ERRORS else f"HTTP {status}"

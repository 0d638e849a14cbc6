"""Signing in to one org with whichever way its connection gives: access token, password, OAuth refresh token, JWT."""

from __future__ import annotations

from urllib.parse import urlparse

import requests
from simple_salesforce import Salesforce

from schemas.workspace import SalesforceConnection
from workers.salesforce.errors import SalesforceError


def sign_in(connection: SalesforceConnection, timeout: float = 30.0) -> Salesforce:
    """A logged-in client; a failed login is a SalesforceError (LOGIN_FAILED when the org refused it,
    transient when it did not answer). An OAuth refresh token the org no longer honours
    (`invalid_grant`) is LOGIN_FAILED: the connection must be renewed by a person."""
    from workers.salesforce.gateway import build_session, login_error

    auth = connection.auth
    login_url = connection.login_host
    session = build_session(connection.instance_url, login_url, timeout)
    # simple-salesforce builds https://<domain>.salesforce.com; the session rewrites it to login_url
    domain = "login"
    version = connection.api_version
    try:
        if auth == "token":
            return Salesforce(instance_url=connection.instance_url, session_id=connection.access_token.get_secret_value(),
                              version=version, session=session)
        if auth == "oauth":
            instance_url, access_token = refresh_access_token(connection, session, timeout)
            session = build_session(instance_url, login_url, timeout)
            return Salesforce(instance_url=instance_url, session_id=access_token, version=version, session=session)
        if auth == "jwt":
            return Salesforce(username=connection.username, consumer_key=connection.client_id,
                              privatekey=connection.private_key.get_secret_value(), domain=domain,
                              version=version, session=session)
        token = connection.security_token
        return Salesforce(username=connection.username, password=connection.password.get_secret_value(),
                          security_token=token.get_secret_value() if token else "", domain=domain,
                          version=version, session=session)
    except SalesforceError:
        raise
    except Exception as exc:  # login failures carry no secrets; say what kind they were
        raise login_error(exc, auth, login_url if auth != "token" else connection.instance_url) from None


def refresh_access_token(connection: SalesforceConnection, session: requests.Session,
                         timeout: float) -> tuple[str, str]:
    """(instance URL, access token) from the OAuth 2.0 refresh-token grant."""
    url = f"{connection.login_host}/services/oauth2/token"
    form = {"grant_type": "refresh_token", "refresh_token": connection.refresh_token.get_secret_value(),
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
        raise SalesforceError("HTTP_5XX", f"Salesforce token refresh at {host}: the host answered "
                                          f"{response.status_code}", status=503)
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or "access_token" not in body:
        reason = body.get("error", f"HTTP {response.status_code}")
        detail = str(body.get("error_description", ""))[:200]
        raise SalesforceError("LOGIN_FAILED", f"Salesforce token refresh at {host} refused ({reason}): {detail}; "
                                              "connect the org again")
    return body.get("instance_url") or connection.instance_url, body["access_token"]

"""Clients for the emulator's own use and tests: an https→http rewriting session and the admin API client."""
from __future__ import annotations

from urllib.parse import urlsplit

import requests

from .connected_apps import DEFAULT_CLIENT_ID


class _RewritingSession(requests.Session):
    """simple-salesforce always builds `https://host/...`; send those requests to the emulator over http.

    Rewritten hosts: the emulator's own host:port, and any `*.salesforce.com` (the SOAP / OAuth login URLs
    simple-salesforce derives from `domain`).
    """

    def __init__(self, base_url: str):
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self._netloc = urlsplit(self.base_url).netloc

    def request(self, method, url, *args, **kwargs):
        if isinstance(url, str) and url.startswith("https://"):
            parts = urlsplit(url)
            if parts.netloc == self._netloc or (parts.hostname and parts.hostname.endswith(".salesforce.com")):
                url = self.base_url + url[len("https://") + len(parts.netloc):]
        return super().request(method, url, *args, **kwargs)


def http_session(base_url: str) -> requests.Session:
    return _RewritingSession(base_url)


class AdminClient:
    """Thin wrapper over /_admin/; every method raises on a non-2xx answer.

    Per-org methods act on the default org, or on `org` for a client from `for_org()`; the org-management
    methods (`create_org`, `orgs`, `delete_org`, `reset_all`, connected apps) are the same from any client.
    """

    def __init__(self, base_url: str, session: requests.Session | None = None, org: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.http = session or requests.Session()
        self.org = org

    def _call(self, method: str, path: str, **kwargs):
        """A call about this client's org."""
        return self._call_admin(method, f"orgs/{self.org}/{path}" if self.org else path, **kwargs)

    def _call_admin(self, method: str, path: str, **kwargs):
        response = self.http.request(method, f"{self.base_url}/_admin/{path}", timeout=30, **kwargs)
        if response.status_code >= 300:
            raise AdminError(response.status_code, response.text)
        return response.json()

    # orgs ---------------------------------------------------------------------------------

    def create_org(self, org_id: str, **settings) -> dict:
        """A new org; settings: features={...}, daily_api_requests=N, session_ttl_seconds=S, lockout_after=N
        (invalid logins before a user is locked out). Its credentials."""
        return self._call_admin("POST", "orgs", json={"id": org_id, **settings})

    def for_org(self, org_id: str) -> "AdminClient":
        """A client whose per-org calls act on `org_id`."""
        return AdminClient(self.base_url, self.http, org=org_id)

    def orgs(self) -> list[dict]:
        return self._call_admin("GET", "orgs")["orgs"]

    def delete_org(self, org_id: str) -> None:
        self._call_admin("DELETE", f"orgs/{org_id}")

    def reset_all(self) -> None:
        """Removes every created org and connected app, and resets the default org."""
        self._call_admin("POST", "reset-all")

    def credentials(self) -> dict:
        """This client's org: id, organization_id, access_token, username, password, instance_url, …"""
        return self._call("GET", "credentials")

    def create_connected_app(self, redirect_uris: list[str] | None = None, client_id: str | None = None,
                             client_secret: str | None = None, org: str | None = None) -> dict:
        body = {"redirect_uris": redirect_uris or [], "client_id": client_id, "client_secret": client_secret,
                "org": org}
        return self._call_admin("POST", "connected-apps", json=body)

    # sessions -----------------------------------------------------------------------------

    def sessions(self) -> dict:
        return self._call("GET", "sessions")

    def set_session_ttl(self, seconds: float | None) -> dict:
        return self._call("PUT", "sessions", json={"session_ttl_seconds": seconds})

    def expire_sessions(self) -> int:
        """Every access token of the org (its preset one too) is invalid from now on; refresh tokens still work."""
        return self._call("POST", "sessions/expire")["expired"]

    def revoke_refresh_tokens(self) -> int:
        return self._call("POST", "refresh-tokens/revoke")["revoked"]

    def issue_refresh_token(self, client_id: str = DEFAULT_CLIENT_ID, username: str | None = None) -> str:
        """A refresh token of the org's integration user (or `username`) for the app, without the browser flow."""
        body = {"client_id": client_id, "username": username}
        return self._call("POST", "refresh-tokens", json=body)["refresh_token"]

    def oauth_log(self) -> list[dict]:
        """Each token grant of the org in order: `{grant_type, client_id, user_id, at}`."""
        return self._call("GET", "oauth")["log"]

    def token_grants(self) -> dict[str, int]:
        """Token grants of the org by grant type, e.g. `{"authorization_code": 1, "refresh_token": 2}`."""
        return self._call("GET", "oauth")["token_grants"]

    # records, limits, features, rules, faults ---------------------------------------------------------

    def reset(self) -> None:
        self._call("POST", "reset")

    def state(self) -> dict:
        return self._call("GET", "state")

    def api_calls(self) -> int:
        return self.state()["api_calls"]

    def reset_api_calls(self) -> None:
        self._call("POST", "api-calls/reset")

    def seed(self, sobject: str, records: dict | list[dict]) -> list[str]:
        return self._call("POST", f"records/{sobject}", json=records)["ids"]

    def records(self, sobject: str, **filters) -> list[dict]:
        return self._call("GET", f"records/{sobject}", params=filters)["records"]

    def get(self, sobject: str, record_id: str) -> dict:
        return self._call("GET", f"records/{sobject}/{record_id}")

    def edit(self, sobject: str, record_id: str, *, as_user: str | None = None, **fields) -> dict:
        """A person's edit, made as the admin user or, with `as_user`, as that User (its Id)."""
        params = {"as_user": as_user} if as_user else None
        return self._call("PATCH", f"records/{sobject}/{record_id}", json=fields, params=params)

    def convert_lead(self, lead_id: str, *, contact_id: str | None = None, account_id: str | None = None,
                     as_user: str | None = None) -> dict:
        """Convert a Lead as a person would: `{lead_id, contact_id, account_id, tasks_moved}`. With
        `contact_id` (and `account_id`) it is converted into those records instead of new ones."""
        body = {k: v for k, v in (("contact_id", contact_id), ("account_id", account_id)) if v is not None}
        params = {"as_user": as_user} if as_user else None
        return self._call("POST", f"leads/{lead_id}/convert", json=body, params=params)

    def delete(self, sobject: str, record_id: str) -> None:
        self._call("DELETE", f"records/{sobject}/{record_id}")

    def features(self) -> dict:
        return self._call("GET", "features")

    def set_features(self, **features: bool) -> dict:
        return self._call("PUT", "features", json=features)

    def set_limits(self, daily_api_requests: int | None = None, used: int | None = None) -> dict:
        body = {k: v for k, v in (("daily_api_requests", daily_api_requests), ("used", used)) if v is not None}
        return self._call("PUT", "limits", json=body)

    def add_validation_rule(self, sobject: str, field: str | None, operator: str, value: str | None = None,
                            message: str = "Validation rule failed") -> str:
        body = {"sobject": sobject, "field": field, "operator": operator, "value": value, "message": message}
        return self._call("POST", "validation-rules", json=body)["id"]

    def delete_validation_rule(self, rule_id: str) -> None:
        self._call("DELETE", f"validation-rules/{rule_id}")

    def clear_validation_rules(self) -> None:
        self._call("DELETE", "validation-rules")

    def add_fault(self, kind: str, path: str = ".*", method: str = "*", count: int | None = None,
                  seconds: float | None = None, latency_ms: int | None = None) -> str:
        body = {"kind": kind, "path": path, "method": method, "count": count, "seconds": seconds,
                "latency_ms": latency_ms}
        return self._call("POST", "faults", json=body)["id"]

    def faults(self) -> list[dict]:
        return self._call("GET", "faults")["faults"]

    def delete_fault(self, fault_id: str) -> None:
        self._call("DELETE", f"faults/{fault_id}")

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")


class AdminError(RuntimeError):
    def __init__(self, status: int, text: str):
        super().__init__(f"admin API answered {status}: {text}")
        self.status = status
        self.text = text

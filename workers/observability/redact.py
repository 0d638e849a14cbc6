"""What counts as personal or secret data in logs and error reports, and how it is masked."""

from __future__ import annotations

import re
from typing import Any

FILTERED = "[Filtered]"
EMAIL_MASK = "[email]"

# Lenient on purpose: quotes, % and + occur in real local parts (o'brien@x.example), and a
# Message-ID such as <CAF1x9@mail.unify.example> is masked too, which costs nothing.
# The last label must hold a letter, so "sfsync@0.1.0" (a release) is not an address.
EMAIL_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z0-9-]*[A-Za-z][A-Za-z0-9-]*")

# Keys whose value is an email's content or a credential; compared after lower-casing and
# dropping "_" and "-", so body_html, HtmlBody and html-body are one key.
CONTENT_KEYS = frozenset({
    "subject", "body", "bodyhtml", "bodytext", "htmlbody", "textbody", "description",
    "template", "html", "text", "comments", "snippet",
})
SECRET_KEYS = frozenset({
    "password", "passwd", "pwd", "secret", "token", "accesstoken", "refreshtoken",
    "securitytoken", "apikey", "authorization", "proxyauthorization", "cookie", "setcookie",
    "sessionid", "session", "sid", "privatekey", "clientsecret", "consumersecret", "dsn",
    "redisurl", "brokerurl",
})
# A key that merely contains one of these is treated as secret (x_api_token, sfdc_session_id).
SECRET_FRAGMENTS = ("password", "secret", "token", "authorization", "session", "cookie",
                    "privatekey", "apikey", "credential")
PERSON_KEYS = frozenset({"firstname", "lastname", "phone", "mobilephone", "fullname"})

_QUOTED_CONTENT_RE = re.compile(
    # 'subject': '...', "body_html": "...", Subject='...' in a repr or a JSON fragment; an
    # unclosed quote (a string cut short by Sentry's size limit) filters to the end.
    r"""(?P<key>['"]?(?:subject|body_html|body_text|body|HtmlBody|TextBody|Description|"""
    r"""template|password|token|access_token|security_token|secret|authorization)['"]?"""
    r"""\s*[:=]\s*)(?P<q>['"])(?P<value>(?:\\.|(?!(?P=q)).)*)(?:(?P=q)|$)""",
    re.IGNORECASE | re.DOTALL,
)
_URL_CREDENTIALS_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):[^/@\s]+@")
_BEARER_RE = re.compile(r"(?i)\b(?P<kind>bearer|oauth|basic|token)\s+[A-Za-z0-9._~+/=!-]{8,}")
# Salesforce quotes the rejected value in STRING_TOO_LONG: "Subject: data value too large: <value> (max length=255)".
_SF_TOO_LARGE_RE = re.compile(r"(?P<head>data value too large: ).*?(?P<tail> \(max length=\d+\)|$)",
                              re.DOTALL)
# A Salesforce session id: org id (00D + 12 or 15 chars) "!" then the opaque part.
_SF_SESSION_RE = re.compile(r"\b00D[A-Za-z0-9]{12,15}![A-Za-z0-9._-]+")


def _normal_key(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def is_sensitive_key(key: Any) -> bool:
    """Whether the value stored under this mapping key must not be shown at all."""
    if not isinstance(key, str):
        return False
    k = _normal_key(key)
    return (k in CONTENT_KEYS or k in SECRET_KEYS or k in PERSON_KEYS
            or any(fragment in k for fragment in SECRET_FRAGMENTS))


def scrub_text(text: str) -> str:
    """Mask addresses, quoted bodies/subjects, URL passwords and tokens inside free text."""
    if not text:
        return text
    text = _QUOTED_CONTENT_RE.sub(lambda m: f"{m['key']}{m['q']}{FILTERED}{m['q']}", text)
    text = _URL_CREDENTIALS_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{FILTERED}@", text)
    text = _SF_TOO_LARGE_RE.sub(lambda m: f"{m['head']}{FILTERED}{m['tail']}", text)
    text = _SF_SESSION_RE.sub(FILTERED, text)
    text = _BEARER_RE.sub(lambda m: f"{m['kind']} {FILTERED}", text)
    return EMAIL_RE.sub(EMAIL_MASK, text)


def scrub(value: Any, *, keep_keys: frozenset[str] = frozenset()) -> Any:
    """A copy of a JSON-like value with sensitive keys filtered and every string scrubbed.

    `keep_keys` names keys whose value is scrubbed as text rather than filtered whole
    (Sentry's own structure uses "description" for span names, for instance).
    """
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key not in keep_keys and is_sensitive_key(key) and item not in (None, "", [], {}):
                out[key] = FILTERED
            else:
                out[key] = scrub(item, keep_keys=keep_keys)
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(item, keep_keys=keep_keys) for item in value)
    return value


#: Envelope fields of an event that identify it without revealing anyone (DESIGN §3).
EVENT_IDENTIFIERS = ("id", "type", "version", "workspace_id", "occurred_at")


def summarize_event(value: Any) -> Any:
    """An event dict reduced to its identifiers; anything else unchanged.

    Support needs the event id to find the dead letter; nothing else of it belongs in an
    error report.
    """
    if isinstance(value, dict) and "id" in value and "type" in value and "data" in value:
        return {k: value[k] for k in EVENT_IDENTIFIERS if k in value}
    if isinstance(value, (list, tuple)):
        return type(value)(summarize_event(item) for item in value)
    return value

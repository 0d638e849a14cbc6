"""What counts as personal or secret data in logs and error reports, and how it is masked."""

from __future__ import annotations

import re
from typing import Any

FILTERED = "[Filtered]"
EMAIL_MASK = "[email]"

# Lenient on purpose: quotes, % and + occur in real local parts (o'brien@x.example), and a
# Message-ID such as <CAF1x9@mail.unify.example> is masked too, which costs nothing.
# An address is found in any script (bücher.example, 用户@例子.广告: \w is Unicode) and in any
# encoding it travels in: percent-encoded in a URL (%40, UTF-8 bytes as %C3%BC, "." as %2E),
# form-encoded (+ for a space), an HTML entity (&#64; &#x40;), a JSON or Python escape
# (\u0040, \x40), a SOQL-escaped quote (o\'brien), or the full-width ＠.
# The last label must hold a letter, so "sfsync@0.1.0" (a release) is not an address.
_AT = r"(?:@|%(?:25)*40|&(?:amp;)*#0*64;|&(?:amp;)*#[xX]0*40;|\\u0040|\\x40|＠)"
_ESCAPED = (r"%(?:25)*[0-9A-Fa-f]{2}|&(?:amp;)*#[0-9]+;|&(?:amp;)*#[xX][0-9A-Fa-f]+;|\\u[0-9A-Fa-f]{4}"
            r"|\\x[0-9A-Fa-f]{2}|\\'")
# possessive, and never an encoded "@": a long run without one fails fast instead of backtracking
_LOCAL = rf"(?:(?!{_AT})(?:[\w.!#$&'*+=?^`{{|}}~-]|%(?![0-9A-Fa-f]{{2}})|{_ESCAPED})){{1,320}}+"
_DOT = r"(?:\.|%(?:25)*2[Ee]|。)"
_LABEL_CHAR = r"(?:[\w-]|%(?:25)*[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}|&(?:amp;)*#[xX]?[0-9A-Fa-f]+;)"
_LAST_LABEL = rf"{_LABEL_CHAR}*?(?:[^\W\d_]|%(?:25)*[0-9A-Fa-f]{{2}}|\\u[0-9A-Fa-f]{{4}}){_LABEL_CHAR}*"
#: any form of "@": text without one is left alone without running the full pattern
AT_RE = re.compile(_AT)
EMAIL_RE = re.compile(rf"{_LOCAL}{_AT}{_LABEL_CHAR}+(?:{_DOT}{_LABEL_CHAR}+)*{_DOT}{_LAST_LABEL}")
# What is left holding an "@" with a letter after it is an address that failed validation (no dot in its
# domain, a doubled @, a trailing dot, a space in it) or a host name: masked whole, as a token between
# spaces, quotes and brackets. "sfsync@0.1.0" (a release: no letter after the @) stays.
_TOKEN_WITH_AT_RE = re.compile(r"[^\s'\"<>()\[\]{},;=@＠]+[@＠][^\s'\"<>()\[\]{},;]*")
_LETTER_AFTER_AT_RE = re.compile(r"[@＠][^\s]*?[^\W\d_]")

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
#: a URL's query string or fragment (a SOQL query with addresses in it): never shown
URL_PART_KEYS = frozenset({"http.query", "http.fragment", "querystring", "query_string"})
#: values that are URLs: shown without their query string and fragment
URL_KEYS = frozenset({"url", "http.url"})

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
# A query string or fragment in free text (an exception naming the URL it failed on): a SOQL
# query travels there, WHERE Email IN ('...'), and so may anything else a caller put in a URL.
_URL_QUERY_RE = re.compile(r"(?P<path>(?:\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#'\"<>]*|(?<![\w/])/[\w/.%~-]*))"
                           r"[?#][^\s'\"<>)]*")
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
    return (k in CONTENT_KEYS or k in SECRET_KEYS or k in PERSON_KEYS or key.lower() in URL_PART_KEYS
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
    text = _URL_QUERY_RE.sub(lambda m: f"{m['path']}?{FILTERED}", text)
    if not AT_RE.search(text):
        return text
    return _TOKEN_WITH_AT_RE.sub(_mask_loose, EMAIL_RE.sub(EMAIL_MASK, text))


def _mask_loose(found: re.Match) -> str:
    token = found.group(0)
    return EMAIL_MASK if _LETTER_AFTER_AT_RE.search(token) else token


def scrub_url(url: str) -> str:
    """A URL without its query string and fragment, and with any address in what is left masked."""
    if not isinstance(url, str):
        return url
    for mark in ("?", "#"):
        url = url.split(mark, 1)[0]
    return EMAIL_RE.sub(EMAIL_MASK, _URL_CREDENTIALS_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{FILTERED}@", url))



def scrub_breadcrumb_data(crumb: dict[str, Any]) -> dict[str, Any]:
    """An HTTP breadcrumb keeps method, status and the URL's path; its query and fragment go.

    Breadcrumbs outlive their batch: the SOQL lookup of an earlier batch (WHERE Email IN (...))
    rides along with any later error of the same process.
    """
    data = crumb.get("data")
    if not isinstance(data, dict):
        return crumb
    cleaned = {k: (scrub_url(v) if k in URL_KEYS else v) for k, v in data.items() if k not in URL_PART_KEYS}
    return {**crumb, "data": cleaned}


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
            elif key in URL_KEYS and isinstance(item, str):
                out[key] = scrub_url(item)
            else:
                out[key] = scrub(item, keep_keys=keep_keys)
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(item, keep_keys=keep_keys) for item in value)
    return value


#: Envelope fields of an event that identify it without revealing anyone.
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

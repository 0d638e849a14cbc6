"""The console's middleware: security headers, request body limit, and an access log without query strings."""

from __future__ import annotations

import logging
import time

from starlette.responses import PlainTextResponse

from workers.web.security import CSP

access_log = logging.getLogger("sfsync.web.access")

#: seconds browsers keep to https once told (a year, as HSTS preload lists expect)
HSTS_MAX_AGE = 365 * 86400


class SecurityHeaders:
    """No framing, no sniffing, scripts only from this site (htmx is served from /static); nothing a page
    shows is kept in a cache (`no-store`); and when the console is reached over https (its public URL says
    so, or a trusted proxy's X-Forwarded-Proto does), HSTS and a Secure session cookie."""

    HEADERS = ((b"content-security-policy", CSP.encode()),
               (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
               (b"x-frame-options", b"DENY"))

    def __init__(self, app, always_https: bool = False):
        self.app = app
        self.always_https = always_https

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        https = self.always_https or scope.get("scheme") == "https"
        cached = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in self.HEADERS if n not in present]
                if not cached:
                    headers = [(n, v) for n, v in headers if n.lower() != b"cache-control"]
                    headers.append((b"cache-control", b"no-store"))
                if https:
                    headers.append((b"strict-transport-security", f"max-age={HSTS_MAX_AGE}".encode()))
                    headers = [(n, _secure(v) if n.lower() == b"set-cookie" else v) for n, v in headers]
                message["headers"] = headers
            await send(message)

        return await self.app(scope, receive, send_with_headers)


def _secure(cookie: bytes) -> bytes:
    return cookie if b"secure" in cookie.lower() else cookie + b"; secure"


class AccessLog:
    """One line per request through sfsync's logging: method, path (never the query string: an OAuth code
    and state travel there), status and duration."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.monotonic(), [0]

        async def noting(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting)
        finally:
            access_log.info("%s %s %d %.0fms", scope.get("method", ""), scope.get("path", "")[:300], status[0],
                            (time.monotonic() - started) * 1000)


class BodyLimit:
    """Refuse (413) a request whose body is larger than `limit` bytes, before anything reads it."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _too_large(scope, receive, send, limit)
        # read it all here (at most `limit` bytes), then hand it on: a body sent without a length is held
        # to the same limit
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return await self.app(scope, _replay([message], receive), send)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await _too_large(scope, receive, send, limit)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        return await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive),
                              send)


def _replay(messages, then):
    """A receive that gives `messages`, then whatever `then` gives (the client's disconnect, when it comes)."""
    queue = list(messages)

    async def receive():
        if queue:
            return queue.pop(0)
        return await then()

    return receive


async def _too_large(scope, receive, send, limit: int) -> None:
    response = PlainTextResponse(f"Refused: the request is larger than {limit // 1024} KB.", status_code=413,
                                 headers={"Connection": "close"})
    await response(scope, receive, send)

"""A tiny OpenID Connect provider over real HTTP for the console's sign-in test: discovery, authorize, token, userinfo."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route


class FakeIdentityProvider:
    """Signs in whoever `claims` describes; checks the client's secret and the PKCE verifier is sent."""

    def __init__(self, client_id: str, client_secret: str):
        self.client_id, self.client_secret = client_id, client_secret
        self.claims: dict = {}
        self.codes: dict[str, str] = {}
        self.tokens: set[str] = set()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        routes = [Route("/.well-known/openid-configuration", self.discovery), Route("/authorize", self.authorize),
                  Route("/token", self.token, methods=["POST"]), Route("/userinfo", self.userinfo)]
        self.server = uvicorn.Server(uvicorn.Config(Starlette(routes=routes), host="127.0.0.1", port=self.port,
                                                    log_level="warning"))

    async def discovery(self, request: Request):
        return JSONResponse({"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
                             "token_endpoint": f"{self.url}/token", "userinfo_endpoint": f"{self.url}/userinfo",
                             "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"]})

    async def authorize(self, request: Request):
        params = request.query_params
        if params.get("client_id") != self.client_id or params.get("code_challenge_method") != "S256":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(12)
        self.codes[code] = params["redirect_uri"]
        return RedirectResponse(f"{params['redirect_uri']}?{urlencode({'code': code, 'state': params['state']})}",
                                status_code=302)

    async def token(self, request: Request):
        form = await request.form()
        secret_ok = (form.get("client_secret") == self.client_secret or
                     request.headers.get("authorization", "").startswith("Basic "))
        if not secret_ok or form.get("code") not in self.codes or not form.get("code_verifier"):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        del self.codes[form["code"]]
        access = secrets.token_urlsafe(16)
        self.tokens.add(access)
        return JSONResponse({"access_token": access, "token_type": "Bearer", "expires_in": 300})

    async def userinfo(self, request: Request):
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse(self.claims)

    def __enter__(self) -> "FakeIdentityProvider":
        threading.Thread(target=self.server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the fake identity provider did not start in 10 s")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True

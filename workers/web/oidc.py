"""Sign-in through an OpenID Connect identity provider (authlib); the console role comes from a roles/groups claim."""

from __future__ import annotations

import logging

import httpx

from authlib.integrations.starlette_client import OAuth, OAuthError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from workers.web.rendering import render
from workers.web.security import client_ip, safe_next, sign_in
from workers.web.users import ROLE_CLAIMS, role_from_claims

log = logging.getLogger(__name__)
SCOPES = "openid profile email"


def routes(config) -> list[Route]:
    settings = config.settings
    oauth = OAuth()
    oauth.register("idp", client_id=settings.web_oidc_client_id,
                   client_secret=settings.web_oidc_client_secret.get_secret_value(),
                   server_metadata_url=settings.web_oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",
                   client_kwargs={"scope": SCOPES, "code_challenge_method": "S256"})

    async def start(request: Request) -> Response:
        request.session["oidc_next"] = safe_next(request.query_params.get("next"))
        public = config.public_url
        target = public + request.app.url_path_for("oidc_callback") if public else str(request.url_for("oidc_callback"))
        return await oauth.idp.authorize_redirect(request, target)

    async def callback(request: Request) -> Response:
        try:
            token = await oauth.idp.authorize_access_token(request)
            # the ID token's claims; a provider that sends no ID token is asked at its userinfo endpoint
            claims = dict(token.get("userinfo") or await oauth.idp.userinfo(token=token) or {})
        except (OAuthError, httpx.HTTPError) as exc:
            reason = getattr(exc, "error", None) or type(exc).__name__
            log.warning("OIDC sign-in failed: %s", reason)
            return render(request, "error.html", status_code=401, title="Sign-in failed",
                          message=f"The identity provider did not sign you in ({reason}). Try again.")
        username = str(claims.get("preferred_username") or claims.get("email") or claims.get("sub") or "")
        role = role_from_claims(claims)
        audit = request.app.state.audit
        if not username or role is None:
            audit.record(user=username or "(unknown)", role="", action="sign_in_failed", ip=client_ip(request),
                         detail="identity provider granted no console role")
            return render(request, "error.html", status_code=403, title="No console role",
                          message=f"You are signed in at the identity provider, but its {' or '.join(ROLE_CLAIMS)} "
                                  "claim grants you no console role (sfsync-viewer, sfsync-support or "
                                  "sfsync-admin). Ask an administrator.")
        target = safe_next(request.session.get("oidc_next"))
        sign_in(request, username, role, "oidc")
        audit.record(user=username, role=role, action="sign_in", ip=client_ip(request), detail="oidc")
        return RedirectResponse(target, status_code=303)

    return [Route("/auth/oidc/login", start, name="oidc_login"),
            Route("/auth/oidc/callback", callback, name="oidc_callback")]

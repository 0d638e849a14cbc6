"""Logins: the SOAP username-password login and the OAuth 2.0 token endpoint (password, client credentials, JWT)."""
from __future__ import annotations

import base64
import json
import secrets
import time
from urllib.parse import parse_qsl
from xml.etree import ElementTree

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .org import API_USER, ORG_ID

#: the documented way to make a login fail: a password (with any security token appended) starting "wrong"
_BAD_PASSWORD_PREFIX = "wrong"
_SOAP_NS = "urn:partner.soap.sforce.com"


def password_ok(password: str | None) -> bool:
    return bool(password) and not password.startswith(_BAD_PASSWORD_PREFIX)


def base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def issue_token(org) -> str:
    token = f"{ORG_ID[:15]}!emu.{secrets.token_urlsafe(24)}"
    with org.lock:
        org.tokens.add(token)
    return token


async def soap_login(request: Request) -> Response:
    org = request.app.state.org
    version = request.path_params["version"]
    username = password = None
    try:
        root = ElementTree.fromstring(await request.body())
        for element in root.iter():
            tag = element.tag.rsplit("}", 1)[-1]
            if tag == "username":
                username = element.text
            elif tag == "password":
                password = element.text
    except ElementTree.ParseError:
        return _soap_fault("INVALID_LOGIN", "Invalid request: the SOAP body is not well-formed XML")
    if not username or not password_ok(password):
        return _soap_fault("INVALID_LOGIN",
                           "INVALID_LOGIN: Invalid username, password, security token; or user locked out.")
    token = issue_token(org)
    base = base_url(request)
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns="{_SOAP_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>{base}/services/Soap/m/{version}/{ORG_ID[:15]}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
        f"<serverUrl>{base}/services/Soap/u/{version}/{ORG_ID[:15]}</serverUrl>"
        f"<sessionId>{token}</sessionId>"
        f"<userId>{org.api_user_id}</userId>"
        f"<userInfo><organizationId>{ORG_ID}</organizationId><userName>{_xml(username)}</userName></userInfo>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )
    return Response(body, media_type="text/xml; charset=utf-8")


def _soap_fault(code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{_xml(message)}</faultstring>"
        f'<detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>{code}</sf:exceptionCode>'
        f"<sf:exceptionMessage>{_xml(message)}</sf:exceptionMessage></sf:LoginFault></detail>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return Response(body, status_code=500, media_type="text/xml; charset=utf-8")


def _xml(text: str) -> str:
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


async def oauth_token(request: Request) -> Response:
    org = request.app.state.org
    # parsed by hand: Starlette's form parser would need python-multipart for a urlencoded body
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    grant = form.get("grant_type")
    if grant == "password":
        if not form.get("username") or not password_ok(form.get("password")):
            return _oauth_error("invalid_grant", "authentication failure")
    elif grant == "client_credentials":
        if not form.get("client_id") or not password_ok(form.get("client_secret") or "x"):
            return _oauth_error("invalid_client", "invalid client credentials")
    elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
        claims = _jwt_claims(form.get("assertion") or "")
        if claims is None or not claims.get("sub"):
            return _oauth_error("invalid_grant", "invalid assertion")
    else:
        return _oauth_error("unsupported_grant_type", "grant type not supported")
    token = issue_token(org)
    base = base_url(request)
    return JSONResponse({
        "access_token": token, "instance_url": base, "token_type": "Bearer",
        "id": f"{base}/id/{ORG_ID}/{org.api_user_id}", "issued_at": str(int(time.time() * 1000)),
        "signature": base64.b64encode(secrets.token_bytes(32)).decode(), "scope": "api",
    })


def _jwt_claims(assertion: str) -> dict | None:
    """The payload of a JWT; the signature is deliberately not checked."""
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, UnicodeDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def _oauth_error(error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=400)


async def userinfo(request: Request) -> Response:
    """OpenID Connect userinfo: who the bearer token belongs to (not a data API call, not counted)."""
    org = request.app.state.org
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if token not in org.tokens:
        return JSONResponse({"error": "invalid_token", "error_description": "Bad_OAuth_Token"}, status_code=403)
    return JSONResponse({"user_id": org.api_user_id, "organization_id": ORG_ID,
                         "preferred_username": API_USER, "email": API_USER,
                         "sub": f"{base_url(request)}/id/{ORG_ID}/{org.api_user_id}"})

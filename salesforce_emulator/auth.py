"""Signing in with a username and password: the password rule, form bodies, and the SOAP login."""
from __future__ import annotations

from urllib.parse import parse_qsl
from xml.etree import ElementTree

from starlette.requests import Request
from starlette.responses import Response

#: the documented way to make a login fail: a password (with any security token appended) starting "wrong"
_BAD_PASSWORD_PREFIX = "wrong"
_SOAP_NS = "urn:partner.soap.sforce.com"


def password_ok(password: str | None) -> bool:
    return bool(password) and not password.startswith(_BAD_PASSWORD_PREFIX)  # type: ignore[union-attr]  # bool()


def base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


async def form_fields(request: Request) -> dict[str, str]:
    """A urlencoded body, parsed by hand: Starlette's form parser would need python-multipart."""
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace")))


async def soap_login(request: Request) -> Response:
    orgs = request.app.state.orgs
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
    with orgs.lock:
        signed_in = orgs.password_sign_in(username, password)
        if signed_in is None:
            return _soap_fault("INVALID_LOGIN",
                               "INVALID_LOGIN: Invalid username, password, security token; or user locked out.")
        org, user_id = signed_in
        token = orgs.sessions.issue_access(org.name, org.org_id, user_id).value
    base = base_url(request)
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns="{_SOAP_NS}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>{base}/services/Soap/m/{version}/{org.org_id[:15]}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
        f"<serverUrl>{base}/services/Soap/u/{version}/{org.org_id[:15]}</serverUrl>"
        f"<sessionId>{token}</sessionId>"
        f"<userId>{user_id}</userId>"
        f"<userInfo><organizationId>{org.org_id}</organizationId><userName>{_xml(username)}</userName></userInfo>"  # type: ignore[arg-type]
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

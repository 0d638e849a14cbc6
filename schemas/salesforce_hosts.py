"""Which hosts sfsync may send Salesforce credentials and data to: Salesforce's own over https, and those listed."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: the domains Salesforce serves logins, token calls and APIs from (a host is one of them or under one):
#: salesforce.com (login, test, My Domain, instances), force.com (Lightning, sites), salesforce-setup.com
#: and cloudforce.com (setup and older My Domain hosts), database.com, the government cloud's
#: salesforce.mil, and sfcrmproducts.cn (Salesforce in China)
SALESFORCE_DOMAINS = ("salesforce.com", "force.com", "salesforce-setup.com", "cloudforce.com", "database.com",
                      "salesforce.mil", "sfcrmproducts.cn")
SETTING = "SFSYNC_SALESFORCE_ALLOWED_HOSTS"
_DEFAULT_PORTS = {"https": 443, "http": 80}
# scheme://host[:port][/path...]: a host of letters, digits, dots and hyphens, or a bracketed IPv6
# address; no user:password@, no backslash, nothing a browser and an HTTP library might read two ways
_URL = re.compile(r"(?P<scheme>https?)://(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
                  r"(?::(?P<port>[0-9]{1,5}))?(?P<rest>[/?#].*)?", re.DOTALL)
_ENTRY = re.compile(r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
                    r"(?::(?P<port>[0-9]{1,5}|\*))?")


class HostNotAllowed(ValueError):
    """A URL sfsync would send credentials or data to is not a Salesforce host it may use; says why."""


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        default = _DEFAULT_PORTS[self.scheme] == self.port
        return f"{self.scheme}://{self.host}" + ("" if default else f":{self.port}")


def parse_origin(url: str) -> tuple[Origin, str]:
    """(origin, the rest of the URL) of an http(s) URL; HostNotAllowed when it is not one sfsync accepts."""
    found = _URL.fullmatch(url.strip()) if isinstance(url, str) else None
    if found is None:
        raise HostNotAllowed("not an https://host URL (letters, digits, dots and hyphens; no user:password@)")
    scheme, host = found["scheme"], found["host"].lower()
    port = int(found["port"]) if found["port"] else _DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise HostNotAllowed(f"port {port} of {host} is not a port")
    return Origin(scheme, host, port), found["rest"] or ""


def is_salesforce_host(host: str) -> bool:
    host = host.lower()
    return any(host == d or host.endswith("." + d) for d in SALESFORCE_DOMAINS)


@dataclass(frozen=True)
class HostPolicy:
    """Salesforce's own hosts over https on port 443, plus the (host, port) pairs listed (port None: any).

    A listed host may be reached over http:// too (the emulator, tests, the demo); nothing else may.
    """

    listed: tuple[tuple[str, int | None], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> "HostPolicy":
        """From the setting's text: comma-separated `host`, `host:port` or `host:*`; ValueError names a bad entry."""
        listed = []
        for raw in (text or "").split(","):
            entry = raw.strip()
            if not entry:
                continue
            found = _ENTRY.fullmatch(entry)
            if found is None:
                raise ValueError(f"{entry[:80]!r} is not `host`, `host:port` or `host:*` (no scheme, no path)")
            port = found["port"]
            listed.append((found["host"].lower(), None if port == "*" else int(port) if port else 0))
        return cls(tuple(listed))

    def _listed(self, origin: Origin) -> bool:
        for host, port in self.listed:
            if host != origin.host:
                continue
            # `host` alone: the scheme's own port; `host:*`: any
            if port is None or port == origin.port or (port == 0 and origin.port == _DEFAULT_PORTS[origin.scheme]):
                return True
        return False

    def allows(self, url: str) -> bool:
        try:
            self.check(url)
        except HostNotAllowed:
            return False
        return True

    def check(self, url: str, what: str = "the Salesforce URL") -> Origin:
        """The URL's origin when sfsync may send credentials and data there; else HostNotAllowed saying why."""
        try:
            origin, _ = parse_origin(url)
        except HostNotAllowed as exc:
            raise HostNotAllowed(f"{what} is refused: {exc}") from None
        if self._listed(origin):
            return origin
        if origin.scheme != "https":
            raise HostNotAllowed(f"{what} ({origin}) is refused: plain http:// is accepted only for a host listed "
                                 f"in {SETTING}")
        if not is_salesforce_host(origin.host):
            raise HostNotAllowed(f"{what} ({origin}) is refused: {origin.host} is not a Salesforce host "
                                 f"(*.{', *.'.join(SALESFORCE_DOMAINS)}) and is not listed in {SETTING}")
        if origin.port != 443:
            raise HostNotAllowed(f"{what} ({origin}) is refused: Salesforce hosts are reached on port 443; "
                                 f"list {origin.host}:{origin.port} in {SETTING} to use another")
        return origin

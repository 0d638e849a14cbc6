"""The Mappings page: a workspace's mapping YAML checked against its org as you type, a diff, history, rollback."""

from __future__ import annotations

import difflib
import re
import threading
import time
from dataclasses import dataclass, field

import yaml
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from schemas.codes import ErrorCode
from schemas.mappings import MappingConfig
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway
from workers.sync.mappings import MappingConfigError, errors_and_warnings, parse_mappings_text, validate_mappings
from workers.web.rendering import render
from workers.web.security import client_ip, requires
from workers.web.workspaces import connection_for
from workspaces.registry import MappingVersions, RegistryError, WorkspaceNotFound
from workspaces.secrets import SecretKeyError

#: seconds a signed-in org client is reused for describe checks (the gateway caches describes itself)
GATEWAY_TTL = 300


@dataclass
class Check:
    """What checking typed mappings found: the parsed config (None when unreadable) and the problems."""

    config: MappingConfig | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: why the org could not be asked (the file itself was still checked)
    unchecked: str | None = None

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors and self.unchecked is None


class Gateways:
    """One signed-in client per workspace, reused for a while, so typing does not sign in on every key."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, SalesforceGateway]] = {}

    def get(self, request: Request, ws: str) -> SalesforceGateway:
        with self._lock:
            hit = self._cache.get(ws)
            if hit and time.monotonic() - hit[0] < GATEWAY_TTL:
                return hit[1]
        connection = connection_for(ws, request.app.state.config.settings, request.app.state.registry)
        if connection is None:
            raise SalesforceError(ErrorCode.NOT_CONNECTED, "this workspace has no Salesforce connection; connect it first")
        gateway = SalesforceGateway.from_connection(connection, hosts=request.app.state.config.settings.salesforce_hosts)
        with self._lock:
            self._cache[ws] = (time.monotonic(), gateway)
        return gateway

    def forget(self, ws: str) -> None:
        with self._lock:
            self._cache.pop(ws, None)


def check_text(request: Request, ws: str, text: str) -> Check:
    try:
        config = parse_mappings_text(f"mappings of {ws}", text)
    except MappingConfigError as exc:
        return Check(errors=list(exc.problems))
    try:
        problems = validate_mappings(config, request.app.state.gateways.get(request, ws).describe)
    except (SalesforceError, SecretKeyError) as exc:
        return Check(config=config, unchecked=f"the org could not be asked: {exc}")
    errors, warnings = errors_and_warnings(problems)
    return Check(config=config, errors=[str(p) for p in errors], warnings=[str(p) for p in warnings])


def as_yaml(mappings: dict | None) -> str:
    return yaml.safe_dump(mappings, sort_keys=False, allow_unicode=True) if mappings else ""


def normal(config: MappingConfig) -> dict:
    return config.model_dump(mode="json", exclude_defaults=True)


def _editable(request: Request, ws: str) -> str | None:
    """None when the registry holds this workspace (its mappings are edited here); else why not."""
    if ws in request.app.state.registry.ids():
        return None
    return ("This workspace is defined by the environment (SFSYNC_MAPPINGS), not the registry: register it "
            "(`sfsync workspaces apply`) or connect it to Salesforce here to manage its mappings.")


@requires("viewer")
async def page(request: Request) -> Response:
    ws = request.path_params["ws"]
    versions = MappingVersions(request.app.state.redis)
    number, current = versions.current(ws)
    return render(request, "mappings.html", ws=ws, text=as_yaml(current), version=number,
                  history=versions.history(ws)[:50], not_editable=_editable(request, ws))


_LINE = re.compile(r"^line (\d+)")


def with_lines(text: str, problems: list[str], around: int = 1) -> list[dict]:
    """Each problem with the lines it names (and `around` lines either side), numbered as in the file:
    the editor shows no line numbers, so the excerpt shows where the problem is."""
    lines = text.splitlines()
    out = []
    for problem in problems:
        found = _LINE.match(problem)
        excerpt = []
        if found and lines:
            target = int(found.group(1))
            for n in range(max(target - around, 1), min(target + around, len(lines)) + 1):
                excerpt.append({"n": n, "text": lines[n - 1], "hit": n == target})
        out.append({"message": problem, "excerpt": excerpt})
    return out


@requires("admin")
async def check(request: Request) -> Response:
    form = await request.form()
    text = str(form.get("text", ""))
    result = await run_in_threadpool(check_text, request, request.path_params["ws"], text)
    return render(request, "_mapping_check.html", result=result, errors=with_lines(text, result.errors))


@requires("admin")
async def preview(request: Request) -> Response:
    ws = request.path_params["ws"]
    text = str((await request.form()).get("text", ""))
    result = await run_in_threadpool(check_text, request, ws, text)
    _, current = MappingVersions(request.app.state.redis).current(ws)
    diff = ""
    if result.config is not None:
        diff = "".join(difflib.unified_diff(as_yaml(current).splitlines(True),
                                            as_yaml(normal(result.config)).splitlines(True),
                                            "saved", "yours"))
    return render(request, "mapping_preview.html", ws=ws, text=text, result=result, diff=diff,
                  not_editable=_editable(request, ws), errors=with_lines(text, result.errors))


@requires("admin")
async def save(request: Request) -> Response:
    ws = request.path_params["ws"]
    form = await request.form()
    text, note = str(form.get("text", "")), str(form.get("note", ""))[:200]
    result = await run_in_threadpool(check_text, request, ws, text)
    problem = _editable(request, ws) or (None if result.ok else "the mappings have problems; nothing was saved")
    if problem:
        return render(request, "mapping_preview.html", status_code=400, ws=ws, text=text, result=result, diff="",
                      not_editable=problem, errors=with_lines(text, result.errors))
    user = request.state.user
    # result.ok: its config is there
    version = MappingVersions(request.app.state.redis).set(ws, normal(result.config), author=user["user"],  # type: ignore[arg-type]
                                                           note=note)
    request.app.state.audit.record(user=user["user"], role=user["role"], action="mappings_saved",
                                   ip=client_ip(request), workspace=ws,
                                   detail=f"version {version}" if version else "unchanged")
    return render(request, "done.html", title="Mappings saved", ws=ws,
                  message=(f"Saved as version {version}; workers use it for the next batch."
                           if version else "Nothing changed: these are the current mappings."))


@requires("admin")
async def rollback(request: Request) -> Response:
    ws = request.path_params["ws"]
    form = await request.form()
    user = request.state.user
    try:
        version = int(str(form.get("version", "")))
        saved = MappingVersions(request.app.state.redis).rollback(ws, version, author=user["user"])
    except (ValueError, RegistryError, WorkspaceNotFound) as exc:
        return render(request, "error.html", status_code=400, title="Rollback refused", message=str(exc))
    request.app.state.audit.record(user=user["user"], role=user["role"], action="mappings_rollback",
                                   ip=client_ip(request), workspace=ws,
                                   detail=f"version {version} saved again as version {saved}")
    return render(request, "done.html", title="Mappings rolled back", ws=ws,
                  message=f"Version {version} is current again (saved as version {saved}).")


def routes() -> list[Route]:
    return [Route("/workspaces/{ws}/mappings", page),
            Route("/workspaces/{ws}/mappings/check", check, methods=["POST"]),
            Route("/workspaces/{ws}/mappings/preview", preview, methods=["POST"]),
            Route("/workspaces/{ws}/mappings/save", save, methods=["POST"]),
            Route("/workspaces/{ws}/mappings/rollback", rollback, methods=["POST"])]

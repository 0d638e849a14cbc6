"""`sfsync workspaces`: register workspaces from a file, list, show, test, disable, enable, remove; keys."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from events.connection_state import ConnectionState
from events.parking import ParkingLot
from events.signing import new_key as new_signing_key
from schemas.mappings import MappingConfig
from schemas.workspace import SECRET_NAMES, WorkspaceSpec, resolve_files
from workers.breaker import Breakers
from workers.cli import exits, summaries
from workers.cli.exits import Failure
from workers.cli.registry_access import author, check_against_org, open_registry
from workers.login_gate import operator_login
from workers.runtime import mappings_of
from workers.salesforce.errors import SalesforceError
from workers.sync.mappings import errors_and_warnings, mappings_from_data, validate_mappings
from workspaces.registry import MappingVersions, Registry, RegistryError, WorkspaceConfig, parse_registry_file
from workspaces.secrets import new_key


@click.group("workspaces", cls=summaries.Group)
def workspaces() -> None:
    """The workspaces this deployment serves, each with its own org, settings and mappings."""


# --- apply ------------------------------------------------------------------------------

def read_registry_file(path: Path) -> list[WorkspaceSpec]:
    """The workspaces of a registry file (YAML or JSON), `*_file` keys read relative to its folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RegistryError(f"{path}: not valid YAML or JSON{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict) or "workspaces" not in data:
        raise RegistryError(f"{path}: the file must hold a `workspaces:` list")
    try:
        resolved = resolve_files(data, path.parent)
    except ValueError as exc:
        raise RegistryError(f"{path}: {exc}") from None
    try:
        return parse_registry_file(resolved)
    except RegistryError as exc:
        raise RegistryError(f"{path}: {exc}") from None


def inline_secrets(path: Path) -> dict[str, list[str]]:
    """Secrets written in the file itself (not in `*_file` keys), by workspace id."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    found: dict[str, list[str]] = {}
    for n, spec in enumerate(data.get("workspaces") or []):
        salesforce = spec.get("salesforce") if isinstance(spec, dict) else None
        if isinstance(salesforce, dict):
            names = sorted(n_ for n_ in SECRET_NAMES if salesforce.get(n_) is not None)
            if names:
                found[str(spec.get("id", f"workspaces[{n}]"))] = names
    return found


def _check_orgs(registry: Registry, specs: list[WorkspaceSpec]) -> tuple[list[str], bool]:
    """Each connected workspace's mappings (the file's, else the registry's) against its org: the problems,
    and whether an org could not be reached."""
    problems: list[str] = []
    unreachable = False
    for spec in specs:
        if spec.salesforce is None:
            continue
        data = spec.mappings if spec.mappings is not None else MappingVersions(registry.redis).current(spec.id)[1]
        config = mappings_from_data(data, f"workspace {spec.id} mappings") if data is not None else None
        result = check_against_org(spec.salesforce, config or MappingConfig(), registry.hosts)
        if result.unreachable:
            unreachable = True
            problems.append(f"workspace {spec.id}: cannot check its org ({result.unreachable}); "
                            "use --no-check to apply without asking the org")
        problems.extend(f"workspace {spec.id}: mapping {p}" for p in result.errors)
    return problems, unreachable


@workspaces.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check everything and say what would change; change nothing.")
@click.option("--no-check", is_flag=True, help="Don't sign in to the orgs to check the mappings against them.")
def apply(file: Path, dry_run: bool, no_check: bool) -> None:
    """Create or update the workspaces FILE declares (YAML or JSON); nothing changes unless all are valid."""
    specs = read_registry_file(file)
    for ws, names in inline_secrets(file).items():
        click.echo(f"Warning: workspace {ws}: {', '.join(names)} written in {file} itself; the file now holds "
                   "credentials in clear text and must not be kept (use the *_file keys instead)", err=True)
    registry = open_registry()
    if any(s.salesforce is not None for s in specs):
        registry.keyring.seal({})  # a missing key refuses here, before anything is asked or changed
    if not no_check:
        problems, unreachable = _check_orgs(registry, specs)
        if problems:
            for line in problems:
                click.echo(f"  {line}", err=True)
            raise Failure(f"{len(problems)} problem(s) in {file}; nothing was changed",
                          exits.UNAVAILABLE if unreachable else exits.DATA)
    if dry_run:
        report = registry.plan(specs)
        verb = "would be "
    else:
        report = registry.apply(specs, author=author())
        verb = ""
    for outcome in ("created", "updated", "unchanged"):
        ids = getattr(report, outcome)
        if ids:
            click.echo(f"{verb}{outcome}: {', '.join(ids)}")
    for ws, version in report.mappings_saved.items():
        saved = "a new version would be saved" if dry_run else f"saved as version {version}"
        click.echo(f"mappings of {ws}: {saved}")
    if dry_run:
        click.echo("dry run: nothing was changed")


# --- reading ----------------------------------------------------------------------------

def _states(registry: Registry, ws: str) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    return ConnectionState(registry.redis).read(ws), Breakers(registry.redis).state(ws)


def _describe(registry: Registry, config: WorkspaceConfig) -> dict[str, Any]:
    """The workspace without secrets, with its connection and breaker state."""
    connection, breaker = _states(registry, config.id)
    return {**config.public(), "connection_state": connection, "breaker": breaker}


def _connection_text(state: dict[str, str] | None) -> str:
    if not state:
        return "[dim]not tried yet[/dim]"
    if state.get("state") == "connected":
        return "[green]connected[/green]"
    return f"[red]{escape(state.get('state', '?'))}[/red] {escape(state.get('code') or '')}"


def _breaker_text(state: dict[str, str] | None) -> str:
    if not state:
        return "[green]closed[/green]"
    opened = float(state.get("opened_at") or time.time())
    return f"[red]open[/red] {time.time() - opened:.0f}s"


@workspaces.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_(as_json: bool) -> None:
    """Every registered workspace: enabled, connection, breaker, mappings version, max latency."""
    registry = open_registry()
    described = [_describe(registry, c) for c in registry.all()]
    if as_json:
        click.echo(json.dumps(described, indent=2, default=str))
        return
    if not described:
        click.echo("no workspace registered (register some with `sfsync workspaces apply FILE`)")
        return
    table = Table(title="Workspaces")
    for column in ("id", "name", "enabled", "auth", "connection", "breaker", "mappings", "max latency"):
        table.add_column(column, no_wrap=column == "id")
    for d in described:
        sf = d["salesforce"]
        table.add_row(escape(d["id"]), escape(d["name"]), "yes" if d["enabled"] else "[yellow]no[/yellow]",
                      escape(sf["auth"]) if sf else "[yellow]not connected[/yellow]",
                      _connection_text(d["connection_state"]), _breaker_text(d["breaker"]),
                      f"v{d['mappings_version']}" if d["mappings_version"] else "defaults",
                      f"{d['max_latency_seconds']:g}s")
    Console(soft_wrap=True).print(table)


@workspaces.command("show")
@click.argument("ws")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(ws: str, as_json: bool) -> None:
    """One workspace: settings, connection (secrets by name only), state, mappings version."""
    registry = open_registry()
    described = _describe(registry, registry.get(ws, secrets=False))
    if as_json:
        click.echo(json.dumps(described, indent=2, default=str))
        return
    sf = described.pop("salesforce") or {}
    connection, breaker = described.pop("connection_state"), described.pop("breaker")
    if described.get("updated_at"):
        described["updated_at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(described["updated_at"]))
    for name, value in described.items():
        click.echo(f"{name}: {value}")
    if sf:
        click.echo("salesforce:")
        for name, value in sf.items():
            click.echo(f"  {name}: {', '.join(value) if isinstance(value, list) else value}")
    else:
        click.echo("salesforce: not connected")
    click.echo(f"connection state: {json.dumps(connection) if connection else 'not tried yet'}")
    click.echo(f"breaker: {json.dumps(breaker) if breaker else 'closed'}")


# --- test -------------------------------------------------------------------------------

def _api_usage(gateway) -> tuple[int, int] | None:
    limits = gateway.limits()
    daily = (limits or {}).get("DailyApiRequests") or {}
    if "Max" not in daily:
        return None
    return int(daily["Max"]) - int(daily.get("Remaining", daily["Max"])), int(daily["Max"])


@workspaces.command("test")
@click.argument("ws")
def test(ws: str) -> None:
    """Sign in, read the describes, validate the mappings, read API usage; say what works. Exit 1 on a failure."""
    registry = open_registry()
    config = registry.get(ws)
    if config.salesforce is None:
        raise Failure(f"workspace {ws} is not connected to an org (add `salesforce:` and apply)", exits.DATA)
    failed = False

    def say(ok: bool, what: str) -> None:
        nonlocal failed
        failed = failed or not ok
        click.echo(f"{'ok  ' if ok else 'FAIL'} {what}")

    try:
        # a person asked: the login is made even when refused ones have stopped the workers' logins
        gateway, resumed = operator_login(ConnectionState(registry.redis), ws, config.salesforce, timeout=30.0,
                                          hosts=registry.hosts)
    except SalesforceError as exc:
        say(False, f"sign in ({config.salesforce.auth}): {exc}")
        sys.exit(exits.UNAVAILABLE if exc.code in ("CONNECTION_ERROR", "TIMEOUT") else exits.FAILED)
    say(True, f"sign in ({config.salesforce.auth})")
    if resumed:
        click.echo("     the workers' logins, stopped after refused ones, start again; parked events are released")
    try:
        errors, warnings = errors_and_warnings(validate_mappings(mappings_of(config), gateway.describe))
        say(not errors, f"mappings (version {config.mappings_version or 'defaults'}) against the describe: "
                        f"{len(errors)} error(s), {len(warnings)} warning(s)")
        for problem in errors + warnings:
            click.echo(f"     {'error' if problem in errors else 'warning'}: {problem}")
    except SalesforceError as exc:
        say(False, f"read the describe: {exc}")
    try:
        usage = _api_usage(gateway)
        if usage is None:
            say(False, "API usage: the org did not report DailyApiRequests")
        else:
            share = usage[0] / usage[1] if usage[1] else 1.0
            say(share < config.api_usage_ceiling,
                f"API usage: {usage[0]} of {usage[1]} daily requests ({share:.0%}; ceiling "
                f"{config.api_usage_ceiling:.0%})")
    except SalesforceError as exc:
        say(False, f"read API usage: {exc}")
    sys.exit(exits.FAILED if failed else exits.OK)


# --- changing ---------------------------------------------------------------------------

@workspaces.command("disable")
@click.argument("ws")
def disable(ws: str) -> None:
    """Stop writing WS's events; they wait parked (nothing is lost) until `enable`."""
    open_registry().set_enabled(ws, False)
    click.echo(f"workspace {ws} disabled: its events wait parked until `sfsync workspaces enable {ws}`")


@workspaces.command("enable")
@click.argument("ws")
def enable(ws: str) -> None:
    """Write WS's events again; those parked while it was disabled go out at beat's next release."""
    registry = open_registry()
    parked = ParkingLot(registry.redis).count(ws)
    registry.set_enabled(ws, True)  # makes them due at once
    click.echo(f"workspace {ws} enabled" + (f"; {parked} parked event(s) are released within seconds by "
                                            "`sfsync beat`" if parked else ""))


@workspaces.command("remove")
@click.argument("ws")
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
def remove(ws: str, yes: bool) -> None:
    """Delete WS from the registry with ALL of its data (queued and parked events, dead letters, mappings)."""
    registry = open_registry()
    registry.get(ws, secrets=False)  # WorkspaceNotFound before asking
    if not yes:
        click.confirm(f"Delete workspace {ws} and all of its data (events waiting, dead letters, mapping "
                      "history)? This cannot be undone", abort=True)
    deleted = registry.remove(ws)
    parts = ", ".join(f"{count} {kind}" for kind, count in sorted(deleted.items()))
    click.echo(f"workspace {ws} removed; deleted: {parts}")


@workspaces.command("rotate-keys")
def rotate_keys() -> None:
    """Seal every stored credential again with the first key of SFSYNC_SECRET_KEYS."""
    count = open_registry().rotate_keys()
    click.echo(f"re-sealed the credentials of {count} workspace(s) with the first key of SFSYNC_SECRET_KEYS; "
               "the other keys can now be removed from it")


@workspaces.command("new-key")
def new_key_() -> None:
    """Print a fresh key for SFSYNC_SECRET_KEYS (put it first to encrypt with it)."""
    click.echo(new_key())


@workspaces.command("new-emitter-key")
def new_emitter_key_() -> None:
    """Print a fresh emitter key: put it in a workspace's emitter_keys_file, and give it to its emitters."""
    click.echo(new_signing_key())

"""`sfsync mappings`: check mappings against an org, keep each workspace's versions, list sequence status values."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import click
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from schemas.events import SEQUENCE_STATUSES
from schemas.mappings import MappingConfig
from schemas.settings import SettingsError, load_settings
from workers.cli import exits, summaries
from workers.cli.exits import Failure
from workers.cli.hosts import salesforce_target
from workers.cli.registry_access import UNREACHABLE_CODES, author, check_against_org, open_registry
from workers.runtime import mappings_of
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway
from workers.sync.mappings import (
    MappingConfigError,
    MappingProblem,
    load_mappings,
    mappings_from_data,
    validate_mappings,
)
from workspaces.registry import MappingVersions

#: exit codes, as every sfsync command: 0 clean, 1 the mappings or the configuration have problems,
#: 2 Salesforce could not be reached to check them
#: mappings that cannot work, or a file that does not validate (exits.DATA)
EXIT_PROBLEMS = exits.DATA
#: Salesforce could not be asked (exits.UNAVAILABLE)
EXIT_CANNOT_CHECK = exits.UNAVAILABLE


@click.group("mappings", cls=summaries.Group)
def mappings() -> None:
    """Field mappings: validate them against Salesforce, a workspace's versions (set, show, history, rollback)."""


def _summary(config: MappingConfig) -> dict[str, int]:
    return {"contact": len(config.contact.fields), "task": len(config.task.fields),
            "email_message": len(config.email_message.fields),
            "alternate_email_fields": len(config.contact.alternate_email_fields)}


def _print_problems(console: Console, problems: list[MappingProblem]) -> None:
    table = Table(title="Mapping problems", show_lines=True)
    table.add_column("field", no_wrap=True)  # names stay whole so they can be searched for
    table.add_column("source", no_wrap=True)
    table.add_column("problem (and what to do)", ratio=1, overflow="fold")
    for p in problems:
        style = "red" if p.severity == "error" else "yellow"
        label = "" if p.severity == "error" else "warning: "
        hint = f"\n[dim]→ {escape(p.hint)}[/dim]" if p.hint else ""
        table.add_row(f"[{style}]{escape(p.object)}.{escape(p.field)}[/{style}]", escape(p.source or ""),
                      f"{label}{escape(p.reason)}{hint}")
    console.print(table)


@mappings.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False)
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Mapping file to check (default: SFSYNC_MAPPINGS, else the built-in defaults).")
@click.option("--workspace", "workspace", default=None,
              help="Check against this registered workspace's org (its current mappings when no FILE).")
@click.option("--offline", is_flag=True, help="Only check the file itself; don't ask Salesforce.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(file: Path | None, file_: Path | None, workspace: str | None, offline: bool, as_json: bool) -> None:
    """Check the mappings against the org's describe; exit 65 when any mapping can't work."""
    console = Console(soft_wrap=True)
    file_ = file or file_
    if workspace is not None:
        _validate_workspace(workspace, file_, offline, as_json, console)
    try:
        settings = load_settings()
    except SettingsError as exc:
        _fail(as_json, console, str(exc), exits.CONFIG)
    path = file_ or settings.mappings
    source = str(path) if path else "built-in defaults"
    try:
        config = load_mappings(path)
    except MappingConfigError as exc:
        _fail(as_json, console, str(exc), EXIT_PROBLEMS, file=source, details=exc.problems)
    problems: list[MappingProblem] = []
    if not offline:
        try:
            gateway = SalesforceGateway.from_settings(settings)
            problems = validate_mappings(config, gateway.describe)
        except SettingsError as exc:
            _fail(as_json, console, str(exc), exits.CONFIG, file=source)
        except SalesforceError as exc:
            unreachable = exc.code in ("CONNECTION_ERROR", "TIMEOUT")
            _fail(as_json, console, f"cannot read the describe of {salesforce_target(settings)}: {exc}",
                  EXIT_CANNOT_CHECK if unreachable else EXIT_PROBLEMS, file=source)
    _report(config, source, problems, offline, as_json, console)


def _report(config: MappingConfig, source: str, problems: list[MappingProblem], offline: bool, as_json: bool,
            console: Console) -> None:
    """Print the verdict on `config` and exit: EXIT_PROBLEMS when any mapping can't work."""
    errors = [p for p in problems if p.severity == "error"]
    if as_json:
        click.echo(json.dumps({"ok": not errors, "file": source, "checked_against_salesforce": not offline,
                               "mappings": _summary(config),
                               "problems": [p.as_dict() for p in problems]}, indent=2))
    else:
        if problems:
            _print_problems(console, problems)
        counts = _summary(config)
        verdict = "[red]not usable[/red]" if errors else "[green]OK[/green]"
        console.print(f"{escape(source)}: {verdict} — {counts['contact']} contact, {counts['task']} task, "
                      f"{counts['email_message']} email message mapping(s), "
                      f"{counts['alternate_email_fields']} alternate email field(s); "
                      f"{len(errors)} error(s), {len(problems) - len(errors)} warning(s)"
                      + (" (file only, Salesforce not asked)" if offline else ""))
    sys.exit(EXIT_PROBLEMS if errors else 0)


def _validate_workspace(ws: str, path: Path | None, offline: bool, as_json: bool, console: Console) -> None:
    """`validate --workspace WS [FILE]`: FILE, or WS's current mappings, against WS's org."""
    registry = open_registry()
    config = registry.get(ws, secrets=not offline)
    source = str(path) if path else f"workspace {ws} mappings" + (
        f" version {config.mappings_version}" if config.mappings_version else " (built-in defaults)")
    try:
        mapping_config = load_mappings(path) if path else mappings_of(config)
    except MappingConfigError as exc:
        _fail(as_json, console, str(exc), EXIT_PROBLEMS, file=source, details=exc.problems)
    if offline:
        _report(mapping_config, source, [], True, as_json, console)
    result = check_against_org(config.salesforce, mapping_config, registry.hosts)
    if result.unreachable:
        _fail(as_json, console, f"cannot check against the org of workspace {ws}: {result.unreachable}",
              EXIT_CANNOT_CHECK if result.code in UNREACHABLE_CODES else EXIT_PROBLEMS, file=source)
    _report(mapping_config, source, result.errors + result.warnings, False, as_json, console)


def _fail(as_json: bool, console: Console, message: str, code: int, file: str | None = None,
          details: list[str] | None = None) -> None:
    if as_json:
        click.echo(json.dumps({"ok": False, "file": file, "error": message, "errors": details or [message]},
                              indent=2))
    else:
        console.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    sys.exit(code)


@mappings.command("picklist-values")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def picklist_values(as_json: bool) -> None:
    """Unify's sequence status values, one per line, to create the picklist in Salesforce."""
    if as_json:
        click.echo(json.dumps(list(SEQUENCE_STATUSES)))
    else:
        click.echo("\n".join(SEQUENCE_STATUSES))


# --- a registered workspace's mappings ----------------------------------------------------

def _save_checked(ws: str, config: MappingConfig, no_check: bool, console: Console, *, rollback_to: int | None = None,
                  note: str = "") -> None:
    """Check `config` against WS's org, then save it as WS's newest mappings version (or refuse and exit)."""
    registry = open_registry()
    workspace = registry.get(ws)
    result = check_against_org(workspace.salesforce, config, registry.hosts)
    if result.errors:
        _print_problems(console, result.errors + result.warnings)
        _fail(False, console, f"{len(result.errors)} mapping(s) do not fit the org of workspace {ws}; nothing "
                              "was saved", EXIT_PROBLEMS)
    if result.unreachable:
        if not no_check:
            _fail(False, console, f"cannot check the mappings against the org of workspace {ws} "
                                  f"({result.unreachable}); nothing was saved (--no-check saves them unchecked)",
                  EXIT_CANNOT_CHECK if result.code in UNREACHABLE_CODES else EXIT_PROBLEMS)
        click.echo(f"Warning: saved without checking them against the org of workspace {ws} "
                   f"({result.unreachable}); run `sfsync mappings validate --workspace {ws}` once it answers",
                   err=True)
    for problem in result.warnings:
        click.echo(f"Warning: {problem} (this mapping is left out)", err=True)
    versions = MappingVersions(registry.redis)
    saved: int | None
    if rollback_to is not None:
        saved = versions.rollback(ws, rollback_to, author=author())
        click.echo(f"workspace {ws}: mappings version {rollback_to} is current again, as version {saved}")
        return
    saved = versions.set(ws, config.model_dump(mode="json", exclude_defaults=True), author=author(), note=note)
    if saved is None:
        click.echo(f"workspace {ws}: these mappings are already the current version; nothing saved")
    else:
        click.echo(f"workspace {ws}: mappings saved as version {saved}")


@mappings.command("set")
@click.argument("ws")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--note", default="", help="Why the mappings changed (kept in the history).")
@click.option("--no-check", is_flag=True, help="Save even if the org cannot be reached to check them.")
def set_(ws: str, file: Path, note: str, no_check: bool) -> None:
    """Check FILE against WS's org and save it as WS's new mappings version."""
    console = Console(soft_wrap=True)
    try:
        config = load_mappings(file)
    except MappingConfigError as exc:
        _fail(False, console, str(exc), EXIT_PROBLEMS)
    _save_checked(ws, config, no_check, console, note=note)


def _version_record(ws: str, version: int | None) -> dict:
    registry = open_registry()
    registry.get(ws, secrets=False)  # WorkspaceNotFound
    versions = MappingVersions(registry.redis)
    if version is None:
        version = versions.current(ws)[0]
        if version is None:
            raise Failure(f"workspace {ws} has no mappings saved: the built-in defaults apply "
                          f"(save some with `sfsync mappings set {ws} FILE`)", exits.DATA)
    record = versions.get(ws, version)
    if record is None:
        raise Failure(f"workspace {ws} has no mappings version {version} "
                      f"(see `sfsync mappings history {ws}`)", exits.DATA)
    return record


@mappings.command("show")
@click.argument("ws")
@click.option("--version", "version", type=int, default=None, help="An earlier version (default: the current).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON with the version's author and time.")
def show(ws: str, version: int | None, as_json: bool) -> None:
    """WS's mappings as YAML (a mappings file: save it, edit it, `set` it again)."""
    record = _version_record(ws, version)
    if as_json:
        click.echo(json.dumps({"workspace": ws, **record}, indent=2))
        return
    click.echo(f"# workspace {ws}, mappings version {record['version']}, saved {_when(record['saved_at'])} "
               f"by {record['author']}")
    click.echo(yaml.safe_dump(record["mappings"], sort_keys=False, allow_unicode=True).rstrip())


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@mappings.command("history")
@click.argument("ws")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (newest first).")
def history(ws: str, as_json: bool) -> None:
    """WS's mapping versions, newest first: version, saved at, author, note."""
    registry = open_registry()
    registry.get(ws, secrets=False)
    versions = MappingVersions(registry.redis)
    current = versions.current(ws)[0]
    records = [{k: v for k, v in r.items() if k != "mappings"} | {"current": r["version"] == current}
               for r in versions.history(ws)]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo(f"workspace {ws} has no mappings saved: the built-in defaults apply")
        return
    table = Table(title=f"Mappings of {escape(ws)}")
    for column in ("version", "saved at", "author", "note"):
        table.add_column(column)
    for r in records:
        table.add_row(f"{r['version']}{' (current)' if r['current'] else ''}", _when(r["saved_at"]),
                      escape(r["author"]), escape(r["note"]))
    Console(soft_wrap=True).print(table)


@mappings.command("rollback")
@click.argument("ws")
@click.argument("version", type=int)
@click.option("--no-check", is_flag=True, help="Roll back even if the org cannot be reached to check them.")
def rollback(ws: str, version: int, no_check: bool) -> None:
    """Make an earlier mappings VERSION of WS current again (checked against the org first)."""
    record = _version_record(ws, version)
    config = mappings_from_data(record["mappings"], f"workspace {ws} mappings version {version}")
    _save_checked(ws, config, no_check, Console(soft_wrap=True), rollback_to=version)

"""`sfsync mappings`: check the mapping file against the org, and list Unify's sequence status values."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from schemas.events import SEQUENCE_STATUSES
from schemas.mappings import MappingConfig
from schemas.settings import SettingsError, load_settings
from workers.salesforce.errors import SalesforceError
from workers.sync.mappings import MappingConfigError, MappingProblem, load_mappings, validate_mappings

#: exit codes, as every sfsync command: 0 clean, 1 the mappings or the configuration have problems,
#: 2 Salesforce could not be reached to check them
EXIT_PROBLEMS = 1
EXIT_CANNOT_CHECK = 2


@click.group("mappings")
def mappings() -> None:
    """Field mappings: validate them against Salesforce, list sequence status values."""


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
@click.option("--file", "file_", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Mapping file to check (default: SFSYNC_MAPPINGS, else the built-in defaults).")
@click.option("--offline", is_flag=True, help="Only check the file itself; don't ask Salesforce.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(file_: Path | None, offline: bool, as_json: bool) -> None:
    """Check the mappings against the org's describe; exit 1 when any mapping can't work."""
    console = Console(soft_wrap=True)
    try:
        settings = load_settings()
    except SettingsError as exc:
        _fail(as_json, console, str(exc), EXIT_PROBLEMS)
    path = file_ or settings.mappings
    source = str(path) if path else "built-in defaults"
    try:
        config = load_mappings(path)
    except MappingConfigError as exc:
        _fail(as_json, console, str(exc), EXIT_PROBLEMS, file=source, details=exc.problems)
    problems: list[MappingProblem] = []
    if not offline:
        try:
            from workers.salesforce.gateway import SalesforceGateway

            gateway = SalesforceGateway.from_settings(settings)
            problems = validate_mappings(config, gateway.describe)
        except SettingsError as exc:
            _fail(as_json, console, str(exc), EXIT_PROBLEMS, file=source)
        except SalesforceError as exc:
            from workers.cli import salesforce_target

            unreachable = exc.code in ("CONNECTION_ERROR", "TIMEOUT")
            _fail(as_json, console, f"cannot read the describe of {salesforce_target(settings)}: {exc}",
                  EXIT_CANNOT_CHECK if unreachable else EXIT_PROBLEMS, file=source)
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

"""`sfsync web`: run the support console, and manage its local users file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from schemas.settings import SettingsError, load_settings
from workers.cli import exits, summaries
from workers.cli.exits import Failure


@click.group(name="web", invoke_without_command=True, cls=summaries.Group)
@click.option("--host", default=None, help="Address to bind (default SFSYNC_WEB_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default SFSYNC_WEB_PORT, 8088).")
@click.pass_context
def web(ctx, host, port) -> None:
    """Run the support console (overview, dead letters and replay, mappings, connections, audit); see docs/console.md."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        # deferred: the web extra's starlette, jinja2, uvicorn and argon2; the message below names it
        from workers.web.app import ConsoleConfig, create_app, serve_console
        from workers.web.users import UsersFileError
    except ImportError as exc:
        raise Failure(f"the console needs {exc.name}: pip install 'sfsync[web]'", exits.CONFIG) from None

    try:
        overrides = {k: v for k, v in (("web_host", host), ("web_port", port)) if v is not None}
        settings = load_settings(**overrides)
        config = ConsoleConfig.from_settings(settings)
    except (SettingsError, UsersFileError) as exc:
        raise Failure(str(exc), exits.CONFIG) from None
    click.echo(f"sfsync console on http://{settings.web_host}:{settings.web_port}/ "
               f"(cookies {'Secure, behind TLS' if config.secure_cookies else 'for plain HTTP on loopback'})")
    serve_console(create_app(config), settings.web_host, settings.web_port, settings.web_trusted_proxies)


def _users_file(path: str | None) -> Path:
    if path:
        return Path(path)
    try:
        configured = load_settings().web_users_file
    except SettingsError as exc:
        raise Failure(str(exc), exits.CONFIG) from None
    if configured is None:
        raise click.UsageError("say which users file: --users-file PATH or SFSYNC_WEB_USERS_FILE")
    return configured


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@web.command(name="add-user")
@click.argument("username")
@click.option("--role", type=click.Choice(["viewer", "support", "admin"]), required=True,
              help="viewer reads; support also replays; admin also purges.")
@click.option("--users-file", default=None, help="The users file (default SFSYNC_WEB_USERS_FILE); created if missing.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def add_user(username, role, users_file, password_stdin) -> None:
    """Add a console user (or replace one's password and role) in the users file."""
    # deferred: the web extra's argon2; the sfsync command runs without it
    from workers.web.users import UsersFileError, save_user

    path = _users_file(users_file)
    password = _read_password(password_stdin)
    try:
        new = save_user(path, username, password, role)
    except (UsersFileError, ValueError) as exc:
        raise Failure(str(exc), exits.DATA) from None
    click.echo(f"{'added' if new else 'updated'} {username} ({role}) in {path}")


@web.command(name="hash-password")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
def hash_password_command(password_stdin) -> None:
    """Print an argon2 hash of a password, for a users file kept elsewhere (e.g. a Kubernetes secret)."""
    # deferred: the web extra's argon2; the sfsync command runs without it
    from workers.web.users import hash_password

    try:
        click.echo(hash_password(_read_password(password_stdin)))
    except ValueError as exc:
        raise Failure(str(exc), exits.DATA) from None

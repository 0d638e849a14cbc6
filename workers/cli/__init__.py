"""The `sfsync` command line: worker, beat, publish, dlq, late, mappings, workspaces, status, emulator, demo, web."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import click
import kombu.exceptions
import redis

from events.publish import ReplicaWaitError, publish_many
from events.redis_conn import MissingExtra, connect
from events.topology import ALL_QUEUES
from schemas.events import InvalidEvent, parse_event
from schemas.settings import SettingsError, load_settings
from schemas.workspace import parse_emitter_keys
from workers import observability
from workers.cli import exits, summaries
from workers.cli.exits import Failure
from workers.cli.hosts import redis_target, salesforce_target
from workers.local.demo import run_demo
from workers.observability.redact import scrub_text
from workers.salesforce.errors import SalesforceError
from workers.startup import wait_for_salesforce
from workers.status import collect_status, render_status
from workspaces.registry import ENTRIES, RegistryError
from workspaces.secrets import SecretKeyError


def _settings():
    try:
        return load_settings()
    except SettingsError as exc:
        raise Failure(str(exc), exits.CONFIG) from None


def _cause(exc: BaseException) -> str:
    # the first line only: a wrapped error's text can run over many lines
    text = (str(exc).strip().splitlines() or [""])[0]
    return scrub_text(f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__)


def explain_failure(exc: BaseException) -> tuple[str, int] | None:
    """One line naming the cause and the host, and the exit code; None for an unexpected error."""
    if isinstance(exc, redis.AuthenticationError):  # a ConnectionError too, but retrying cannot help
        return f"Redis at {redis_target()} refused the credentials: {_cause(exc)}", exits.CONFIG
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, kombu.exceptions.OperationalError,
                        ConnectionError)):
        return f"Redis unreachable at {redis_target()}: {_cause(exc)}", exits.UNAVAILABLE
    if isinstance(exc, SalesforceError) and exc.code in ("CONNECTION_ERROR", "TIMEOUT"):
        try:
            host = salesforce_target(load_settings())
        except SettingsError:
            host = "Salesforce"
        return f"Salesforce unreachable at {host}: {_cause(exc)}", exits.UNAVAILABLE
    # the message says what to do; nothing was changed
    if isinstance(exc, SecretKeyError):
        return str(exc), exits.CONFIG
    if isinstance(exc, RegistryError):
        return str(exc), exits.DATA
    if isinstance(exc, redis.RedisError):  # out of memory, a read-only replica, ...: may pass when retried
        return f"Redis at {redis_target()} refused the command: {_cause(exc)}", exits.TEMP_FAIL
    return None


class _Commands(summaries.Group):
    """The sfsync group: every failure ends a command with one line and an exit code of the table in
    workers/cli/exits.py (README, "Exit codes"); an unexpected one with its traceback and SOFTWARE."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:  # `sfsync --bogus`: parsed before any command runs
            exc.exit_code = exits.usage_code(exc)
            raise

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a subcommand's arguments (click's own code 2 is not ours)
            exc.exit_code = exits.usage_code(exc)  # type: ignore[misc]  # click reads the instance's own
            raise
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI's last resort: explained, or shown with its traceback
            explained = explain_failure(exc)
            if explained is None:
                traceback.print_exc()
                click.echo(f"Error: unexpected {type(exc).__name__} (a bug in sfsync; the traceback above "
                           "helps to fix it)", err=True)
                ctx.exit(exits.SOFTWARE)
            message, code = explained
            click.echo(f"Error: {message}", err=True)
            ctx.exit(code)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sfsync")
def main() -> None:
    """sfsync writes Unify email activity into Salesforce and brings contact changes back."""


# --- running ----------------------------------------------------------------------------

@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=None,
              help="Worker processes, 1 or more (default SFSYNC_WORKER_CONCURRENCY).")
@click.option("--queues", "-Q", default=None, help="Comma-separated queues (default: all sfsync queues).")
@click.option("--loglevel", "-l", default=None, help="Log level (default SFSYNC_LOG_LEVEL).")
@click.option("--skip-mapping-check", is_flag=True, help="Start even if the mapping check against Salesforce fails.")
@click.pass_context
def worker(ctx, concurrency, queues, loglevel, skip_mapping_check) -> None:
    """Run a Celery worker consuming the event queues (extra arguments go to `celery worker`)."""
    settings = _settings()
    env_workspace = _env_or_registry(settings)
    # deferred: importing workers.app builds the Celery app from the settings (worker and beat only)
    from workers.app import app

    argv = ["worker", "--queues", queues or ",".join(ALL_QUEUES),
            "--concurrency", str(concurrency or settings.worker_concurrency),
            "--loglevel", (loglevel or settings.log_level).upper(), "--without-gossip", "--without-mingle",
            *ctx.args]
    observability.install(app, settings, "worker")
    if env_workspace and not skip_mapping_check:
        # an outage at start-up is waited out (alive, not ready); a permanent problem stops here
        observability.start_servers()
        state = observability.health_state()
        problem = wait_for_salesforce(settings, on_wait=state.wait_for if state else (lambda reason: None))
        if problem:
            raise Failure(problem, exits.DATA)
    app.started_by_sfsync = True  # type: ignore[attr-defined]  # sfsync's own attribute on its app
    app.worker_main(argv)


def _env_or_registry(settings) -> bool:
    """True when the environment defines the workspace (its mappings are checked at start); else the
    registry must hold at least one workspace. A registered workspace is checked when it is applied,
    and a broken one never stops the fleet serving the others."""
    if settings.salesforce_auth is not None:
        return True

    try:
        registered = connect(settings.redis_url.get_secret_value(), socket_timeout=10).hlen(ENTRIES)
    except Exception:  # noqa: BLE001 - Redis not reachable yet: the worker waits for it like any other start
        registered = 1
    if registered:
        return False
    try:
        settings.require_salesforce()
    except SettingsError as exc:
        raise Failure(f"no workspace to serve: the registry is empty and {exc} (or register "
                      "workspaces with `sfsync workspaces apply FILE`)", exits.CONFIG) from None
    return True


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--loglevel", "-l", default=None, help="Log level (default SFSYNC_LOG_LEVEL).")
@click.pass_context
def beat(ctx, loglevel) -> None:
    """Run Celery beat: the CRM sync cycle and the release of parked work. Run exactly one."""
    settings = _settings()
    # deferred: importing workers.app builds the Celery app from the settings (worker and beat only)
    from workers.app import app

    observability.install(app, settings, "beat")
    app.start(["beat", "--loglevel", (loglevel or settings.log_level).upper(), *ctx.args])


# --- publishing -------------------------------------------------------------------------

@main.command()
@click.argument("source", type=click.File("rb"), default="-")
@click.option("--skip-invalid", is_flag=True, help="Publish the valid lines even when some are invalid.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--signing-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Sign every message with the first key in this file (the events' workspace's emitter key).")
def publish(source, skip_invalid, as_json, signing_key_file) -> None:
    """Validate events from SOURCE (JSON lines, - for stdin) and queue them.

    Every invalid line is reported with its line number and reason; nothing is published
    unless all lines are valid or --skip-invalid is given.
    """
    signing_key = None
    if signing_key_file is not None:
        try:
            signing_key = parse_emitter_keys(signing_key_file.read_text(encoding="utf-8"))[0]
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise click.ClickException(f"{signing_key_file}: {getattr(exc, 'strerror', None) or exc}") from None
    events, problems = [], []
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            events.append(parse_event(line))
        except InvalidEvent as exc:
            problems.append((number, exc))
    for number, problem in problems:
        click.echo(f"line {number}: {problem.code}: {problem.reason}", err=True)

    def result(published: int) -> None:
        if as_json:
            click.echo(json.dumps({"published": published, "invalid": len(problems),
                                   "invalid_lines": [n for n, _ in problems],
                                   "errors": [{"line": n, "code": e.code, "reason": e.reason} for n, e in problems]}))

    if problems and not skip_invalid:
        result(0)
        click.echo(f"{len(problems)} invalid line(s); nothing published (use --skip-invalid to publish the "
                   f"{len(events)} valid one(s))", err=True)
        sys.exit(exits.DATA)
    settings = _settings()
    try:
        published, _ = publish_many(events, broker_url=settings.redis_url.get_secret_value(),
                                    replicas=settings.publish_replicas, signing_key=signing_key)
    except ReplicaWaitError as exc:
        click.echo(f"not confirmed by a replica: {exc}", err=True)
        sys.exit(exits.TEMP_FAIL)
    result(len(published))
    if not as_json:
        click.echo(f"published {len(published)} event(s)" + (f", skipped {len(problems)} invalid" if problems else ""))
    if problems and not published:
        sys.exit(exits.DATA)


# --- tools ------------------------------------------------------------------------------

@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; another than loopback needs --allow-non-loopback.")
@click.option("--allow-non-loopback", is_flag=True,
              help="Listen on a non-loopback --host (0.0.0.0 inside a container): the admin API has no "
                   "authentication, so only on a network nothing else shares.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on.")
@click.option("--data", "data_file", default=None, type=click.Path(dir_okay=False),
              help="Keep the emulator's records in this file across restarts.")
def emulator(host, allow_non_loopback, port, data_file) -> None:
    """Run the local Salesforce emulator (for the demo, tests and docker-compose)."""
    try:
        # deferred: the emulator extra's starlette and uvicorn; the message below names it
        from salesforce_emulator.server import is_loopback, serve
    except ImportError as exc:
        raise Failure(f"the emulator needs {exc.name}: pip install 'sfsync[emulator]'", exits.CONFIG) from None
    if not is_loopback(host) and not allow_non_loopback:
        raise click.BadParameter(f"{host} is not loopback; the emulator's admin API has no authentication, so "
                                 "listening there needs --allow-non-loopback", param_hint="--host")
    serve(host=host, port=port, data_file=data_file, allow_non_loopback=allow_non_loopback)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def status(as_json) -> None:
    """Queue depths, dead letters, parked work, API usage and the last CRM cycle."""
    report = collect_status(_settings())
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        render_status(report)
    if "error" in report:  # scripts and probes must see a broken deployment, not just read it
        sys.exit(exits.UNAVAILABLE)


@main.command()
@click.option("--serve", is_flag=True,
              help="Keep the demo running with the web console signed in as a demo admin, until Ctrl-C.")
@click.option("--port", type=click.IntRange(1, 65535), default=8088, show_default=True,
              help="The console's port with --serve.")
def demo(serve, port) -> None:
    """Run the whole pipeline locally: Redis, the emulator, a real worker; print what landed."""
    try:
        code = run_demo(serve_port=port if serve else None)
    except MissingExtra as exc:
        raise Failure(str(exc), exits.CONFIG) from None
    sys.exit(code)


from workers.cli.dlq import dlq  # noqa: E402 - subcommand groups live in their own modules
from workers.cli.late import late  # noqa: E402
from workers.cli.mappings import mappings  # noqa: E402
from workers.cli.schema import schema  # noqa: E402
from workers.cli.web import web  # noqa: E402
from workers.cli.workspaces import workspaces  # noqa: E402

main.add_command(workspaces)
main.add_command(mappings)
main.add_command(dlq)
main.add_command(late)
main.add_command(schema)
main.add_command(web)

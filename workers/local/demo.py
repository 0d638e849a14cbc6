"""`sfsync demo`: the whole pipeline on one machine — Redis, the emulator, a real worker — and what landed."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from events.outcome_log import OutcomeLog
from events.publish import publish_many
from events.redis_conn import MissingExtra, connect, start_embedded
from schemas.salesforce_hosts import HostPolicy
from schemas.settings import load_settings
from schemas.workspace import SalesforceConnection, WorkspaceSpec
from workers.local.stack import local_hosts, stack_env, start_worker
from workspaces.registry import Registry
from workspaces.secrets import Keyring, new_key

#: seconds the demo waits for the worker to settle every event
DEMO_TIMEOUT = 45.0

DEMO_MAPPINGS = """\
contact:
  fields:
    - {source: first_name, target: FirstName}
    - {source: last_name, target: LastName}
    - {source: title, target: Title}
    - {source: country, target: MailingCountryCode}
    - {source: sequence_status, target: Unify_Sequence_Status__c, policy: always}
  alternate_email_fields: [Secondary_Email__c]
"""


def _event(kind: str, *, to: str, name: str, subject: str, body: str, origin: str = "automated",
           person_emails: list[str] | None = None, play: dict | None = None, workspace: str,
           person: dict | None = None, minutes_ago: int = 5) -> dict[str, Any]:
    sent = datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)
    rep = {"email": "riley@seller.example", "name": "Riley Rep"}
    prospect = {"email": to, "name": name}
    reply = kind == "email.replied"
    return {
        "id": f"evt_demo_{uuid.uuid4().hex[:12]}", "type": kind, "version": 1, "workspace_id": workspace,
        "occurred_at": sent.isoformat(),
        "data": {
            "message_id": f"<{uuid.uuid4().hex[:10]}@mail.unify.example>", "in_reply_to": None,
            "thread_id": "thr_demo", "origin": "manual" if reply else origin,
            "from": prospect if reply else rep, "to": [rep] if reply else [prospect], "cc": [], "bcc": [],
            "subject": subject, "body_html": f"<p>{body}</p>", "body_text": None,
            "template": {"subject": subject, "body": "Hi {{person.firstName}}, ..."},
            "sent_at": sent.isoformat(), "rep": {"email": "riley@seller.example", "salesforce_user_id": None},
            "person": {"emails": person_emails or [to], **(person or {})},
            "sequence": {"id": "seq_1", "name": "Q4 outbound", "step": 2, "status": "In Progress - Started"},
            "play": play,
        },
    }


def demo_events(workspace: str) -> list[tuple[str, dict[str, Any]]]:
    play = {"id": "play_7", "name": "Inbound hot leads", "sync_to_salesforce": True}
    return [
        ("automated email to a known contact",
         _event("email.sent", to="jane.doe@acme.example", name="Jane Doe", subject="Quick question, Jane",
                body="Hi Jane, do you have 15 minutes this week?", workspace=workspace)),
        ("manual email from the rep",
         _event("email.sent", to="jane.doe@acme.example", name="Jane Doe", subject="Notes from our call",
                body="Thanks for the time today, Jane.", origin="manual", workspace=workspace, minutes_ago=4)),
        ("reply from the prospect",
         _event("email.replied", to="jane.doe@acme.example", name="Jane Doe", subject="Re: Quick question, Jane",
                body="Sure, Thursday works.", workspace=workspace, minutes_ago=3)),
        ("email to a secondary address",
         _event("email.sent", to="m.okafor@home.example", name="Mia Okafor", subject="Following up, Mia",
                body="Hi Mia, circling back.", workspace=workspace,
                person_emails=["mia.okafor@globex.example", "m.okafor@home.example"], minutes_ago=2)),
        ("email to an unknown person",
         _event("email.sent", to="stranger@nowhere.example", name="Sam Stranger", subject="Hello Sam",
                body="Hi Sam.", workspace=workspace, minutes_ago=2)),
        ("new person via a Sync to Salesforce play",
         _event("email.sent", to="lee.chen@initech.example", name="Lee Chen", subject="Welcome, Lee",
                body="Hi Lee, thanks for signing up.", workspace=workspace, play=play, minutes_ago=1,
                person={"first_name": "Lee", "last_name": "Chen", "title": "CTO", "country": "Germany"})),
    ]


def _emulator_server_class():
    try:
        # deferred: the demo extra's starlette and uvicorn; MissingExtra names it
        from salesforce_emulator import EmulatorServer
    except ImportError as exc:
        raise MissingExtra(f"the demo needs the emulator's web stack ({exc.name}): "
                           "pip install 'sfsync[demo]'") from None
    return EmulatorServer


def run_demo(serve_port: int | None = None) -> int:
    """Run the demo on a Redis and an org of its own; SFSYNC_REDIS_URL is never read.

    With `serve_port`, the stack keeps running afterwards with the web console on that port, signed
    in as a demo admin through a one-time link, until Ctrl-C.

    The demo starts a worker on every queue and flushes nothing it did not create: pointed at a
    real Redis, that worker would consume (and dead-letter) real events of other workspaces.
    """
    emulator_server = _emulator_server_class()
    console = Console() if Console().is_terminal else Console(width=140)
    workspace = "ws_demo"
    embedded = start_embedded(0)
    redis_url = embedded.url
    console.print(f"[bold]Redis[/]: an embedded server of its own at {redis_url} "
                  "(the demo never uses SFSYNC_REDIS_URL, so it cannot touch real events)")
    worker = None
    try:
        with emulator_server(port=0) as emulator:
            admin = emulator.admin
            console.print(f"[bold]Salesforce emulator[/]: {emulator.url}")
            ids = admin.seed("Contact", [
                {"FirstName": "Jane", "LastName": "Doe", "Email": "Jane.Doe@Acme.example", "Title": "VP Sales"},
                {"FirstName": "Mia", "LastName": "Okafor", "Email": "mia.okafor@globex.example",
                 "Secondary_Email__c": "m.okafor@home.example"},
            ])
            contact_names = {ids[0]: "Jane Doe", ids[1]: "Mia Okafor"}
            secret_keys = new_key()
            register_demo_workspace(redis_url, secret_keys, workspace, emulator)
            env = demo_env(redis_url, secret_keys, workspace, emulator)
            console.print("[bold]Worker[/]: starting a real Celery worker process ...")
            worker = start_worker(env, concurrency=1)
            labelled = demo_events(workspace)
            publish_many([e for _, e in labelled], broker_url=redis_url)
            console.print(f"Published {len(labelled)} events; waiting for the worker ...")
            outcomes = OutcomeLog(connect(redis_url)).wait_final(workspace, {e["id"] for _, e in labelled},
                                                                 DEMO_TIMEOUT)
            for record in admin.records("Contact"):
                contact_names.setdefault(record["Id"], f"{record.get('FirstName') or ''} {record['LastName']}".strip())
            _print_table(console, labelled, outcomes, contact_names)
            calls = admin.state().get("api_calls")
            console.print(f"Salesforce API calls used: [bold]{calls}[/] for {len(labelled)} events.")
            missing = [label for label, e in labelled if e["id"] not in outcomes]
            if missing:
                console.print(f"[red]No outcome for: {', '.join(missing)}[/]")
                console.print(worker.output()[-3000:])
                return 1
            if serve_port is not None:
                serve_demo_console(console, env, emulator, serve_port)
            return 0
    finally:
        if worker is not None:
            worker.terminate(timeout=20)
        embedded.stop()


def register_demo_workspace(redis_url: str, secret_keys: str, workspace: str, emulator) -> None:
    """The demo's workspace in the registry, as a deployment keeps its workspaces: its org (the emulator),
    the demo's field mappings as version 1, and a short linger (the demo's events come all at once)."""
    client = connect(redis_url)
    try:
        Registry(client, Keyring(secret_keys), hosts=HostPolicy.parse(local_hosts(emulator.url))).apply([WorkspaceSpec(
            id=workspace, name="Demo Inc", max_latency_seconds=0.5, mappings=yaml.safe_load(DEMO_MAPPINGS),
            salesforce=SalesforceConnection(instance_url=emulator.url, access_token=emulator.token))],
            author="demo")
    finally:
        client.close()


def demo_env(redis_url: str, secret_keys: str, workspace: str, emulator) -> dict[str, str]:
    """The settings the demo's worker and console share: its Redis, the registry's key, the emulator allowed."""
    env = stack_env(redis_url=redis_url, instance_url=emulator.url, access_token=emulator.token,
                    workspace_id=workspace, flush_interval=0.5, secret_keys=secret_keys,
                    salesforce_allowed_hosts=local_hosts(emulator.url))
    # the workspace and its org come from the registry, as the console shows and edits them
    del env["SFSYNC_SALESFORCE_INSTANCE_URL"], env["SFSYNC_SALESFORCE_ACCESS_TOKEN"]
    return env


#: a workspace registered without an org when the demo serves its console, to connect through OAuth
UNCONNECTED_WORKSPACE = "ws_globex"


def serve_demo_console(console: Console, env: dict[str, str], emulator, port: int) -> None:
    """The web console on the demo's Redis, registry and emulator until Ctrl-C; the printed link signs in
    as the demo admin."""
    try:
        # deferred: --serve alone needs the web extra; MissingExtra names it
        from workers.web.app import ConsoleConfig, create_app, serve_console
    except ImportError as exc:
        raise MissingExtra(f"the console needs {exc.name}: pip install 'sfsync[web]'") from None
    # deferred: the emulator package loads its web stack (the demo extra's)
    from salesforce_emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
    from salesforce_emulator.org import API_USER

    settings = load_settings({k: v for k, v in env.items() if k.startswith("SFSYNC_")}, web_host="127.0.0.1",
                             web_port=port, web_secret_key=secrets.token_urlsafe(32))
    client = connect(env["SFSYNC_REDIS_URL"])
    Registry(client, Keyring(env["SFSYNC_SECRET_KEYS"]),
             hosts=HostPolicy.parse(env["SFSYNC_SALESFORCE_ALLOWED_HOSTS"])).apply(
        [WorkspaceSpec(id=UNCONNECTED_WORKSPACE, name="Globex (not connected yet)")], author="demo")
    client.close()
    token = secrets.token_urlsafe(24)
    app = create_app(ConsoleConfig.from_settings(settings, demo_token=token))
    console.print(f"\n[bold]Console[/]: open http://127.0.0.1:{port}/auth/demo?token={token} "
                  "(signs you in as the demo admin). Ctrl-C stops the demo.", soft_wrap=True)
    console.print(f"To connect {UNCONNECTED_WORKSPACE} to Salesforce (on the emulator's sign-in page: username "
                  f"{API_USER}, any password): login URL {emulator.url}, consumer key {DEFAULT_CLIENT_ID}, "
                  f"consumer secret {DEFAULT_CLIENT_SECRET}.", soft_wrap=True)
    serve_console(app, "127.0.0.1", port)


def _print_table(console: Console, labelled, outcomes, contact_names) -> None:
    table = Table(title="What landed in Salesforce")
    for column in ("event", "outcome", "object", "contact", "subject", "record id"):
        table.add_column(column)
    for label, event in labelled:
        o = outcomes.get(event["id"], {})
        outcome = o.get("outcome", "no outcome")
        if outcome == "skipped_no_contact":
            outcome = "skipped: no contact"
        contact = contact_names.get(o.get("contact_id"), o.get("contact_id") or "-")
        if o.get("contact_created") == "1":
            contact += " (created)"
        table.add_row(label, outcome, o.get("sobject") or "-", contact, event["data"]["subject"],
                      o.get("record_id") or o.get("error_code") or "-")
    console.print(table)

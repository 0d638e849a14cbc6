"""Signed events: a workspace with emitter keys accepts only messages signed with one of them, end to end."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from events.deadletter import DeadLetterFilter, DeadLetterStore
from events.signing import HEADER, INVALID_SIGNATURE, signature
from events.topology import route_for
from events.wire import message_body, queue_item
from schemas.salesforce_hosts import HostPolicy
from schemas.workspace import SalesforceConnection, WorkspaceSpec
from tests.conftest import records_of, wait_until
from tests.factories import email_event
from tests.integration.test_delivery import seed_jane
from workers.cli import main
from workers.local.stack import beat_process, start_worker
from workspaces.registry import Registry
from workspaces.secrets import Keyring, new_key

pytestmark = pytest.mark.integration

SIGNED, OPEN = "ws_signed", "ws_open"
KEY, SECOND_KEY, WRONG_KEY = "k" * 20 + "signing-key-one-0123", "s" * 20 + "signing-key-two-4567", "w" * 43
HOSTS = HostPolicy.parse("127.0.0.1:*")


@pytest.fixture
def signed(stack):
    """Two workspaces on the emulator's org: one signs its events (two keys), one takes them unsigned; a worker."""
    seed_jane(stack.admin)
    keys = new_key()
    connection = SalesforceConnection(instance_url=stack.emulator.url, access_token=stack.emulator.token)
    registry = Registry(stack.redis, Keyring(keys), hosts=HOSTS)
    registry.apply([WorkspaceSpec(id=SIGNED, salesforce=connection, max_latency_seconds=0.3,
                                  emitter_keys=[KEY, SECOND_KEY]),
                    WorkspaceSpec(id=OPEN, salesforce=connection, max_latency_seconds=0.3)], author="test")
    env = stack.env(secret_keys=keys, park_interval=1)
    env.pop("SFSYNC_SALESFORCE_INSTANCE_URL")
    env.pop("SFSYNC_SALESFORCE_ACCESS_TOKEN")
    worker = start_worker(env)
    stack.processes.append(worker)
    stack.signed_env, stack.registry, stack.worker = env, registry, worker
    return stack


def _push(stack, event: dict, *, key: str | None = None, tamper: bool = False) -> None:
    """A message as any Celery client sends it, signed with `key` (over other bytes when `tamper`)."""
    task, queue = route_for(event["type"])
    item = json.loads(queue_item(task, queue, [event], signing_key=key))
    if tamper:
        item["headers"][HEADER] = signature(message_body([{**event, "subject": "other"}]), key)
    stack.redis.lpush(queue, json.dumps(item))


def _letters(stack, code: str) -> set[str]:
    return {r.event_id for r in DeadLetterStore(stack.redis).select(DeadLetterFilter.of(codes=[code]))}


def _written(stack, events: list[dict]) -> bool:
    counts = records_of(stack.admin, "EmailMessage", [e["id"] for e in events])
    return set(counts.values()) == {1}


def test_only_messages_signed_with_one_of_the_workspaces_keys_are_written(signed):
    stack = signed
    good = [email_event(workspace_id=SIGNED) for _ in range(2)]
    by_second_key = email_event(workspace_id=SIGNED)
    unsigned, wrong, tampered = (email_event(workspace_id=SIGNED) for _ in range(3))
    open_unsigned = email_event(workspace_id=OPEN)

    stack.publish(good, signing_key=KEY)
    _push(stack, by_second_key, key=SECOND_KEY)
    _push(stack, unsigned)
    _push(stack, wrong, key=WRONG_KEY)
    _push(stack, tampered, key=KEY, tamper=True)
    stack.publish([open_unsigned])

    stack.wait_outcomes([e["id"] for e in good + [by_second_key]], workspace=SIGNED)
    stack.wait_outcomes([open_unsigned["id"]], workspace=OPEN)
    assert _written(stack, good + [by_second_key, open_unsigned])
    wait_until(lambda: len(_letters(stack, INVALID_SIGNATURE)) == 3, 30, "three refused messages", stack.worker)
    assert _letters(stack, INVALID_SIGNATURE) == {unsigned["id"], wrong["id"], tampered["id"]}
    assert records_of(stack.admin, "EmailMessage", [unsigned["id"], wrong["id"], tampered["id"]]) == \
        {unsigned["id"]: 0, wrong["id"]: 0, tampered["id"]: 0}


def test_sfsync_publish_signs_with_the_key_file(signed, tmp_path):
    stack = signed
    event = email_event(workspace_id=SIGNED)
    events_file, key_file = tmp_path / "events.jsonl", tmp_path / "emitter.key"
    events_file.write_text(json.dumps(event) + "\n")
    key_file.write_text(f"# the emitter key of {SIGNED}\n{SECOND_KEY}\n")

    result = CliRunner().invoke(main, ["publish", "--signing-key-file", str(key_file), str(events_file)],
                                env={k: v for k, v in stack.signed_env.items() if k.startswith("SFSYNC_")})

    assert result.exit_code == 0, result.output
    assert stack.wait_outcomes([event["id"]], workspace=SIGNED)[event["id"]]["outcome"] == "written"


def test_signed_events_that_wait_parked_or_retry_are_signed_again_by_sfsync_and_written(signed):
    stack = signed
    beat = beat_process(stack.signed_env).start()
    stack.processes.append(beat)
    # parked while the workspace is disabled, then released
    stack.registry.set_enabled(SIGNED, False)
    time.sleep(1.5)
    parked = [email_event(workspace_id=SIGNED) for _ in range(2)]
    stack.publish(parked, signing_key=KEY)
    wait_until(lambda: stack.redis.zcard(f"sfsync:{{{SIGNED}}}:parked") == 2, 30, "two parked", stack.worker)
    stack.registry.set_enabled(SIGNED, True)
    # retried: the org answers 503 to the first writes
    stack.admin.add_fault("outage", path="composite", count=2)
    retried = [email_event(workspace_id=SIGNED)]
    stack.publish(retried, signing_key=KEY)

    outcomes = stack.wait_outcomes([e["id"] for e in parked + retried], timeout=90, workspace=SIGNED)

    assert {o["outcome"] for o in outcomes.values()} == {"written"}
    assert _written(stack, parked + retried) and not _letters(stack, INVALID_SIGNATURE)


def test_a_refused_message_replayed_by_support_comes_back_unsigned_and_is_refused_again(signed):
    stack = signed
    event = email_event(workspace_id=SIGNED)
    _push(stack, event)
    wait_until(lambda: _letters(stack, INVALID_SIGNATURE) == {event["id"]}, 30, "refused", stack.worker)

    replayed = CliRunner().invoke(main, ["dlq", "replay", "--code", INVALID_SIGNATURE, "--timeout", "20", "--json"],
                                  env={k: v for k, v in stack.signed_env.items() if k.startswith("SFSYNC_")})

    assert replayed.exit_code in (0, 1), replayed.output
    wait_until(lambda: _letters(stack, INVALID_SIGNATURE) == {event["id"]}, 30, "refused again", stack.worker)
    assert records_of(stack.admin, "EmailMessage", [event["id"]]) == {event["id"]: 0}

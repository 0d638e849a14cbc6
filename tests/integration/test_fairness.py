"""Fair share per workspace with a real worker: a flood of one workspace does not starve another."""

from __future__ import annotations

import time
import uuid

import pytest

from schemas.workspace import SalesforceConnection, WorkspaceSpec
from tests.conftest import records_of, wait_until
from tests.factories import email_event
from tests.integration.test_delivery import seed_jane
from workspaces.registry import Registry
from workspaces.secrets import Keyring, new_key

pytestmark = pytest.mark.integration


@pytest.fixture
def small_org(emulator):
    org_id = f"small-{uuid.uuid4().hex[:8]}"
    credentials = emulator.admin.create_org(org_id)
    admin = emulator.admin.for_org(org_id)
    seed_jane(admin)
    yield credentials, admin
    emulator.admin.delete_org(org_id)


def _register(stack, key: str, credentials: dict, ws: str) -> None:
    connection = SalesforceConnection(login_url=stack.emulator.url, username=credentials["username"],
                                      password=credentials["password"])
    Registry(stack.redis, Keyring(key)).apply([WorkspaceSpec(id=ws, name="Small", salesforce=connection,
                                                             max_latency_seconds=0.3)])


def test_given_one_workspace_flooding_the_queue_when_another_sends_then_its_events_pass_the_flood(stack, small_org):
    credentials, small_admin = small_org
    key = new_key()
    _register(stack, key, credentials, "ws_small")
    seed_jane(stack.admin)
    stack.start_worker(concurrency=1, batch_size=50, secret_keys=key)
    warm = email_event(workspace_id="ws_small")
    stack.publish([warm])  # the small workspace is active, as a steady trickle would be
    stack.wait_outcomes([warm["id"]], workspace="ws_small")

    flood = [email_event() for _ in range(8000)]
    stack.publish(flood)
    time.sleep(1.0)  # the worker is well into the flood
    small = [email_event(workspace_id="ws_small") for _ in range(5)]
    sent_at = time.monotonic()
    stack.publish(small)
    stack.wait_outcomes([e["id"] for e in small], timeout=60, workspace="ws_small")
    waited = time.monotonic() - sent_at

    written_of_flood = sum(records_of(stack.admin, "EmailMessage", [e["id"] for e in flood]).values())
    assert written_of_flood < len(flood), "the flood was already written: the test proves nothing"
    assert set(records_of(small_admin, "EmailMessage", [e["id"] for e in small]).values()) == {1}
    # and the flood itself is written, each event once, from its overflow (counted in the org: the
    # outcome log is capped, so it no longer holds the first of 8,000 outcomes)
    ids = [e["id"] for e in flood]
    wait_until(lambda: min(records_of(stack.admin, "EmailMessage", ids).values()) == 1, timeout=120,
               what="the whole flood written")
    flood_done = time.monotonic() - sent_at
    assert set(records_of(stack.admin, "EmailMessage", ids).values()) == {1}
    # behind a plain queue the small workspace would wait for the whole flood; passing it, it waits
    # only for the worker to read past the flood (a fraction of the time to write it)
    assert waited < 0.5 * flood_done, f"the small workspace waited {waited:.1f}s of the flood's {flood_done:.1f}s"
    wait_until(lambda: not stack.redis.exists("sfsync:{ws_acme}:overflow"), timeout=10, what="overflow drained")

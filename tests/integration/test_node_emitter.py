"""The Node example emitter (celery-node) publishes to a real worker, which writes each of its events once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from events.deadletter import DeadLetterStore
from events.signing import INVALID_SIGNATURE
from schemas.salesforce_hosts import HostPolicy
from schemas.workspace import SalesforceConnection, WorkspaceSpec
from tests.conftest import WORKSPACE, wait_until
from workers.local.stack import start_worker
from workspaces.registry import Registry
from workspaces.secrets import Keyring, new_key

pytestmark = pytest.mark.integration

NODE_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node"
#: seconds `npm ci` may take on a cold cache, and `node emit.js` against a local Redis
NPM_CI_TIMEOUT = 300
EMIT_TIMEOUT = 60


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: the Node emitter test needs Node.js 18+ and npm "
                    f"(install them; this test is part of CI and is never skipped)")
    return path


def _run_logged(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> tuple[str, str]:
    """Run a command with stdout and stderr going to files; fail the test with both on error or timeout."""
    with tempfile.NamedTemporaryFile("w+", prefix="sfsync-node-", suffix=".out") as out, \
            tempfile.NamedTemporaryFile("w+", prefix="sfsync-node-", suffix=".err") as err:
        try:
            proc = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                  timeout=timeout)
            failure = f"exited with {proc.returncode}" if proc.returncode else None
        except subprocess.TimeoutExpired:
            failure = f"did not finish in {timeout}s"
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if failure:
        pytest.fail(f"{' '.join(argv)} {failure}\nstdout:\n{stdout[-3000:]}\nstderr:\n{stderr[-3000:]}")
    return stdout, stderr


def _installed_matches_lock() -> bool:
    lock = json.loads((NODE_EXAMPLE / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/celery-node"]["version"]
    installed = NODE_EXAMPLE / "node_modules" / "celery-node" / "package.json"
    return installed.is_file() and json.loads(installed.read_text()).get("version") == wanted


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the example's locked node modules installed in place (kept between runs)."""
    node_bin = _tool("node")
    if not _installed_matches_lock():
        _run_logged([_tool("npm"), "ci", "--no-audit", "--no-fund"], cwd=NODE_EXAMPLE, env=dict(os.environ),
                    timeout=NPM_CI_TIMEOUT)
    return node_bin


def test_given_known_contacts_when_the_node_example_emits_then_every_event_is_written_once(stack, node):
    jane, omar = stack.admin.seed("Contact", [
        {"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"},
        {"FirstName": "Omar", "LastName": "Brien", "Email": "omar@acme.example"},
    ])
    stack.start_worker()
    env = {**os.environ, "SFSYNC_REDIS_URL": stack.redis_url, "SFSYNC_WORKSPACE_ID": WORKSPACE}

    stdout, _ = _run_logged([node, "emit.js"], cwd=NODE_EXAMPLE, env=env, timeout=EMIT_TIMEOUT)
    sent = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    outcomes = stack.wait_outcomes([e["id"] for e in sent])

    assert Counter(e["type"] for e in sent) == {"email.sent": 4, "email.replied": 2, "contact.updated": 2}
    assert {o["outcome"] for o in outcomes.values()} == {"written"}, outcomes
    assert list(DeadLetterStore(stack.redis).iter_all()) == []
    emails = [outcomes[e["id"]] for e in sent if e["type"] != "contact.updated"]
    by_type = Counter(o["sobject"] for o in emails)
    assert by_type == {"EmailMessage": 4, "Task": 2}, "automated sends and replies as EmailMessage, manual as Task"
    records = {o["record_id"] for o in emails}
    assert len(records) == len(emails), "two events landed on one record"
    assert len(stack.admin.records("EmailMessage")) == by_type["EmailMessage"]
    # Enhanced Email makes one Task per EmailMessage; a manual send is a Task itself: one Task per email
    assert len(stack.admin.records("Task")) == len(emails)
    assert {o["contact_id"] for o in emails} == {jane, omar}
    assert stack.admin.get("Contact", jane)["Title"] == "VP Sales"
    assert stack.admin.get("Contact", omar)["Title"] == "Head of Ops"


def test_given_a_workspace_that_signs_when_the_node_example_signs_then_it_is_written_and_unsigned_is_refused(
        stack, node, tmp_path):
    # given a registered workspace with an emitter key, and the people the example writes to
    stack.admin.seed("Contact", [{"FirstName": "Jane", "LastName": "Doe", "Email": "jane.doe@acme.example"},
                                 {"FirstName": "Omar", "LastName": "Brien", "Email": "omar@acme.example"}])
    emitter_key = "node-emitter-key-" + "x" * 30
    secret_keys = new_key()
    Registry(stack.redis, Keyring(secret_keys), hosts=HostPolicy.parse("127.0.0.1:*")).apply([WorkspaceSpec(
        id="ws_node", salesforce=SalesforceConnection(instance_url=stack.emulator.url, access_token=stack.emulator.token),
        emitter_keys=[emitter_key], max_latency_seconds=0.3)], author="test")
    env = stack.env(secret_keys=secret_keys)
    env.pop("SFSYNC_SALESFORCE_INSTANCE_URL")
    env.pop("SFSYNC_SALESFORCE_ACCESS_TOKEN")
    stack.processes.append(start_worker(env))
    key_file = tmp_path / "emitter.key"
    key_file.write_text(f"# ws_node's emitter key\n{emitter_key}\n")
    node_env = {**os.environ, "SFSYNC_REDIS_URL": stack.redis_url, "SFSYNC_WORKSPACE_ID": "ws_node"}

    # when the example emits signed, then unsigned
    stdout, _ = _run_logged([node, "emit.js"], cwd=NODE_EXAMPLE, timeout=EMIT_TIMEOUT,
                            env={**node_env, "SFSYNC_SIGNING_KEY_FILE": str(key_file)})
    signed_ids = [json.loads(line)["id"] for line in stdout.splitlines() if line.strip()]
    stdout, _ = _run_logged([node, "emit.js"], cwd=NODE_EXAMPLE, env=node_env, timeout=EMIT_TIMEOUT)
    unsigned_ids = {json.loads(line)["id"] for line in stdout.splitlines() if line.strip()}

    # then every signed event is written, and every unsigned one is dead-lettered INVALID_SIGNATURE
    outcomes = stack.wait_outcomes(signed_ids, workspace="ws_node")
    assert {o["outcome"] for o in outcomes.values()} == {"written"}, outcomes
    store = DeadLetterStore(stack.redis)
    wait_until(lambda: {r.event_id for r in store.iter_all()} == unsigned_ids, 60, "the unsigned events refused")
    assert {r.error_code for r in store.iter_all()} == {INVALID_SIGNATURE}

"""The sync domain imports without the queue machinery: Celery, kombu and sentry_sdk stay out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUEUE_MACHINERY = ("celery", "kombu", "sentry_sdk")


def _modules_loaded_after(statement: str, tmp_path: Path) -> list[str]:
    """Which of QUEUE_MACHINERY a fresh interpreter has loaded after running `statement`."""
    probe = (f"import json, sys\n{statement}\n"
             f"print(json.dumps([m for m in {QUEUE_MACHINERY!r} if m in sys.modules]))")
    output = tmp_path / "probe.out"
    with output.open("w") as out:
        finished = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=60, check=False)
    text = output.read_text()
    assert finished.returncode == 0, f"the probe failed:\n{text}"
    return json.loads(text.strip().splitlines()[-1])


def test_given_a_fresh_interpreter_when_the_sync_engine_is_imported_then_no_celery_kombu_or_sentry(tmp_path):
    loaded = _modules_loaded_after("import workers.sync.engine", tmp_path)

    assert loaded == []


def test_given_a_fresh_interpreter_when_mappings_and_gateway_are_imported_then_no_celery_kombu_or_sentry(tmp_path):
    loaded = _modules_loaded_after(
        "import workers.sync.mappings, workers.salesforce.gateway, events.ledger, events.contact_index", tmp_path)

    assert loaded == []


def test_given_a_fresh_interpreter_when_the_publish_api_is_used_then_celery_is_loaded_on_demand(tmp_path):
    # the lazy package still hands out the documented API, and the probe can see Celery arrive
    loaded = _modules_loaded_after("import events\nassert callable(events.publish)\n"
                                   "from workers.observability import install", tmp_path)

    assert "celery" in loaded and "sentry_sdk" in loaded

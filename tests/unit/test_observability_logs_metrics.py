"""JSON log lines and their masking; Prometheus metrics merged across forked processes."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os

import pytest
from celery import Celery
from prometheus_client import generate_latest, values

from schemas.settings import load_settings
from workers import observability
from workers.observability import metrics
from workers.observability.logs import configure_logging

ADDRESS = "jane.doe@acme.example"


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("DEBUG", stream=stream)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_a_log_line_is_one_json_object_with_the_context_fields(log_stream):
    # when code logs an outcome with its context
    logging.getLogger("sfsync.sync").info(
        "event written", extra={"event_id": "evt_1", "event_type": "email.sent", "workspace_id": "ws_acme",
                                "outcome": "written", "sobject": "Task", "record_id": "00T000000000001",
                                "data": {"args": [{"subject": "Quick question"}]}})

    # then the line carries exactly the known fields
    [line] = _lines(log_stream)
    assert line["level"] == "INFO" and line["logger"] == "sfsync.sync" and line["message"] == "event written"
    assert line["time"].endswith("Z") and "T" in line["time"]
    assert {k: line[k] for k in ("event_id", "event_type", "workspace_id", "outcome", "sobject", "record_id")} == {
        "event_id": "evt_1", "event_type": "email.sent", "workspace_id": "ws_acme", "outcome": "written",
        "sobject": "Task", "record_id": "00T000000000001"}
    # Celery-style extra={"data": ...} (which holds task args) is not a field we emit
    assert "data" not in line and "Quick question" not in log_stream.getvalue()


def test_addresses_and_bodies_are_masked_at_info_and_above_but_not_at_debug(log_stream):
    log = logging.getLogger("sfsync.sync")
    log.debug("debug keeps %s", ADDRESS)
    log.info("no contact for %s", ADDRESS)
    log.warning("rejected: {'subject': 'Quick question, Jane', 'id': 'evt_2'}")
    try:
        raise ValueError(f"duplicate contact {ADDRESS}")
    except ValueError:
        log.exception("write failed", extra={"error_code": "DUPLICATE_VALUE"})

    debug, info, warning, error = _lines(log_stream)
    assert ADDRESS in debug["message"]
    assert info["message"] == "no contact for [email]"
    assert "Quick question" not in warning["message"] and "evt_2" in warning["message"]
    assert error["error_code"] == "DUPLICATE_VALUE"
    assert "ValueError: duplicate contact [email]" in error["exc_info"]
    assert ADDRESS not in json.dumps([info, warning, error])


def test_install_keeps_celery_from_taking_over_the_root_logger(monkeypatch):
    # given an app with observability installed (no Sentry, no servers)
    app = Celery("logs-test", set_as_current=False)
    observability.install(app, load_settings({}), role="worker")
    root = logging.getLogger()
    try:
        # when Celery sets up logging as a worker does on start
        app.log.setup(loglevel="INFO")

        # then our single JSON handler is the root's handler, and Celery was told to keep off
        ours = [h for h in root.handlers if h.get_name() == "sfsync-json"]
        assert len(ours) == 1
        assert app.conf.worker_hijack_root_logger is False
        assert not [h for h in root.handlers if type(h).__module__.startswith("celery")]
    finally:
        observability.uninstall()
        for handler in [h for h in root.handlers if h.get_name() == "sfsync-json"]:
            root.removeHandler(handler)


def test_recording_before_metrics_are_enabled_is_a_no_op():
    metrics.disable()
    metrics.record_outcome("email.sent", "written")
    metrics.observe_write(0.2)
    metrics.record_retry("UNABLE_TO_LOCK_ROW")
    metrics.set_api_usage(10, 100)
    metrics.record_crm_cycle(3.0, ok=True)
    assert not metrics.enabled()


def _child_records(n: int) -> None:
    metrics.record_outcome("email.sent", "written", n)
    metrics.record_retry("UNABLE_TO_LOCK_ROW")
    metrics.observe_write(0.3)
    metrics.record_salesforce_call("composite")
    metrics.set_parked(n)


@pytest.fixture
def multiprocess_metrics(tmp_path, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    value_class = values.ValueClass
    directory = metrics.prepare_multiprocess_dir()
    metrics.enable(directory)
    yield directory
    metrics.disable()
    metrics.cleanup_multiprocess_dir()
    values.ValueClass = value_class
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def test_counters_from_forked_children_add_up_in_the_served_registry(multiprocess_metrics):
    # given metrics enabled in the parent before the pool forks, as install() does
    metrics.record_outcome("email.replied", "dead_lettered")
    metrics.set_api_usage(1200, 15000)
    metrics.record_crm_cycle(lag=42.0, ok=True)

    # when two forked children record, like two prefork processes
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_child_records, args=(n,)) for n in (2, 3)]
    for child in children:
        child.start()
    for child in children:
        child.join(10)
        assert child.exitcode == 0
        metrics.mark_process_dead(child.pid)

    # then the merged registry adds the children's counts, and the gauges carry the last value
    text = generate_latest(metrics.registry()).decode()
    assert 'sfsync_events_total{outcome="written",type="email.sent"} 5.0' in text
    assert 'sfsync_events_total{outcome="dead_lettered",type="email.replied"} 1.0' in text
    assert 'sfsync_retries_total{code="UNABLE_TO_LOCK_ROW"} 2.0' in text
    assert 'sfsync_write_seconds_count 2.0' in text
    assert 'sfsync_salesforce_calls_total{kind="composite"} 2.0' in text
    assert 'sfsync_salesforce_api_used{workspace="default"} 1200.0' in text
    assert 'sfsync_salesforce_api_limit{workspace="default"} 15000.0' in text
    assert "sfsync_crm_cycle_lag_seconds 42.0" in text
    assert "sfsync_crm_cycle_last_success_timestamp" in text
    assert "sfsync_parked" in text


def test_the_temporary_metrics_directory_is_removed_on_exit(multiprocess_metrics):
    assert os.path.isdir(multiprocess_metrics)
    metrics.record_outcome("email.sent", "written")
    metrics.cleanup_multiprocess_dir()
    assert not os.path.exists(multiprocess_metrics)


def test_given_a_lone_surrogate_in_a_log_line_when_formatted_then_it_is_escaped_and_writable():
    import logging

    from workers.observability.logs import SfsyncJsonFormatter

    record = logging.LogRecord("sfsync.test", logging.WARNING, __file__, 1, "subject \ud800 refused", None, None)
    line = SfsyncJsonFormatter().format(record)
    line.encode("utf-8")  # would raise UnicodeEncodeError with the raw surrogate
    assert "\\ud800" in line

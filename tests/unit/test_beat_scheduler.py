"""Beat runs both of its entries as it starts, keeps its schedule in memory, and writes no file."""

from __future__ import annotations

from celery import Celery

from schemas.settings import load_settings
from workers.beat_scheduler import DueAtStartScheduler
from workers.celery_config import celery_config
from workers.tasks import register


def _app(interval: int = 900) -> Celery:
    settings = load_settings({"SFSYNC_REDIS_URL": "redis://127.0.0.1:6379/15",
                              "SFSYNC_CRM_SYNC_INTERVAL": str(interval)})
    app = Celery("beat-test", set_as_current=False)
    app.conf.update(celery_config(settings))
    register(app, settings)
    return app


def _scheduler(app: Celery) -> DueAtStartScheduler:
    # lazy: builds the schedule without connecting to the broker
    scheduler = DueAtStartScheduler(app, lazy=True)
    scheduler.setup_schedule()
    return scheduler


def test_the_worker_app_runs_beat_with_the_due_at_start_scheduler():
    assert _app().conf.beat_scheduler == "workers.beat_scheduler:DueAtStartScheduler"


def test_a_freshly_started_beat_finds_the_crm_cycle_and_the_release_due_at_once():
    scheduler = _scheduler(_app(interval=3600))
    for name in ("crm-sync-cycle", "release-parked-work"):
        due, _ = scheduler.schedule[name].is_due()
        assert due, f"{name} is not due when beat starts"


def test_after_its_first_run_the_crm_cycle_waits_one_interval():
    scheduler = _scheduler(_app(interval=3600))
    entry = scheduler.schedule["crm-sync-cycle"]
    after = next(entry)
    due, next_in = after.is_due()
    assert not due
    assert 3590 <= next_in <= 3600
    assert after.total_run_count == 1


def test_a_beat_that_syncs_and_stops_leaves_no_schedule_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scheduler = _scheduler(_app())
    scheduler.sync()
    scheduler.close()
    assert list(tmp_path.iterdir()) == []

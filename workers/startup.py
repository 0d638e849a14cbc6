"""Start-up checks of a worker: Salesforce reachable, field mappings valid against describe — waiting out outages."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from schemas.settings import Settings
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway
from workers.sync.mappings import errors_and_warnings, load_mappings, validate_mappings

log = logging.getLogger("sfsync.startup")

#: seconds between two checks while Salesforce is unreachable at start-up: first, and the largest
WAIT_FIRST = 2.0
WAIT_MAX = 60.0


@dataclass(frozen=True)
class StartupProblem:
    """Why the worker cannot start now; `transient` when waiting may fix it (an outage)."""

    message: str
    transient: bool = False


def check_mappings(settings: Settings) -> StartupProblem | None:
    """None when the mappings fit the org; otherwise what is wrong, naming every bad field and why."""
    try:
        config = load_mappings(settings.mappings)
    except ValueError as exc:
        return StartupProblem(f"SFSYNC_MAPPINGS: {exc}")
    try:
        gateway = SalesforceGateway.from_settings(settings)
        problems = validate_mappings(config, gateway.describe)
    except SalesforceError as exc:
        return StartupProblem(f"cannot check the field mappings against Salesforce: {exc}", transient=exc.transient)
    errors, warnings = errors_and_warnings(problems)
    for warning in warnings:
        log.warning("field mapping left out: %s", warning)
    if not errors:
        return None
    lines = [f"  - {p}" for p in errors]
    return StartupProblem("the field mappings do not fit this Salesforce org:\n" + "\n".join(lines) +
                          "\nFix SFSYNC_MAPPINGS (see `sfsync mappings validate`) and start again.")


def wait_for_salesforce(settings: Settings, *, on_wait: Callable[[str | None], None] = lambda reason: None,
                        sleep: Callable[[float], None] = time.sleep) -> str | None:
    """Check until Salesforce answers: transient failures (5xx, timeouts, refused connections,
    request limits) are waited out with backoff; a permanent problem is returned to stop the worker.

    `on_wait(reason)` is told why the worker waits (None once it no longer does), for /readyz.
    """
    delay = WAIT_FIRST
    while True:
        problem = check_mappings(settings)
        if problem is None or not problem.transient:
            on_wait(None)
            return problem.message if problem else None
        on_wait(f"waiting for Salesforce: {problem.message}")
        log.warning("Salesforce does not answer; checking again in %.0fs: %s", delay, problem.message)
        sleep(delay)
        delay = min(delay * 2, WAIT_MAX)

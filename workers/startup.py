"""Start-up checks of a worker: Salesforce reachable, field mappings valid against describe."""

from __future__ import annotations

import logging

from schemas.settings import Settings
from workers.salesforce.errors import SalesforceError
from workers.salesforce.gateway import SalesforceGateway

log = logging.getLogger("sfsync.startup")


def check_mappings_or_explain(settings: Settings) -> str | None:
    """None when the mappings fit the org; otherwise a message naming every bad field and why."""
    from workers.sync.mappings import load_mappings, validate_mappings

    try:
        config = load_mappings(settings.mappings)
    except ValueError as exc:
        return f"SFSYNC_MAPPINGS: {exc}"
    try:
        gateway = SalesforceGateway.from_settings(settings)
        problems = validate_mappings(config, gateway.describe)
    except SalesforceError as exc:
        return f"cannot check the field mappings against Salesforce: {exc}"
    errors = [p for p in problems if p.severity == "error"]
    for warning in (p for p in problems if p.severity != "error"):
        log.warning("field mapping left out: %s", warning)
    if not errors:
        return None
    lines = [f"  - {p}" for p in errors]
    return "the field mappings do not fit this Salesforce org:\n" + "\n".join(lines) + \
        "\nFix SFSYNC_MAPPINGS (see `sfsync mappings validate`) and start again."

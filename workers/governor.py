"""The API governor: keeps an org's last daily API calls for its own people, by parking sfsync's work."""

from __future__ import annotations

import logging
from collections.abc import Callable

from events.parking import UsageGauge
from workers.decide import API_USAGE_CEILING
from workers.observability import metrics
from workers.salesforce.errors import SalesforceError
from workers.sync.outcomes import Retry

log = logging.getLogger("sfsync.governor")

#: seconds between `limits/` calls made to learn whether parked work may go (each costs an API call)
USAGE_RECHECK = 60.0


class Governor:
    """Reads and records the org's daily API usage (shared by every worker through Redis)."""

    def __init__(self, gauge: UsageGauge, workspace_id: str, ceiling: float):
        self.gauge = gauge
        self.workspace_id = workspace_id
        self.ceiling = ceiling

    def over_ceiling(self) -> bool:
        return self.gauge.over(self.workspace_id, self.ceiling)

    def refusal(self) -> Retry:
        """The outcome of every event of a batch the governor holds back."""
        reading = self.gauge.read(self.workspace_id)
        shown = f"{reading.used}/{reading.limit}" if reading else "unknown"
        return Retry(SalesforceError(API_USAGE_CEILING, f"daily API usage {shown} is at or above "
                                                        f"SFSYNC_API_USAGE_CEILING={self.ceiling}"))

    def note(self, used: int, limit: int) -> None:
        """Usage as the last Salesforce response reported it."""
        self.gauge.store(self.workspace_id, used, limit)
        metrics.set_api_usage(used, limit, self.workspace_id)

    def still_over(self, read_limits: Callable[[], tuple[int, int] | None],
                   recheck_after: float = USAGE_RECHECK) -> bool:
        """Over the ceiling even after asking Salesforce (at most once per `recheck_after` across workers)?"""
        if not self.over_ceiling():
            return False
        if self.gauge.claim_recheck(self.workspace_id, recheck_after):
            try:
                reading = read_limits()
            except SalesforceError as error:
                log.warning("could not re-check Salesforce API usage: %s", error)
                reading = None
            if reading is not None:
                self.gauge.store(self.workspace_id, *reading)
        return self.over_ceiling()

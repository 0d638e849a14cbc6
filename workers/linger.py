"""How long each workspace's events may wait in a worker for company before their batch is written.

Waiting longer fills bigger batches: one collection write carries up to 200 records whatever its
size, so a workspace that sends 5 events a second writes about 5 times fewer calls per event with a
5-second linger than with a 1-second one. The linger is the workspace's `max_latency_seconds`; as
its org nears the API usage ceiling it is stretched (up to STRETCH_MAX times) so the org spends
fewer calls per event instead of being stopped.
"""

from __future__ import annotations

import time

from events.parking import UsageGauge
from workspaces.directory import Directory

#: seconds a computed linger is reused before the registry and the usage gauge are read again
CACHE_FOR = 5.0
#: share of the ceiling from which the linger is stretched, and the stretch reached at the ceiling
STRETCH_FROM, STRETCH_MAX = 0.5, 10.0


def stretch(used_share: float, ceiling: float) -> float:
    """The linger's multiplier: 1 below STRETCH_FROM of the ceiling, rising to STRETCH_MAX at it."""
    if ceiling <= 0:
        return STRETCH_MAX
    position = (used_share / ceiling - STRETCH_FROM) / (1 - STRETCH_FROM)
    return 1.0 + (STRETCH_MAX - 1.0) * min(max(position, 0.0), 1.0)


class Lingers:
    """`lingers(ws)` -> seconds; unknown workspaces get the default (they are dead-lettered quickly)."""

    def __init__(self, directory: Directory, gauge: UsageGauge, default: float):
        self.directory = directory
        self.gauge = gauge
        self.default = default
        self._cache: dict[str, tuple[float, float]] = {}

    def __call__(self, workspace_id: str) -> float:
        now = time.monotonic()
        cached = self._cache.get(workspace_id)
        if cached is not None and now - cached[0] < CACHE_FOR:
            return cached[1]
        try:
            value = self._compute(workspace_id)
        except Exception:  # noqa: BLE001 - Redis restarting: keep what was known, else the default
            value = cached[1] if cached is not None else self.default
        self._cache[workspace_id] = (now, value)
        return value

    def _compute(self, workspace_id: str) -> float:
        config = self.directory.get(workspace_id) if workspace_id else None
        if config is None:
            return self.default
        usage = self.gauge.read(workspace_id)
        share = usage.used / usage.limit if usage is not None and usage.limit else 0.0
        return config.max_latency_seconds * stretch(share, config.api_usage_ceiling)

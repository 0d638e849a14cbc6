"""The org's daily API usage as last read from Salesforce: calls used, the allowance, and when."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ApiUsage:
    """`used` of the `limit` daily API calls, read at `at` (seconds since the epoch)."""

    used: int
    limit: int
    at: float

    @property
    def share(self) -> float:
        """The spent share of the allowance; 0 when the limit is unknown (0)."""
        return self.used / self.limit if self.limit else 0.0

"""Observability of workers and beat: Sentry, JSON logs, Prometheus metrics and health endpoints.

Names are loaded on first use: the sync domain imports `metrics` through here and must not
pull in Celery or sentry_sdk, which only the Celery wiring (`install`, `uninstall`) needs.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["install", "uninstall", "configure_logging", "metrics", "health_state", "start_servers"]

#: public name -> (module that defines it, attribute in it; None for the module itself)
_LAZY: dict[str, tuple[str, str | None]] = {
    "install": ("workers.observability.wiring", "install"),
    "uninstall": ("workers.observability.wiring", "uninstall"),
    "health_state": ("workers.observability.wiring", "health_state"),
    "start_servers": ("workers.observability.wiring", "start_servers"),
    "configure_logging": ("workers.observability.logs", "configure_logging"),
    "metrics": ("workers.observability.metrics", None),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

"""The queue side of sfsync: topology, the publish API for emitters, ledger, dead letters, outbound events.

The publish API is loaded on first use, so the parts that need no Celery (ledger, contact
index, dead letters) import without it.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["PublishError", "ReplicaWaitError", "publish", "publish_many"]


def _publish_api() -> types.ModuleType:
    return importlib.import_module("events.publish")


class _EventsPackage(types.ModuleType):
    """`events.publish` is the function, as documented, even though a submodule has the same name."""

    @property
    def publish(self) -> Any:  # noqa: D102 - the publish API's own docstring applies
        return _publish_api().publish

    @publish.setter
    def publish(self, value: Any) -> None:
        # importing the submodule records it here; the function stays the package's `publish`
        # (the submodule remains reachable as sys.modules["events.publish"])
        pass


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_publish_api(), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


sys.modules[__name__].__class__ = _EventsPackage

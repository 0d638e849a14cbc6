"""The queue side of sfsync: topology, the publish API for emitters, ledger, dead letters, outbound events."""

from events.publish import PublishError, publish, publish_many

__all__ = ["PublishError", "publish", "publish_many"]

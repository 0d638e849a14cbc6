"""JSON-lines logging for workers and beat: fixed fields, and no addresses or email content at INFO and above."""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Mapping
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from schemas.events import escape_surrogates
from workers.observability.redact import scrub, scrub_text

#: Record attributes (passed with `extra=`) that become JSON fields when present. Anything
#: else given as extra is dropped: Celery, for one, logs task arguments as `extra={"data"}`.
CONTEXT_FIELDS = ("event_id", "event_type", "workspace_id", "outcome", "sobject", "record_id",
                  "error_code", "task_id", "task_name", "queue", "count", "attempt")

#: The handler configure_logging installs on the root logger, so a second call replaces it.
_HANDLER_NAME = "sfsync-json"


def log_batch(logger: logging.Logger, workspace_id: str, counts: Mapping[str, int]) -> None:
    """One INFO line for a settled batch: how many of its events ended with each outcome.

    Each event's own line is logged at DEBUG: at INFO, a formatted and redacted line per event
    was a tenth of a pool process's CPU, and the outcome log keeps every event's fate anyway.
    """
    total = sum(counts.values())
    if not total or not logger.isEnabledFor(logging.INFO):
        return
    parts = ", ".join(f"{n} {label}" for label, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    logger.info("batch settled: %d event(s): %s", total, parts, extra={"workspace_id": workspace_id, "count": total})


class RedactFilter(logging.Filter):
    """Mask addresses, bodies, subjects and credentials in records at INFO and above.

    DEBUG stays verbatim for a developer's own machine; operators run at INFO.
    """

    def __init__(self, threshold: int = logging.INFO):
        super().__init__()
        self.threshold = threshold

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.threshold:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed %-format (any error of it) must not cost us the record
            message = str(record.msg)
        record.msg, record.args = scrub_text(message), None
        if record.exc_info:
            # Exception texts quote what failed ("no contact for jane@acme.example"); the
            # formatted traceback is masked once here and exc_info dropped so no formatter
            # further down renders the raw one again.
            record.exc_text = scrub_text("".join(traceback.format_exception(*record.exc_info)).rstrip())
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub_text(record.exc_text)
        for field in CONTEXT_FIELDS:
            value = record.__dict__.get(field)
            if isinstance(value, (str, dict, list, tuple)):
                setattr(record, field, scrub(value))
        return True


class SfsyncJsonFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message and the known context fields."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S",
            json_ensure_ascii=False,
        )

    def format(self, record: logging.LogRecord) -> str:
        # a lone UTF-16 surrogate (from a hostile event) cannot be written as UTF-8: escape it, so
        # the line is logged instead of replaced by "--- Logging error ---"
        return escape_surrogates(super().format(record))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # UTC with milliseconds, ISO 8601, whatever the host's timezone
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
            f".{int(record.msecs):03d}Z")

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        log_data["time"] = record.__dict__.get("asctime") or self.formatTime(record)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.__dict__.get("message", record.getMessage())
        for field in CONTEXT_FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                log_data[field] = value
        for key in ("exc_info", "stack_info"):
            if message_dict.get(key):
                log_data[key] = message_dict[key]


class PlainFormatter(logging.Formatter):
    """Human-readable lines for a terminal (`json=False`), with the same context fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{f}={record.__dict__[f]}" for f in CONTEXT_FIELDS
                           if record.__dict__.get(f) is not None)
        if not context:
            return line
        head, sep, tail = line.partition("\n")
        return f"{head} [{context}]{sep}{tail}"


def configure_logging(level: str | int = "INFO", json: bool = True, stream: Any = None) -> logging.Handler:
    """Send every log record to one stream handler on the root logger (stderr by default).

    Idempotent: a second call replaces the handler it installed before, so Celery's prefork
    children, which re-run logging setup, do not double every line.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(SfsyncJsonFormatter() if json else PlainFormatter())
    handler.addFilter(RedactFilter())
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # Connection-level chatter of the client libraries stays at WARNING unless debugging.
    quiet = logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
    for noisy in ("kombu", "amqp", "urllib3"):
        logging.getLogger(noisy).setLevel(quiet)
    return handler

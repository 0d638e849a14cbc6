"""Sentry error reporting for workers and beat, with email content and secrets scrubbed before sending."""

from __future__ import annotations

import logging
import warnings
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

from workers.observability.redact import scrub, scrub_breadcrumb_data, summarize_event

#: Sentry's span and trace structures use these keys for names, not for email content.
_STRUCTURAL_KEYS = frozenset({"description"})
#: Top-level event fields the SDK fills from our own configuration; nothing of a person's.
_SDK_FIELDS = frozenset({"release", "environment", "dist", "event_id", "timestamp", "platform",
                         "level", "sdk", "modules", "type", "transaction_info"})


def sfsync_release() -> str:
    """The release Sentry groups errors under: sfsync@<installed version>."""
    try:
        return f"sfsync@{version('sfsync')}"
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "sfsync@unknown"


def _scrub_celery_job(extra: dict[str, Any]) -> None:
    job = extra.get("celery-job")
    if isinstance(job, dict):
        # A task argument that is a whole event keeps only its ids: they are enough to
        # find the dead letter, and bodies, subjects and names never need to leave us.
        for part in ("args", "kwargs"):
            if part in job:
                job[part] = summarize_event(job[part])


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """`before_send`: remove addresses, email content, names and credentials from an event."""
    extra = event.get("extra")
    if isinstance(extra, dict):
        _scrub_celery_job(extra)
    logentry = event.get("logentry")
    if isinstance(logentry, dict) and logentry.get("formatted") and logentry.get("params"):
        # A subject passed as a %s argument is just a string; within the formatted line the
        # scrubber at least sees "subject=..." around it. The template still groups the issue.
        logentry.pop("params")
    crumbs = event.get("breadcrumbs")
    if isinstance(crumbs, dict) and isinstance(crumbs.get("values"), list):
        # recorded through before_breadcrumb already; a breadcrumb added any other way is not
        event = {**event, "breadcrumbs": {**crumbs, "values": [
            scrub_breadcrumb_data(c) if isinstance(c, dict) else c for c in crumbs["values"]]}}
    scrubbed = {}
    for key, value in event.items():
        if key in _SDK_FIELDS:
            scrubbed[key] = value
        elif key in ("spans", "contexts", "breadcrumbs", "exception", "threads"):
            scrubbed[key] = scrub(value, keep_keys=_STRUCTURAL_KEYS)
        else:
            scrubbed[key] = scrub(value)
    return scrubbed


def scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """`before_breadcrumb`: the same rules for breadcrumbs, which are recorded before an error.

    An HTTP breadcrumb loses its query string and fragment whole: Salesforce lookups carry
    addresses there, percent-encoded.
    """
    return scrub(scrub_breadcrumb_data(crumb))


def init_sentry(dsn: str | None, *, environment: str, transport: Any = None,
                **options: Any) -> bool:
    """Start the Sentry SDK when a DSN is configured; return whether it was started.

    `transport` exists for tests, which capture what would be sent instead of sending it.
    """
    if not dsn:
        return False
    with warnings.catch_warnings():
        # newer SDKs deprecate send_default_pii for data_collection; we keep the old,
        # explicit switch because it is what every supported 2.x version understands
        warnings.filterwarnings("ignore", message=".*send_default_pii.*", category=DeprecationWarning)
        _init(dsn, environment, transport, options)
    sentry_sdk.set_tag("service", "sfsync")
    return True


def _init(dsn: str, environment: str, transport: Any, options: dict[str, Any]) -> None:
    sentry_sdk.init(
        dsn=dsn,
        release=sfsync_release(),
        environment=environment,
        send_default_pii=False,
        include_local_variables=False,
        # request bodies are never ours to send; the scrubber is the second line
        max_request_body_size="never",
        # sentry-sdk types an event as a TypedDict; the scrubber reads and edits it as the dict it is
        before_send=scrub_event,  # type: ignore[arg-type]
        before_send_transaction=scrub_event,  # type: ignore[arg-type]
        before_breadcrumb=scrub_breadcrumb,
        event_scrubber=EventScrubber(
            denylist=DEFAULT_DENYLIST + ["subject", "body_html", "body_text", "htmlbody",
                                         "textbody", "description", "template", "access_token",
                                         "security_token", "redis_url"],
            recursive=True,
        ),
        integrations=[
            CeleryIntegration(monitor_beat_tasks=False),
            LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
        ],
        transport=transport,
        **options,
    )

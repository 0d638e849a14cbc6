"""Builders of contract-shaped events for tests, the demo and the benchmark."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

_counter = itertools.count(1)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=412000)


def email_event(*, to: str = "jane.doe@acme.example", person_emails: list[str] | None = None,
                origin: str = "automated", event_type: str = "email.sent", workspace_id: str = "ws_acme",
                subject: str = "Quick question, Jane", body_html: str | None = "<p>Hi Jane, <b>quick</b> one.</p>",
                play: dict[str, Any] | None = None, rep_email: str = "riley@seller.example",
                rep_user_id: str | None = None, event_id: str | None = None,
                first_name: str | None = "Jane", last_name: str | None = "Doe", title: str | None = "VP Sales",
                country: str | None = "Germany", sent_at: datetime | None = None,
                sequence_status: str | None = "In Progress - Started", **data_overrides: Any) -> dict[str, Any]:
    n = next(_counter)
    sent = sent_at or _now() - timedelta(seconds=1)
    prospect = {"email": to, "name": f"{first_name or ''} {last_name or ''}".strip() or None}
    rep = {"email": rep_email, "name": "Riley Rep"}
    is_reply = event_type == "email.replied"
    data: dict[str, Any] = {
        "message_id": f"<msg-{n}-{uuid.uuid4().hex[:8]}@mail.unify.example>",
        "in_reply_to": f"<msg-{n - 1}@mail.unify.example>" if is_reply else None,
        "thread_id": f"thr_{n}",
        "origin": "manual" if is_reply else origin,
        "from": prospect if is_reply else rep,
        "to": [rep] if is_reply else [prospect],
        "cc": [], "bcc": [],
        "subject": subject,
        "body_html": body_html,
        "body_text": None,
        "template": {"subject": "Quick question, {{person.firstName}}", "body": "Hi {{person.firstName}}, ..."},
        "sent_at": sent.isoformat().replace("+00:00", "Z"),
        "rep": {"email": rep_email, "salesforce_user_id": rep_user_id},
        "person": {"emails": person_emails if person_emails is not None else [to],
                   "first_name": first_name, "last_name": last_name, "title": title,
                   "company": "Acme", "country": country, "phone": None},
        "sequence": {"id": "seq_1", "name": "Q4 outbound", "step": 2, "status": sequence_status},
        "play": play,
    }
    data.update(data_overrides)
    return {"id": event_id or f"evt_{uuid.uuid4().hex}", "type": event_type, "version": 1,
            "workspace_id": workspace_id, "occurred_at": sent.isoformat().replace("+00:00", "Z"), "data": data}


def contact_updated_event(*, emails: list[str], changes: dict[str, Any] | None = None,
                          workspace_id: str = "ws_acme", event_id: str | None = None,
                          play: dict[str, Any] | None = None, **person: Any) -> dict[str, Any]:
    return {"id": event_id or f"evt_{uuid.uuid4().hex}", "type": "contact.updated", "version": 1,
            "workspace_id": workspace_id, "occurred_at": _now().isoformat().replace("+00:00", "Z"),
            "data": {"person": {"emails": emails, **person}, "changes": changes or {}, "play": play}}


SYNC_PLAY = {"id": "play_7", "name": "Inbound hot leads", "sync_to_salesforce": True}

"""The benchmark's load: seeded contacts, a reproducible mix of email events, and the publishers.

The mix follows the issue: about 60% automated emails, 25% manual emails, 10% replies and
5% emails to people Salesforce does not know (they end as *skipped: no contact*).
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from events.publish import bundles, message_headers, publish_many, publisher_app
from events.redis_conn import connect
from schemas.events import Event, parse_event

from benchmarks import bare_app

#: (kind, share of the events)
MIX = (("automated", 0.60), ("manual", 0.25), ("reply", 0.10), ("unknown", 0.05))
#: every this-many contacts gets an apostrophe in its address, so the SOQL escaping path is exercised
QUOTED_EVERY = 97

_FIRST = ("Jane", "Mia", "Lee", "Sam", "Riya", "Tom", "Ana", "Olu", "Kai", "Eve")
_LAST = ("Doe", "Okafor", "Chen", "Stranger", "O'Brien", "Novak", "Silva", "Berg", "Ito", "Haas")
_BODY = ("<p>Hi {first},</p><p>I noticed {company} is growing the sales team this quarter. "
         "We help teams like yours cut the time reps spend logging email by <b>hours a week</b>, "
         "and every touch still lands in Salesforce where your reports expect it.</p>"
         "<p>Would 15 minutes on Thursday work? Here is my calendar: "
         "<a href=\"https://cal.seller.example/riley\">cal.seller.example/riley</a></p>"
         "<p>Best,<br>Riley</p><p style=\"color:#888\">Riley Rep · Seller Inc · 1 Market St</p>")


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    email: str
    company: str


def contact_people(n: int) -> list[Person]:
    """The people seeded into Salesforce as Contacts (deterministic)."""
    people = []
    for i in range(n):
        first, last = _FIRST[i % len(_FIRST)], _LAST[(i // len(_FIRST)) % len(_LAST)]
        local = f"{first}.{last}".lower().replace("'", "" if i % QUOTED_EVERY else "'")
        people.append(Person(first, last, f"{local}.{i}@acme{i % 50}.example", f"Acme {i % 50}"))
    return people


def contact_records(people: Sequence[Person]) -> list[dict[str, Any]]:
    # mixed case on purpose: matching is case-insensitive
    return [{"FirstName": p.first, "LastName": p.last, "Email": p.email.title(), "Title": "VP Sales"}
            for p in people]


def kinds(n: int, rng: random.Random) -> list[str]:
    """n event kinds in MIX's proportions, shuffled."""
    out = [kind for kind, share in MIX for _ in range(round(n * share))]
    out = (out + ["automated"] * n)[:n]
    rng.shuffle(out)
    return out


def email_event(kind: str, person: Person, *, workspace_id: str, run: str, n: int,
                now: datetime | None = None) -> dict[str, Any]:
    """One contract-shaped event of the given kind."""
    sent = (now or datetime.now(timezone.utc)).isoformat().replace("+00:00", "Z")
    rep = {"email": "riley@seller.example", "name": "Riley Rep"}
    prospect = {"email": person.email, "name": f"{person.first} {person.last}"}
    reply = kind == "reply"
    body = _BODY.format(first=person.first, company=person.company)
    return {
        "id": f"evt_bench_{run}_{n}", "type": "email.replied" if reply else "email.sent", "version": 1,
        "workspace_id": workspace_id, "occurred_at": sent,
        "data": {
            "message_id": f"<b{run}-{n}-{uuid.uuid4().hex[:8]}@mail.unify.example>",
            "in_reply_to": f"<b{run}-{n - 1}@mail.unify.example>" if reply else None,
            "thread_id": f"thr_{run}_{n // 3}",
            "origin": "automated" if kind in ("automated", "unknown") else "manual",
            "from": prospect if reply else rep, "to": [rep] if reply else [prospect], "cc": [], "bcc": [],
            "subject": f"{'Re: ' if reply else ''}Quick question, {person.first}",
            "body_html": f"<p>Sounds good, Thursday works.</p><blockquote>{body}</blockquote>" if reply else body,
            "body_text": None,
            "template": {"subject": "Quick question, {{person.firstName}}",
                         "body": "<p>Hi {{person.firstName}},</p>..."},
            "sent_at": sent,
            "rep": {"email": rep["email"], "salesforce_user_id": None},
            "person": {"emails": [person.email], "first_name": person.first, "last_name": person.last,
                       "title": "VP Sales", "company": person.company, "country": "Germany", "phone": None},
            "sequence": {"id": "seq_1", "name": "Q4 outbound", "step": 2, "status": "In Progress - Started"},
            "play": None,
        },
    }


def burst_events(n: int, people: Sequence[Person], *, workspace_id: str, run: str, seed: int = 7) -> list[Event]:
    """n parsed events of the mix; parsed here so validation is not on the publisher's clock."""
    rng = random.Random(seed)
    out = []
    for i, kind in enumerate(kinds(n, rng)):
        if kind == "unknown":
            person = Person("Sam", "Nobody", f"nobody.{run}.{i}@nowhere.example", "Nowhere")
        else:
            person = people[rng.randrange(len(people))]
        out.append(parse_event(email_event(kind, person, workspace_id=workspace_id, run=run, n=i)))
    return out


def publish_sfsync(events: Sequence[Event], broker_url: str, replicas: int = 0) -> None:
    """Through the emitters' own API: one connection for the whole burst (each bundle confirmed by
    `replicas` replicas when that is above 0)."""
    publish_many(events, broker_url=broker_url, replicas=replicas)


#: one message as `publish_many` sends it: (task name, queue, events, JSON bodies)
Bundle = tuple[str, str, list[Event], list[dict[str, Any]]]


def publish_bare(events: Sequence[Event], broker_url: str) -> None:
    """The same bundles `publish_many` makes of these events, through the same publisher app, to the anchor."""
    publish_bundles(bundles(list(events)), broker_url, anchor=True)


def publish_bundles(sequence: Sequence[Bundle], broker_url: str, *, anchor: bool = False) -> dict[str, float]:
    """Send ready-made bundles in this order over one connection, as `publish_many` sends each
    (to the anchor's queue and task when `anchor`); returns event id -> wall-clock send time."""
    app = publisher_app(broker_url)
    sent: dict[str, float] = {}
    with app.producer_or_acquire() as producer:
        for task_name, queue, evs, bodies in sequence:
            arg: Any = bodies[0] if len(bodies) == 1 else bodies
            if anchor:
                task_name, queue = bare_app.route(queue)
            now = time.time()
            app.send_task(task_name, args=[arg], queue=queue, exchange="", routing_key=queue,
                          task_id=str(uuid.uuid4()), producer=producer, headers=message_headers(evs))
            for event in evs:
                sent[event.id] = now
    return sent


def celery_node_item(task_name: str, queue: str, arg: Any, headers: dict[str, Any] | None = None) -> str:
    """The queue item celery-node 0.5.9 pushes for `task_name(arg)` (see docs/events.md, *What
    celery-node writes*): no argsrepr, camelCase properties, an empty embed; `headers` are added to
    its three (examples/node/emit.js adds sfsync's)."""
    task_id = str(uuid.uuid4())
    return json.dumps({
        "body": base64.b64encode(json.dumps([[arg], {}, {}], separators=(",", ":")).encode()).decode(),
        "content-type": "application/json", "content-encoding": "utf-8",
        "headers": {"lang": "js", "task": task_name, "id": task_id, **(headers or {})},
        "properties": {"body_encoding": "base64", "delivery_info": {"exchange": "", "routing_key": queue},
                       "delivery_mode": 2, "delivery_tag": str(uuid.uuid4()), "correlationId": task_id, "replyTo": ""},
    }, separators=(",", ":"))


def publish_celery_node(events: Sequence[Event], broker_url: str, *, sfsync_headers: bool = True) -> None:
    """The same bundles as `publish_sfsync`, pushed as celery-node pushes them, one LPUSH each:
    with sfsync's headers as examples/node/emit.js sets them, or without (an emitter that does not)."""
    client = connect(broker_url)
    try:
        for task_name, queue, evs, bodies in bundles(list(events)):
            arg: Any = bodies[0] if len(bodies) == 1 else bodies
            client.lpush(queue, celery_node_item(task_name, queue, arg, message_headers(evs) if sfsync_headers else None))
    finally:
        client.close()


def publish_paced(make: Callable[[int], Event], rate: float, seconds: float, broker_url: str) -> dict[str, float]:
    """Publish `rate` events per second for `seconds`; returns event id -> wall-clock publish time."""
    sent: dict[str, float] = {}
    start = time.monotonic()
    for i in range(int(rate * seconds)):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        event = make(i)
        sent[event.id] = time.time()
        publish_many([event], broker_url=broker_url)
    return sent

"""The pure half of contact resolution: the SOQL that finds candidates, and the one rule that picks one.

Matching: every address the event knows for the person is compared,
case-insensitively, with Contact.Email and the configured alternate email fields. A
Contact with no address in those fields is never matched.

When several Contacts match, the choice is deterministic, in this order:
  1. the Contact matching the address that comes earliest in the event's own order
     (`schemas.events.email_addresses`: person.emails first, then to/from);
  2. then a match on Contact.Email beats one on an alternate field (in configured order);
  3. then the oldest CreatedDate;
  4. then the lowest Id.
So the same event and the same org always give the same Contact, on any worker.

Leads (only when a workspace turns on `match_leads`) are asked about only when no Contact has any
of the person's addresses, and matched by the same rule among themselves. A converted Lead is never
the record: its ConvertedContactId (a Contact) is, and it wins over an unconverted Lead, as a
Contact always does. See `choose_lead`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from schemas.mappings import check_api_name
from workers.sync.field_policy import current_value

PRIMARY_EMAIL_FIELD = "Email"

#: a candidate record: choose_contact gives back the very one it chose
Record = TypeVar("Record", bound=Mapping[str, Any])

#: fields every candidate needs for the tie-break
_TIE_BREAK_FIELDS = ("Id", "CreatedDate")


def email_fields(alternate_email_fields: Iterable[str]) -> list[str]:
    """Contact.Email followed by the alternates, without repeats (in the order they rank)."""
    fields = [PRIMARY_EMAIL_FIELD]
    for name in alternate_email_fields:
        if name.lower() not in {f.lower() for f in fields}:
            fields.append(name)
    return fields


#: Lead fields every candidate needs besides the tie-break: where a converted Lead lives on
LEAD_CONVERSION_FIELDS = ("IsConverted", "ConvertedContactId")


def contact_query(email_fields: Sequence[str], extra_fields: Iterable[str] = (), *, sobject: str = "Contact") -> str:
    """A format_soql template finding Contacts by address: `... WHERE Email IN {values} OR ...`.

    The gateway's `query_in(template, values)` fills `{values}` through
    simple_salesforce.format_soql, which quotes and escapes each address; `%` and `_` are
    literal outside LIKE, so no address can widen the match. Field names can't be escaped
    in SOQL, so they are checked to be plain API names instead.
    """
    if not email_fields:
        raise ValueError("at least one email field is needed to find contacts")
    selected: list[str] = []
    for name in (*_TIE_BREAK_FIELDS, *email_fields, *extra_fields):
        check_api_name(name)
        if name.lower() not in {s.lower() for s in selected}:
            selected.append(name)
    where = " OR ".join(f"{name} IN {{values}}" for name in email_fields)
    # S608: field and object names are checked API names; the addresses go in through format_soql
    return f"SELECT {', '.join(selected)} FROM {check_api_name(sobject)} WHERE {where}"  # noqa: S608


def lead_query(email_fields: Sequence[str]) -> str:
    """As contact_query, for Leads, converted ones included (they lead to their Contact)."""
    return contact_query(email_fields, LEAD_CONVERSION_FIELDS, sobject="Lead")


def _address(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    address = value.strip().lower()
    return address or None


def index_entries(contact: Mapping[str, Any], email_fields: Sequence[str]) -> list[str]:
    """The lower-cased addresses a Contact is known by, in field order, without repeats."""
    entries: list[str] = []
    for name in email_fields:
        address = _address(current_value(contact, name))
        if address and address not in entries:
            entries.append(address)
    return entries


def _created(contact: Mapping[str, Any]) -> datetime:
    raw = contact.get("CreatedDate")
    if isinstance(raw, str):
        try:
            # Salesforce writes +0000; fromisoformat wants +00:00 (3.11 accepts both, be explicit)
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    return datetime.max.replace(tzinfo=timezone.utc)  # unknown age ranks after every known one


def choose_contact(addresses: Sequence[str], candidates: Iterable[Record],
                   email_fields: Sequence[str]) -> Record | None:
    """The one Contact the event's addresses resolve to, by the rule in this module's docstring."""
    order: dict[str, int] = {}
    for position, raw in enumerate(addresses):
        address = _address(raw)
        if address is not None:
            order.setdefault(address, position)
    best: tuple[Any, ...] | None = None
    chosen: Record | None = None
    for contact in candidates:
        ranks = [(order[address], field_rank)
                 for field_rank, name in enumerate(email_fields)
                 if (address := _address(current_value(contact, name))) is not None and address in order]
        if not ranks:
            continue  # no address in common (or no address at all): never a match
        key = (*min(ranks), _created(contact), str(contact.get("Id") or "\uffff"))
        if best is None or key < best:
            best, chosen = key, contact
    return chosen


def choose_lead(addresses: Sequence[str], leads: Iterable[Mapping[str, Any]],
                email_fields: Sequence[str]) -> tuple[str, Mapping[str, Any]] | None:
    """("Contact", {"Id": its ConvertedContactId}) when a converted Lead matches, else ("Lead", the
    unconverted Lead), each chosen by choose_contact's rule; None when no Lead matches.

    A converted Lead is never written to; the Contact it became is a Contact, and a Contact wins.
    """
    leads = list(leads)
    converted = [lead for lead in leads if lead.get("IsConverted") and lead.get("ConvertedContactId")]
    chosen = choose_contact(addresses, converted, email_fields)
    if chosen is not None:
        return "Contact", {"Id": chosen["ConvertedContactId"]}
    chosen = choose_contact(addresses, [lead for lead in leads if not lead.get("IsConverted")], email_fields)
    return ("Lead", chosen) if chosen is not None else None

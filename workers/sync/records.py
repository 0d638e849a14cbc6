"""Pure builders of the Salesforce records sfsync writes: Contact, Lead, Task, EmailMessage and its relation."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import timezone
from typing import Any, Literal

from schemas.events import Address, ContactUpdated, EmailData, EmailReplied, EmailSent, Person
from schemas.mappings import (
    COMPANY_LENGTH,
    PERSON_EXTRA_PREFIX,
    PERSON_SOURCES,
    SOURCES,
    ContactMappings,
    FieldMapping,
    LeadMappings,
    MappingConfig,
    Policy,
)
from workers.sync.field_policy import apply_field_policy, current_value, is_blank, may_write
from workers.sync.html_text import html_to_text
from workers.sync.mappings import convert_value, iso_utc, truncate_text

FieldDescribes = Mapping[str, Mapping[str, Any]]

#: characters; the lengths of these standard fields in every Salesforce org
TASK_SUBJECT_LENGTH = 255
TASK_DESCRIPTION_LENGTH = 32_000
EMAIL_SUBJECT_LENGTH = 3_000
EMAIL_BODY_LENGTH = 131_072
EMAIL_ADDRESS_LIST_LENGTH = 4_000
EMAIL_NAME_LENGTH = 1_000
MESSAGE_IDENTIFIER_LENGTH = 255
THREAD_IDENTIFIER_LENGTH = 255
CLIENT_THREAD_IDENTIFIER_LENGTH = 40

#: Salesforce's own prefix for logged emails, so sfsync's Tasks sort and read like native ones
TASK_SUBJECT_PREFIX = "Email: "
NO_SUBJECT = "(no subject)"
#: EmailMessage.Status '3' = Sent: a logged email, not a draft to be sent
EMAIL_STATUS_SENT = "3"
TEMPLATE_NOTE = ("[Unify sent no rendered text for this email. Below is the template it was "
                 "written from; its variables were not filled in.]")
NO_BODY_NOTE = "[Unify sent no text for this email.]"

BodySource = Literal["html", "text", "template", "none"]


# --- values of the mapping sources -----------------------------------------------------------

def person_values(person: Person) -> dict[str, Any]:
    """The person's data by source name; extra person fields as `person.<name>`."""
    values: dict[str, Any] = {name: getattr(person, name) for name in PERSON_SOURCES}
    for name, value in (person.model_extra or {}).items():
        values[PERSON_EXTRA_PREFIX + name] = value
    return values


def _overlay(values: dict[str, Any], changes: Mapping[str, Any] | None) -> dict[str, Any]:
    """Values with `changes` laid over them; a change key that is no source is a person field."""
    merged = dict(values)
    for key, value in (changes or {}).items():
        if key in SOURCES or key.startswith(PERSON_EXTRA_PREFIX):
            merged[key] = value
        else:
            merged[PERSON_EXTRA_PREFIX + key] = value
    return merged


def source_values(event: EmailSent | EmailReplied | ContactUpdated) -> dict[str, Any]:
    """Every mapping source's value for this event (None where the event has none).

    For contact.updated the `changes` win over the person's values, so a change of
    sequence status reaches `sequence_status`. Pass the result as `changes=` to
    build_contact / contact_updates.
    """
    values: dict[str, Any] = {"event_id": event.id, "event_type": event.type,
                              "workspace_id": event.workspace_id}
    data = event.data
    values.update(person_values(data.person))
    play = data.play
    values.update(play_name=play.name if play else None, play_id=play.id if play else None)
    if isinstance(event, ContactUpdated):
        return _overlay(values, event.data.changes)
    data = event.data  # an email's, from here on
    sequence, rep = data.sequence, data.rep
    # on a send the rep is the sender even when Unify left `rep` out; on a reply the sender is the prospect
    sender = None if event.is_reply else data.from_
    values.update(
        sequence_status=sequence.status if sequence else None,
        sequence_name=sequence.name if sequence else None,
        sequence_id=sequence.id if sequence else None,
        sequence_step=sequence.step if sequence else None,
        rep_email=(rep.email if rep and rep.email else None) or (sender.email if sender else None),
        rep_name=(rep.name if rep and rep.name else None) or (sender.name if sender else None),
        rep_salesforce_user_id=rep.salesforce_user_id if rep else None,
        origin=data.origin,
        subject=data.subject or None,
        message_id=data.message_id,
        thread_id=data.thread_id,
        sent_at=data.sent_at,
    )
    return values


#: the last describe seen and its fields by lower-cased name: a batch maps every event against the same one
_LOWERED: list[tuple[FieldDescribes, dict[str, Mapping[str, Any]]]] = []


def _by_lower(fields: FieldDescribes | None) -> Mapping[str, Mapping[str, Any]]:
    """A describe's fields by lower-cased name, worked out once per describe rather than once per event."""
    if not fields:
        return {}
    for seen, lowered in _LOWERED:
        if seen is fields:
            return lowered
    lowered = {name.lower(): f for name, f in fields.items()}
    _LOWERED.insert(0, (fields, lowered))
    del _LOWERED[4:]  # Task, EmailMessage, Contact, Lead
    return lowered


def _mapped(mappings: Iterable[FieldMapping], values: Mapping[str, Any],
            fields: FieldDescribes | None) -> tuple[dict[str, Any], dict[str, Policy], dict[str, str]]:
    """Converted values by target, each target's policy, and the conversion warnings by target."""
    desired: dict[str, Any] = {}
    policies: dict[str, Policy] = {}
    warnings: dict[str, str] = {}
    by_lower = _by_lower(fields)
    for mapping in mappings:
        if mapping.policy == "never":
            continue
        policies[mapping.target] = mapping.policy
        if by_lower and mapping.target.lower() not in by_lower:
            # writing it would fail the whole record with INVALID_FIELD; the start-up check
            # reports it, this keeps a default mapping the org lacks from costing the event
            warnings[mapping.target] = f"{mapping.target} left out: the org has no such field"
            continue
        describe = by_lower.get(mapping.target.lower(), {"name": mapping.target})
        converted, warning = convert_value(mapping.source, values.get(mapping.source), describe)
        if warning:
            warnings[mapping.target] = warning
        if converted is not None:
            desired[mapping.target] = converted
    return desired, policies, warnings


# --- Contact and Lead -------------------------------------------------------------------------

def build_contact(person: Person, mappings: MappingConfig, *, changes: Mapping[str, Any] | None = None,
                  fields: FieldDescribes | None = None,
                  email: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The fields of a new Contact (a play's Sync-to-Salesforce) and the conversion warnings.

    `changes`: source values laid over the person's (`source_values(event)`); `fields`: the
    Contact describe's fields by name (`gateway.fields("Contact")`), for lengths and types;
    `email`: the address to create it with (default: the person's first).

    LastName is required by Salesforce. Without one from Unify the configured placeholder
    (`missing_last_name`) is sent: a visible "[not provided]" is wrong less often than a
    name guessed from the address, and fill_blank later replaces it with the real name.
    """
    return _build_person(mappings.contact, person, changes, fields, email)


def build_lead(person: Person, mappings: MappingConfig, *, changes: Mapping[str, Any] | None = None,
               fields: FieldDescribes | None = None, email: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The fields of a new Lead (a play's Sync-to-Salesforce with `play_creates: lead`), and warnings.

    As build_contact, with the `lead` mappings; Salesforce also requires Company: the person's
    company when Unify has one (even if no mapping names Company), else `missing_company`.
    """
    record, warnings = _build_person(mappings.lead, person, changes, fields, email)
    if is_blank(current_value(record, "Company")):
        record = {k: v for k, v in record.items() if k.lower() != "company"}
        company = _overlay(person_values(person), changes).get("company")
        text = company.strip() if isinstance(company, str) and company.strip() else mappings.lead.missing_company
        record["Company"], _ = truncate_text(text, COMPANY_LENGTH)
    return record, warnings


def _build_person(section: ContactMappings | LeadMappings, person: Person, changes: Mapping[str, Any] | None,
                  fields: FieldDescribes | None, email: str | None) -> tuple[dict[str, Any], list[str]]:
    address = email or (person.emails[0] if person.emails else None)
    if not address:
        raise ValueError("a Contact or Lead is only created with an email address: without one it "
                         "could never be matched again")
    values = _overlay(person_values(person), changes)
    desired, policies, warnings = _mapped(section.fields, values, fields)
    record = apply_field_policy(None, desired, policies)
    if is_blank(current_value(record, "LastName")):
        record = {k: v for k, v in record.items() if k.lower() != "lastname"}
        record["LastName"] = section.missing_last_name
    record["Email"] = address
    return record, list(warnings.values())


def contact_updates(person: Person, current_contact: Mapping[str, Any], mappings: MappingConfig, *,
                    changes: Mapping[str, Any] | None = None,
                    fields: FieldDescribes | None = None) -> tuple[dict[str, Any], list[str]]:
    """The fields to write to an existing Contact under each mapping's policy, and warnings.

    Empty when nothing may change: what people typed in Salesforce is never overwritten
    (only `always` fields and null/blank `fill_blank` fields are written). A LastName still
    holding the placeholder counts as blank, so the real name replaces it once Unify has it.
    Warnings are only reported for fields the policy would have written.
    """
    return _person_updates(mappings.contact, person, current_contact, changes, fields,
                           {"lastname": mappings.contact.missing_last_name})


def lead_updates(person: Person, current_lead: Mapping[str, Any], mappings: MappingConfig, *,
                 changes: Mapping[str, Any] | None = None,
                 fields: FieldDescribes | None = None) -> tuple[dict[str, Any], list[str]]:
    """As contact_updates, for an unconverted Lead with the `lead` mappings; a Company still holding
    its placeholder counts as blank too."""
    section = mappings.lead
    return _person_updates(section, person, current_lead, changes, fields,
                           {"lastname": section.missing_last_name, "company": section.missing_company})


def _person_updates(section: ContactMappings | LeadMappings, person: Person, current_record: Mapping[str, Any],
                    changes: Mapping[str, Any] | None, fields: FieldDescribes | None,
                    placeholders: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    values = _overlay(person_values(person), changes)
    desired, policies, warnings = _mapped(section.fields, values, fields)
    current = dict(current_record)
    for name in list(current):
        if name.lower() in placeholders and current[name] == placeholders[name.lower()]:
            current[name] = None
    writes = apply_field_policy(current, desired, policies)
    relevant = [w for target, w in warnings.items() if may_write(policies[target], current, target)]
    return writes, relevant


# --- activity text ---------------------------------------------------------------------------

def email_text(data: EmailData) -> tuple[str, BodySource]:
    """The best readable text of an email and where it came from.

    The rendered body always wins; the template (with its {{...}} variables) is the last
    resort, used only when Unify sent nothing rendered.
    """
    if data.body_html and (text := html_to_text(data.body_html)):
        return text, "html"
    if data.body_text and data.body_text.strip():
        return data.body_text.strip(), "text"
    if data.template and data.template.body and data.template.body.strip():
        return data.template.body.strip(), "template"
    return "", "none"


def _subject(data: EmailData, body_source: BodySource) -> str:
    if data.subject:
        return data.subject
    if body_source == "template" and data.template and data.template.subject:
        return data.template.subject
    return NO_SUBJECT


def _person(address: Address) -> str:
    return f"{address.name} <{address.email}>" if address.name else address.email


def _description(data: EmailData, body: str, source: BodySource) -> str:
    """Header lines like Salesforce's own email logging, then the body."""
    subject = _subject(data, source)
    lines = [f"From: {_person(data.from_)}", f"To: {', '.join(_person(a) for a in data.to)}"]
    if data.cc:
        lines.append(f"CC: {', '.join(_person(a) for a in data.cc)}")
    if data.bcc:
        lines.append(f"BCC: {', '.join(_person(a) for a in data.bcc)}")
    lines.append(f"Subject: {subject}")
    lines.append(f"Sent: {data.sent_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    lines.append("")
    lines.append("Body:")
    if source == "template":
        lines.append(TEMPLATE_NOTE)
    lines.append(body or NO_BODY_NOTE)
    return "\n".join(lines)


# --- Task ------------------------------------------------------------------------------------

def build_task(event: EmailSent | EmailReplied, *, contact_id: str, owner_id: str | None = None,
               extra_fields: Mapping[str, Any] | None = None,
               event_id_field: str | None = None) -> dict[str, Any]:
    """A completed email Task on the contact, readable without opening Unify.

    `owner_id`: the rep's Salesforce User (reports go by owner: Created By is always the
    integration user). `event_id_field`: the Task's external-id field for the event id
    (Unify_Event_Id__c) when the org has it. `extra_fields`: mapped custom fields.
    """
    data = event.data
    body, source = email_text(data)  # once: HTML to text is the costliest step of a Task
    subject, _ = truncate_text(TASK_SUBJECT_PREFIX + _subject(data, source), TASK_SUBJECT_LENGTH)
    description, _ = truncate_text(_description(data, body, source), TASK_DESCRIPTION_LENGTH)
    task: dict[str, Any] = dict(extra_fields or {})
    task.update({
        "WhoId": contact_id,
        "TaskSubtype": "Email",
        "Status": "Completed",
        "ActivityDate": data.sent_at.astimezone(timezone.utc).date().isoformat(),
        "Subject": subject,
        "Description": description,
    })
    if owner_id:
        task["OwnerId"] = owner_id
    if event_id_field:
        task[event_id_field] = event.id
    return task


# --- EmailMessage ----------------------------------------------------------------------------

def _address_list(addresses: Iterable[str], limit: int) -> str | None:
    """';'-joined whole addresses within `limit`: a cut address would be a wrong one."""
    kept: list[str] = []
    size = 0
    for address in addresses:
        cost = len(address) + (1 if kept else 0)
        if size + cost > limit:
            break
        kept.append(address)
        size += cost
    return ";".join(kept) or None


def _identifier(value: str | None, limit: int) -> str | None:
    """An id that fits: as is, or a stable digest when too long (so threading still groups)."""
    if not value:
        return None
    if len(value) <= limit:
        return value
    return hashlib.sha1(value.encode("utf-8"), usedforsecurity=False).hexdigest()[:limit]


def build_email_message(event: EmailSent | EmailReplied, *, contact_id: str,
                        event_id_field: str | None = None,
                        extra_fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A logged (Sent) EmailMessage with the rendered content and the exact send time.

    A send names the contact in ToIds. A reply is Incoming and has no ToIds: the caller
    then creates `build_reply_relation(...)` linking the contact as FromAddress.
    MessageIdentifier is left out rather than cut when it is over 255 characters: a cut
    Message-ID would match the wrong email.
    """
    data = event.data
    body, source = email_text(data)
    subject, _ = truncate_text(_subject(data, source), EMAIL_SUBJECT_LENGTH)
    message: dict[str, Any] = dict(extra_fields or {})
    message.update({
        "Subject": subject,
        "FromAddress": data.from_.email,
        "MessageDate": iso_utc(data.sent_at),
        "Status": EMAIL_STATUS_SENT,
        "Incoming": event.is_reply,
    })
    if data.body_html:
        message["HtmlBody"], _ = truncate_text(data.body_html, EMAIL_BODY_LENGTH)
    text = body if source in ("html", "text") else (
        f"{TEMPLATE_NOTE}\n\n{body}" if source == "template" else NO_BODY_NOTE)
    message["TextBody"], _ = truncate_text(data.body_text.strip() if data.body_text and data.body_text.strip()
                                           else text, EMAIL_BODY_LENGTH)
    if data.from_.name:
        message["FromName"], _ = truncate_text(data.from_.name, EMAIL_NAME_LENGTH)
    for field, addresses in (("ToAddress", data.to), ("CcAddress", data.cc), ("BccAddress", data.bcc)):
        joined = _address_list((a.email for a in addresses), EMAIL_ADDRESS_LIST_LENGTH)
        if joined:
            message[field] = joined
    if len(data.message_id) <= MESSAGE_IDENTIFIER_LENGTH:
        message["MessageIdentifier"] = data.message_id
    for field, limit in (("ThreadIdentifier", THREAD_IDENTIFIER_LENGTH),
                         ("ClientThreadIdentifier", CLIENT_THREAD_IDENTIFIER_LENGTH)):
        identifier = _identifier(data.thread_id, limit)
        if identifier:
            message[field] = identifier
    if not event.is_reply:
        message["ToIds"] = [contact_id]
    if event_id_field:
        message[event_id_field] = event.id
    return message


def build_reply_relation(email_message_id: str, contact_id: str, address: str) -> dict[str, Any]:
    """The EmailMessageRelation that shows a reply as coming from the contact."""
    return {"EmailMessageId": email_message_id, "RelationId": contact_id,
            "RelationType": "FromAddress", "RelationAddress": address}


def activity_extra_fields(event: EmailSent | EmailReplied, mappings: MappingConfig,
                          sobject: Literal["Task", "EmailMessage"], *,
                          fields: FieldDescribes | None = None) -> tuple[dict[str, Any], list[str]]:
    """The mapped custom fields of a new Task / EmailMessage (pass as `extra_fields`), and warnings.

    Activities are only ever created, so every policy but `never` writes.
    """
    section = mappings.task if sobject == "Task" else mappings.email_message
    if not section.fields:  # the default: no custom fields, nothing of the event to read
        return {}, []
    desired, policies, warnings = _mapped(section.fields, source_values(event), fields)
    return apply_field_policy(None, desired, policies), list(warnings.values())

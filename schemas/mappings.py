"""The field-mapping config: which Unify data goes into which Salesforce field, and when.

The file at ``SFSYNC_MAPPINGS`` (YAML or JSON; built-in defaults when unset) has this shape
(``docs/mappings.md`` is the user-facing version)::

    version: 1                     # optional; the only version there is
    contact:                       # Unify data -> Contact field
      fields:
        - {source: first_name, target: FirstName}               # policy fill_blank is the default
        - {source: last_name,  target: LastName}
        - {source: title,      target: Title}
        - {source: phone,      target: Phone}
        - {source: country,    target: MailingCountryCode}      # names/codes -> ISO 3166 alpha-2
        - {source: sequence_status, target: Unify_Sequence_Status__c, policy: always}
      alternate_email_fields: [Secondary_Email__c]              # matched besides Contact.Email
      missing_last_name: "[not provided]"                       # LastName when Unify has none
    lead:                          # Unify data -> Lead field (Leads matched or created, see match_leads)
      fields:
        - {source: first_name, target: FirstName}
        - {source: last_name,  target: LastName}
        - {source: title,      target: Title}
        - {source: phone,      target: Phone}
        - {source: company,    target: Company}
        - {source: country,    target: CountryCode}
      alternate_email_fields: []
      missing_last_name: "[not provided]"
      missing_company: "[not provided]"                         # Company when Unify has none
    task:                          # extra (custom) fields on the Task sfsync logs
      fields: []
    email_message:                 # extra (custom) fields on the EmailMessage sfsync logs
      fields: []

A section that is left out keeps its built-in default; a ``fields`` list that is given
replaces the built-in list of that section (it is not merged), so what the file says is
exactly what is written.

Policies (sfsync never overwrites what people typed in Salesforce unless told to):
``fill_blank`` (default) writes on create, or on update when Salesforce's value is null or
blank; ``always`` writes whenever the value differs (Unify-owned fields such as sequence
status); ``on_create`` writes only when sfsync creates the record; ``never`` writes nothing
(keeps a documented line switched off).

Sources are the names in ``SOURCES`` below, plus ``person.<name>`` for any extra field
Unify sends on the person. This module checks the file's shape only; whether the targets
exist and fit is checked against the org's describe by ``workers.sync.mappings.check``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Policy = Literal["fill_blank", "always", "on_create", "never"]
POLICIES: tuple[str, ...] = ("fill_blank", "always", "on_create", "never")

#: What a source's values are, so a mapping into an incompatible field type is refused.
SourceKind = Literal["text", "email", "number", "datetime", "id", "any"]


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    description: str


#: Every name a mapping may use as `source`; `person.<name>` adds extra person fields.
SOURCES: dict[str, Source] = {
    # the person (event.data.person, or contact.updated person + changes)
    "first_name": Source("text", "the person's first name"),
    "last_name": Source("text", "the person's last name"),
    "title": Source("text", "the person's job title"),
    "company": Source("text", "the person's company name"),
    "country": Source("text", "the person's country; converted to ISO 3166 alpha-2 for *CountryCode fields"),
    "phone": Source("text", "the person's phone number"),
    # the sequence and play the email belongs to
    "sequence_status": Source("text", "Unify's sequence status (data.sequence.status or changes.sequence_status)"),
    "sequence_name": Source("text", "the sequence's name"),
    "sequence_id": Source("text", "the sequence's Unify id"),
    "sequence_step": Source("number", "the step of the sequence this email is"),
    "play_name": Source("text", "the Unify play's name"),
    "play_id": Source("text", "the Unify play's id"),
    # the rep
    "rep_email": Source("email", "the rep's email address"),
    "rep_name": Source("text", "the rep's name"),
    "rep_salesforce_user_id": Source("id", "the rep's Salesforce User id, when Unify knows it"),
    # the email itself
    "origin": Source("text", "'automated' (sequence step) or 'manual' (written by the rep)"),
    "subject": Source("text", "the rendered subject line"),
    "message_id": Source("text", "the RFC 5322 Message-ID"),
    "thread_id": Source("text", "Unify's thread id"),
    "sent_at": Source("datetime", "when the email was sent (UTC)"),
    # the envelope
    "event_id": Source("text", "the Unify event id"),
    "event_type": Source("text", "email.sent, email.replied or contact.updated"),
    "workspace_id": Source("text", "the Unify workspace (tenant) id"),
}

PERSON_EXTRA_PREFIX = "person."
#: the sources that are the person's own modelled fields (schemas.events.Person)
PERSON_SOURCES: tuple[str, ...] = ("first_name", "last_name", "title", "company", "country", "phone")

#: Fields sfsync writes itself on each object; a mapping may not take them over.
RESERVED_TARGETS: dict[str, frozenset[str]] = {
    "contact": frozenset({"Email", "Id"}),
    "lead": frozenset({"Email", "Id", "IsConverted", "ConvertedContactId", "ConvertedAccountId", "ConvertedDate"}),
    "task": frozenset({"Id", "WhoId", "WhatId", "OwnerId", "Subject", "Description", "Status",
                       "TaskSubtype", "ActivityDate"}),
    "email_message": frozenset({"Id", "Subject", "HtmlBody", "TextBody", "FromAddress", "FromName",
                                "ToAddress", "CcAddress", "BccAddress", "ToIds", "CcIds", "BccIds",
                                "MessageDate", "Status", "Incoming", "MessageIdentifier",
                                "ThreadIdentifier", "ClientThreadIdentifier"}),
}

#: Salesforce API names: a letter, then letters, digits and underscores (ns__Name__c too).
_API_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_EXTRA_PERSON = re.compile(r"^person\.[A-Za-z_][A-Za-z0-9_]*$")

#: characters; Contact.LastName's (and Lead.LastName's) length in every org
LAST_NAME_LENGTH = 80
#: characters; Lead.Company's length in every org
COMPANY_LENGTH = 255
#: what a required name or company is written as when Unify has none
NOT_PROVIDED = "[not provided]"


def source_kind(source: str) -> SourceKind:
    """The kind of a valid source's values (extra person fields can be anything)."""
    known = SOURCES.get(source)
    return known.kind if known else "any"


def check_api_name(name: str) -> str:
    """Refuse what cannot be a Salesforce field name: it goes into SOQL unescaped."""
    if not _API_NAME.match(name):
        raise ValueError(f"{name!r} is not a Salesforce field API name (letters, digits, underscores)")
    return name


class _Strict(BaseModel):
    """A typo in a config key must fail loudly rather than silently do nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class FieldMapping(_Strict):
    source: str = Field(min_length=1)
    target: str = Field(min_length=1)
    policy: Policy = "fill_blank"

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        if value.startswith(PERSON_EXTRA_PREFIX) and value[len(PERSON_EXTRA_PREFIX):] in PERSON_SOURCES:
            return value[len(PERSON_EXTRA_PREFIX):]  # person.title is simply title
        if value in SOURCES or _EXTRA_PERSON.match(value):
            return value
        close = difflib.get_close_matches(value, list(SOURCES), n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown source {value!r}; {guess}known sources: {', '.join(SOURCES)}, "
                         f"or person.<field> for an extra person field")

    @field_validator("target")
    @classmethod
    def _api_name(cls, value: str) -> str:
        return check_api_name(value)


class _Section(_Strict):
    fields: list[FieldMapping] = Field(default_factory=list)

    #: key of RESERVED_TARGETS; set by subclasses
    section_name: ClassVar[str] = ""

    @model_validator(mode="after")
    def _targets_are_free(self) -> Self:
        reserved = {name.lower() for name in RESERVED_TARGETS.get(self.section_name, ())}
        seen: set[str] = set()
        for index, mapping in enumerate(self.fields):
            # the "fields[i].target:" prefix lets the loader point at the entry's line
            if mapping.target.lower() in reserved:
                raise ValueError(f"fields[{index}].target: {mapping.target} is written by sfsync "
                                 f"itself and cannot be mapped")
            # Salesforce field names are case-insensitive: Title and title are the same field
            key = mapping.target.lower()
            if key in seen:
                raise ValueError(f"fields[{index}].target: {mapping.target} is mapped more than once")
            seen.add(key)
        return self


def default_contact_fields() -> list[FieldMapping]:
    """Standard Contact fields only, so the defaults work in any org.

    MailingCountryCode exists only with State and Country/Territory Picklists; with the
    built-in defaults a missing target is dropped with a warning rather than refused.
    The sequence-status mapping needs a custom field and is therefore only ever configured.
    """
    return [
        FieldMapping(source="first_name", target="FirstName"),
        FieldMapping(source="last_name", target="LastName"),
        FieldMapping(source="title", target="Title"),
        FieldMapping(source="phone", target="Phone"),
        FieldMapping(source="country", target="MailingCountryCode"),
    ]


class _PersonSection(_Section):
    """A section of a record sfsync matches people to, creates for plays and fills: Contact or Lead."""

    alternate_email_fields: list[str] = Field(default_factory=list)
    #: Salesforce refuses a Contact or Lead without LastName; a visible placeholder is wrong less
    #: often than a guess from the address (jane.doe@ -> "Doe", but j.doe@, sales@ ...)
    missing_last_name: str = Field(default=NOT_PROVIDED, min_length=1, max_length=LAST_NAME_LENGTH)

    @field_validator("alternate_email_fields")
    @classmethod
    def _alternates(cls, value: list[str]) -> list[str]:
        unique: list[str] = []
        for name in value:
            check_api_name(name)
            if name.lower() == "email":
                continue  # Email is always matched
            if name.lower() not in {u.lower() for u in unique}:
                unique.append(name)
        return unique


class ContactMappings(_PersonSection):
    section_name = "contact"
    fields: list[FieldMapping] = Field(default_factory=default_contact_fields)


def default_lead_fields() -> list[FieldMapping]:
    """The Contact defaults on a Lead's own fields (its company is a field; its country code is CountryCode)."""
    return [
        FieldMapping(source="first_name", target="FirstName"),
        FieldMapping(source="last_name", target="LastName"),
        FieldMapping(source="title", target="Title"),
        FieldMapping(source="phone", target="Phone"),
        FieldMapping(source="company", target="Company"),
        FieldMapping(source="country", target="CountryCode"),
    ]


class LeadMappings(_PersonSection):
    section_name = "lead"
    fields: list[FieldMapping] = Field(default_factory=default_lead_fields)
    #: Salesforce refuses a Lead without Company; without one from Unify this is sent, and fill_blank
    #: replaces it once Unify knows the company
    missing_company: str = Field(default=NOT_PROVIDED, min_length=1, max_length=COMPANY_LENGTH)


class TaskMappings(_Section):
    section_name = "task"


class EmailMessageMappings(_Section):
    section_name = "email_message"


class MappingConfig(_Strict):
    version: Literal[1] = 1
    contact: ContactMappings = Field(default_factory=ContactMappings)
    lead: LeadMappings = Field(default_factory=LeadMappings)
    task: TaskMappings = Field(default_factory=TaskMappings)
    email_message: EmailMessageMappings = Field(default_factory=EmailMessageMappings)
    #: where the config came from (None: the built-in defaults); not part of the file
    origin: str | None = Field(default=None, exclude=True)

    @property
    def is_default(self) -> bool:
        return self.origin is None

    def is_given(self, section_name: str) -> bool:
        """Whether the file gave this section (one left out keeps the built-in defaults)."""
        return not self.is_default and section_name in self.model_fields_set


#: The Salesforce object each section writes to.
SECTION_OBJECTS: dict[str, str] = {"contact": "Contact", "lead": "Lead", "task": "Task",
                                   "email_message": "EmailMessage"}

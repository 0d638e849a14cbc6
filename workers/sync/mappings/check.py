"""Checking a mapping config against an org's describe: every named reason a mapping can't work there.

Pure functions over a `describe` callable that return values: the CLI, the worker's start-up
and a web console all present the same problems their own way.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from schemas.events import SEQUENCE_STATUSES
from schemas.mappings import SECTION_OBJECTS, FieldMapping, MappingConfig, source_kind
from workers.sync.mappings.convert import ACCEPTED_KINDS, TEXT_TYPES

Describe = Callable[[str], "dict[str, Any] | None"]
#: sections of records people are matched to and that sfsync creates and fills (never-overwrite applies)
PERSON_SECTIONS = ("contact", "lead")
Severity = Literal["error", "warning"]

#: Country text fields Salesforce's State and Country Picklists replace; mapping country data to them
#: is refused. Each has a *Code twin taking ISO codes.
COUNTRY_TEXT_FIELDS = frozenset({"MailingCountry", "OtherCountry", "BillingCountry", "ShippingCountry",
                                 "Country"})


@dataclass(frozen=True)
class MappingProblem:
    """One reason a mapping can't work in this org. Warnings drop the mapping; errors stop start-up."""

    object: str
    field: str
    source: str | None
    reason: str
    hint: str = ""
    severity: Severity = "error"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        source = f" (from {self.source})" if self.source else ""
        hint = f"; {self.hint}" if self.hint else ""
        return f"{self.object}.{self.field}{source}: {self.reason}{hint}"


def field_index(description: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Describe's fields by lower-cased name (Salesforce field names are case-insensitive)."""
    if not description:
        return {}
    return {f["name"].lower(): f for f in description.get("fields", ())}


def validate_mappings(config: MappingConfig, describe: Describe) -> list[MappingProblem]:
    """Every reason the config can't work against the org `describe` answers for.

    `describe(sobject)` returns Salesforce's describe JSON or None when the org has no such
    object (the gateway's `describe`). With the built-in defaults (config.origin None) every
    problem is a warning: nobody asked for those mappings, so they are dropped, not fatal.
    """
    problems: list[MappingProblem] = []
    for section_name, sobject in SECTION_OBJECTS.items():
        section = getattr(config, section_name)
        active = [m for m in section.fields if m.policy != "never"]
        needs_object = bool(active) or bool(getattr(section, "alternate_email_fields", ()))
        if not needs_object:
            continue
        found = _check_section(section_name, sobject, section, active, describe)
        if section_name == "lead" and not config.is_given("lead"):
            # Leads are off unless a workspace turns them on: defaults nobody asked for are dropped, not
            # fatal, and an org whose Lead the integration user cannot see is no news
            found = [MappingProblem(**{**p.as_dict(), "severity": "warning"}) for p in found if p.field != "*"]
        problems.extend(found)
    if config.is_default:
        problems = [MappingProblem(**{**p.as_dict(), "severity": "warning"}) for p in problems]
    return problems


def _check_section(section_name: str, sobject: str, section: Any, active: list[FieldMapping],
                   describe: Describe) -> list[MappingProblem]:
    """The problems of one section's mappings against its object's describe."""
    description = describe(sobject)
    if description is None:
        optional = sobject == "EmailMessage"
        return [MappingProblem(
            sobject, "*", None,
            f"the org has no {sobject} object" + (" (Enhanced Email is off)" if optional else ""),
            "turn on Enhanced Email in Setup, or remove the email_message mappings" if optional
            else "check the integration user's object permissions",
            severity="warning" if optional else "error")]
    fields = field_index(description)
    person = section_name in PERSON_SECTIONS
    problems: list[MappingProblem] = []
    for mapping in active:
        problems.extend(_check_field(sobject, mapping, fields, updates=person))
    if person:
        problems.extend(_check_alternate_emails(sobject, section.alternate_email_fields, fields))
    return problems


def _check_field(sobject: str, mapping: FieldMapping, fields: dict[str, dict[str, Any]],
                 *, updates: bool) -> list[MappingProblem]:
    target, source = mapping.target, mapping.source

    def problem(reason: str, hint: str = "") -> list[MappingProblem]:
        return [MappingProblem(sobject, target, source, reason, hint)]

    if target in COUNTRY_TEXT_FIELDS:
        return problem(f"{target} is a free-text field and is not supported for country data",
                       f"map to {target}Code instead (ISO codes; needs State and Country/Territory "
                       f"Picklists in Setup); sfsync converts country names to codes")
    field = fields.get(target.lower())
    if field is None:
        close = difflib.get_close_matches(target.lower(), list(fields), n=1, cutoff=0.75)
        hint = f"did you mean {fields[close[0]]['name']}?" if close else \
            "create the field in Salesforce, or check its API name (custom fields end in __c)"
        return problem(f"{sobject} has no field {target}", hint)
    ftype = field.get("type", "")
    if ftype == "multipicklist":
        return problem("multi-select picklists are not supported and cause sync failures",
                       "map to a single-select picklist or a text field, or remove this mapping")
    accepts = ACCEPTED_KINDS.get(ftype)
    kind = source_kind(source)
    if accepts is None:
        return problem(f"fields of type {ftype} can't be written by a mapping",
                       "map to a text, picklist, number, date or boolean field")
    if kind not in accepts:
        return problem(f"type mismatch: {source} is {_KIND_NAMES[kind]} but {target} is a {ftype} field",
                       "map to a text field, or choose a source of a matching type")
    found: list[MappingProblem] = []
    if field.get("calculated") or field.get("autoNumber"):
        return problem(f"{target} is calculated by Salesforce and can't be written",
                       "map to the field it is calculated from, or another field")
    if not field.get("createable", False):
        found += problem(f"{target} is not createable by the integration user",
                         "grant edit access to the field (field-level security), or map another field")
    elif updates and mapping.policy in ("always", "fill_blank") and not field.get("updateable", False):
        found += problem(f"{target} is not updateable, which policy {mapping.policy} needs",
                         "use policy on_create, or grant edit access to the field")
    if source == "sequence_status":
        found += _check_sequence_status(sobject, mapping, field)
    return found


_KIND_NAMES = {"text": "text", "email": "an email address", "number": "a number",
               "datetime": "a date/time", "id": "a Salesforce id", "any": "free-form"}


def _check_sequence_status(sobject: str, mapping: FieldMapping, field: Mapping[str, Any]) -> list[MappingProblem]:
    ftype = field.get("type")
    if ftype == "picklist" and field.get("restrictedPicklist"):
        allowed = {v.get("value") for v in field.get("picklistValues", ()) if v.get("active", True)}
        missing = [s for s in SEQUENCE_STATUSES if s not in allowed]
        if missing:
            return [MappingProblem(
                sobject, mapping.target, mapping.source,
                f"the restricted picklist lacks Unify sequence status values: {', '.join(missing)}",
                "add them to the picklist (`sfsync mappings picklist-values` lists them all)")]
    elif ftype in TEXT_TYPES | {"picklist"}:
        longest = max(len(s) for s in SEQUENCE_STATUSES)
        length = int(field.get("length") or 0)
        if 0 < length < longest:
            return [MappingProblem(
                sobject, mapping.target, mapping.source,
                f"{mapping.target} holds {length} characters; the longest sequence status has {longest}",
                f"make the field at least {longest} characters long")]
    return []


def _check_alternate_emails(sobject: str, names: list[str], fields: dict[str, dict[str, Any]]) -> list[MappingProblem]:
    problems = []
    for name in names:
        field = fields.get(name.lower())
        if field is None:
            problems.append(MappingProblem(sobject, name, None, f"{sobject} has no field {name}",
                                           "fix alternate_email_fields, or create the field"))
        elif field.get("type") not in ("email", "string"):
            problems.append(MappingProblem(
                sobject, name, None,
                f"alternate email field {name} is a {field.get('type')} field, not email or text",
                "list only email (or text) fields in alternate_email_fields"))
        elif field.get("filterable") is False:
            problems.append(MappingProblem(sobject, name, None,
                                           f"{name} can't be used in a SOQL WHERE clause (not filterable)",
                                           "use an email or text field that is filterable"))
    return problems


def usable_mappings(config: MappingConfig, problems: Iterable[MappingProblem]) -> MappingConfig:
    """The config without the mappings and alternate email fields that have a problem.

    For the built-in defaults (whose problems are all warnings): e.g. an org without
    State and Country Picklists simply gets no country mapping.
    """
    bad = {(p.object, p.field.lower()) for p in problems}
    missing_objects = {p.object for p in problems if p.field == "*"}
    update: dict[str, Any] = {}
    for section_name, sobject in SECTION_OBJECTS.items():
        section = getattr(config, section_name)
        kept = [] if sobject in missing_objects else [
            m for m in section.fields if (sobject, m.target.lower()) not in bad]
        changes: dict[str, Any] = {"fields": kept}
        if section_name in PERSON_SECTIONS:
            changes["alternate_email_fields"] = [
                n for n in section.alternate_email_fields if (sobject, n.lower()) not in bad]
        update[section_name] = section.model_copy(update=changes)
    return config.model_copy(update=update)


def errors_and_warnings(problems: Iterable[MappingProblem]) -> tuple[list[MappingProblem], list[MappingProblem]]:
    """The problems split by severity: (errors, warnings), each in the given order.

    Errors mean the configured mapping can't work and writes using it must fail visibly;
    warnings mean the mapping is left out (see usable_mappings).
    """
    errors: list[MappingProblem] = []
    warnings: list[MappingProblem] = []
    for problem in problems:
        (errors if problem.severity == "error" else warnings).append(problem)
    return errors, warnings

"""Loading the mapping file, checking it against the org's describe, and converting values to fit."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Literal

import pycountry
import yaml
from pydantic import ValidationError

from schemas.events import SEQUENCE_STATUSES
from schemas.mappings import SECTION_OBJECTS, FieldMapping, MappingConfig, source_kind

Describe = Callable[[str], "dict[str, Any] | None"]
FieldDescribe = Mapping[str, Any]
Severity = Literal["error", "warning"]

#: appended to text cut to fit a field, so a reader knows the rest exists in Unify
TRUNCATION_MARKER = "…[truncated]"

#: Country text fields the seed says not to map to; each has a *Code twin taking ISO codes.
COUNTRY_TEXT_FIELDS = frozenset({"MailingCountry", "OtherCountry", "BillingCountry", "ShippingCountry",
                                 "Country"})

_TEXT_TYPES = frozenset({"string", "textarea", "combobox", "encryptedstring"})
_NUMBER_TYPES = frozenset({"int", "double", "currency", "percent", "long"})
_ALL_KINDS = frozenset({"text", "email", "number", "datetime", "id", "any"})
#: field type -> the source kinds whose values can be converted into it
_ACCEPTS: dict[str, frozenset[str]] = {
    **{t: _ALL_KINDS for t in _TEXT_TYPES | {"picklist"}},
    "email": frozenset({"email", "any"}),
    "phone": frozenset({"text", "any"}),
    "url": frozenset({"text", "any"}),
    "boolean": frozenset({"any"}),
    **{t: frozenset({"number", "any"}) for t in _NUMBER_TYPES},
    "date": frozenset({"datetime", "any"}),
    "datetime": frozenset({"datetime", "any"}),
    "reference": frozenset({"id"}),
}
#: Salesforce record ids: 15 case-sensitive or 18 case-insensitive characters
_SALESFORCE_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
#: well-known names ISO (and so pycountry) does not carry: former names and the UK's own code
_COUNTRY_ALIASES = {
    "uk": "GB", "turkey": "TR", "burma": "MM", "swaziland": "SZ", "cape verde": "CV",
    "ivory coast": "CI", "holland": "NL", "republic of ireland": "IE",
}


# --- loading --------------------------------------------------------------------------------

class MappingConfigError(ValueError):
    """The mapping file can't be used; the message names the file, the line and field, and why."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: {problems[0]}" if len(problems) == 1
                         else f"{path}:\n  " + "\n  ".join(problems))


def load_mappings(path: str | Path | None) -> MappingConfig:
    """The config in `path` (YAML, or JSON when it ends in .json), or the built-in defaults for None."""
    if path is None:
        return MappingConfig()
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingConfigError(name, [f"cannot read the file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise MappingConfigError(name, [f"not UTF-8 text (byte {exc.start})"]) from None
    data = _parse(name, text)
    if data is None:  # an empty file: every section keeps its default
        data = {}
    if not isinstance(data, dict):
        raise MappingConfigError(name, [f"line 1: the top level must be a mapping with contact/task/"
                                        f"email_message sections, not {type(data).__name__}"])
    try:
        config = MappingConfig.model_validate(data)
    except ValidationError as exc:
        raise MappingConfigError(name, _explain(exc, text)) from None
    return config.model_copy(update={"origin": name})


def _parse(name: str, text: str) -> Any:
    if name.lower().endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise MappingConfigError(name, [f"line {exc.lineno} column {exc.colno}: invalid JSON: "
                                            f"{exc.msg}"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        detail = getattr(exc, "problem", None) or str(exc)
        raise MappingConfigError(name, [f"{where}invalid YAML: {detail}"]) from None


_ENTRY = re.compile(r"^fields\[(\d+)\]\.target: ")


def _explain(error: ValidationError, text: str) -> list[str]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # JSON is YAML too, for line numbers
    except yaml.YAMLError:
        root = None
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        entry = _ENTRY.match(message)
        if entry:  # a section-level check naming one entry: point at that entry
            loc += ("fields", int(entry.group(1)), "target")
            message = message[entry.end():]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(top)"
        line = _line_of(root, loc)
        if item["type"] == "literal_error" and loc and loc[-1] == "policy":
            message = "unknown policy; use one of fill_blank, always, on_create, never"
        elif item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling)"
        problems.append(f"{'line ' + str(line) + ', ' if line else ''}{where}: {message}")
    return problems


def _line_of(node: Any, loc: Iterable[Any]) -> int | None:
    """The 1-based line of the YAML node at `loc`, or of its nearest existing parent."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            matches = [(k, v) for k, v in node.value if getattr(k, "value", None) == str(part)]
            if not matches:
                return line
            key, node = matches[0]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


# --- checking against describe ---------------------------------------------------------------

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
        needs_object = bool(active) or (section_name == "contact" and section.alternate_email_fields)
        if not needs_object:
            continue
        description = describe(sobject)
        if description is None:
            optional = sobject == "EmailMessage"
            problems.append(MappingProblem(
                sobject, "*", None,
                f"the org has no {sobject} object" + (" (Enhanced Email is off)" if optional else ""),
                "turn on Enhanced Email in Setup, or remove the email_message mappings" if optional
                else "check the integration user's object permissions",
                severity="warning" if optional else "error"))
            continue
        fields = field_index(description)
        for mapping in active:
            problems.extend(_check_field(sobject, mapping, fields, updates=section_name == "contact"))
        if section_name == "contact":
            problems.extend(_check_alternate_emails(section.alternate_email_fields, fields))
    if config.is_default:
        problems = [MappingProblem(**{**p.as_dict(), "severity": "warning"}) for p in problems]
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
    accepts = _ACCEPTS.get(ftype)
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
    elif ftype in _TEXT_TYPES | {"picklist"}:
        longest = max(len(s) for s in SEQUENCE_STATUSES)
        length = int(field.get("length") or 0)
        if 0 < length < longest:
            return [MappingProblem(
                sobject, mapping.target, mapping.source,
                f"{mapping.target} holds {length} characters; the longest sequence status has {longest}",
                f"make the field at least {longest} characters long")]
    return []


def _check_alternate_emails(names: list[str], fields: dict[str, dict[str, Any]]) -> list[MappingProblem]:
    problems = []
    for name in names:
        field = fields.get(name.lower())
        if field is None:
            problems.append(MappingProblem("Contact", name, None, f"Contact has no field {name}",
                                           "fix alternate_email_fields, or create the field"))
        elif field.get("type") not in ("email", "string"):
            problems.append(MappingProblem(
                "Contact", name, None,
                f"alternate email field {name} is a {field.get('type')} field, not email or text",
                "list only email (or text) fields in alternate_email_fields"))
        elif field.get("filterable") is False:
            problems.append(MappingProblem("Contact", name, None,
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
        if section_name == "contact":
            changes["alternate_email_fields"] = [
                n for n in section.alternate_email_fields if ("Contact", n.lower()) not in bad]
        update[section_name] = section.model_copy(update=changes)
    return config.model_copy(update=update)


# --- converting values -----------------------------------------------------------------------

def truncate_text(text: str, limit: int) -> tuple[str, bool]:
    """`text` cut to `limit` characters, ending in TRUNCATION_MARKER when it was cut."""
    if limit <= 0 or len(text) <= limit:
        return text, False
    if limit <= len(TRUNCATION_MARKER):
        return text[:limit], True
    return text[:limit - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER, True


def country_code(value: str) -> str | None:
    """ISO 3166 alpha-2 for a country name or code ("Germany", "DE", "deu", "USA", "UK"), else None."""
    text = " ".join(value.replace(".", "").split())  # "U.S.A." and "united  states" alike
    if not text:
        return None
    try:
        return pycountry.countries.lookup(text).alpha_2
    except LookupError:
        pass
    if text.lower() in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[text.lower()]
    if len(text) < 4:
        return None  # fuzzy matching of short strings guesses ("xx" -> Malta)
    try:
        found = pycountry.countries.search_fuzzy(text)
    except LookupError:
        return None
    codes = {c.alpha_2 for c in found}
    # only an unambiguous answer: "Korea" (north or south?) or "Mars" stay unconverted
    return codes.pop() if len(codes) == 1 else None


def convert_value(source: str, value: Any, field_describe: FieldDescribe) -> tuple[Any, str | None]:
    """`value` made fit for the field; (None, warning) means leave the field out.

    A value that can't be made to fit never blocks the event: the record is written without
    that field and the warning travels with the outcome. With a describe that only has a
    "name" (the org's describe unknown) values pass through, converted for *CountryCode only.
    """
    name = field_describe.get("name", "?")
    ftype = field_describe.get("type")
    length = int(field_describe.get("length") or 0)

    def skip(reason: str) -> tuple[None, str]:
        return None, f"{name} left out: {reason}"

    if value is None:
        return None, None
    if isinstance(value, str) and not value.strip():
        return None, None
    if str(name).lower().endswith("countrycode"):
        code = country_code(str(value))
        if code is None:
            return skip(f"{source} {str(value)[:80]!r} is not a recognised country")
        value = code
    if ftype is None:
        return value, None
    if ftype == "multipicklist":
        return skip("multi-select picklists are not supported")
    if ftype in _TEXT_TYPES:
        text, cut = truncate_text(_as_text(value), length)
        return text, (f"{name} truncated to {length} characters" if cut else None)
    if ftype == "picklist":
        return _picklist_value(name, source, _as_text(value), field_describe, length)
    if ftype in ("email", "phone", "url"):
        text = _as_text(value).strip()
        if length and len(text) > length:
            # a cut address or number is wrong data, worse than none
            return skip(f"{source} is {len(text)} characters; {name} holds {length}")
        return text, None
    if ftype == "boolean":
        flag = _boolean(value)
        return (flag, None) if flag is not None else skip(f"{source} {str(value)[:40]!r} is not true/false")
    if ftype in _NUMBER_TYPES:
        return _number(name, source, value, ftype)
    if ftype in ("date", "datetime"):
        moment = _moment(value)
        if moment is None:
            return skip(f"{source} {str(value)[:40]!r} is not a date")
        if ftype == "date":
            return (moment.astimezone(timezone.utc).date() if isinstance(moment, datetime)
                    else moment).isoformat(), None
        if not isinstance(moment, datetime):
            moment = datetime(moment.year, moment.month, moment.day, tzinfo=timezone.utc)
        return iso_utc(moment), None
    if ftype in ("reference", "id"):
        text = _as_text(value).strip()
        return (text, None) if _SALESFORCE_ID.match(text) else skip(f"{text[:40]!r} is not a Salesforce id")
    return skip(f"fields of type {ftype} are not supported")


def iso_utc(moment: datetime) -> str:
    """Salesforce's dateTime form: UTC, milliseconds, Z."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _picklist_value(name: str, source: str, text: str, field: FieldDescribe,
                    length: int) -> tuple[Any, str | None]:
    values = [v for v in field.get("picklistValues", ()) if v.get("active", True)]
    wanted = text.strip().lower()
    for entry in values:  # the org's own spelling wins: "completed" -> "Completed"
        if str(entry.get("value", "")).lower() == wanted or str(entry.get("label", "")).lower() == wanted:
            return entry["value"], None
    if field.get("restrictedPicklist"):
        return None, f"{name} left out: {source} {text[:80]!r} is not a value of the restricted picklist"
    cut, was_cut = truncate_text(text, length)
    return cut, (f"{name} truncated to {length} characters" if was_cut else None)


_TRUE = frozenset({"true", "yes", "y", "1", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "off"})


def _boolean(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return None


def _number(name: str, source: str, value: Any, ftype: str) -> tuple[Any, str | None]:
    number: float | int | None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, (int, float)):
        number = value
    else:
        try:
            number = float(str(value).strip().replace(",", ""))
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        return None, f"{name} left out: {source} {str(value)[:40]!r} is not a number"
    if ftype in ("int", "long"):
        if number != int(number):
            return None, f"{name} left out: {source} {value!r} is not a whole number"
        return int(number), None
    return number, None


def _moment(value: Any) -> date | datetime | None:
    if isinstance(value, (datetime, date)):
        return value
    text = str(value).strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            return date.fromisoformat(text)
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

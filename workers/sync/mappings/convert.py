"""Converting Unify values to fit Salesforce fields: country codes, picklists, numbers, dates, truncation."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime, timezone
from typing import Any

import pycountry

FieldDescribe = Mapping[str, Any]

#: appended to text cut to fit a field, so a reader knows the rest exists in Unify
TRUNCATION_MARKER = "…[truncated]"

TEXT_TYPES = frozenset({"string", "textarea", "combobox", "encryptedstring"})
NUMBER_TYPES = frozenset({"int", "double", "currency", "percent", "long"})
_ALL_KINDS = frozenset({"text", "email", "number", "datetime", "id", "any"})
#: field type -> the source kinds whose values can be converted into it
ACCEPTED_KINDS: dict[str, frozenset[str]] = {
    **{t: _ALL_KINDS for t in TEXT_TYPES | {"picklist"}},
    "email": frozenset({"email", "any"}),
    "phone": frozenset({"text", "any"}),
    "url": frozenset({"text", "any"}),
    "boolean": frozenset({"any"}),
    **{t: frozenset({"number", "any"}) for t in NUMBER_TYPES},
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
    if ftype in TEXT_TYPES:
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
    if ftype in NUMBER_TYPES:
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

"""Checks one record's field values the way Salesforce does, each failure with its real errorCode."""
from __future__ import annotations

from typing import Any

from .catalog import CONVERSION_FIELDS
from .clock import parse_date, parse_datetime
from .errors import ApiError
from .fields import STRING_TYPES, Field, SObjectType


class ParseError(ApiError):
    """A JSON value of the wrong type: Salesforce fails the whole request, not just the record."""

    def __init__(self, message: str):
        super().__init__("JSON_PARSER_ERROR", message)


def _parse_error(field: Field, value: object) -> ParseError:
    kind = {bool: "VALUE_TRUE" if value else "VALUE_FALSE", str: "VALUE_STRING", int: "VALUE_NUMBER_INT",
            float: "VALUE_NUMBER_FLOAT", list: "START_ARRAY", dict: "START_OBJECT"}.get(type(value), "VALUE")
    target = {"boolean": "boolean", "date": "date", "datetime": "datetime", "double": "double",
              "junctionidlist": "JunctionIdList"}.get(field.type, "String")
    return ParseError(f"Cannot deserialize instance of {target} from {kind} value {value!r} "
                      f"or request may be missing a required field (field {field.name})")


def parse_value(field: Field, value: object) -> object:
    """The stored form of a JSON value for `field`; raises ParseError on a type mismatch."""
    if value is None:
        return None
    ftype = field.type
    if ftype in STRING_TYPES:
        if isinstance(value, bool) or isinstance(value, (list, dict)):
            raise _parse_error(field, value)
        text = value if isinstance(value, str) else str(value)
        # Salesforce stores an empty string as null
        return text if text != "" else None
    if ftype == "boolean":
        if not isinstance(value, bool):
            raise _parse_error(field, value)
        return value
    if ftype == "double":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise _parse_error(field, value)
        try:
            return float(value)
        except ValueError:
            raise _parse_error(field, value) from None
    if ftype == "date":
        parsed = parse_date(value) if isinstance(value, str) else None
        if parsed is None and isinstance(value, str):
            # a datetime for a date field is accepted and truncated, as the REST API does
            full = parse_datetime(value, require_offset=False)
            parsed = full[:10] if full else None
        if parsed is None:
            raise _parse_error(field, value)
        return parsed
    if ftype == "datetime":
        parsed = parse_datetime(value, require_offset=False) if isinstance(value, str) else None
        if parsed is None:
            raise _parse_error(field, value)
        return parsed
    if ftype == "junctionidlist":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _parse_error(field, value)
        return list(value)
    raise _parse_error(field, value)


def resolve_fields(sobject: SObjectType, body: dict, *, creating: bool, privileged: bool) -> dict[str, object]:
    """Canonical field name → stored value, refusing unknown and read-only fields."""
    out: dict[str, object] = {}
    for key, value in body.items():
        if key == "attributes":
            continue
        field = sobject.field(key)
        if field is None:
            raise ApiError("INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject.name}", [key])
        writable = field.createable if creating else field.updateable
        if privileged:
            # a person in the UI may set OwnerId etc., never Id or the audit fields
            writable = not field.calculated and field.name not in _SYSTEM
        if not writable:
            raise ApiError("INVALID_FIELD_FOR_INSERT_UPDATE",
                           f"Unable to create/update fields: {field.name}. Please check the security settings "
                           "of this field and verify that it is read/write for your profile or permission set.",
                           [field.name])
        out[field.name] = parse_value(field, value)
    return out


_SYSTEM = frozenset({"Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById",
                     "SystemModstamp", "ActivityId", "RelationObjectType", *CONVERSION_FIELDS})


def check_values(org, sobject: SObjectType, values: dict[str, Any]) -> None:
    """Length, email, picklist and reference checks on the values being written."""
    for name, value in values.items():
        if value is None:
            continue
        field = sobject.fields[name]
        if field.type in STRING_TYPES and field.length and len(value) > field.length:
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise ApiError("STRING_TOO_LONG", f"{field.label}: data value too large: {shown} "
                           f"(max length={field.length})", [name])
        if field.type == "email" and not _looks_like_email(value):
            raise ApiError("INVALID_EMAIL_ADDRESS", f"{field.label}: invalid email address: {value}", [name])
        if field.type == "picklist" and field.restricted and value not in field.picklist:
            raise _bad_picklist(field, value)
        if field.type == "multipicklist":
            for part in value.split(";"):
                if field.restricted and part.strip() not in field.picklist:
                    raise _bad_picklist(field, part)
        if field.type == "reference":
            values[name] = check_reference(org, field, value)
        if field.type == "junctionidlist":
            values[name] = [check_reference(org, field, item) for item in value]


def check_reference(org, field: Field, value: str) -> str:
    normalized = org.normalize_id(value)
    if normalized is None:
        raise ApiError("MALFORMED_ID", f"{field.label}: id value of incorrect type: {value}", [field.name])
    target_type = org.type_of(normalized)
    target = org.record(normalized)
    if target is None or target["IsDeleted"] or target_type not in field.reference_to \
            or org.sobject(target_type) is None:
        raise ApiError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [field.name])
    if target_type == "Lead" and target.get("IsConverted"):
        # a converted Lead lives on as its Contact: nothing new may point at the Lead (a Task's WhoId,
        # an email's ToIds or relation), as in Salesforce
        raise converted_lead(f"cannot reference converted lead: {normalized}", field.name)
    return normalized


def converted_lead(message: str, field_name: str | None = None) -> ApiError:
    return ApiError("CANNOT_UPDATE_CONVERTED_LEAD", message, [field_name] if field_name else [])


def check_required(sobject: SObjectType, record: dict) -> None:
    missing = [f.name for f in sobject.required_fields if record.get(f.name) in (None, "")]
    if missing:
        raise ApiError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)


def check_rules(rules, sobject: SObjectType, record: dict) -> None:
    """Admin-defined validation rules; a rule whose condition holds blocks the save, like a formula rule."""
    for rule in rules:
        if rule["sobject"].lower() != sobject.name.lower():
            continue
        field = sobject.field(rule["field"]) if rule.get("field") else None
        value = record.get(field.name) if field else None
        text = "" if value is None else str(value)
        wanted = str(rule.get("value") or "")
        fired = {
            "contains": wanted.lower() in text.lower() and value is not None,
            "equals": text.lower() == wanted.lower(),
            "blank": value in (None, ""),
            "not_blank": value not in (None, ""),
            "always": True,
        }.get(rule["operator"], False)
        if fired:
            raise ApiError("FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.get("message") or "Validation failed",
                           [field.name] if field else [])


def _looks_like_email(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain and " " not in value)


def _bad_picklist(field: Field, value: object) -> ApiError:
    return ApiError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{field.label}: bad value for restricted picklist field: {value}", [field.name])

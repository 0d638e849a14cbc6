"""The never-overwrite rule: which mapped fields may be written to a record, given what it holds now."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas.mappings import Policy

DEFAULT_POLICY: Policy = "fill_blank"


def is_blank(value: Any) -> bool:
    """Null, or text that is empty or only whitespace: what a person has not filled in."""
    return value is None or (isinstance(value, str) and not value.strip())


def current_value(current: Mapping[str, Any], field: str) -> Any:
    """The record's value of `field`, matching the name case-insensitively as Salesforce does.

    A mapping spelled `title` must still see the `Title` a query returned; otherwise the
    field would look blank and a person's value would be overwritten.
    """
    if field in current:
        return current[field]
    lowered = field.lower()
    for name, value in current.items():
        if name.lower() == lowered:
            return value
    return None


def may_write(policy: Policy, current: Mapping[str, Any] | None, field: str) -> bool:
    """Whether the policy lets `field` be written at all, whatever the new value is."""
    if policy == "never":
        return False
    if current is None:
        return True
    if policy == "always":
        return True
    if policy == "fill_blank":
        return is_blank(current_value(current, field))
    return False  # on_create, on an existing record


def apply_field_policy(current: Mapping[str, Any] | None, desired: Mapping[str, Any],
                       policies: Mapping[str, Policy]) -> dict[str, Any]:
    """The subset of `desired` to write.

    current None means the record is being created: every field except `never` ones.
    On update: `always` fields whose value differs, `fill_blank` fields whose current
    value is null or blank, and never `on_create` or `never` fields. A field without a
    policy is `fill_blank`.
    """
    writes: dict[str, Any] = {}
    for field, value in desired.items():
        policy = policies.get(field, DEFAULT_POLICY)
        if not may_write(policy, current, field):
            continue
        if current is not None and policy == "always" and current_value(current, field) == value:
            continue  # an unchanged value costs a write and a SystemModstamp bump for nothing
        writes[field] = value
    return writes

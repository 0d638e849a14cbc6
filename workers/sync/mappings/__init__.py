"""Field mappings: checking them against the org (check), converting values (convert); loading the file
(schemas.mappings_file, where the registry and the settings read it too) is handed on from here."""

from schemas.mappings_file import MappingConfigError, load_mappings, mappings_from_data, parse_mappings_text
from workers.sync.mappings.check import (
    COUNTRY_TEXT_FIELDS,
    Describe,
    MappingProblem,
    Severity,
    errors_and_warnings,
    field_index,
    usable_mappings,
    validate_mappings,
)
from workers.sync.mappings.convert import (
    TRUNCATION_MARKER,
    FieldDescribe,
    convert_value,
    country_code,
    iso_utc,
    truncate_text,
)

__all__ = [
    "COUNTRY_TEXT_FIELDS", "TRUNCATION_MARKER", "Describe", "FieldDescribe", "MappingConfigError",
    "MappingProblem", "Severity", "convert_value", "country_code", "errors_and_warnings", "field_index",
    "iso_utc", "load_mappings", "mappings_from_data", "parse_mappings_text", "truncate_text", "usable_mappings", "validate_mappings",
]

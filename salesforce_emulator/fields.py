"""Field and sObject metadata, and the describe JSON Salesforce renders from it."""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Any

#: field types whose values are JSON strings
STRING_TYPES = frozenset({
    "id", "string", "email", "textarea", "picklist", "multipicklist", "reference",
    "phone", "combobox", "url",
})
_SOAP_TYPES = {
    "id": "tns:ID", "reference": "tns:ID", "boolean": "xsd:boolean", "date": "xsd:date",
    "datetime": "xsd:dateTime", "double": "xsd:double", "junctionidlist": "tns:JunctionIdListNames",
}


@dataclass(frozen=True)
class Field:
    """One field as describe shows it; defaults are those of an ordinary editable field."""

    name: str
    type: str
    label: str = ""
    length: int = 0
    nillable: bool = True
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    id_lookup: bool = False
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    default_value: object = None
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    defaulted: bool = False
    calculated: bool = False
    #: write-only fields (ToIds…) exist for create but can't be queried or read back
    write_only: bool = False

    @property
    def required(self) -> bool:
        """Salesforce's rule: not nillable, not defaulted, and settable on create."""
        return not self.nillable and not self.defaulted and self.createable and self.type != "boolean"

    def describe(self) -> dict:
        picklist_values = [
            {"active": True, "defaultValue": value == self.default_value, "label": value,
             "validFor": None, "value": value}
            for value in self.picklist
        ]
        return {
            "aggregatable": self.type not in ("textarea", "multipicklist", "junctionidlist"),
            "autoNumber": False,
            "byteLength": self.length * 3,
            "calculated": self.calculated,
            "caseSensitive": False,
            "createable": self.createable,
            "custom": self.name.endswith("__c"),
            "defaultValue": self.default_value if self.type == "boolean" else None,
            "defaultedOnCreate": self.defaulted,
            "dependentPicklist": False,
            "digits": 0,
            "externalId": self.external_id,
            "filterable": not self.write_only and self.type != "textarea",
            "groupable": self.type not in ("textarea", "multipicklist", "double", "datetime"),
            "htmlFormatted": self.name == "HtmlBody",
            "idLookup": self.id_lookup,
            "label": self.label or self.name.removesuffix("__c").replace("_", " "),
            "length": self.length,
            "name": self.name,
            "nameField": self.name in ("Name", "Subject"),
            "nillable": self.nillable,
            "permissionable": self.nillable and not self.calculated and self.name != "Id",
            "picklistValues": picklist_values,
            "polymorphicForeignKey": len(self.reference_to) > 1,
            "precision": 18 if self.type == "double" else 0,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "restrictedPicklist": self.restricted,
            "scale": 2 if self.type == "double" else 0,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
            "sortable": self.type not in ("textarea", "multipicklist", "junctionidlist"),
            "type": self.type,
            "unique": self.unique,
            "updateable": self.updateable,
        }


@dataclass
class SObjectType:
    """One object: its fields by name (ordered as describe lists them)."""

    name: str
    label: str
    label_plural: str
    key_prefix: str
    fields: dict[str, Field]
    #: feature flag the object depends on (EmailMessage needs Enhanced Email)
    feature: str | None = None
    _by_lower: dict[str, Field] = dc_field(default_factory=dict, repr=False)
    #: what every write consults, worked out once (an object's fields do not change after it is built)
    unique_fields: tuple[Field, ...] = dc_field(default=(), init=False, repr=False)
    required_fields: tuple[Field, ...] = dc_field(default=(), init=False, repr=False)
    #: a new record before its values: every readable field, None or its default
    blank: dict[str, object] = dc_field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_lower = {name.lower(): f for name, f in self.fields.items()}
        self.unique_fields = tuple(f for f in self.fields.values() if f.unique)
        self.required_fields = tuple(f for f in self.fields.values() if f.required)
        self.blank = {name: f.default_value for name, f in self.fields.items() if not f.write_only}

    def field(self, name: str) -> Field | None:
        """Field lookup is case-insensitive, as in SOQL and JSON bodies."""
        return self._by_lower.get(name.lower())

    def relationship(self, name: str) -> Field | None:
        """The reference field whose relationshipName is `name` (Account → AccountId)."""
        lowered = name.lower()
        for f in self.fields.values():
            if f.relationship_name and f.relationship_name.lower() == lowered:
                return f
        return None

    def urls(self, version: str) -> dict:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}

    def summary(self, version: str) -> dict:
        """The entry in global describe and in `sobjects/T/` objectDescribe."""
        return {
            "activateable": False, "createable": True, "custom": False, "customSetting": False,
            "deletable": True, "deprecatedAndHidden": False, "feedEnabled": False,
            "keyPrefix": self.key_prefix, "label": self.label, "labelPlural": self.label_plural,
            "layoutable": True, "mergeable": self.name in ("Account", "Contact", "Lead"),
            "mruEnabled": True, "name": self.name, "queryable": True, "replicateable": True,
            "retrieveable": True, "searchable": True, "triggerable": True, "undeletable": True,
            "updateable": True, "urls": self.urls(version),
        }

    def describe(self, version: str) -> dict:
        return {
            **self.summary(version),
            "childRelationships": [],
            "fields": [f.describe() for f in self.fields.values()],
            "recordTypeInfos": [],
            "supportedScopes": [{"label": "All " + self.label_plural.lower(), "name": "everything"}],
        }


def system_fields(prefix_label: str) -> list[Field]:
    """Id and the audit fields every object has; none of them writable through the API."""
    ro: dict[str, Any] = dict(createable=False, updateable=False)
    return [
        Field("Id", "id", f"{prefix_label} ID", 18, nillable=False, defaulted=True, id_lookup=True, **ro),
        Field("IsDeleted", "boolean", "Deleted", nillable=False, defaulted=True, default_value=False, **ro),
        Field("CreatedDate", "datetime", "Created Date", nillable=False, defaulted=True, **ro),
        Field("CreatedById", "reference", "Created By ID", 18, nillable=False, defaulted=True,
              reference_to=("User",), relationship_name="CreatedBy", **ro),
        Field("LastModifiedDate", "datetime", "Last Modified Date", nillable=False, defaulted=True, **ro),
        Field("LastModifiedById", "reference", "Last Modified By ID", 18, nillable=False, defaulted=True,
              reference_to=("User",), relationship_name="LastModifiedBy", **ro),
        Field("SystemModstamp", "datetime", "System Modstamp", nillable=False, defaulted=True, **ro),
    ]

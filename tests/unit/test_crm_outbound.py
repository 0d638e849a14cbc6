"""The `salesforce.contact.changed` event builder: the JSON shape docs/crm-sync.md promises Unify."""

from __future__ import annotations

import json

from events.changes import change_key
from events.outbound import HandledChange, contact_addresses, contact_changed_event, event_id, iso_millis
from workers.crm import parse_modstamp

STAMP = "2026-11-26T18:03:00.412+0000"
RECORD = {"Id": "003000000000042AAA", "IsDeleted": False, "SystemModstamp": STAMP,
          "Email": " Jane.Doe@Acme.example ", "Secondary_Email__c": "jane@home.example",
          "FirstName": "Jane", "Title": None, "LastModifiedById": "005000000000002AAA"}


def build(record=RECORD):
    return contact_changed_event("ws_acme", record, modstamp_ms=parse_modstamp(record["SystemModstamp"]),
                                 email_fields=["Email", "Secondary_Email__c"], mapped_fields=["FirstName", "Title"])


def test_event_follows_the_documented_shape():
    assert build() == {
        "id": "sfc_003000000000042AAA_1795716180412",
        "type": "salesforce.contact.changed",
        "version": 1,
        "object": "Contact",
        "workspace_id": "ws_acme",
        "occurred_at": "2026-11-26T18:03:00.412Z",
        "data": {
            "contact_id": "003000000000042AAA",
            "emails": ["jane.doe@acme.example", "jane@home.example"],
            "fields": {"FirstName": "Jane", "Title": None},
            "system_modstamp": "2026-11-26T18:03:00.412Z",
            "deleted": False,
        },
    }
    json.dumps(build())  # JSON-ready as it stands


def test_the_same_change_always_gets_the_same_id_and_a_later_one_another():
    later = {**RECORD, "SystemModstamp": "2026-11-26T18:03:01.000+0000"}
    assert build()["id"] == build()["id"] != build(later)["id"]
    assert event_id("003X", 5) == "sfc_003X_5"
    assert change_key("003X", 5) == "003X@5" == HandledChange("003X", 5, None).key


def test_addresses_are_lower_cased_without_repeats_and_blanks():
    record = {"Email": "A@X.example", "Secondary_Email__c": "a@x.example", "Other__c": "  "}
    assert contact_addresses(record, ["Email", "Secondary_Email__c", "Other__c", "Missing__c"]) == ["a@x.example"]


def test_a_deleted_contact_says_so():
    assert build({**RECORD, "IsDeleted": True})["data"]["deleted"] is True


def test_timestamps_are_utc_with_milliseconds():
    assert iso_millis(0) == "1970-01-01T00:00:00.000Z"

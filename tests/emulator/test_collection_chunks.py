"""sObject collections of mixed types: Salesforce saves them in chunks and refuses more than 10."""
from __future__ import annotations

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from salesforce_emulator.composite import chunk_count

REFUSAL = [{"errorCode": "INVALID_BATCH_REQUEST", "fields": [],
            "message": "Cannot have more than 10 chunks in a single operation. "
                       "Please rearrange the data to reduce chunking."}]


def _contact(name: str) -> dict:
    return {"attributes": {"type": "Contact"}, "LastName": name}


def _account(name: str) -> dict:
    return {"attributes": {"type": "Account"}, "Name": name}


def _alternating(count: int) -> list[dict]:
    return [_contact(f"C{i}") if i % 2 == 0 else _account(f"A{i}") for i in range(count)]


def _post(sf, records):
    return sf.restful("composite/sobjects", method="POST", json={"records": records})


def test_given_records_then_a_chunk_starts_at_every_change_of_type():
    assert chunk_count([_account("a1"), _account("a2"), _contact("c1"), _account("a3")]) == 3
    assert chunk_count([_contact("a"), {"attributes": {"type": "contact"}, "LastName": "b"}]) == 1


def test_given_10_chunks_when_creating_then_every_record_is_saved(sf, emu):
    results = _post(sf, _alternating(10))
    assert len(results) == 10 and all(r["success"] for r in results)
    assert emu.admin.state()["counts"]["Contact"] == 5


def test_given_11_chunks_when_creating_then_400_nothing_written_and_the_call_counted(sf, emu):
    with pytest.raises(SalesforceMalformedRequest) as caught:
        _post(sf, _alternating(11))
    assert caught.value.status == 400
    assert caught.value.content == REFUSAL
    counts = emu.admin.state()["counts"]
    assert counts["Contact"] == 0 and counts["Account"] == 0
    assert emu.admin.api_calls() == 1


def test_given_200_records_of_two_types_grouped_when_creating_then_two_chunks_are_accepted(sf, emu):
    records = [_contact(f"C{i}") for i in range(100)] + [_account(f"A{i}") for i in range(100)]
    results = _post(sf, records)
    assert len(results) == 200 and all(r["success"] for r in results)
    assert emu.admin.state()["counts"]["Account"] == 100


def test_given_12_alternating_records_when_updating_then_the_whole_request_is_refused(sf, emu):
    created = _post(sf, [_contact(f"C{i}") for i in range(6)] + [_account(f"A{i}") for i in range(6)])
    contacts, accounts = created[:6], created[6:]
    updates = []
    for contact, account in zip(contacts, accounts):
        updates.append({"attributes": {"type": "Contact"}, "Id": contact["id"], "Title": "changed"})
        updates.append({"attributes": {"type": "Account"}, "Id": account["id"], "Name": "changed"})
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful("composite/sobjects", method="PATCH", json={"records": updates})
    assert caught.value.content == REFUSAL
    assert all(r["Title"] is None for r in emu.admin.records("Contact"))


def test_given_12_alternating_records_when_creating_then_refused(sf, emu):
    with pytest.raises(SalesforceMalformedRequest) as caught:
        _post(sf, _alternating(12))
    assert caught.value.content[0]["errorCode"] == "INVALID_BATCH_REQUEST"
    assert emu.admin.state()["counts"]["Contact"] == 0

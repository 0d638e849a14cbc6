"""sObject collections and composite requests: ordering, allOrNone, limits, upserts and references."""
from __future__ import annotations

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest


def _post(sf, records, all_or_none=False):
    return sf.restful("composite/sobjects", method="POST", json={"allOrNone": all_or_none, "records": records})


def test_given_mixed_types_when_creating_a_collection_then_results_follow_request_order(sf, emu):
    results = _post(sf, [
        {"attributes": {"type": "Contact"}, "LastName": "A"},
        {"attributes": {"type": "Task"}, "Subject": "s"},
        {"attributes": {"type": "Contact"}, "FirstName": "no last name"},
        {"attributes": {"type": "Account"}, "Name": "Acme"},
    ])
    assert [r["success"] for r in results] == [True, True, False, True]
    assert [r["id"][:3] for r in results if r["success"]] == ["003", "00T", "001"]
    assert results[2]["errors"] == [{"statusCode": "REQUIRED_FIELD_MISSING",
                                     "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]
    assert emu.admin.state()["counts"]["Contact"] == 1
    assert emu.admin.api_calls() == 1


def test_given_all_or_none_when_one_record_fails_then_nothing_is_written(sf, emu):
    results = _post(sf, [
        {"attributes": {"type": "Contact"}, "LastName": "A"},
        {"attributes": {"type": "Contact"}, "LastName": "B", "MailingCountryCode": "XX"},
    ], all_or_none=True)
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert emu.admin.state()["counts"]["Contact"] == 0


def test_given_more_than_200_records_then_400_and_nothing_written(sf, emu):
    with pytest.raises(SalesforceMalformedRequest) as caught:
        _post(sf, [{"attributes": {"type": "Contact"}, "LastName": f"P{i}"} for i in range(201)])
    assert caught.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert emu.admin.state()["counts"]["Contact"] == 0


def test_given_200_records_when_creating_then_all_succeed_in_one_call(sf, emu):
    results = _post(sf, [{"attributes": {"type": "Contact"}, "LastName": f"P{i}"} for i in range(200)])
    assert len(results) == 200 and all(r["success"] for r in results)
    assert emu.admin.api_calls() == 1


def test_given_a_collection_update_then_records_change_and_failures_carry_their_id(sf):
    created = _post(sf, [{"attributes": {"type": "Contact"}, "LastName": "A"}])[0]["id"]
    results = sf.restful("composite/sobjects", method="PATCH", json={"records": [
        {"attributes": {"type": "Contact"}, "Id": created, "Title": "CRO"},
        {"attributes": {"type": "Contact"}, "Id": created, "Title": "t" * 200},
        {"attributes": {"type": "Contact"}, "Title": "no id"},
    ]})
    assert results[0] == {"id": created, "success": True, "errors": []}
    assert results[1]["id"] == created and results[1]["errors"][0]["statusCode"] == "STRING_TOO_LONG"
    assert results[2]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    assert sf.Contact.get(created)["Title"] == "CRO"


def test_given_a_wrong_json_type_in_a_collection_then_the_whole_request_is_a_400(sf, emu):
    with pytest.raises(SalesforceMalformedRequest) as caught:
        _post(sf, [{"attributes": {"type": "Contact"}, "LastName": "A"},
                   {"attributes": {"type": "Contact"}, "LastName": "B", "HasOptedOutOfEmail": "no"}])
    assert caught.value.content[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert emu.admin.state()["counts"]["Contact"] == 0


def test_given_an_upsert_collection_then_created_flags_and_batch_duplicates_are_reported(sf):
    sf.restful("sobjects/Task/Unify_Event_Id__c/evt_old", method="PATCH", json={"Subject": "old"})
    results = sf.restful("composite/sobjects/Task/Unify_Event_Id__c", method="PATCH", json={"records": [
        {"attributes": {"type": "Task"}, "Unify_Event_Id__c": "evt_old", "Subject": "updated"},
        {"attributes": {"type": "Task"}, "Unify_Event_Id__c": "evt_new", "Subject": "new"},
        {"attributes": {"type": "Task"}, "Unify_Event_Id__c": "evt_dup", "Subject": "a"},
        {"attributes": {"type": "Task"}, "Unify_Event_Id__c": "evt_dup", "Subject": "b"},
    ]})
    assert [r.get("created") for r in results[:2]] == [False, True]
    assert [r["errors"][0]["statusCode"] for r in results[2:]] == ["DUPLICATE_EXTERNAL_ID"] * 2
    subjects = sf.query("SELECT Subject FROM Task ORDER BY Subject")["records"]
    assert [r["Subject"] for r in subjects] == ["new", "updated"]


def test_given_a_collection_delete_then_each_id_gets_a_result(sf):
    ids = [r["id"] for r in _post(sf, [{"attributes": {"type": "Contact"}, "LastName": n} for n in "AB"])]
    results = sf.restful("composite/sobjects", method="DELETE", params={"ids": ",".join(ids + ["junk"])})
    assert [r["success"] for r in results] == [True, True, False]
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == 0


def test_given_an_unknown_type_in_a_collection_then_that_record_fails_with_invalid_type(sf):
    results = _post(sf, [{"attributes": {"type": "Widget__c"}, "Name": "x"}, {"LastName": "no attributes"}])
    assert [r["errors"][0]["statusCode"] for r in results] == ["INVALID_TYPE", "INVALID_TYPE"]


def test_given_composite_subrequests_with_references_then_later_ones_use_earlier_results(sf, emu):
    answer = sf.restful("composite", method="POST", json={"allOrNone": False, "compositeRequest": [
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "acct",
         "body": {"Name": "Acme"}},
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Contact", "referenceId": "person",
         "body": {"LastName": "Doe", "AccountId": "@{acct.id}"}},
        {"method": "GET", "referenceId": "found",
         "url": "/services/data/v59.0/query/?q=SELECT+Id,AccountId+FROM+Contact+WHERE+LastName='Doe'"},
        {"method": "PATCH", "url": "/services/data/v59.0/sobjects/Contact/@{found.records[0].Id}",
         "referenceId": "touch", "body": {"Title": "CRO"}},
    ]})
    codes = [r["httpStatusCode"] for r in answer["compositeResponse"]]
    assert codes == [201, 201, 200, 204]
    account_id = answer["compositeResponse"][0]["body"]["id"]
    assert answer["compositeResponse"][2]["body"]["records"][0]["AccountId"] == account_id
    assert emu.admin.records("Contact")[0]["Title"] == "CRO"
    assert emu.admin.api_calls() == 1


def test_given_composite_all_or_none_when_a_subrequest_fails_then_everything_rolls_back(sf, emu):
    answer = sf.restful("composite", method="POST", json={"allOrNone": True, "compositeRequest": [
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "a", "body": {"Name": "A"}},
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Contact", "referenceId": "c", "body": {}},
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Account", "referenceId": "b", "body": {"Name": "B"}},
    ]})
    bodies = answer["compositeResponse"]
    assert [b["httpStatusCode"] for b in bodies] == [400, 400, 400]
    assert bodies[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert bodies[1]["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert emu.admin.state()["counts"]["Account"] == 0


def test_given_a_reference_to_a_failed_subrequest_then_processing_halted(sf):
    answer = sf.restful("composite", method="POST", json={"compositeRequest": [
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Contact", "referenceId": "c", "body": {}},
        {"method": "POST", "url": "/services/data/v59.0/sobjects/Task", "referenceId": "t",
         "body": {"WhoId": "@{c.id}"}},
    ]})
    assert answer["compositeResponse"][1]["body"][0]["errorCode"] == "PROCESSING_HALTED"


def test_given_more_than_25_subrequests_then_400(api):
    sub = {"method": "GET", "url": "/services/data/v59.0/limits", "referenceId": "x"}
    assert api("POST", "composite", json={"compositeRequest": [sub] * 26}).status_code == 400


def test_given_six_query_or_collection_subrequests_then_400_and_five_with_describes_pass(api, emu):
    query = {"method": "GET", "url": "/services/data/v59.0/query/?q=SELECT+Id+FROM+Contact", "referenceId": "q"}
    collection = {"method": "POST", "url": "/services/data/v59.0/composite/sobjects", "referenceId": "c",
                  "body": {"records": [{"attributes": {"type": "Contact"}, "LastName": "A"}]}}
    describe = {"method": "GET", "url": "/services/data/v59.0/sobjects/Task/describe/", "referenceId": "d"}

    refused = api("POST", "composite", json={"compositeRequest": [query] * 3 + [collection] * 3})
    allowed = api("POST", "composite", json={"compositeRequest": [query] * 3 + [collection] * 2 + [describe] * 10})

    assert refused.status_code == 400 and refused.json()[0]["errorCode"] == "LIMIT_EXCEEDED"
    assert emu.admin.state()["counts"].get("Contact", 0) == 2
    assert allowed.status_code == 200
    assert [r["httpStatusCode"] for r in allowed.json()["compositeResponse"]] == [200] * 15
    assert emu.admin.api_calls() == 2

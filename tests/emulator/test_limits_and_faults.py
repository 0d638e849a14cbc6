"""API call counting, the Sforce-Limit-Info header, the daily limit and injected faults."""
from __future__ import annotations

import time

import pytest
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceMalformedRequest, SalesforceRefusedRequest


def test_given_calls_when_made_then_each_counts_once_and_the_header_reports_usage(sf, emu, api):
    sf.query("SELECT Id FROM Contact")
    sf.restful("composite/sobjects", method="POST",
               json={"records": [{"attributes": {"type": "Contact"}, "LastName": "A"}]})
    assert sf.api_usage["api-usage"].used == 2 and sf.api_usage["api-usage"].total == 100000
    assert api("GET", "limits/").headers["Sforce-Limit-Info"] == "api-usage=3/100000"
    state = emu.admin.state()
    assert state["api_calls"] == 3
    assert state["api_calls_by_route"] == {"GET query": 1, "POST composite/sobjects": 1, "GET limits": 1}


def test_given_the_limits_resource_then_daily_api_requests_show_max_and_remaining(api, emu):
    emu.admin.set_limits(daily_api_requests=5000, used=10)
    body = api("GET", "limits/").json()
    assert body["DailyApiRequests"] == {"Max": 5000, "Remaining": 4989}


def test_given_the_daily_limit_is_used_up_when_calling_then_403_request_limit_exceeded(sf, emu):
    emu.admin.set_limits(daily_api_requests=10, used=10)
    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.query("SELECT Id FROM Contact")
    assert caught.value.content[0] == {"errorCode": "REQUEST_LIMIT_EXCEEDED",
                                       "message": "TotalRequests Limit exceeded.", "fields": []}
    emu.admin.reset_api_calls()
    assert sf.query("SELECT Id FROM Contact")["totalSize"] == 0


def test_given_an_outage_for_two_calls_then_503s_then_recovery_and_outages_are_not_counted(sf, emu):
    emu.admin.add_fault("outage", path="^query", count=2)
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError) as caught:
            sf.query("SELECT Id FROM Contact")
        assert caught.value.status == 503
        assert caught.value.content[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert sf.query("SELECT Id FROM Contact")["totalSize"] == 0
    assert emu.admin.api_calls() == 1


def test_given_a_fault_for_another_method_then_the_call_is_unaffected(sf, emu):
    emu.admin.add_fault("outage", method="POST")
    assert sf.query("SELECT Id FROM Contact")["done"]


def test_given_a_timed_fault_when_it_expires_then_calls_succeed(sf, emu):
    emu.admin.add_fault("request_limit", seconds=0.3)
    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.query("SELECT Id FROM Contact")
    assert caught.value.content[0]["message"] == "ConcurrentPerOrgLongTxn Limit exceeded."
    time.sleep(0.35)
    assert sf.query("SELECT Id FROM Contact")["done"]
    assert emu.admin.api_calls() == 2  # limit refusals count, as they do in Salesforce


def test_given_a_daily_limit_fault_then_403_total_requests(sf, emu):
    emu.admin.add_fault("daily_limit", count=1)
    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.Contact.create({"LastName": "x"})
    assert caught.value.content[0]["message"] == "TotalRequests Limit exceeded."


def test_given_latency_when_calling_then_the_answer_is_delayed(sf, emu):
    emu.admin.add_fault("latency", latency_ms=300, count=1)
    started = time.monotonic()
    sf.query("SELECT Id FROM Contact")
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    sf.query("SELECT Id FROM Contact")
    assert time.monotonic() - started < 0.3


def test_given_a_lock_fault_on_collections_then_each_record_fails_with_unable_to_lock_row(sf, emu):
    emu.admin.add_fault("unable_to_lock_row", path="composite/sobjects", count=1)
    records = [{"attributes": {"type": "Contact"}, "LastName": n} for n in "AB"]
    results = sf.restful("composite/sobjects", method="POST", json={"records": records})
    assert [r["errors"][0]["statusCode"] for r in results] == ["UNABLE_TO_LOCK_ROW"] * 2
    assert emu.admin.state()["counts"]["Contact"] == 0
    assert all(r["success"] for r in sf.restful("composite/sobjects", method="POST", json={"records": records}))


def test_given_a_lock_fault_on_single_calls_then_400_unable_to_lock_row(sf, emu):
    emu.admin.add_fault("unable_to_lock_row", path="^sobjects/Contact")
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Contact.create({"LastName": "x"})
    assert caught.value.content[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"


def test_given_an_invalid_session_fault_then_401_and_the_fault_can_be_removed(api, emu):
    fault = emu.admin.add_fault("invalid_session")
    assert api("GET", "limits/").status_code == 401
    emu.admin.delete_fault(fault)
    assert api("GET", "limits/").status_code == 200


def test_given_faults_when_cleared_then_calls_succeed_again(sf, emu):
    emu.admin.add_fault("outage")
    assert len(emu.admin.faults()) == 1
    emu.admin.clear_faults()
    assert sf.query("SELECT Id FROM Contact")["done"]


def test_given_a_bad_fault_definition_then_the_admin_api_refuses_it(emu):
    from salesforce_emulator.client import AdminError
    with pytest.raises(AdminError):
        emu.admin.add_fault("meteor")
    with pytest.raises(AdminError):
        emu.admin.add_fault("outage", path="(")

"""Bad input gets Salesforce-shaped 4xx answers, never a traceback; and the evaluator is fast enough."""
from __future__ import annotations

import time

import pytest

from salesforce_emulator.org import Org
from salesforce_emulator.queries import run_query


@pytest.mark.parametrize("method, path, kwargs, status, code", [
    ("POST", "sobjects/Contact/", {"data": "{not json"}, 400, "JSON_PARSER_ERROR"),
    ("POST", "sobjects/Contact/", {"data": ""}, 400, "JSON_PARSER_ERROR"),
    ("POST", "sobjects/Contact/", {"json": ["a list"]}, 400, "JSON_PARSER_ERROR"),
    ("POST", "composite/sobjects", {"data": "[1,"}, 400, "JSON_PARSER_ERROR"),
    ("POST", "composite/sobjects", {"json": {"records": "nope"}}, 400, "JSON_PARSER_ERROR"),
    ("POST", "composite", {"json": {"compositeRequest": "nope"}}, 400, "JSON_PARSER_ERROR"),
    ("GET", "sobjects/Widget__c/describe", {}, 404, "NOT_FOUND"),
    ("GET", "sobjects/Contact/0035g00000zzzzzAAA", {}, 404, "NOT_FOUND"),
    ("GET", "sobjects/Contact/junk", {}, 400, "MALFORMED_ID"),
    ("GET", "nothing/here", {}, 404, "NOT_FOUND"),
    ("PUT", "sobjects/Contact/", {}, 405, "METHOD_NOT_ALLOWED"),
    ("GET", "sobjects/Contact/Email/x@y.example/extra", {}, 404, "NOT_FOUND"),
    ("PATCH", "sobjects/Contact/LastName/Doe", {"json": {}}, 404, "NOT_FOUND"),
])
def test_given_bad_requests_then_salesforce_shaped_errors(api, method, path, kwargs, status, code):
    answer = api(method, path, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.json()[0]["errorCode"] == code


def test_given_a_bad_version_then_404(api, emu):
    import requests
    answer = requests.get(f"{emu.url}/services/data/vlatest/limits", timeout=5,
                          headers={"Authorization": f"Bearer {emu.token}"})
    assert answer.status_code == 404


def test_given_20000_contacts_when_looking_up_200_emails_with_in_then_it_takes_well_under_50ms():
    org = Org()
    from salesforce_emulator.writes import Writer
    writer = Writer(org)
    for i in range(20_000):
        writer.create("Contact", {"LastName": f"P{i}", "Email": f"Person.{i}@Example.com"})
    emails = ", ".join(f"'person.{i * 97}@example.com'" for i in range(200))
    soql = f"SELECT Id, Email, Account.Name FROM Contact WHERE Email IN ({emails})"
    best = min(_timed(lambda: run_query(org, "59.0", soql, include_deleted=False, headers={})) for _ in range(3))
    reply = run_query(org, "59.0", soql, include_deleted=False, headers={})
    assert reply.body["totalSize"] == 200
    assert best < 0.05, f"{best * 1000:.1f} ms"


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started

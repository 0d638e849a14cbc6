"""The emulator's lookups by value: a query answered through them returns exactly what a scan returns."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesforce_emulator.org import Org
from salesforce_emulator.queries import run_query
from salesforce_emulator.soql import parse_soql
from salesforce_emulator.soql.compiler import Compiler
from salesforce_emulator.soql.lexer import tokenize
from salesforce_emulator.writes import Writer

_ADDRESSES = ["a@x.example", "A@X.example", "b@x.example", "c@y.example", "d@y.example"]


def _both(org: Org, soql: str, *, include_deleted: bool = False) -> tuple[list, list]:
    """Record ids the query returns through its plan, and through the same plan forced to scan."""
    plan = Compiler(org).compile(parse_soql(soql))
    seen = run_query(org, "59.0", soql, include_deleted=include_deleted, headers={}).body
    scan_plan = dataclasses.replace(plan, seek=None)
    table = org.records[plan.sobject.name].values()
    scanned = [rec for rec in table if (include_deleted or not rec["IsDeleted"]) and scan_plan.predicate(rec)]
    scan_plan.sort(scanned)
    return [rec["Id"] for rec in seen["records"]], [rec["Id"] for rec in scanned]


def _plan(org: Org, soql: str):
    return Compiler(org).compile(parse_soql(soql))


@pytest.mark.parametrize("where, looked_up", [
    ("Email IN ('a@x.example', 'b@x.example')", True),
    ("Email = 'a@x.example'", True),
    ("Email IN ('a@x.example') OR Secondary_Email__c IN ('a@x.example')", True),
    ("Email IN ('a@x.example') AND LastName = 'P1'", True),
    ("LastName LIKE 'P%' AND Email = 'a@x.example'", True),
    ("Email IN ('a@x.example') OR LastName LIKE 'P%'", False),
    ("Email IN ('a@x.example', NULL)", False),
    ("Email = NULL", False),
    ("Email NOT IN ('a@x.example')", False),
    ("NOT Email = 'a@x.example'", False),
    ("Email != 'a@x.example'", False),
    ("Account.Name = 'Acme'", False),
])
def test_given_a_where_clause_then_only_in_and_equals_on_own_fields_are_looked_up(where, looked_up):
    plan = _plan(Org(), f"SELECT Id FROM Contact WHERE {where}")
    assert (plan.seek is not None) is looked_up


def test_given_ids_then_an_id_lookup_matches_exactly():
    org = Org()
    writer = Writer(org)
    ids = [writer.create("Contact", {"LastName": f"P{i}", "Email": f"p{i}@x.example"}) for i in range(5)]
    soql = f"SELECT Id FROM Contact WHERE Id IN ('{ids[3]}', '{ids[1]}')"
    assert _plan(org, soql).seek is not None
    got, scanned = _both(org, soql)
    assert got == scanned == [ids[1], ids[3]]


def test_given_records_changed_deleted_and_rolled_back_then_the_lookup_follows_them():
    org = Org()
    writer = Writer(org)
    first = writer.create("Contact", {"LastName": "One", "Email": "Old@X.example"})
    second = writer.create("Contact", {"LastName": "Two", "Email": "old@x.example"})
    query = "SELECT Id FROM Contact WHERE Email IN ('old@x.example', 'new@x.example')"
    assert _both(org, query) == ([first, second], [first, second])
    writer.update("Contact", first, {"Email": "elsewhere@x.example"})
    assert _both(org, query) == ([second], [second])
    writer.update("Contact", first, {"Email": "NEW@x.example"})
    assert _both(org, query) == ([first, second], [first, second])  # first written first: scan order kept
    writer.delete("Contact", second)
    assert _both(org, query) == ([first], [first])
    assert _both(org, query, include_deleted=True) == ([first, second], [first, second])
    savepoint = writer.savepoint()
    third = writer.create("Contact", {"LastName": "Three", "Email": "new@x.example"})
    assert _both(org, query)[0] == [first, third]
    writer.rollback(savepoint)
    assert _both(org, query) == ([first], [first])
    org.reset()
    assert _both(org, query) == ([], [])
    users = "SELECT Id FROM User WHERE Username = '" + org.api_username + "'"
    assert _both(org, users) == ([org.api_user_id], [org.api_user_id])  # records that outlive a reset


def test_given_records_loaded_from_a_file_then_they_are_looked_up(tmp_path):
    org = Org()
    writer = Writer(org)
    first = writer.create("Contact", {"LastName": "One", "Email": "one@x.example"})
    org.save(str(tmp_path / "org.json"))
    loaded = Org(data_file=str(tmp_path / "org.json"))
    assert _both(loaded, "SELECT Id FROM Contact WHERE Email = 'ONE@x.example'") == ([first], [first])


_contact = st.fixed_dictionaries({
    "LastName": st.sampled_from(["P1", "P2", "Q1"]),
    "Email": st.none() | st.sampled_from(_ADDRESSES),
    "Title": st.none() | st.sampled_from(["CRO", "VP"]),
    "Secondary_Email__c": st.none() | st.sampled_from(_ADDRESSES),
})
_change = st.tuples(st.sampled_from(["update", "delete"]), st.integers(0, 30), _contact)
_value = st.sampled_from([*_ADDRESSES, "B@x.EXAMPLE", "zzz@none.example", "o'brien@x.example"])
_field = st.sampled_from(["Email", "Secondary_Email__c"])
_where = st.one_of(
    st.tuples(_field, st.lists(_value, min_size=1, max_size=4)).map(
        lambda t: t[0] + " IN (" + ", ".join("'" + v.replace("'", "\\'") + "'" for v in t[1]) + ")"),
    st.tuples(_field, _value).map(lambda t: t[0] + " = '" + t[1].replace("'", "\\'") + "'"),
)
_clause = st.recursive(
    st.one_of(_where, st.sampled_from(["LastName = 'P1'", "Title != 'CRO'", "LastName LIKE 'P%'", "Email = NULL"])),
    lambda inner: st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
    | inner.map(lambda c: f"(NOT {c})"),
    max_leaves=4,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contacts=st.lists(_contact, max_size=25), changes=st.lists(_change, max_size=10), where=_clause,
       include_deleted=st.booleans(), order=st.booleans())
def test_given_any_data_and_filter_then_the_looked_up_answer_is_the_scanned_one(
        contacts, changes, where, include_deleted, order):
    org = Org()
    writer = Writer(org)
    ids = [writer.create("Contact", dict(contact)) for contact in contacts]
    _both(org, "SELECT Id FROM Contact WHERE Email = 'a@x.example'")  # build the lookup before the changes
    for kind, position, values in changes:
        if not ids:
            break
        target = ids[position % len(ids)]
        if org.records["Contact"][target]["IsDeleted"]:
            continue
        if kind == "delete":
            writer.delete("Contact", target)
        else:
            writer.update("Contact", target, dict(values))
    soql = f"SELECT Id FROM Contact WHERE {where}" + (" ORDER BY LastName" if order else "")
    got, scanned = _both(org, soql, include_deleted=include_deleted)
    assert got == scanned


@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=12), min_size=1, max_size=4))
def test_given_string_literals_with_and_without_escapes_then_the_lexer_reads_each_as_written(values):
    escaped = [v.replace("\\", "\\\\").replace("'", "\\'") for v in values]
    tokens = [t for t in tokenize("(" + ", ".join(f"'{e}'" for e in escaped) + ")") if t.kind == "string"]
    assert [t.value for t in tokens] == values
    for token, value, written in zip(tokens, values, escaped):
        pieces = list(token.pieces())
        assert "".join(char for char, _ in pieces) == value
        if written == value:  # nothing escaped: no character is marked as escaped
            assert not any(flag for _, flag in pieces)
        else:
            assert any(flag for _, flag in pieces)

"""SOQL through the REST API: filters, escaping, ordering, relationships, paging and refusals."""
from __future__ import annotations

import pytest
from simple_salesforce import format_soql
from simple_salesforce.exceptions import SalesforceMalformedRequest


def _emails(result) -> list:
    return [r["Email"] for r in result["records"]]


@pytest.fixture
def people(emu):
    account = emu.admin.seed("Account", {"Name": "Acme"})[0]
    ids = emu.admin.seed("Contact", [
        {"LastName": "OBrien", "Email": "o'brien@x.example", "AccountId": account, "Title": "CRO"},
        {"LastName": "Doe", "FirstName": "Jane", "Email": "Jane.Doe@Acme.example", "Title": "VP Sales"},
        {"LastName": "Nomail", "Title": "100% Sales_Ops"},
        {"LastName": "Back", "Email": "back\\slash@x.example"},
    ])
    return dict(zip(["obrien", "jane", "nomail", "back"], ids), account=account)


def test_given_an_email_with_a_quote_when_escaped_by_format_soql_then_it_matches(sf, people):
    result = sf.query(format_soql("SELECT Id FROM Contact WHERE Email = {}", "o'brien@x.example"))
    assert [r["Id"] for r in result["records"]] == [people["obrien"]]


def test_given_a_backslash_in_a_value_when_escaped_then_it_matches(sf, people):
    result = sf.query(format_soql("SELECT Email FROM Contact WHERE Email IN {}", ["back\\slash@x.example"]))
    assert _emails(result) == ["back\\slash@x.example"]


def test_given_mixed_case_data_when_comparing_with_equals_and_in_then_the_match_ignores_case(sf, people):
    assert sf.query("SELECT Id FROM Contact WHERE Email = 'jane.doe@acme.EXAMPLE'")["totalSize"] == 1
    query = format_soql("SELECT Email FROM Contact WHERE Email IN {}", ["JANE.DOE@acme.example", "O'BRIEN@X.EXAMPLE"])
    assert sorted(_emails(sf.query(query))) == ["Jane.Doe@Acme.example", "o'brien@x.example"]


def test_given_nulls_when_filtering_then_null_matches_only_null_checks_and_not_in_keeps_nulls(sf, people):
    assert sf.query("SELECT Id FROM Contact WHERE Email = null")["totalSize"] == 1
    assert sf.query("SELECT Id FROM Contact WHERE Email != null")["totalSize"] == 3
    assert sf.query("SELECT Id FROM Contact WHERE Email > 'a'")["totalSize"] == 3
    not_in = sf.query("SELECT LastName FROM Contact WHERE Email NOT IN ('o''brien@x.example')".replace("''", "\\'"))
    assert sorted(r["LastName"] for r in not_in["records"]) == ["Back", "Doe", "Nomail"]


def test_given_like_patterns_when_querying_then_wildcards_and_escaped_wildcards_work(sf, people):
    assert sf.query("SELECT Id FROM Contact WHERE Email LIKE '%@acme.%'")["totalSize"] == 1
    assert sf.query("SELECT Id FROM Contact WHERE LastName LIKE 'd_e'")["totalSize"] == 1
    literal = format_soql("SELECT LastName FROM Contact WHERE Title LIKE '{:like}%'", "100% Sales_")
    assert [r["LastName"] for r in sf.query(literal)["records"]] == ["Nomail"]
    assert sf.query("SELECT Id FROM Contact WHERE Title LIKE '100\\% SalesXOps'")["totalSize"] == 0


def test_given_and_or_not_with_parentheses_when_querying_then_logic_is_applied(sf, people):
    query = ("SELECT LastName FROM Contact WHERE (Title = 'CRO' OR Title = 'VP Sales') "
             "AND NOT LastName = 'Doe'")
    assert [r["LastName"] for r in sf.query(query)["records"]] == ["OBrien"]


def test_given_relationship_paths_when_selecting_and_filtering_then_parents_are_nested(sf, people):
    result = sf.query("SELECT Id, Account.Name, Owner.Email FROM Contact WHERE Account.Name = 'acme'")
    record = result["records"][0]
    assert record["Account"]["Name"] == "Acme"
    assert record["Account"]["attributes"]["type"] == "Account"
    assert record["Owner"]["Email"] == "admin@customer.example"  # seeded by the admin user
    orphan = sf.query(f"SELECT Account.Name FROM Contact WHERE Id = '{people['jane']}'")["records"][0]
    assert orphan["Account"] is None


def test_given_a_15_char_id_literal_when_filtering_by_id_then_it_matches_the_18_char_id(sf, people):
    assert sf.query(f"SELECT Id FROM Contact WHERE Id = '{people['jane'][:15]}'")["totalSize"] == 1


def test_given_order_by_with_nulls_last_when_querying_then_rows_are_ordered(sf, people):
    result = sf.query("SELECT LastName FROM Contact ORDER BY Email ASC NULLS LAST, LastName DESC")
    assert [r["LastName"] for r in result["records"]] == ["Back", "Doe", "OBrien", "Nomail"]
    default = sf.query("SELECT LastName FROM Contact ORDER BY Email DESC")
    assert default["records"][-1]["LastName"] == "Nomail"  # DESC defaults to NULLS LAST


def test_given_limit_and_offset_then_the_window_is_returned(sf, people):
    result = sf.query("SELECT LastName FROM Contact ORDER BY LastName LIMIT 2 OFFSET 1")
    assert [r["LastName"] for r in result["records"]] == ["Doe", "Nomail"]


def test_given_count_when_querying_then_total_size_holds_the_count_and_records_are_empty(sf, people):
    result = sf.query("SELECT COUNT() FROM Contact WHERE Email != null")
    assert result["totalSize"] == 3 and result["records"] == []


def test_given_datetimes_with_offsets_when_comparing_then_instants_are_compared(sf, emu):
    emu.admin.seed("EmailMessage", {"Subject": "a", "Status": "3", "MessageDate": "2026-11-26T18:03:00Z"})
    assert sf.query("SELECT Id FROM EmailMessage WHERE MessageDate = 2026-11-26T20:03:00+02:00")["totalSize"] == 1
    assert sf.query("SELECT Id FROM EmailMessage WHERE MessageDate > 2026-11-26T18:02:59.000+0000")["totalSize"] == 1
    assert sf.query("SELECT Id FROM EmailMessage WHERE MessageDate < 2026-11-26T19:03:00+02:00")["totalSize"] == 0


def test_given_a_date_field_when_comparing_with_a_date_literal_then_it_filters(sf, emu):
    emu.admin.seed("Task", [{"Subject": "a", "ActivityDate": "2026-11-26"},
                            {"Subject": "b", "ActivityDate": "2026-11-20"}])
    result = sf.query("SELECT Subject FROM Task WHERE ActivityDate >= 2026-11-21")
    assert [r["Subject"] for r in result["records"]] == ["a"]


def test_given_more_than_2000_rows_when_query_all_then_every_page_is_followed(sf, emu):
    emu.admin.seed("Contact", [{"LastName": f"P{i}", "Email": f"p{i}@x.example"} for i in range(2500)])
    first = sf.query("SELECT Id FROM Contact")
    assert len(first["records"]) == 2000 and not first["done"]
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-2000")
    everything = sf.query_all("SELECT Id, Email FROM Contact")
    assert everything["totalSize"] == 2500 and len({r["Id"] for r in everything["records"]}) == 2500


def test_given_a_batch_size_header_when_querying_then_pages_have_that_size(api, emu):
    emu.admin.seed("Contact", [{"LastName": f"P{i}"} for i in range(450)])
    page = api("GET", "query/", params={"q": "SELECT Id FROM Contact"},
               headers={"Sforce-Query-Options": "batchSize=200"}).json()
    assert len(page["records"]) == 200
    second = api("GET", page["nextRecordsUrl"].split("/v59.0/")[1]).json()
    assert len(second["records"]) == 200 and second["nextRecordsUrl"].endswith("-400")


def test_given_deleted_rows_when_query_versus_query_all_then_only_query_all_returns_them(sf, emu):
    contact = sf.Contact.create({"LastName": "Gone"})["id"]
    sf.Contact.delete(contact)
    assert sf.query("SELECT Id FROM Contact")["totalSize"] == 0
    deleted = sf.query_all("SELECT Id, IsDeleted FROM Contact", include_deleted=True)
    assert deleted["records"][0]["IsDeleted"] is True


@pytest.mark.parametrize("query", [
    "SELECT Id FROM Contact GROUP BY Id",
    "SELECT Id FROM Contact WHERE Id IN (SELECT WhoId FROM Task)",
    "SELECT COUNT(Id) FROM Contact",
    "SELECT MAX(CreatedDate) FROM Contact",
    "SELECT Id FROM Contact, Account",
    "SELECT Id FROM Contact WHERE LastName = 'x' junk",
    "SELECT Id FROM Contact WHERE LastName = 'x' AND Title = 'y' OR Email = null",
    "SELECT Id FROM Contact WHERE CreatedDate = TODAY",
    "SELECT Id FROM Contact WHERE LastName = :name",
    "SELECT Id, Id FROM Contact",
    "SELECT Id FROM Contact WHERE LastName = 'unterminated",
    "SELECT Id FROM Contact WHERE LastName = 'bad \\q escape'",
    "SELECT FROM Contact",
    "",
])
def test_given_unsupported_or_broken_soql_when_querying_then_400_malformed_query(api, query):
    answer = api("GET", "query/", params={"q": query})
    assert answer.status_code == 400
    assert answer.json()[0]["errorCode"] == "MALFORMED_QUERY"


@pytest.mark.parametrize("query, code", [
    ("SELECT Nope FROM Contact", "INVALID_FIELD"),
    ("SELECT Id FROM Contact WHERE Nope = 'x'", "INVALID_FIELD"),
    ("SELECT Nope.Name FROM Contact", "INVALID_FIELD"),
    ("SELECT Id FROM Widget__c", "INVALID_TYPE"),
    ("SELECT Id FROM Contact WHERE CreatedDate > 2026-11-26", "INVALID_QUERY_FILTER_OPERATOR"),
    ("SELECT Id FROM Contact WHERE HasOptedOutOfEmail = 'true'", "INVALID_QUERY_FILTER_OPERATOR"),
    ("SELECT Id FROM Contact WHERE AccountId = 'junk'", "INVALID_QUERY_FILTER_OPERATOR"),
    ("SELECT Id FROM Contact WHERE Description = 'x'", "INVALID_FIELD"),
])
def test_given_unknown_names_or_wrong_literal_types_then_the_salesforce_error_code(api, query, code):
    answer = api("GET", "query/", params={"q": query})
    assert answer.status_code == 400 and answer.json()[0]["errorCode"] == code


def test_given_simple_salesforce_when_the_query_is_malformed_then_it_raises_malformed_request(sf):
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id FROM Contact LIMIT")
    assert caught.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_given_a_stale_locator_when_asking_for_more_then_invalid_query_locator(api):
    answer = api("GET", "query/01g5g0000000zzzAAA-2000")
    assert answer.status_code == 400 and answer.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"

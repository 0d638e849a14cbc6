"""The CRM cycle's pure parts: watermark and overlap arithmetic, the query, dedupe, own-change rule."""

from __future__ import annotations

import pytest

from workers.crm import (
    NO_EMAIL,
    OWN_CHANGE,
    PUBLISH,
    Watermark,
    advance,
    changes_query,
    classify_change,
    dedupe,
    parse_modstamp,
    query_floor,
    selected_fields,
    soql_datetime,
)

T = parse_modstamp("2026-11-26T18:03:00.000+0000")
MINUTE = 60_000
API_USER = "005000000000001AAA"


def test_salesforce_datetimes_round_trip_through_milliseconds():
    assert parse_modstamp("2026-11-26T18:03:00.412+0000") == T + 412
    assert parse_modstamp("2026-11-26T18:03:00.412Z") == T + 412
    assert soql_datetime(T + 412) == "2026-11-26T18:03:00.412Z"


def test_first_run_starts_the_lookback_before_now():
    assert query_floor(None, now_ms=T, overlap_ms=MINUTE, lookback_ms=5 * MINUTE) == T - 5 * MINUTE


def test_recent_watermark_is_reread_with_the_overlap():
    # read 10 s after the newest change: a transaction stamped just before may commit later
    mark = Watermark(stamp_ms=T, read_at_ms=T + 10_000)
    assert not mark.settled(MINUTE)
    assert query_floor(mark, now_ms=T + 20_000, overlap_ms=MINUTE, lookback_ms=0) == T - MINUTE


def test_settled_watermark_is_not_reread():
    # read more than an overlap after the newest change: all of it was visible to that read
    mark = Watermark(stamp_ms=T, read_at_ms=T + MINUTE + 1)
    assert mark.settled(MINUTE)
    assert query_floor(mark, now_ms=T + 2 * MINUTE, overlap_ms=MINUTE, lookback_ms=0) == T


def test_watermark_moves_to_the_newest_change_and_never_back():
    old = Watermark(stamp_ms=T, read_at_ms=T)
    assert advance(old, floor_ms=T - MINUTE, newest_ms=T + 5, read_at_ms=T + 9) == Watermark(T + 5, T + 9)
    # a late-committed change older than the watermark, found in the overlap, does not pull it back
    assert advance(old, floor_ms=T - MINUTE, newest_ms=T - 5, read_at_ms=T + 9) == Watermark(T, T + 9)
    assert advance(old, floor_ms=T - MINUTE, newest_ms=None, read_at_ms=T + 9) == Watermark(T, T + 9)


def test_first_run_without_changes_keeps_its_floor_as_the_watermark():
    # otherwise each idle first run would slide its floor forward and could skip a late commit
    assert advance(None, floor_ms=T - MINUTE, newest_ms=None, read_at_ms=T) == Watermark(T - MINUTE, T)


def test_query_reads_deleted_and_live_rows_in_a_stable_order():
    soql = changes_query(selected_fields(["Email", "Secondary_Email__c"], ["Title", "email"]), T)
    assert soql == ("SELECT Id, IsDeleted, SystemModstamp, CreatedDate, Email, "
                    "Secondary_Email__c, Title FROM Contact WHERE SystemModstamp > 2026-11-26T18:03:00.000Z "
                    "ORDER BY SystemModstamp, Id")


def test_field_names_that_could_inject_soql_are_refused():
    with pytest.raises(ValueError):
        selected_fields(["Email"], ["Title FROM User --"])


def test_dedupe_keeps_one_row_per_id_and_modstamp():
    rows = [{"Id": "003A", "SystemModstamp": "2026-11-26T18:03:00.000+0000"},
            {"Id": "003A", "SystemModstamp": "2026-11-26T18:03:00.000Z"},
            {"Id": "003A", "SystemModstamp": "2026-11-26T18:04:00.000+0000"},
            {"Id": "003B", "SystemModstamp": "2026-11-26T18:03:00.000+0000"}]
    assert [(ms - T, r["Id"]) for ms, r in dedupe(rows)] == [(0, "003A"), (MINUTE, "003A"), (0, "003B")]


def _row(**fields):
    return {"Id": "003000000000001AAA", "IsDeleted": False, "LastModifiedById": "005000000000002AAA", **fields}


def test_a_change_sfsync_did_not_record_is_published():
    assert classify_change(_row(), ["a@x.example"], recorded_as_own=False) == PUBLISH


def test_a_change_whose_id_and_modstamp_sfsync_recorded_is_not_echoed():
    assert classify_change(_row(), ["a@x.example"], recorded_as_own=True) == OWN_CHANGE


def test_a_person_editing_as_the_integration_user_is_published_like_anyone_else():
    # the last modifier is no evidence: the integration user may be shared with a person or another tool
    row = _row(LastModifiedById=API_USER)
    assert classify_change(row, ["a@x.example"], recorded_as_own=False) == PUBLISH


def test_an_own_change_of_a_contact_without_address_counts_as_own_not_as_skipped():
    assert classify_change(_row(Email=None), [], recorded_as_own=True) == OWN_CHANGE


def test_contacts_without_an_address_do_not_sync():
    assert classify_change(_row(), [], recorded_as_own=False) == NO_EMAIL


def test_deletes_are_published_whoever_made_them():
    row = _row(IsDeleted=True, LastModifiedById=API_USER)
    assert classify_change(row, ["a@x.example"], recorded_as_own=True) == PUBLISH

"""Timestamps and ids as the API prints them, however they are computed."""
from __future__ import annotations

import string
from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from salesforce_emulator.clock import format_millis
from salesforce_emulator.ids import make_id, normalize_id, with_checksum


@given(st.integers(min_value=-10**13, max_value=10**13))
def test_given_any_millisecond_then_it_prints_as_the_api_does(millis):
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=millis)
    assert format_millis(millis) == moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


@given(st.text(alphabet=string.ascii_letters + string.digits + "é_-!", min_size=14, max_size=19))
def test_given_any_text_then_only_ascii_letters_and_digits_of_15_or_18_make_an_id(text):
    expected = (with_checksum(text[:15]) if len(text) in (15, 18) and all(c in string.ascii_letters + string.digits
                                                                          for c in text) else None)
    assert normalize_id(text) == expected


def test_given_a_known_id_then_its_checksum_is_salesforces():
    assert with_checksum("001000000000001") == "001000000000001AAA"
    assert normalize_id("001D000000IqhSL") == normalize_id("001D000000IqhSLxxx") == "001D000000IqhSLIAZ"
    assert make_id("003", 1) == with_checksum("0035g0000000001")

"""The gateway's IN-list queries read exactly as simple-salesforce's format_soql writes them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from simple_salesforce import format_soql

from workers.salesforce.gateway import soql_in
from workers.sync.engine import USERS_QUERY
from workers.sync.resolve import contact_query

#: addresses and Message-IDs as emitters send them, and the characters SOQL escapes
_VALUES = st.lists(st.one_of(
    st.text(max_size=40),
    st.sampled_from(["jane.o'brien@acme.example", "a\\b@c.example", 'q"uote@x.example', "<m-1@mail.example>",
                     "line\nbreak", "tab\there", "{values}", "100%_like@x.example", "Ünïcödé@x.example"]),
), min_size=1, max_size=30)


@given(values=_VALUES)
def test_given_any_values_when_an_in_list_is_formatted_then_it_is_format_soqls_text(values):
    for template in (USERS_QUERY, contact_query(["Email", "Secondary_Email__c"], []),
                     "SELECT Id FROM EmailMessage WHERE MessageIdentifier IN {values} LIMIT {limit}",
                     "SELECT Id FROM Contact WHERE Email LIKE '%{values:like}%' OR Email IN {values}"):
        params = {"limit": 5} if "{limit}" in template else {}
        assert soql_in(template, values, **params) == format_soql(template, values=values, **params)

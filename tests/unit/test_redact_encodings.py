"""Addresses are masked in any encoding and any script; HTTP breadcrumbs lose query strings and fragments."""

from __future__ import annotations

import html
import json
from urllib.parse import quote, quote_plus

import pytest

from workers.observability.redact import EMAIL_MASK, scrub, scrub_text, scrub_url
from workers.observability.sentry import scrub_breadcrumb, scrub_event

ADDRESSES = ["jane.doe@acme.example", "o'brien@acme.example", "zoë.müller@bücher-haus.example",
             "用户@例子.广告", "jürgen+sales@xn--bcher-kva.example", "anna@bücher.de", "ståle@fjord.no"]


def _encodings(address: str) -> dict[str, str]:
    return {
        "plain": address,
        "percent": quote(address, safe=""),
        "percent, @ only": address.replace("@", "%40"),
        "form (+)": quote_plus(f"WHERE Email IN ('{address}')"),
        "double percent": quote(quote(address, safe=""), safe=""),
        "html decimal": address.replace("@", "&#64;"),
        "html hex": address.replace("@", "&#x40;"),
        "html all": "".join(f"&#{ord(c)};" if c in "@'" else c for c in address),
        "json ascii": json.dumps(address)[1:-1].replace("@", "\\u0040"),
        "json ensure_ascii": json.dumps(address, ensure_ascii=True)[1:-1].replace("@", "\\u0040"),
        "soql escaped": address.replace("'", "\\'"),
        "full-width at": address.replace("@", "＠"),
    }


@pytest.mark.parametrize("address", ADDRESSES)
def test_given_an_address_in_any_encoding_when_scrubbed_then_no_recognisable_part_remains(address):
    local, _, domain = address.partition("@")
    for name, encoded in _encodings(address).items():
        text = scrub_text(f"no contact for {encoded} (batch 3)")
        assert EMAIL_MASK in text, (name, text)
        for needle in (domain.split(".")[0], quote(domain.split(".")[0]), local.split("'")[-1]):
            assert needle not in text, (name, needle, text)
        assert "batch 3" in text


def test_given_a_release_or_a_version_when_scrubbed_then_it_is_not_taken_for_an_address():
    assert scrub_text("sfsync@0.1.0 on python 3.11, 100% done") == "sfsync@0.1.0 on python 3.11, 100% done"


def test_given_a_url_with_a_soql_query_when_scrubbed_then_query_and_fragment_go_and_the_path_stays():
    url = ("https://acme.my.salesforce.com/services/data/v59.0/query?q=SELECT+Id+FROM+Contact+WHERE+Email+IN+"
           "%28%27jane%40acme.example%27%29#frag")
    assert scrub_url(url) == "https://acme.my.salesforce.com/services/data/v59.0/query"
    assert scrub_text(f"GET {url} failed") == ("GET https://acme.my.salesforce.com/services/data/v59.0/query"
                                               "?[Filtered] failed")


def test_given_an_http_breadcrumb_when_recorded_then_query_and_fragment_are_dropped_whole():
    crumb = {"type": "http", "category": "httplib", "data": {
        "url": "http://127.0.0.1:8765/services/data/v59.0/sobjects/Contact/Email/o%27brien%40acme.example",
        "http.method": "GET", "status_code": 200, "reason": "OK",
        "http.query": "q=SELECT+Id+FROM+Contact+WHERE+Email+IN+%28%27z%C3%B6e%40b%C3%BCcher.example%27%29",
        "http.fragment": "jane@acme.example"}}
    cleaned = scrub_breadcrumb(crumb)
    assert set(cleaned["data"]) == {"url", "http.method", "status_code", "reason"}
    assert cleaned["data"]["url"] == f"http://127.0.0.1:8765/services/data/v59.0/sobjects/Contact/Email/{EMAIL_MASK}"


def test_given_an_event_whose_breadcrumbs_skipped_the_hook_when_sent_then_they_are_scrubbed_too():
    event = {"breadcrumbs": {"values": [{"category": "httplib", "data": {
        "url": "https://x.example/q?x=1", "http.query": "q=jane%40acme.example"}}]},
        "message": "no contact for jane&#64;acme.example"}
    sent = json.dumps(scrub_event(event), ensure_ascii=False)
    assert "acme" not in sent and "x=1" not in sent and "http.query" not in sent


def test_given_a_nested_value_with_an_encoded_address_when_scrubbed_then_masked_wherever_it_is():
    value = {"extra": [{"note": html.escape("reply from zoë&#64;bücher.example")},
                       ("path", "/api/o%27brien%40acme.example/x")]}
    text = json.dumps(scrub(value), ensure_ascii=False)
    assert "bücher" not in text and "acme" not in text and "brien" not in text


def test_given_a_domain_with_several_labels_when_scrubbed_then_the_whole_domain_goes():
    assert scrub_text("to jane@mail.acme.co.uk, cc") == f"to {EMAIL_MASK}, cc"

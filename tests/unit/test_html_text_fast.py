"""The fast HTML-to-text renderer gives inscriptis's text byte for byte, and leaves other HTML to inscriptis."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inscriptis import get_text

from benchmarks.load import _BODY
from workers.sync import html_text
from workers.sync.html_text import _fast_text, _html_to_text_inscriptis, _PlainText, _Unsupported, html_to_text

#: text pieces: collapsible whitespace of several kinds, entities (some double-encoded), non-ASCII
_TEXT_PIECES = st.sampled_from([
    "a", "Hi", "Jane,", "word", "1.", "-", "x y", " ", "  ", "\n", "\t", "\r\n", " \n ", "\xa0", "&nbsp;",
    "&amp;", "&amp;amp;", "&amp;nbsp;", "&amp;#32;", "&lt;b&gt;", "&quot;", "&#160;", "&", "é", "·", "\u2003",
    "\u3000", "\u200b", "\U0001f600", "[", "](", ")", "*", "\\",
])
_TEXT = st.lists(_TEXT_PIECES, max_size=5).map("".join)
_BLOCK_TAGS = ["p", "div", "blockquote", "h1", "h3", "h6", "ul", "ol", "li"]
_INLINE_TAGS = ["span", "b", "strong", "i", "em", "u", "font", "small", "sub", "code"]
_HARMLESS_STYLES = ["", ' style="color:#888"', ' style="font-family: Arial; COLOR: red"', ' style="x"']
_HREFS = ["https://cal.seller.example/riley", "", "mailto:a@b.example", "u v", "/a?x=1&amp;y=2", " "]


def _element(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """One element of the fast subset around already generated content."""
    def wrap(tag: str, style: str, inner: list[str], text: str) -> str:
        return f"<{tag}{style}>{text}{''.join(inner)}</{tag}>{text[::-1]}"

    containers = st.builds(wrap, st.sampled_from(_BLOCK_TAGS + _INLINE_TAGS), st.sampled_from(_HARMLESS_STYLES),
                           st.lists(children, max_size=4), _TEXT)
    links = st.builds(lambda href, inner, tail: f'<a href="{href}">{"".join(inner)}</a>{tail}',
                      st.sampled_from(_HREFS), st.lists(children, max_size=3), _TEXT)
    numbered = st.builds(lambda value, inner: f'<li value="{value}">{"".join(inner)}</li>',
                         st.sampled_from(["3", "x", "", "10"]), st.lists(children, max_size=2))
    leaves = st.sampled_from(["<br>", "<br/>", "<a>anchor</a>", "<!-- note -->", "<!---->after comment",
                              "<p></p>", "<li></li>", "<ul></ul>", "<div> </div>"])
    return st.one_of(containers, links, numbered, leaves)


_CONTENT = st.recursive(_TEXT, lambda children: _element(children), max_leaves=25)
_HEADS = st.sampled_from(["", "<head><style>p{color:red}</style><title>T</title><meta charset='utf-8'></head>",
                          "<head><link rel='x'><script>var a = '<p>';</script></head>"])


@st.composite
def subset_html(draw) -> str:
    """A document, a fragment or loose tag soup of the fast subset only."""
    body = "".join(draw(st.lists(_CONTENT, min_size=1, max_size=4)))
    shape = draw(st.sampled_from(["fragment", "document", "soup"]))
    if shape == "document":
        return f"<html>{draw(_HEADS)}<body>{body}</body></html>"
    if shape == "soup":  # unbalanced and misnested tags: lxml repairs them
        tags = draw(st.lists(st.sampled_from(["<p>", "</p>", "<li>", "</ul>", "<b>", "</div>", "<ol>", "</a>",
                                              "<blockquote>", "</li>", "<a href='z'>"]), max_size=6))
        return "".join(tag + draw(_TEXT) for tag in tags) + body
    return draw(st.sampled_from(["", " ", "\n"])) + body


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subset_html())
def test_given_html_of_the_subset_when_rendered_fast_then_the_text_of_inscriptis_byte_for_byte(html: str):
    try:
        fast = _fast_text(html)
    except _Unsupported as refusal:  # a document of comments alone: inscriptis reads it as <pre>
        assert str(refusal) == "empty document"
    else:
        assert fast == get_text(html, _PlainText)
    assert html_to_text(html) == _html_to_text_inscriptis(html)


_FOREIGN = st.sampled_from([
    "<table><tr><td>a</td><td>b</td></tr></table>", "<pre>  kept\n  as is</pre>", "<img src='x.png' alt='x'>",
    "<q>quoted</q>", '<p style="display:none">hidden</p>', '<span style="display: block">b</span>',
    '<div style="margin-top: 2em">m</div>', '<ul style="padding-left: 16px"><li>i</li></ul>',
    '<p style="white-space: pre">  a  b</p>', "<section>s</section>", "<o:p>o</o:p>", "<?php x ?>tail",
    "<head><title>t<br></title></head>", '<p style="STYLE: display:none">s</p>',
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subset_html(), _FOREIGN, subset_html())
def test_given_markup_outside_the_subset_when_converted_then_inscriptis_text(before: str, foreign: str, after: str):
    html = before + foreign + after
    assert html_to_text(html) == _html_to_text_inscriptis(html)


@pytest.mark.parametrize("foreign", [
    "<table><tr><td>a</td></tr></table>", "<pre>a</pre>", "<img src='x.png'>", "<q>q</q>",
    '<p style="display:none">h</p>', '<div style="margin-bottom:3em">m</div>', "<o:p>o</o:p>",
    "<section>s</section>", '<?xml version="1.0"?><p>x</p>', '<p>a<font style="display:none">b</font></p>',
])
def test_given_markup_outside_the_subset_when_rendered_fast_then_it_is_refused(foreign: str):
    with pytest.raises(_Unsupported):
        _fast_text(foreign + "<p>Hi</p>")


def test_given_markup_outside_the_subset_when_converted_then_inscriptis_does_it(monkeypatch):
    calls = []
    monkeypatch.setattr(html_text, "get_text", lambda html, config: calls.append(html) or "from inscriptis")
    assert html_to_text("<p>Hi</p><table><tr><td>a</td></tr></table>") == "from inscriptis"
    assert html_to_text("<p>Hi <b>Jane</b></p>") == "Hi Jane" and len(calls) == 1


def _benchmark_bodies() -> list[str]:
    body = _BODY.format(first="Jane", company="Acme")
    return [body, f"<p>Sounds good, Thursday works.</p><blockquote>{body}</blockquote>"]


@pytest.mark.parametrize("html", _benchmark_bodies())
def test_given_a_benchmark_body_when_converted_then_the_fast_path_gives_inscriptis_text(html: str):
    assert _fast_text(html) == get_text(html, _PlainText)
    assert html_to_text(html) == _html_to_text_inscriptis(html)
    assert "[cal.seller.example/riley](https://cal.seller.example/riley)\n\nBest,\nRiley\n\nRiley Rep" in (
        html_to_text(html))


def test_given_a_reply_quoting_the_first_email_when_converted_then_the_exact_text():
    assert html_to_text(_benchmark_bodies()[1]) == (
        "Sounds good, Thursday works.\n\nHi Jane,\n\nI noticed Acme is growing the sales team this quarter. "
        "We help teams like yours cut the time reps spend logging email by hours a week, and every touch still "
        "lands in Salesforce where your reports expect it.\n\nWould 15 minutes on Thursday work? Here is my "
        "calendar: [cal.seller.example/riley](https://cal.seller.example/riley)\n\nBest,\nRiley\n\n"
        "Riley Rep · Seller Inc · 1 Market St")


def test_given_nested_lists_when_rendered_fast_then_inscriptis_bullets_and_indentation():
    html = "<ul><li>a<ul><li>b</li><li></li></ul></li><li><p>c</p></li></ul><ol><li value='5'>d</li><li></li></ol>"
    assert _fast_text(html) == get_text(html, _PlainText)
    assert html_to_text(html) == "* a\n      + b\n      +\n\n  * c\n\n 5. d\n 6."


@pytest.mark.parametrize("html", [
    "", "   ", "<", "<p>\ud800</p>", "<" * 5000, "<div>" * 3000 + "deep" + "</div>" * 3000,
    "<b>" * 3000 + "deep", "<p>" + "x " * 200_000 + "</p>", "\x00<p>nul</p>", "<p>\x0c</p>",
])
def test_given_hostile_html_when_converted_then_the_same_outcome_as_inscriptis(html: str):
    try:
        expected: str | type[BaseException] = _html_to_text_inscriptis(html)
    except Exception as error:  # noqa: BLE001 - the outcome to match may be an error
        expected = type(error)
    try:
        actual: str | type[BaseException] = html_to_text(html)
    except Exception as error:  # noqa: BLE001
        actual = type(error)
    assert actual == expected

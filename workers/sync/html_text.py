"""Readable plain text of an email's HTML: a fast renderer for common email markup, inscriptis for the rest."""

from __future__ import annotations

import re
from html import unescape

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from inscriptis.model.css import CssParse
from lxml.etree import Comment, HTMLParser, ParserError, _Element, fromstring

#: inscriptis (Apache-2.0): text as a browser lays it out, links kept as [text](url), images left out.
#: Its output is plain text, never Markdown, so "1." or "-" in a sentence stays as written.
_PlainText = ParserConfig(css=CSS_PROFILES["strict"], display_links=True, display_images=False)

# The fast renderer lays out the tags below exactly as inscriptis does with _PlainText (its strict
# CSS profile). Any other tag, a style that sets layout (display, margins, white-space, ...), or a
# hidden element holding anything but hidden elements sends the whole email to inscriptis.
#: block tags: (margin before, margin after, left padding) in lines and characters
_BLOCKS: dict[str, tuple[int, int, int]] = {
    "p": (1, 1, 0), "h1": (1, 1, 0), "h2": (1, 1, 0), "h3": (1, 1, 0), "h4": (1, 1, 0), "h5": (1, 1, 0),
    "h6": (1, 1, 0), "div": (0, 0, 0), "blockquote": (0, 0, 0), "li": (0, 0, 0), "ul": (0, 0, 4),
    "ol": (0, 0, 4),
}
#: inline tags without a layout of their own (br and a have one, handled by name)
_INLINE = frozenset({"html", "body", "span", "b", "strong", "i", "em", "u", "font", "small", "big", "sub", "sup",
                     "s", "strike", "code", "tt", "mark", "abbr", "cite", "ins", "del", "label", "br", "a"})
#: tags never displayed, nor anything inside them
_HIDDEN = frozenset({"head", "title", "style", "meta", "link", "script"})
#: bullets of unordered lists by nesting depth
_UL_BULLETS = ("* ", "+ ", "o ", "- ")
#: the parser of lxml.html (same options), building plain elements, which are quicker to walk
_PARSER = HTMLParser()
_BLANK_LINE_ENDS = re.compile(r"[ \t]+\n")
_EMPTY_LINE_RUNS = re.compile(r"\n{3,}")


class _Unsupported(Exception):
    """The HTML has something the fast renderer does not lay out."""


def _html_to_text_inscriptis(html: str) -> str:
    """Readable text of an email's HTML by inscriptis alone (any HTML)."""
    return _tidy(get_text(html, _PlainText))


def html_to_text(html: str) -> str:
    """Readable plain text of an email's HTML: paragraphs, lists, links (as [text](url)), no markup."""
    try:
        return _tidy(_fast_text(html))
    except Exception:  # noqa: BLE001 - markup outside the subset, or input lxml refuses: inscriptis decides
        return _html_to_text_inscriptis(html)


def _tidy(text: str) -> str:
    """No hard wraps: Salesforce wraps on display; trailing blanks and runs of empty lines go."""
    text = text.replace("\xa0", " ")
    if " \n" in text or "\t\n" in text:  # the only places the pattern can match
        text = _BLANK_LINE_ENDS.sub("\n", text)
    if "\n\n\n" in text:
        text = _EMPTY_LINE_RUNS.sub("\n\n", text)
    return text.strip()


def _fast_text(html: str) -> str:
    """inscriptis's text of html, for the subset of tags above; _Unsupported for anything else."""
    html = html.strip()
    if not html:
        return ""
    if html.startswith("<?xml "):
        raise _Unsupported("XML declaration")
    try:
        root = fromstring(html, _PARSER)  # lxml.html.document_fromstring's parse, without its element classes
    except ParserError as error:
        raise _Unsupported("unparsable") from error
    if root is None:
        raise _Unsupported("empty document")
    canvas = _Canvas()
    canvas.element(root, -1)
    return canvas.text()


def _check_style(style: str) -> None:
    """_Unsupported if a style attribute sets a property inscriptis lays out (display, margins, ...)."""
    for directive in style.lower().split(";"):
        if ":" in directive:
            key = directive.split(":", 1)[0].strip()
            if hasattr(CssParse, "attr_" + key.replace("-webkit-", "").replace("-", "_")):
                raise _Unsupported(f"style {key}")


def _check_hidden(element: _Element) -> None:
    """_Unsupported unless everything inside a hidden element is itself hidden (no br, comment, ...)."""
    for inner in element.iterdescendants():
        if not isinstance(inner.tag, str) or inner.tag not in _HIDDEN:
            raise _Unsupported("shown markup inside a hidden element")


class _Canvas:
    """Lines of text as inscriptis's Canvas, Block and Prefix build them, for the supported tags."""

    __slots__ = ("blocks", "bullets", "collapsable", "consumed", "content", "link", "list_counters", "margin",
                 "open_bullets", "padding", "paddings")

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.margin = 1000  # empty lines already written above the current line
        self.content = ""  # the current line
        self.collapsable = True  # a leading space of the next text collapses
        self.padding = 0
        self.paddings: list[int] = []
        self.bullets: list[str] = []  # per open block: its bullet, "" once written or if it has none
        self.open_bullets = 0  # bullets not yet written
        self.consumed = False  # the current line has its indentation and bullet
        self.list_counters: list[str | int] = []
        self.link = ""

    def element(self, element: _Element, parent_margin_after: int) -> None:
        """Lay out one element and its tail; parent_margin_after is -1 for an inline parent."""
        tag = element.tag
        if tag.__class__ is not str:
            if tag is not Comment:  # type: ignore[comparison-overlap]  # lxml-stubs: a comment's tag is the Comment factory
                raise _Unsupported("processing instruction or entity")
            if tail := element.tail:
                self.write(tail)
            return
        if style := element.get("style"):
            _check_style(style)
        if tag in _HIDDEN:
            _check_hidden(element)
        elif (shape := _BLOCKS.get(tag)) is not None:
            self.block(element, tag, shape, parent_margin_after)
        elif tag in _INLINE:
            self.inline(element, tag)
        else:
            raise _Unsupported(tag)
        if tail := element.tail:
            self.write(tail)

    def inline(self, element: _Element, tag: str) -> None:
        """An inline element: br breaks the line, a with an href becomes [text](href)."""
        if tag == "br":
            self.newline()
        elif tag == "a":
            self.link = element.get("href", "")
            if self.link:
                self.write("[")
        if text := element.text:
            self.write(text)
        for child in element:
            self.element(child, -1)
        if tag == "a" and self.link:
            self.write(f"]({self.link})")

    def block(self, element: _Element, tag: str, shape: tuple[int, int, int], parent_margin_after: int) -> None:
        """A block element: its own lines, margins above and below, list indentation and bullets."""
        margin_before, margin_after, padding = shape
        bullet = ""
        if tag == "ul":
            self.list_counters.append(_UL_BULLETS[len(self.list_counters) % len(_UL_BULLETS)])
        elif tag == "ol":
            self.list_counters.append(1)
        elif tag == "li":
            bullet = self.list_item_bullet(element)
        if not self.flush() and bullet:
            self.write_unconsumed_bullet()
        self.padding += padding
        self.paddings.append(padding)
        self.bullets.append(bullet)
        if bullet:
            self.open_bullets += 1
        self.add_margin(max(parent_margin_after, margin_before))
        if text := element.text:
            self.write(text)
        for child in element:
            self.element(child, margin_after)
        if tag in ("ul", "ol"):
            self.list_counters.pop()
        if not self.flush() and bullet:
            self.write_unconsumed_bullet()
        self.padding -= self.paddings.pop()
        if self.bullets.pop():
            self.open_bullets -= 1
        self.add_margin(margin_after)

    def list_item_bullet(self, element: _Element) -> str:
        """The bullet of an li: the list's symbol or its next number (an li's value sets the number)."""
        bullet = self.list_counters[-1] if self.list_counters else "* "
        value = element.get("value")
        if value is not None and value.isdigit() and isinstance(bullet, int):
            bullet = int(value)
            self.list_counters[-1] = bullet
        if isinstance(bullet, int):
            self.list_counters[-1] += 1  # type: ignore[operator]
            return f"{bullet}. "
        return bullet

    def add_margin(self, lines: int) -> None:
        """Empty lines up to `lines` above what comes next."""
        if lines > self.margin:
            self.blocks.append("\n" * (lines - self.margin - 1))
            self.margin = lines

    def write(self, text: str) -> None:
        """Non-empty text into the current line: whitespace runs collapse to one space, entities left decode."""
        words = text.split()  # splits at what str.isspace() calls whitespace, as inscriptis does
        if not words:
            if self.collapsable:
                return
            text = " "
        else:
            lead = " " if text[0].isspace() and not self.collapsable else ""
            text = lead + " ".join(words) + (" " if text[-1].isspace() else "")
        self.collapsable = text[-1] == " "
        if not self.content:
            text = self.line_prefix() + text
        self.content += unescape(text) if "&" in text else text

    def line_prefix(self) -> str:
        """Indentation and bullet that start a line, once per line."""
        if self.consumed:
            return ""
        self.consumed = True
        if not self.open_bullets:
            return " " * self.padding
        bullet = self.pop_bullet()
        return " " * (self.padding - len(bullet)) + bullet

    def pop_bullet(self) -> str:
        """The innermost bullet not yet written, which is then written."""
        for index in range(len(self.bullets) - 1, -1, -1):
            if bullet := self.bullets[index]:
                self.bullets[index] = ""
                self.open_bullets -= 1
                return bullet
        return ""

    def write_unconsumed_bullet(self) -> None:
        """A line with just the bullet of an item that has no text of its own."""
        if self.consumed or not self.open_bullets or not (bullet := self.pop_bullet()):
            return
        padding = self.padding - self.paddings[-1]
        self.blocks.append(" " * (padding - len(bullet)) + bullet)
        self.new_line()
        self.margin = 0

    def flush(self) -> bool:
        """End the current line if it has text; True if it had.

        A trailing collapsible space goes when the line is checked and another when it is taken, as
        inscriptis reads its Block.content twice (only entities or indentation make two such spaces).
        """
        content = self.content
        if self.collapsable and content.endswith(" "):
            self.content = content = content[:-1]
        if not content:
            return False
        if self.collapsable and content.endswith(" "):
            content = content[:-1]
        self.blocks.append(content)
        self.new_line()
        self.margin = 0
        return True

    def newline(self) -> None:
        """A br: end the current line, or add an empty one."""
        if not self.flush():
            self.blocks.append("")
            self.new_line()

    def new_line(self) -> None:
        self.content = ""
        self.collapsable = True
        self.consumed = False

    def text(self) -> str:
        self.flush()
        return "\n".join(self.blocks)

"""SOQL tokenizer: identifiers, keywords, quoted strings with escapes, numbers, dates, punctuation."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from ..clock import parse_date, parse_datetime
from ..errors import ApiError

KEYWORDS = frozenset({
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC",
    "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "NULL", "TRUE", "FALSE", "GROUP", "HAVING",
    "INCLUDES", "EXCLUDES", "WITH", "FOR", "USING", "TYPEOF", "ROLLUP", "CUBE",
})
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_PUNCT = {"(", ")", ",", ".", "=", "<", ">", "!", ":"}
_LITERAL_CHARS = frozenset("0123456789.:+-TZtz")


def malformed(message: str) -> ApiError:
    return ApiError("MALFORMED_QUERY", message)


@dataclass(frozen=True)
class Token:
    """kind: ident, keyword, string, number, date, datetime, op, punct, eof."""

    kind: str
    value: Any  # by kind: str, a number, a date...
    pos: int
    #: for strings with escapes: (char, was_escaped) pairs, so LIKE can tell `\%` from the `%` wildcard;
    #: None for a string written without any escape (see pieces())
    chars: tuple | None = ()

    def pieces(self) -> tuple | Iterator[tuple[str, bool]]:
        """(char, was_escaped) for each character of a string literal."""
        return self.chars if self.chars is not None else zip(self.value, repeat(False))


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "'":
            i = _string(text, i, tokens)
        elif c.isalpha() or c == "_":
            start = i
            while i < n and (text[i].isalnum() or text[i] == "_"):
                i += 1
            word = text[start:i]
            upper = word.upper()
            if upper in KEYWORDS:
                tokens.append(Token("keyword", upper, start))
            else:
                tokens.append(Token("ident", word, start))
        elif c.isdigit() or (c == "-" and i + 1 < n and text[i + 1].isdigit()):
            i = _literal(text, i, tokens)
        elif c in "<>!=":
            two = text[i:i + 2]
            if two in ("<=", ">=", "!=", "<>"):
                tokens.append(Token("op", "!=" if two == "<>" else two, i))
                i += 2
            elif c == "!":
                raise malformed(f"unexpected token: '!' at position {i}")
            else:
                tokens.append(Token("op", c, i))
                i += 1
        elif c in _PUNCT:
            tokens.append(Token("punct", c, i))
            i += 1
        else:
            raise malformed(f"unexpected character: '{c}' at position {i}")
    tokens.append(Token("eof", None, n))
    return tokens


def _string(text: str, i: int, tokens: list[Token]) -> int:
    end = text.find("'", i + 1)
    if end != -1 and text.find("\\", i + 1, end) == -1:  # no escape inside: the text as it stands
        value = text[i + 1:end]
        tokens.append(Token("string", value, i, None))
        return end + 1
    start, i = i, i + 1
    chars: list[tuple[str, bool]] = []
    while True:
        if i >= len(text):
            raise malformed(f"unterminated string literal starting at position {start}")
        c = text[i]
        if c == "'":
            break
        if c == "\\":
            nxt = text[i + 1:i + 2]
            if nxt in _ESCAPES:
                chars.append((_ESCAPES[nxt], True))
            elif nxt in ("%", "_"):
                chars.append((nxt, True))
            else:
                raise malformed(f"Invalid string literal '{text[start:i + 2]}'. Illegal character sequence "
                                f"'\\{nxt}' in string literal.")
            i += 2
            continue
        chars.append((c, False))
        i += 1
    tokens.append(Token("string", "".join(ch for ch, _ in chars), start, tuple(chars)))
    return i + 1


def _literal(text: str, i: int, tokens: list[Token]) -> int:
    start = i
    i += 1
    while i < len(text) and text[i] in _LITERAL_CHARS:
        i += 1
    word = text[start:i]
    for kind, value in _classify(word):
        tokens.append(Token(kind, value, start))
        return i
    raise malformed(f"unexpected token: '{word}' at position {start}")


def _classify(word: str):
    """Yield at most one (kind, value) for a number / date / datetime literal."""
    if "T" in word or "t" in word or "Z" in word or "z" in word:
        value = parse_datetime(word, require_offset=True)
        if value:
            yield "datetime", value
        return
    if word.count("-") == 2 and not word.startswith("-"):
        value = parse_date(word)
        if value:
            yield "date", value
        return
    try:
        yield "number", (int(word) if word.lstrip("-").isdigit() else float(word))
    except ValueError:
        return

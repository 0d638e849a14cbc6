"""Recursive-descent SOQL parser producing a small AST; anything outside the subset is MALFORMED_QUERY."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .lexer import Token, malformed, tokenize


@dataclass(frozen=True)
class Comparison:
    path: tuple[str, ...]
    op: str  # = != < > <= >= LIKE IN NOT IN
    value: Any  # a Token, or a tuple of Tokens for IN / NOT IN


@dataclass(frozen=True)
class Logical:
    op: str  # AND / OR
    parts: tuple


@dataclass(frozen=True)
class Negation:
    part: object


@dataclass(frozen=True)
class OrderItem:
    path: tuple[str, ...]
    descending: bool
    nulls_first: bool


@dataclass(frozen=True)
class Query:
    sobject: str
    fields: tuple[tuple[str, ...], ...] | None  # None means SELECT COUNT()
    where: object | None
    order_by: tuple[OrderItem, ...]
    limit: int | None
    offset: int | None


_LITERAL_KINDS = frozenset({"string", "number", "date", "datetime"})


class _Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        return self.tok.kind == "keyword" and self.tok.value in words

    def at_punct(self, char: str) -> bool:
        return self.tok.kind == "punct" and self.tok.value == char

    def expect_keyword(self, word: str) -> None:
        if not self.at_keyword(word):
            self.unexpected(f"expecting {word}")
        self.advance()

    def expect_punct(self, char: str) -> None:
        if not self.at_punct(char):
            self.unexpected(f"expecting '{char}'")
        self.advance()

    def unexpected(self, hint: str = "") -> None:
        token = self.tok
        shown = "<EOF>" if token.kind == "eof" else str(token.value)
        suffix = f" ({hint})" if hint else ""
        raise malformed(f"unexpected token: '{shown}' at position {token.pos}{suffix}")

    # grammar ---------------------------------------------------------------

    def query(self) -> Query:
        self.expect_keyword("SELECT")
        fields = self.select_list()
        self.expect_keyword("FROM")
        if self.tok.kind != "ident":
            self.unexpected("expecting an object name")
        sobject = str(self.advance().value)
        if self.at_punct(","):
            raise malformed("Only one object may appear in the FROM clause")
        where = None
        if self.at_keyword("WHERE"):
            self.advance()
            where = self.condition()
        order_by: tuple[OrderItem, ...] = ()
        if self.at_keyword("ORDER"):
            self.advance()
            self.expect_keyword("BY")
            order_by = self.order_list()
        limit = offset = None
        if self.at_keyword("LIMIT"):
            self.advance()
            limit = self.integer("LIMIT")
        if self.at_keyword("OFFSET"):
            self.advance()
            offset = self.integer("OFFSET")
        if self.tok.kind != "eof":
            self.unexpected()
        return Query(sobject, fields, where, order_by, limit, offset)

    def select_list(self):
        if self.tok.kind == "ident" and self.tok.value.upper() == "COUNT" and self.tokens[self.i + 1].value == "(":
            self.advance()
            self.advance()
            if not self.at_punct(")"):
                raise malformed("Aggregate functions such as COUNT(field) are not supported by the emulator; "
                                "use COUNT()")
            self.advance()
            return None
        fields = [self.path()]
        while self.at_punct(","):
            self.advance()
            fields.append(self.path())
        return tuple(fields)

    def path(self) -> tuple[str, ...]:
        if self.tok.kind != "ident":
            self.unexpected("expecting a field name")
        parts = [str(self.advance().value)]
        if self.at_punct("("):
            raise malformed(f"function {parts[0]}() is not supported")
        while self.at_punct("."):
            self.advance()
            if self.tok.kind != "ident":
                self.unexpected("expecting a field name")
            parts.append(str(self.advance().value))
        return tuple(parts)

    def condition(self):
        """A run of AND or a run of OR; SOQL refuses to mix them without parentheses."""
        first = self.unary()
        if not self.at_keyword("AND", "OR"):
            return first
        op = self.tok.value
        parts = [first]
        while self.at_keyword("AND", "OR"):
            if self.tok.value != op:
                raise malformed(f"unexpected token: '{self.tok.value}' at position {self.tok.pos} "
                                "(mixing AND and OR requires parentheses)")
            self.advance()
            parts.append(self.unary())
        return Logical(op, tuple(parts))

    def unary(self):
        if self.at_keyword("NOT"):
            self.advance()
            return Negation(self.unary())
        if self.at_punct("("):
            self.advance()
            inner = self.condition()
            self.expect_punct(")")
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        if self.at_keyword("SELECT"):
            raise malformed("subqueries are not supported")
        path = self.path()
        token = self.tok
        if token.kind == "op":
            self.advance()
            return Comparison(path, token.value, self.value())
        if self.at_keyword("LIKE"):
            self.advance()
            value = self.value()
            if value.kind != "string":
                raise malformed("LIKE needs a string literal")
            return Comparison(path, "LIKE", value)
        if self.at_keyword("NOT"):
            self.advance()
            if not self.at_keyword("IN"):
                self.unexpected("expecting IN")
            self.advance()
            return Comparison(path, "NOT IN", self.value_list())
        if self.at_keyword("IN"):
            self.advance()
            return Comparison(path, "IN", self.value_list())
        self.unexpected("expecting a comparison operator")
        raise AssertionError  # unreachable

    def value_list(self) -> tuple[Token, ...]:
        self.expect_punct("(")
        if self.at_keyword("SELECT"):
            raise malformed("semi-join subqueries are not supported")
        values = [self.value()]
        while self.at_punct(","):
            self.advance()
            values.append(self.value())
        self.expect_punct(")")
        return tuple(values)

    def value(self) -> Token:
        token = self.tok
        if token.kind in _LITERAL_KINDS or self.at_keyword("NULL", "TRUE", "FALSE"):
            return self.advance()
        if token.kind == "punct" and token.value == ":":
            raise malformed("bind variables are not supported")
        if token.kind == "ident":
            raise malformed(f"unsupported literal '{token.value}' (date literals and functions are not "
                            "supported)")
        self.unexpected("expecting a value")
        raise AssertionError  # unreachable

    def order_list(self) -> tuple[OrderItem, ...]:
        items = [self.order_item()]
        while self.at_punct(","):
            self.advance()
            items.append(self.order_item())
        return tuple(items)

    def order_item(self) -> OrderItem:
        path = self.path()
        descending = False
        if self.at_keyword("ASC", "DESC"):
            descending = self.advance().value == "DESC"
        # Salesforce's default: nulls first ascending, last descending
        nulls_first = not descending
        if self.at_keyword("NULLS"):
            self.advance()
            if not self.at_keyword("FIRST", "LAST"):
                self.unexpected("expecting FIRST or LAST")
            nulls_first = self.advance().value == "FIRST"
        return OrderItem(path, descending, nulls_first)

    def integer(self, clause: str) -> int:
        token = self.tok
        if token.kind != "number" or not isinstance(token.value, int) or token.value < 0:
            self.unexpected(f"{clause} needs a non-negative integer")
        self.advance()
        return int(token.value)


def parse_soql(text: str) -> Query:
    if not isinstance(text, str) or not text.strip():
        raise malformed("empty query")
    return _Parser(text).query()

"""Turns a parsed SOQL query into fast Python callables (filter, sort, projection) over one org."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ApiError, unsupported_type
from ..fields import STRING_TYPES, Field, SObjectType
from ..ids import normalize_id
from .lexer import Token, malformed
from .parser import Comparison, Logical, Negation, Query

_CASELESS = STRING_TYPES - {"id", "reference"}
_ORDERING = {"<": lambda a, b: a < b, ">": lambda a, b: a > b,
             "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}


@dataclass
class Plan:
    """Everything needed to run the query: which rows, which order, what shape."""

    sobject: SObjectType
    count_only: bool
    predicate: Callable[[dict], bool]
    sort: Callable[[list[dict]], None]
    project: Callable[[dict, str], dict]
    limit: int | None
    offset: int | None
    #: index probes (field, caseless, values) finding a superset of the rows the predicate keeps;
    #: None when only a scan of the whole table can
    seek: list[tuple[str, bool, frozenset]] | None = None


def _invalid_field(name: str, sobject: str) -> ApiError:
    return ApiError("INVALID_FIELD",
                    f"No such column '{name}' on entity '{sobject}'. If you are attempting to use a custom "
                    "field, be sure to append the '__c' after the custom field name. Please reference your "
                    "WSDL or the describe call for the appropriate names.")


class Compiler:
    """Resolves names against the org's visible objects; `org` provides `sobject()` and `record()`."""

    def __init__(self, org):
        self.org = org

    def compile(self, query: Query) -> Plan:
        sobject = self.org.sobject(query.sobject)
        if sobject is None:
            raise unsupported_type(query.sobject)
        self.root = sobject
        if query.offset is not None and query.offset > 2000:
            raise ApiError("NUMBER_OUTSIDE_VALID_RANGE",
                           f"Maximum SOQL offset allowed is 2000, got {query.offset}")
        predicate = self.condition(query.where) if query.where is not None else (lambda rec: True)
        seek = self.seek(query.where) if query.where is not None else None
        return Plan(sobject, query.fields is None, predicate, self.sorter(query.order_by),
                    self.projection(query.fields or ()), query.limit, query.offset, seek)

    # name resolution ---------------------------------------------------------

    def resolve(self, path: tuple[str, ...]) -> tuple[Field, Callable[[dict], object]]:
        """Field at the end of `path` and a getter that follows reference fields to it."""
        types = [self.root]
        hops: list[str] = []
        for part in path[:-1]:
            ref = next((t.relationship(part) for t in types if t.relationship(part)), None)
            if ref is None:
                raise ApiError("INVALID_FIELD", f"Didn't understand relationship '{part}' in field path. "
                               "If you are attempting to use a custom relationship, be sure to append the "
                               "'__r' after the custom relationship name.")
            hops.append(ref.name)
            types = [t for t in (self.org.sobject(name) for name in ref.reference_to) if t is not None]
        last = path[-1]
        field = next((t.field(last) for t in types if t.field(last)), None)
        if field is None or field.write_only:
            raise _invalid_field(".".join(path), self.root.name)
        name = field.name
        if not hops:
            return field, lambda rec: rec.get(name)
        record = self.org.record

        def follow(rec: dict) -> object:
            for hop in hops:
                target = rec.get(hop)
                if target is None:
                    return None
                rec = record(target)
                if rec is None:
                    return None
            return rec.get(name)

        return field, follow

    # WHERE ---------------------------------------------------------------------

    def condition(self, node) -> Callable[[dict], bool]:
        if isinstance(node, Logical):
            parts = [self.condition(part) for part in node.parts]
            if node.op == "AND":
                return lambda rec: all(part(rec) for part in parts)
            return lambda rec: any(part(rec) for part in parts)
        if isinstance(node, Negation):
            inner = self.condition(node.part)
            return lambda rec: not inner(rec)
        return self.comparison(node)

    def seek(self, node) -> list[tuple[str, bool, frozenset]] | None:
        """Probes that find every row `node` keeps (and maybe more, the predicate still decides), or None.

        `Field IN (...)` and `Field = ...` on the queried object's own text or id field can be looked up,
        unless null is among the values; OR needs every part looked up, AND any one; NOT never.
        """
        if isinstance(node, Logical):
            probes = [self.seek(part) for part in node.parts]
            if node.op == "AND":
                return next((probe for probe in probes if probe is not None), None)
            if any(probe is None for probe in probes):
                return None
            return [one for probe in probes for one in probe]  # type: ignore[union-attr]  # none is None
        if not isinstance(node, Comparison) or node.op not in ("IN", "=") or len(node.path) != 1:
            return None
        field, _ = self.resolve(node.path)
        if field.type not in STRING_TYPES:
            return None
        tokens = node.value if node.op == "IN" else [node.value]
        values = [self.literal(field, token) for token in tokens]
        if any(value is None or not isinstance(value, str) for value in values):
            return None
        caseless = field.type in _CASELESS
        return [(field.name, caseless, frozenset(v.lower() if caseless else v for v in values))]

    def comparison(self, node: Comparison) -> Callable[[dict], bool]:
        field, get = self.resolve(node.path)
        if field.type == "textarea":
            raise ApiError("INVALID_FIELD", f"field '{field.name}' can not be filtered in a query call")
        caseless = field.type in _CASELESS
        op = node.op
        if op in ("IN", "NOT IN"):
            values = [self.literal(field, token) for token in node.value]
            keep_null = None in values
            wanted = frozenset(v.lower() if caseless else v for v in values if v is not None)
            if caseless:
                def member(rec):
                    v = get(rec)
                    return keep_null if v is None else v.lower() in wanted
            else:
                def member(rec):
                    v = get(rec)
                    return keep_null if v is None else v in wanted
            if op == "IN":
                return member
            # SOQL's NOT IN keeps rows whose value is null, unlike SQL
            return lambda rec: not member(rec)
        if op == "LIKE":
            if field.type not in STRING_TYPES:
                raise ApiError("INVALID_QUERY_FILTER_OPERATOR", f"invalid operator on {field.type} field: LIKE")
            pattern = _like_regex(node.value)
            return lambda rec: (v := get(rec)) is not None and pattern.fullmatch(v) is not None
        value = self.literal(field, node.value)
        if value is None:
            if op == "=":
                return lambda rec: get(rec) is None
            if op == "!=":
                return lambda rec: get(rec) is not None
            raise ApiError("INVALID_QUERY_FILTER_OPERATOR", f"invalid operator {op} with null")
        if caseless:
            value = value.lower()

            def value_of(rec):
                v = get(rec)
                return None if v is None else v.lower()
        else:
            value_of = get
        if op == "=":
            return lambda rec: value_of(rec) == value
        if op == "!=":
            # null != 'x' is true in SOQL
            return lambda rec: value_of(rec) != value
        if field.type == "boolean":
            raise ApiError("INVALID_QUERY_FILTER_OPERATOR", f"invalid operator on boolean field: {op}")
        compare = _ORDERING[op]
        return lambda rec: (v := value_of(rec)) is not None and compare(v, value)

    def literal(self, field: Field, token: Token) -> Any:
        """The stored-form value of a literal, checked against the field's type."""
        if token.kind == "keyword" and token.value == "NULL":
            return None
        ftype = field.type
        if ftype in ("id", "reference"):
            if token.kind != "string":
                raise _wrong_type(field, "reference")
            normalized = normalize_id(token.value)
            if normalized is None:
                raise ApiError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {token.value}")
            return normalized
        if ftype in STRING_TYPES:
            if token.kind != "string":
                raise _wrong_type(field, "string")
            return token.value
        if ftype == "boolean":
            if token.kind != "keyword" or token.value not in ("TRUE", "FALSE"):
                raise _wrong_type(field, "boolean")
            return token.value == "TRUE"
        if ftype == "double":
            if token.kind != "number":
                raise _wrong_type(field, "double")
            return float(token.value)
        if ftype in ("date", "datetime"):
            if token.kind != ftype:
                raise _wrong_type(field, "dateTime" if ftype == "datetime" else "date")
            return token.value
        raise _wrong_type(field, ftype)

    # ORDER BY / SELECT ----------------------------------------------------------

    def sorter(self, items) -> Callable[[list[dict]], None]:
        keys = []
        for item in items:
            field, get = self.resolve(item.path)
            if field.type in ("textarea", "multipicklist"):
                raise ApiError("INVALID_FIELD", f"field '{field.name}' can not be sorted in a query call")
            null_flag = 0 if item.nulls_first != item.descending else 1
            caseless = field.type in _CASELESS
            keys.append((get, item.descending, null_flag, caseless))

        def sort(rows: list[dict]) -> None:
            # one stable pass per key, last key first, gives the multi-key order
            for get, descending, null_flag, caseless in reversed(keys):
                def key(rec, get=get, null_flag=null_flag, caseless=caseless):
                    v = get(rec)
                    if v is None:
                        return (null_flag, "")
                    return (1 - null_flag, v.lower() if caseless else v)
                rows.sort(key=key, reverse=descending)

        return sort

    def projection(self, paths) -> Callable[[dict, str], dict]:
        tree: dict = {}
        seen: set[str] = set()
        for path in paths:
            dotted = ".".join(path).lower()
            if dotted in seen:
                raise malformed(f"duplicate field selected: {'.'.join(path)}")
            seen.add(dotted)
            self.resolve(path)
            self._add(tree, [self.root], path)
        return self._projector(tree)

    def _add(self, tree: dict, types: list[SObjectType], path: tuple[str, ...]) -> None:
        if len(path) == 1:
            field = next(t.field(path[0]) for t in types if t.field(path[0]))
            tree[field.name] = None  # type: ignore[union-attr]  # next() over those that have it
            return
        ref = next(t.relationship(path[0]) for t in types if t.relationship(path[0]))
        # ref: next() over the types that have the relationship
        targets = [t for t in (self.org.sobject(n) for n in ref.reference_to) if t is not None]  # type: ignore[union-attr]
        _, subtree = tree.setdefault(ref.relationship_name, (ref.name, {}))  # type: ignore[union-attr]
        self._add(subtree, targets, path[1:])

    def _projector(self, tree: dict) -> Callable[[dict, str], dict]:
        org = self.org
        root_name = self.root.name

        def shape(rec: dict, sobject: str, node: dict, version: str) -> dict:
            out: dict[str, Any] = {"attributes": {"type": sobject,
                                  "url": f"/services/data/v{version}/sobjects/{sobject}/{rec['Id']}"}}
            for key, sub in node.items():
                if sub is None:
                    out[key] = rec.get(key)
                    continue
                ref_field, subtree = sub
                target_id = rec.get(ref_field)
                target = org.record(target_id) if target_id else None
                out[key] = None if target is None else shape(target, org.type_of(target_id), subtree, version)
            return out

        return lambda rec, version: shape(rec, root_name, tree, version)


def _wrong_type(field: Field, expected: str) -> ApiError:
    return ApiError("INVALID_QUERY_FILTER_OPERATOR",
                    f"value of filter criterion for field '{field.name}' must be of type {expected} "
                    "and should not be enclosed in quotes" if expected not in ("string", "reference")
                    else f"value of filter criterion for field '{field.name}' must be of type {expected} "
                    "and should be enclosed in quotes")


def _like_regex(token: Token) -> re.Pattern:
    """`%` and `_` are wildcards unless escaped; everything else matches itself, ignoring case."""
    out = []
    for char, escaped in token.pieces():
        if not escaped and char == "%":
            out.append(".*")
        elif not escaped and char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)

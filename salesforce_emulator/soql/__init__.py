"""SOQL subset: tokenizer, recursive-descent parser and a compiler to Python predicates."""
from .parser import parse_soql

__all__ = ["parse_soql"]

"""Salesforce-shaped record ids: key prefixes, the 18-character checksum, id parsing."""
from __future__ import annotations

import string
from functools import lru_cache

#: base62 in Salesforce's order, used for the running counter part of an id
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_CHECKSUM_CHARS = string.ascii_uppercase + "012345"
#: two "pod" characters and a reserved one, as in real ids (e.g. 0035g00000AbCdE)
_POD = "5g0"


def with_checksum(id15: str) -> str:
    """Append the 3-character case-safe suffix Salesforce derives from the 15-char id."""
    suffix = ""
    for start in (0, 5, 10):
        bits = 0
        for position, char in enumerate(id15[start:start + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix += _CHECKSUM_CHARS[bits]
    return id15 + suffix


def make_id(prefix: str, number: int) -> str:
    """An 18-char id for the number-th record of the org."""
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    return with_checksum(prefix + _POD + digits.rjust(9, "0"))  # a new id: nothing to remember


#: ids read back from requests (references, urls) are the same few again and again
_checksummed = lru_cache(maxsize=65536)(with_checksum)


def normalize_id(value: object) -> str | None:
    """The 18-char form of a 15- or 18-char id, or None when the value isn't id-shaped."""
    if not isinstance(value, str) or len(value) not in (15, 18):
        return None
    if not (value.isascii() and value.isalnum()):  # base62: ASCII letters and digits only
        return None
    return _checksummed(value[:15])

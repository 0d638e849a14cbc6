"""One emulated org's in-memory state: records per object, counters, features, limits, faults, settings."""
from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field as dc_field

from .catalog import build_catalog
from .clock import format_millis
from .faults import FaultBook
from .fields import SObjectType
from .ids import make_id, normalize_id

DEFAULT_TOKEN = "00Demulator!sfsync-local-token"
#: the org that always exists, answers the preset token and the unprefixed /_admin/ API
DEFAULT_ORG = "default"
DEFAULT_DAILY_LIMIT = 100_000
DEFAULT_FEATURES = {"enhanced_email": True}
ORG_ID = "00D5g000000EmuLAAS"
API_USER = "integration@sfsync.example"
ADMIN_USER = "admin@customer.example"
#: Users every org starts with; reset keeps them
SEEDED_USERS = (
    {"Username": API_USER, "Email": API_USER, "FirstName": "Sfsync", "LastName": "Integration", "Alias": "sfsync"},
    {"Username": ADMIN_USER, "Email": ADMIN_USER, "FirstName": "Ada", "LastName": "Admin", "Alias": "aadmin"},
    {"Username": "riley@seller.example", "Email": "riley@seller.example", "FirstName": "Riley",
     "LastName": "Rep", "Alias": "rrep"},
    {"Username": "sam@seller.example", "Email": "sam@seller.example", "FirstName": "Sam",
     "LastName": "Seller", "Alias": "sseller"},
)
#: created orgs count their ids from far apart, so an id of one org never names a record of another
ORG_ID_SPACING = 62 ** 7


def seeded_users(org_name: str) -> tuple[dict, ...]:
    """The default org's users as they are, another org's with usernames of its own domain.

    Usernames are unique across all orgs in Salesforce; the reps keep their email addresses, so rep lookups by
    email work the same in every org.
    """
    if org_name == DEFAULT_ORG:
        return SEEDED_USERS
    users = []
    for user in SEEDED_USERS:
        username = f"{user['Username'].partition('@')[0]}@{org_name}.example"
        email = username if user["Username"] in (API_USER, ADMIN_USER) else user["Email"]
        users.append({**user, "Username": username, "Email": email})
    return tuple(users)


@dataclass(frozen=True)
class OrgSettings:
    """What an org starts with and returns to on reset."""

    features: dict = dc_field(default_factory=lambda: dict(DEFAULT_FEATURES))
    daily_api_requests: int = DEFAULT_DAILY_LIMIT
    #: access tokens die this long after they were issued; None: they live until reset
    session_ttl_seconds: float | None = None
    #: invalid logins after which a user is locked out (Salesforce's password policy: 3, 5 or 10; 10 by default)
    lockout_after: int = 10


#: how many query cursors stay open; Salesforce keeps more, but tests never need many
_MAX_CURSORS = 200


class Org:
    """All mutable state. Callers hold `lock` around any read or write."""

    def __init__(self, token: str = DEFAULT_TOKEN, data_file: str | None = None, *, name: str = DEFAULT_ORG,
                 org_id: str = ORG_ID, id_base: int = 0, settings: OrgSettings | None = None,
                 lock: threading.RLock | None = None):
        self.lock = lock or threading.RLock()
        self.name = name
        self.org_id = org_id
        self.settings = settings or OrgSettings()
        self.password = f"{name}-password"
        self.catalog: dict[str, SObjectType] = build_catalog()
        self._by_lower = {name.lower(): obj for name, obj in self.catalog.items()}
        self._by_prefix = {obj.key_prefix: name for name, obj in self.catalog.items()}
        self.records: dict[str, dict[str, dict]] = {name: {} for name in self.catalog}
        #: the access token every reset brings back (it never expires by session_ttl_seconds)
        self.preset_token = token
        self.data_file = data_file
        self._id_base = id_base
        self._id_counter = id_base
        self._last_millis = 0
        self.dirty = False
        self.faults = FaultBook()
        self._reset_settings()
        self._seed_users()
        if data_file and os.path.exists(data_file):
            self.load(data_file)

    # settings ------------------------------------------------------------------

    def _reset_settings(self) -> None:
        self.features = {**DEFAULT_FEATURES, **self.settings.features}
        self.api_limit = self.settings.daily_api_requests
        self.session_ttl = self.settings.session_ttl_seconds
        self.api_used = 0
        #: token grants by grant type, and each grant in order (for tests that assert a refresh happened)
        self.token_grants: Counter[str] = Counter()
        self.oauth_log: list[dict] = []
        self.calls_by_route: Counter[str] = Counter()
        self.validation_rules: dict[str, dict] = {}
        self.unique_index: dict[tuple[str, str], dict[str, str]] = {}
        self._clear_lookups()
        self.cursors: OrderedDict[str, tuple[str, list[dict], int]] = OrderedDict()
        #: invalid logins per username since its last good one; at `lockout_after` the user is locked out
        self.failed_logins: Counter[str] = Counter()

    def locked_out(self, username: str) -> bool:
        return self.failed_logins[username.lower()] >= self.settings.lockout_after

    def _seed_users(self) -> None:
        users = self.records["User"]
        seeded = seeded_users(self.name)
        first = make_id("005", self._id_base + 1)
        for index, fields in enumerate(seeded, start=self._id_base + 1):
            user_id = make_id("005", index)
            if user_id in users:
                continue
            stamp = self.tick()
            self.put("User", {
                **{name: None for name in self.catalog["User"].fields},
                **fields, "Id": user_id, "Name": f"{fields['FirstName']} {fields['LastName']}",
                "IsActive": True, "IsDeleted": False, "CreatedDate": stamp, "LastModifiedDate": stamp,
                "SystemModstamp": stamp, "CreatedById": first, "LastModifiedById": first,
            })
        self._id_counter = max(self._id_counter, self._id_base + len(seeded))
        self.api_user_id = first
        self.admin_user_id = make_id("005", self._id_base + 2)
        self.api_username = seeded[0]["Username"]
        self.seeded_user_ids = {make_id("005", self._id_base + i) for i in range(1, len(seeded) + 1)}

    def reset(self) -> None:
        """Back to a fresh org (its sessions are the caller's); ids keep counting up so stale ids never point at
        new records."""
        for name, table in self.records.items():
            if name == "User":
                for user_id in [uid for uid in table if uid not in self.seeded_user_ids]:
                    del table[user_id]
            else:
                table.clear()
        self._reset_settings()
        self._rebuild_index()
        self.faults.clear()
        self.dirty = True

    # lookups -------------------------------------------------------------------

    def sobject(self, name: str) -> SObjectType | None:
        """The object if it exists in this org now (Enhanced Email off hides EmailMessage)."""
        obj = self._by_lower.get(name.lower()) if isinstance(name, str) else None
        if obj is None or (obj.feature and not self.features.get(obj.feature)):
            return None
        return obj

    def visible(self) -> list[SObjectType]:
        return [obj for obj in self.catalog.values() if self.sobject(obj.name)]

    def type_of(self, record_id: str) -> str | None:
        return self._by_prefix.get(record_id[:3]) if isinstance(record_id, str) else None

    def record(self, record_id: str) -> dict | None:
        """Any record by its 18-char id, whatever its type."""
        name = self.type_of(record_id)
        return self.records[name].get(record_id) if name else None

    def active_user(self, username: str) -> str | None:
        """Id of the active user with this username (case-insensitive, as Salesforce logins are)."""
        user_id = self.unique_owner("User", "Username", username) if username else None
        user = self.records["User"].get(user_id) if user_id else None
        return user_id if user is not None and user["IsActive"] is not False else None

    def counts(self) -> dict[str, int]:
        return {name: sum(1 for rec in table.values() if not rec["IsDeleted"])
                for name, table in self.records.items()}

    # lookups by value: a query filtering on `Field IN (...)` or `Field = ...` reads the ids holding
    # those values from an index instead of testing every record, as a real org's indexed fields do

    def _clear_lookups(self) -> None:
        #: per object: (field, caseless) -> value -> ids holding it, deleted records too (queryAll sees them)
        self._lookups: dict[str, dict[tuple[str, bool], dict[object, dict[str, None]]]] = {}
        #: per object: record id -> the position it was first written at (the order a scan returns)
        self._positions: dict[str, dict[str, int]] = {}
        self._next_position = 0

    def lookup(self, sobject: str, field: str, caseless: bool) -> dict[object, dict[str, None]]:
        """Ids by their value of `field` (lower-cased if `caseless`), built on first use, kept by put()."""
        indexes = self._lookups.setdefault(sobject, {})
        index = indexes.get((field, caseless))
        if index is None:
            index = indexes[(field, caseless)] = {}
            for record in self.records[sobject].values():
                key = _lookup_key(record.get(field), caseless)
                if key is not None:
                    index.setdefault(key, {})[record["Id"]] = None
        return index

    def seek(self, sobject: str, probes: list[tuple[str, bool, frozenset]]) -> list[dict]:
        """The records any probe (field, caseless, values) finds, in the order a scan of the table meets them."""
        found: set[str] = set()
        for field, caseless, values in probes:
            index = self.lookup(sobject, field, caseless)
            for value in values:
                holders = index.get(value)
                if holders:
                    found.update(holders)
        if not found:
            return []
        table = self.records[sobject]
        return [table[record_id] for record_id in sorted(found, key=self._positions[sobject].__getitem__)]

    def _relookup(self, sobject: str, old: dict | None, new: dict | None) -> None:
        record_id = (new or old)["Id"]  # type: ignore[index]  # one of them is given
        for (field, caseless), index in self._lookups.get(sobject, {}).items():
            before = None if old is None else _lookup_key(old.get(field), caseless)
            after = None if new is None else _lookup_key(new.get(field), caseless)
            if before == after:
                continue
            if before is not None and (holders := index.get(before)) is not None:
                holders.pop(record_id, None)
                if not holders:
                    del index[before]
            if after is not None:
                index.setdefault(after, {})[record_id] = None

    # writes: every change goes through put() so the unique-value index and the lookups stay right

    def put(self, sobject: str, record: dict) -> None:
        table = self.records[sobject]
        old = table.get(record["Id"])
        for field in self.catalog[sobject].unique_fields:
            index = self.unique_index.setdefault((sobject, field.name), {})
            if old is not None and old.get(field.name) is not None and not old["IsDeleted"]:
                index.pop(str(old[field.name]).lower(), None)
            if record.get(field.name) is not None and not record["IsDeleted"]:
                index[str(record[field.name]).lower()] = record["Id"]
        table[record["Id"]] = record
        positions = self._positions.setdefault(sobject, {})
        if record["Id"] not in positions:
            positions[record["Id"]] = self._next_position
            self._next_position += 1
        if sobject in self._lookups:
            self._relookup(sobject, old, record)
        self.dirty = True

    def drop(self, sobject: str, record_id: str) -> None:
        """Forget a record entirely (rollback of a create)."""
        old = self.records[sobject].pop(record_id, None)
        if old is None:
            return
        self._positions[sobject].pop(record_id, None)
        if sobject in self._lookups:
            self._relookup(sobject, old, None)
        for field in self.catalog[sobject].unique_fields:
            if old.get(field.name) is not None:
                index = self.unique_index.get((sobject, field.name), {})
                if index.get(str(old[field.name]).lower()) == record_id:
                    del index[str(old[field.name]).lower()]

    def unique_owner(self, sobject: str, field: str, value: object) -> str | None:
        """Id of the live record holding `value` in a unique field (unique text is case-insensitive)."""
        return self.unique_index.get((sobject, field), {}).get(str(value).lower())

    # id and clock ----------------------------------------------------------------

    def new_id(self, sobject: str) -> str:
        self._id_counter += 1
        return make_id(self.catalog[sobject].key_prefix, self._id_counter)

    def new_cursor_id(self) -> str:
        self._id_counter += 1
        return make_id("01g", self._id_counter)

    def tick(self) -> str:
        """A timestamp strictly after every earlier one, so a SystemModstamp watermark never misses."""
        millis = max(int(time.time() * 1000), self._last_millis + 1)
        self._last_millis = millis
        return format_millis(millis)

    def normalize_id(self, value: object) -> str | None:
        return normalize_id(value)

    # query cursors ------------------------------------------------------------------

    def open_cursor(self, version: str, rows: list[dict], position: int) -> str:
        cursor_id = self.new_cursor_id()
        self.cursors[cursor_id] = (version, rows, position)
        while len(self.cursors) > _MAX_CURSORS:
            self.cursors.popitem(last=False)
        return cursor_id

    # persistence --------------------------------------------------------------------

    def snapshot(self) -> dict:
        return {"records": self.records, "id_counter": self._id_counter, "last_millis": self._last_millis,
                "features": self.features, "api_limit": self.api_limit, "api_used": self.api_used,
                "validation_rules": self.validation_rules}

    def save(self, path: str | None = None) -> None:
        path = path or self.data_file
        if not path:
            return
        tmp = f"{path}.tmp"
        with self.lock:
            data = json.dumps(self.snapshot())
            self.dirty = False
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(data)
        os.replace(tmp, path)

    def load(self, path: str) -> None:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        for name, table in data.get("records", {}).items():
            if name in self.records:
                self.records[name].update(table)
        self._id_counter = max(self._id_counter, data.get("id_counter", 0))
        self._last_millis = max(self._last_millis, data.get("last_millis", 0))
        self.features.update(data.get("features", {}))
        self.api_limit = data.get("api_limit", self.api_limit)
        self.api_used = data.get("api_used", 0)
        self.validation_rules = data.get("validation_rules", {})
        self._rebuild_index()

    def _rebuild_index(self) -> None:
        self.unique_index = {}
        self._clear_lookups()
        for name, table in self.records.items():
            for record in list(table.values()):
                self.put(name, record)


def _lookup_key(value: object, caseless: bool) -> object:
    """How a value is filed in a lookup: text lower-cased for caseless fields; None is never filed."""
    if value is None:
        return None
    if caseless and isinstance(value, str):
        return value.lower()
    return value if isinstance(value, (str, int, float, bool)) else None

"""The email -> contact index in Redis that contact resolution reads and the CRM cycle keeps fresh."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import redis

from events.keys import key
from events.lua import script

#: seconds a known address -> contacts entry is trusted without the CRM cycle refreshing it
POSITIVE_TTL = 24 * 3600
#: contact fields kept per candidate: enough for the deterministic choice between several matches
SUMMARY_FIELDS = ("Id", "CreatedDate")


#: lead fields kept per candidate besides those: where a converted Lead lives on
LEAD_SUMMARY_FIELDS = (*SUMMARY_FIELDS, "IsConverted", "ConvertedContactId")


class ContactIndex:
    """address -> list of candidate contact summaries; plus contact id -> its addresses.

    A cached "no contact" answer lives only `miss_ttl` seconds: a person created in Salesforce
    is found by the next lookup after that even when no CRM cycle runs. `ContactIndex.of_leads`
    is the same index for Leads, kept apart (a Contact always wins, so the two are never mixed).
    """

    def __init__(self, client: redis.Redis, miss_ttl: int = 300, *, kind: str = "contact",
                 summary_fields: tuple[str, ...] = SUMMARY_FIELDS):
        self.redis = client
        self.miss_ttl = miss_ttl
        self.kind = kind
        self.summary_fields = summary_fields

    @classmethod
    def of_leads(cls, client: redis.Redis, miss_ttl: int = 300) -> "ContactIndex":
        return cls(client, miss_ttl, kind="lead", summary_fields=LEAD_SUMMARY_FIELDS)

    def _addr(self, ws: str, address: str) -> str:
        return key(ws, "idx", "email" if self.kind == "contact" else f"{self.kind}-email", address)

    def _contact(self, ws: str, contact_id: str) -> str:
        return key(ws, "idx", self.kind, contact_id)

    def get_many(self, ws: str, addresses: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Cached candidates per address; an address absent from the result is unknown to the cache."""
        if not addresses:
            return {}
        raw = self.redis.mget([self._addr(ws, a) for a in addresses])
        return {a: json.loads(v) for a, v in zip(addresses, raw) if v is not None}

    def put_contacts(self, ws: str, contacts: Iterable[dict[str, Any]], email_fields: list[str], *,
                     misses: Iterable[str] = ()) -> None:
        """Index contacts under their current addresses; addresses they no longer have stop matching.
        `misses`: addresses a lookup found nobody for, cached as such in the same round trip (put_misses).

        One read (the contacts' previous addresses and their current addresses' entries, together)
        and one write, unless a contact lost an address: its entry is read in a second read."""
        contacts = list(contacts)
        misses = list(misses)
        if not contacts:
            self.put_misses(ws, misses)
            return
        new_by_contact: dict[str, list[str]] = {}
        fresh: dict[str, None] = {}  # every record's current addresses (a repeated record's too), in order
        for contact in contacts:
            current = sorted({str(contact[f]).strip().lower() for f in email_fields if contact.get(f)})
            new_by_contact[contact["Id"]] = current
            fresh.update(dict.fromkeys(current))
        raw = self.redis.mget([self._contact(ws, c["Id"]) for c in contacts] + [self._addr(ws, a) for a in fresh])
        old, entries = raw[:len(contacts)], raw[len(contacts):]
        cached = {a: json.loads(v) for a, v in zip(fresh, entries) if v is not None}
        touched: dict[str, None] = dict(fresh)
        for previous in old:
            for address in json.loads(previous) if previous else []:
                touched.setdefault(address, None)
        # rebuild every touched address entry from fresh data plus what the cache knew of others
        if len(touched) > len(fresh):  # addresses contacts no longer have: their entries are read too
            cached.update(self.get_many(ws, list(touched)[len(fresh):]))
        summaries = {c["Id"]: {f: c.get(f) for f in (*self.summary_fields, *email_fields)} for c in contacts}
        by_address: dict[str, list[dict[str, Any]]] = {}
        for cid, addrs in new_by_contact.items():
            for address in addrs:
                by_address.setdefault(address, []).append(summaries[cid])
        sets: dict[str, str] = {}
        deletes: list[str] = []
        for address in touched:
            kept = [c for c in cached.get(address, []) if c["Id"] not in summaries]
            entry = kept + by_address.get(address, [])
            if entry:
                sets[self._addr(ws, address)] = json.dumps(entry)
            else:
                deletes.append(self._addr(ws, address))
        for cid, addrs in new_by_contact.items():
            sets[self._contact(ws, cid)] = json.dumps(addrs)
        self._write(sets, deletes, [self._addr(ws, a) for a in misses])

    def put_misses(self, ws: str, addresses: Iterable[str]) -> None:
        """Cache "no contact" for these addresses (for miss_ttl seconds), unless an entry is there."""
        self._write({}, [], [self._addr(ws, a) for a in addresses])

    def _write(self, sets: dict[str, str], deletes: list[str], misses: list[str]) -> None:
        """One call for all of a change (events/lua/index_write.lua): a pipeline of a command per key
        cost more in the client's encoding of commands and parsing of replies than the writes did."""
        if sets or deletes or misses:
            script(self.redis, "index_write")(keys=[*sets, *deletes, *misses],
                                              args=[len(sets), len(deletes), POSITIVE_TTL, self.miss_ttl,
                                                    *sets.values()])

    def remove_contact(self, ws: str, contact_id: str) -> None:
        """A deleted contact: drop it from every address it was known by."""
        previous = self.redis.get(self._contact(ws, contact_id))
        addresses = json.loads(previous) if previous else []
        cached = self.get_many(ws, addresses)
        sets: dict[str, str] = {}
        deletes: list[str] = []
        for address in addresses:
            kept = [c for c in cached.get(address, []) if c["Id"] != contact_id]
            if kept:
                sets[self._addr(ws, address)] = json.dumps(kept)
            else:
                deletes.append(self._addr(ws, address))
        self._write(sets, [*deletes, self._contact(ws, contact_id)], [])


class CreationLocks:
    """Per-address locks so that only one worker creates the Contact for a new person."""

    def __init__(self, client: redis.Redis, ttl: int = 60):
        self.redis = client
        self.ttl = ttl
        self._release = script(client, "lock_release")

    def acquire(self, ws: str, addresses: list[str], token: str) -> bool:
        taken: list[str] = []
        for address in sorted(set(addresses)):
            name = key(ws, "lock", "create-contact", address)
            if not self.redis.set(name, token, nx=True, ex=self.ttl):
                self.release(ws, taken, token)
                return False
            taken.append(address)
        return True

    def release(self, ws: str, addresses: list[str], token: str) -> None:
        for address in set(addresses):
            self._release(keys=[key(ws, "lock", "create-contact", address)], args=[token])

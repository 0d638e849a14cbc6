"""sfsync's Redis Lua scripts: each in its own .lua file that names every KEY and ARGV it uses, and none inline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "events" / "lua").glob("*.lua"))
#: the Python packages that ship (tests and the benchmark harness may talk to Redis as they like)
SHIPPED = ("events", "workers", "schemas", "workspaces", "salesforce_emulator")


def _header_and_body(path: Path) -> tuple[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    n = next((i for i, line in enumerate(lines) if not line.startswith("--")), len(lines))
    return "\n".join(lines[:n]), "\n".join(lines[n:])


def test_given_the_scripts_directory_when_listed_then_it_holds_every_script_sfsync_runs():
    assert {p.stem for p in SCRIPTS} >= {
        "overflow_claim", "overflow_sieve", "overflow_forget", "parking_claim", "parking_due_now",
        "outbound_publish_once", "deadletter_drop", "deadletter_retire", "lock_release", "lock_renew",
        "crm_save_watermark"}


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_given_a_script_when_read_then_its_opening_comment_names_every_key_and_argument_it_uses(path):
    header, body = _header_and_body(path)
    assert header, f"{path.name} must open with a comment saying what it does, its KEYS and ARGV"
    for kind in ("KEYS", "ARGV"):
        used = set(re.findall(rf"{kind}\[(\d+)\]", body))
        named = set(re.findall(rf"{kind}\[(\d+)", header))
        assert used <= named, f"{path.name} uses {kind} {sorted(used - named)} without naming them first"
        if re.search(rf"{kind}\[", body) or re.search(rf"#{kind}\b", body):
            assert kind in header, f"{path.name} uses {kind} without naming them"


def test_given_the_shipped_code_when_searched_then_no_lua_is_written_inline():
    inline = []
    for package in SHIPPED:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if re.search(r"redis\.call\(|\.eval\(|register_script\(", text) and path != ROOT / "events/lua/__init__.py":
                inline.append(str(path.relative_to(ROOT)))
    assert inline == [], f"inline Lua (or EVAL of it) in {inline}: put the script in events/lua/<name>.lua"

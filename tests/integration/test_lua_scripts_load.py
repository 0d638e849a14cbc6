"""Every Lua script sfsync ships compiles in a real Redis, and is found by its name."""

from __future__ import annotations

from pathlib import Path

from events.lua import script, source

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "events" / "lua").glob("*.lua"))


def test_given_each_script_when_loaded_into_redis_then_it_compiles_and_is_known_by_its_hash(redis_client):
    for path in SCRIPTS:
        sha = redis_client.script_load(source(path.stem))
        assert sha == script(redis_client, path.stem).sha, path.name
        assert redis_client.script_exists(sha) == [True], path.name

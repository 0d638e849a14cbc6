"""The Redis Lua scripts sfsync runs, one `.lua` file each, loaded once by name."""

from __future__ import annotations

import functools
from importlib import resources

from typing import Any

import redis
from redis.client import NEVER_DECODE
from redis.commands.core import Script
from redis.exceptions import NoScriptError


@functools.cache
def source(name: str) -> str:
    """The text of `<name>.lua`, read once per process."""
    return resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


def script(client: redis.Redis, *names: str) -> Script:
    """The named `.lua` files, joined in order (a prelude they share first), bound to `client`:
    called as `script(keys=[...], args=[...])`, sent by its SHA (EVALSHA) and loaded into Redis the
    first time Redis does not know it."""
    return client.register_script("\n".join(source(name) for name in names))


def undecoded(client: redis.Redis, name: str, keys: list[Any], args: list[Any]) -> Any:
    """Run `<name>.lua` and hand its reply back as bytes, whatever the client decodes: for scripts
    that return what emitters wrote, which need not be text (one entry that is not UTF-8 must not
    make the whole reply unreadable)."""
    bound = script(client, name)
    command = ("EVALSHA", bound.sha, len(keys), *keys, *args)
    try:
        return client.execute_command(*command, **{NEVER_DECODE: []})
    except NoScriptError:
        client.script_load(bound.script)
        return client.execute_command(*command, **{NEVER_DECODE: []})

"""The Redis Lua scripts sfsync runs, one `.lua` file each, loaded once by name."""

from __future__ import annotations

import functools
from importlib import resources

import redis
from redis.commands.core import Script


@functools.cache
def source(name: str) -> str:
    """The text of `<name>.lua`, read once per process."""
    return resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


def script(client: redis.Redis, name: str) -> Script:
    """`<name>.lua` bound to `client`: called as `script(keys=[...], args=[...])`, sent by its SHA
    (EVALSHA) and loaded into Redis the first time Redis does not know it."""
    return client.register_script(source(name))

"""The CLI's help says what every option does and shows each command's whole summary, never cut with "..."."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from workers.cli import main


def _commands(command: click.Command, path=()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(main))


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) or "sfsync" for p, _ in COMMANDS])
def test_every_option_has_help(path, command):
    missing = [p.opts for p in command.params if isinstance(p, click.Option) and not p.hidden and not p.help]
    assert missing == []


@pytest.mark.parametrize("path", [p for p, c in COMMANDS if isinstance(c, click.Group)],
                         ids=lambda p: " ".join(p) or "sfsync")
def test_a_group_lists_each_command_with_its_whole_summary(path):
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=80)
    assert result.exit_code == 0 and "Commands:" in result.output
    assert "..." not in result.output.split("Commands:", 1)[1]

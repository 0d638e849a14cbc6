"""Command groups whose help lists each command's whole first sentence, wrapped, never cut with "..."."""

from __future__ import annotations

import click

#: characters a command's summary may take before click would cut it; past the width it wraps instead
WHOLE = 10_000


class Group(click.Group):
    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, command.get_short_help_str(WHOLE)) for name in self.list_commands(ctx)
                if (command := self.get_command(ctx, name)) is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

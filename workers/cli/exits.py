"""The exit codes of every `sfsync` command: one table (the sysexits.h codes), and the failure that carries one."""

from __future__ import annotations

import click

#: the command did what it was asked
OK = 0
#: the command ran and part of the work failed: a replay whose events failed again, a check that found
#: problems (`workspaces test`), a confirmation declined
FAILED = 1
#: the command line is wrong: an unknown option, a bad option value, a missing argument or selection
USAGE = 64
#: the input is invalid: events that do not match the contract, a registry or mappings file that does not
#: validate, mappings that do not fit the org
DATA = 65
#: an input file does not exist or cannot be read
NO_INPUT = 66
#: Redis or Salesforce could not be reached (retrying later may help)
UNAVAILABLE = 69
#: sfsync failed unexpectedly (a bug: the traceback is printed; please report it)
SOFTWARE = 70
#: an output file cannot be created
CANT_CREATE = 73
#: a temporary failure: Redis refused a write (out of memory, a replica), replicas did not confirm a publish
TEMP_FAIL = 75
#: the configuration is invalid: an SFSYNC_ setting missing, malformed or unknown, a secret key missing
CONFIG = 78

#: code -> meaning, as README's table shows it (tests/unit/test_cli_exit_codes.py keeps the two equal)
TABLE = {OK: "done", FAILED: "the work ran and part of it failed", USAGE: "usage: the command line is wrong",
         DATA: "invalid input data", NO_INPUT: "an input file is missing or unreadable",
         UNAVAILABLE: "Redis or Salesforce could not be reached", SOFTWARE: "an unexpected error (a bug)",
         CANT_CREATE: "an output file cannot be created", TEMP_FAIL: "a temporary failure",
         CONFIG: "invalid configuration"}


class Failure(click.ClickException):
    """One line on stderr (`Error: ...`) and the exit code that says what kind of failure it was."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.exit_code = code  # type: ignore[misc]  # click declares it on the class; main() reads the instance's


def usage_code(exc: click.UsageError) -> int:
    """A file named on the command line that cannot be read is NO_INPUT; any other usage error is USAGE."""
    kind = getattr(getattr(exc, "param", None), "type", None)
    if isinstance(exc, click.BadParameter) and ((isinstance(kind, click.Path) and kind.exists) or
                                                (isinstance(kind, click.File) and "r" in kind.mode)):
        return NO_INPUT
    return USAGE

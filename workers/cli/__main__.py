"""`python -m workers.cli`: the sfsync command line, as the `sfsync` script runs it."""

from workers.cli import main

main()

"""The local stack: real worker, beat and emulator processes on this machine, for the demo, tests and benchmark."""

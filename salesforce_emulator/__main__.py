"""`python -m salesforce_emulator --port N [--data FILE]`: run the emulator standalone."""
from __future__ import annotations

import argparse

from .org import DEFAULT_TOKEN
from .server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="salesforce_emulator", description="Local Salesforce REST emulator")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--data", default=None, help="JSON snapshot file to load at start and keep saved")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="preset access token")
    args = parser.parse_args(argv)
    print(f"Salesforce emulator on http://{args.host}:{args.port} (token {args.token})", flush=True)
    serve(host=args.host, port=args.port, data_file=args.data, token=args.token)


if __name__ == "__main__":
    main()

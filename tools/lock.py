"""The image's lock files: every package deploy/Dockerfile installs, pinned with its hashes (uv pip compile).

`python -m tools.lock` rewrites them after a change to pyproject.toml's dependencies;
`python -m tools.lock --check` fails naming each lock file that no longer matches (CI runs it).
Versions already pinned are kept while they still satisfy pyproject.toml, so a lock only changes
when the requirements do (or when it is deleted and made again to take newer releases).
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "deploy" / "requirements"
#: the Python the images run (python:3.11-slim, or Debian bookworm's python3)
PYTHON_VERSION = "3.11"

#: lock file -> what it pins: sfsync's dependencies with extras, or a requirements file
TARGETS: dict[str, tuple[str, ...]] = {
    # the production image: the worker, beat, the CLI and the console
    "runtime.txt": ("pyproject.toml", "--extra", "web"),
    # the compose tools image: the Salesforce emulator and Flower
    "tools.txt": ("pyproject.toml", "--extra", "emulator", "--extra", "flower"),
    # the builder stage: pip and the wheel's build backend
    "build.txt": ("deploy/requirements/build.in",),
}


def _uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if not found:
        raise SystemExit("tools.lock needs uv (in the test extra: pip install -e '.[test]')")
    return found


def compile_lock(name: str, output: Path) -> None:
    """(Re)write one lock file at `output`, keeping the versions it already pins where they still fit."""
    command = [_uv(), "pip", "compile", *TARGETS[name], "--universal", "--python-version", PYTHON_VERSION,
               "--generate-hashes", "--quiet", "--custom-compile-command", "python -m tools.lock",
               "--output-file", str(output)]
    # the system's certificate store: an index behind a TLS-inspecting proxy is trusted like pip trusts it
    env = {**os.environ, "UV_NATIVE_TLS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                            check=False)  # the exit code is read below, with uv's own message
    if result.returncode != 0:
        raise SystemExit(f"uv pip compile for {name} failed:\n{result.stderr.strip()}")


def stale_locks() -> dict[str, str]:
    """Lock file -> the diff that compiling it again would make; empty when every lock is current."""
    stale = {}
    with tempfile.TemporaryDirectory(prefix="sfsync-lock-") as scratch:
        for name in TARGETS:
            current = LOCKS / name
            fresh = Path(scratch) / name
            if current.exists():
                shutil.copyfile(current, fresh)
            compile_lock(name, fresh)
            before = current.read_text().splitlines(keepends=True) if current.exists() else []
            after = fresh.read_text().splitlines(keepends=True)
            if before != after:
                stale[name] = "".join(difflib.unified_diff(before, after, f"{name} (committed)", f"{name} (now)"))
    return stale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 when stale")
    args = parser.parse_args()
    if args.check:
        stale = stale_locks()
        for name, diff in stale.items():
            print(f"{LOCKS.relative_to(REPO) / name} is stale (python -m tools.lock rewrites it):\n{diff}")
        raise SystemExit(1 if stale else 0)
    for name in TARGETS:
        compile_lock(name, LOCKS / name)
        print(f"wrote {LOCKS.relative_to(REPO) / name}")


if __name__ == "__main__":
    main()

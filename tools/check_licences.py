"""Licence gate for CI: every runtime dependency of sfsync must be usable in an Apache-2.0 project."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

#: licences compatible with shipping inside Apache-2.0 (MPL-2.0 is file-level copyleft: fine to use unmodified)
ALLOWED = re.compile(
    r"\b(MIT|MIT-0|BSD|0BSD|Apache|ISC|PSF|Python Software Foundation|MPL[- ]?2\.0|Mozilla Public License 2\.0"
    r"|Unlicense|Zlib|CC0|HPND)\b", re.IGNORECASE)
#: weak copyleft: usable as a separate, unmodified library, but a lawyer should know
FLAGGED = re.compile(r"\bLGPL|Lesser General Public", re.IGNORECASE)
#: strong copyleft: a dependency under these cannot ship inside an Apache-2.0 product
REFUSED = re.compile(r"(?<![L])\bA?GPL|GNU General Public|Affero|\bSSPL\b|\bEUPL\b", re.IGNORECASE)
#: classifier words that say nothing about which licence it is
NEUTRAL = re.compile(r"^(DFSG approved|OSI Approved|UNKNOWN|)$", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    name: str
    version: str
    licence: str
    status: str  # "ok", "flagged" or "refused"


def classify(licence: str) -> str:
    """ok / flagged / refused for a licence text, SPDX expression or `; `-joined classifier list.

    Alternatives (OR, or several classifiers) take the best; a conjunction (AND) the worst.
    """
    rank = {"ok": 0, "flagged": 1, "refused": 2}
    best = "refused"
    for alternative in re.split(r"\s+OR\s+|;\s*", licence.strip().strip("()")):
        alternative = alternative.strip().strip("()")
        if NEUTRAL.match(alternative):
            continue
        worst = max((_classify_one(part) for part in re.split(r"\s+AND\s+", alternative)), key=rank.get)
        best = min(best, worst, key=rank.get)
    return best


def _classify_one(licence: str) -> str:
    if FLAGGED.search(licence):
        return "flagged"
    if REFUSED.search(licence):
        return "refused"
    if ALLOWED.search(licence):
        return "ok"
    return "refused"  # unknown: someone must read it before it ships


def runtime_requirements(extras: list[str]) -> list[Requirement]:
    """sfsync's own runtime requirements from pyproject.toml, plus the named extras (never `test`)."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        wanted += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return wanted


def dependency_closure(roots: list[Requirement]) -> dict[str, str]:
    """canonical name -> installed version of every distribution the roots need, read from installed metadata."""
    found: dict[str, str] = {}
    queue = [(r, frozenset(r.extras)) for r in roots if r.marker is None or r.marker.evaluate({"extra": ""})]
    while queue:
        requirement, extras = queue.pop()
        name = canonicalize_name(requirement.name)
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"licence check: {requirement.name} is required but not installed") from None
        if name in found and not extras:
            continue
        found[name] = dist.version
        for text in dist.requires or ():
            child = Requirement(text)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in ("", *extras)):
                queue.append((child, frozenset(child.extras)))
    return found


def licences(names: list[str]) -> dict[str, str]:
    """canonical name -> licence, as pip-licenses reads it (classifiers, License-Expression or License)."""
    out = subprocess.run([sys.executable, "-m", "piplicenses", "--from=mixed", "--format=json", "--with-system",
                          "--packages", *names], capture_output=True, text=True, timeout=120, check=True).stdout
    return {canonicalize_name(item["Name"]): item["License"] for item in json.loads(out)}


def check_requirements(roots: list[Requirement]) -> list[Verdict]:
    """A verdict for every installed distribution the roots need."""
    closure = dependency_closure(roots)
    found = licences(sorted(closure))
    return [Verdict(name, version, found.get(name, "UNKNOWN"), classify(found.get(name, "UNKNOWN")))
            for name, version in sorted(closure.items())]


def report(verdicts: list[Verdict]) -> tuple[list[str], int]:
    """The lines to print and the exit code: 1 when any distribution is refused, naming each."""
    lines = []
    for v in verdicts:
        if v.status != "ok":
            word = "REFUSED" if v.status == "refused" else "flagged (weak copyleft: use it unmodified)"
            lines.append(f"{v.name} {v.version}: {v.licence}: {word}")
    refused = [v for v in verdicts if v.status == "refused"]
    lines.append(f"licence check: {len(verdicts)} runtime distributions, {len(refused)} refused, "
                 f"{sum(v.status == 'flagged' for v in verdicts)} flagged")
    if refused:
        lines.append("not compatible with Apache-2.0: " + ", ".join(f"{v.name} ({v.licence})" for v in refused))
    return lines, 1 if refused else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--extras", default="", help="comma-separated extras to check too (e.g. demo,emulator)")
    args = parser.parse_args(argv)
    lines, code = report(check_requirements(runtime_requirements([e for e in args.extras.split(",") if e])))
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())

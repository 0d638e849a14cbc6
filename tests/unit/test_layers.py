"""Imports point down: the contracts of pyproject.toml's [tool.importlinter] hold, and they do catch a breach.

`lint-imports` reads the import graph from the source (imports inside functions count like any
other) and checks the layers workers -> workspaces -> events -> schemas, the emulator standing
apart, and no cycle between sibling modules of any package.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("benchmarks", "workers", "workspaces", "events", "schemas", "salesforce_emulator")


def _lint_imports(cwd: Path, output: Path) -> tuple[int, str]:
    """`lint-imports` run in `cwd` against its pyproject.toml: (exit code, its report)."""
    with output.open("w") as out:
        finished = subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=cwd, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=180, check=False)
    return finished.returncode, output.read_text()


def test_given_the_tree_when_its_imports_are_checked_then_every_contract_is_kept(tmp_path):
    code, report = _lint_imports(ROOT, tmp_path / "lint-imports.out")

    assert code == 0, f"an import breaks the layering rules of pyproject.toml:\n{report}"
    assert "0 broken" in report and "BROKEN" not in report


def test_given_workspaces_importing_workers_inside_a_function_when_checked_then_the_layers_are_broken(tmp_path):
    # a copy of the packages, with one import that runs back up, hidden inside a function
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "results"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    registry = tmp_path / "workspaces" / "registry.py"
    registry.write_text(registry.read_text() + "\n\ndef _breach():\n    from workers.breaker import Breakers\n\n"
                        "    return Breakers\n")

    code, report = _lint_imports(tmp_path, tmp_path / "lint-imports.out")

    assert code != 0, report
    assert "workspaces/ imports nothing from workers/" in report and "BROKEN" in report
    assert "workspaces.registry -> workers.breaker" in report

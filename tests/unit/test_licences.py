"""The licence gate: permissive licences pass, LGPL is flagged, GPL/AGPL and unknown licences fail by name."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tools.check_licences import Verdict, check_requirements, classify, report, runtime_requirements

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("licence", [
    "MIT", "MIT License", "BSD-3-Clause", "BSD License", "Apache-2.0", "Apache Software License", "ISC",
    "PSF-2.0", "Python Software Foundation License", "Mozilla Public License 2.0 (MPL 2.0)", "MPL-2.0",
    "Apache-2.0 OR BSD-3-Clause", "Apache-2.0 AND BSD-2-Clause", "DFSG approved; MIT License", "MIT-0",
])
def test_given_a_permissive_licence_when_classified_then_ok(licence):
    assert classify(licence) == "ok"


@pytest.mark.parametrize("licence", ["LGPL-2.1-only", "GNU Lesser General Public License v2 (LGPLv2)",
                                     "LGPL-3.0-or-later"])
def test_given_a_weak_copyleft_licence_when_classified_then_flagged(licence):
    assert classify(licence) == "flagged"


@pytest.mark.parametrize("licence", [
    "GPL-3.0-or-later", "GNU General Public License v3 (GPLv3)", "AGPL-3.0-only",
    "GNU Affero General Public License v3", "MIT AND GPL-2.0-only", "UNKNOWN", "Proprietary", "",
])
def test_given_a_strong_copyleft_or_unknown_licence_when_classified_then_refused(licence):
    assert classify(licence) == "refused"


def test_given_a_gpl_or_dual_licence_with_a_permissive_choice_when_classified_then_the_best_choice_wins():
    assert classify("GPL-2.0-only OR MIT") == "ok"


def test_given_a_refused_dependency_when_reported_then_it_is_named_and_the_exit_code_is_1():
    lines, code = report([Verdict("html2text", "2025.4.15", "GPL-3.0-or-later", "refused"),
                          Verdict("pycountry", "26.2.16", "LGPL-2.1-only", "flagged"),
                          Verdict("redis", "8.1.0", "MIT", "ok")])
    assert code == 1
    assert "html2text 2025.4.15: GPL-3.0-or-later: REFUSED" in lines
    assert any(line.startswith("pycountry") and "flagged" in line for line in lines)
    assert lines[-1] == "not compatible with Apache-2.0: html2text (GPL-3.0-or-later)"


def test_given_only_permissive_dependencies_when_reported_then_exit_code_0():
    assert report([Verdict("redis", "8.1.0", "MIT", "ok")])[1] == 0


def test_given_installed_packages_when_checked_then_the_closure_comes_from_their_metadata():
    verdicts = {v.name: v for v in check_requirements([Requirement("requests"), Requirement("pycountry")])}
    assert {"requests", "urllib3", "idna", "certifi", "charset-normalizer", "pycountry"} <= set(verdicts)
    assert verdicts["requests"].status == "ok" and verdicts["pycountry"].status == "flagged"
    assert "pytest" not in verdicts  # test tools are not runtime dependencies


def test_given_the_project_when_its_runtime_requirements_are_read_then_no_test_tool_and_no_gpl_package():
    names = {r.name for r in runtime_requirements(["demo", "emulator", "flower"])}
    test_tools = {Requirement(r).name for r in
                  tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]}
    assert "pytest" in test_tools and not names & {"pytest", "pytest-timeout", "pip-licenses"}
    assert "html2text" not in names and "inscriptis" in names


"""docs/benchmarks.md opens with the current results, one set per benchmark; the history is a dated file."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_benchmark_page_opens_with_the_current_results_and_holds_no_other_results():
    text = (DOCS / "benchmarks.md").read_text()
    sections = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert sections[0] == "Current results"
    current = text[text.index("## Current results"):text.index(f"## {sections[1]}")]
    rest = text.replace(current, "")
    # results tables (a `figure ... value` header) appear under Current results only
    assert not re.search(r"^figure\s+.*value", rest, re.MULTILINE)
    assert len(re.findall(r"^### .+\d{4}-\d{2}-\d{2}", current, re.MULTILINE)) >= 2  # each dated


def test_the_history_is_a_dated_file_the_page_links_to():
    text = (DOCS / "benchmarks.md").read_text()
    [history] = re.findall(r"\((benchmarks-history-\d{4}-\d{2}\.md)\)", text)[:1]
    assert (DOCS / history).read_text().startswith("# Benchmark results")

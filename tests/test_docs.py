"""The docs cite measurements that exist: every study row the answer key quotes is in the study."""

from __future__ import annotations

import re

from tests.conftest import REPO


def quoted_rows(text: str) -> list[str]:
    """Fragments of table rows quoted in backticks, like `| medium without SAM | 46.10 |`."""
    return [match.strip() for match in re.findall(r"`(\|[^`]+)`", text)]


def test_the_answer_key_quotes_rows_the_study_produces():
    key = (REPO / "docs" / "answer-key.md").read_text()
    sources = "".join((REPO / "docs" / name).read_text() for name in ("recipe-study.md", "laptop-regime.md"))
    rows = quoted_rows(key)
    assert len(rows) >= 6
    missing = [row for row in rows if row not in sources]
    assert not missing, f"the answer key quotes rows that the study no longer produces: {missing}"


def test_a_changed_number_is_caught():
    study = "| medium without SAM | 46.10 ± 0.20 (n=3) |"
    assert quoted_rows("see `| medium without SAM | 46.10` and") == ["| medium without SAM | 46.10"]
    assert "| medium without SAM | 46.11" not in study

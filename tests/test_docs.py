"""The docs cite measurements that exist: every study row the answer key quotes is in the study."""

from __future__ import annotations

import re

from tests.conftest import REPO


def quoted_rows(text: str) -> list[str]:
    """Fragments of table rows quoted in backticks, like `| medium without SAM | 46.10 |`."""
    return [match.strip() for match in re.findall(r"`(\|[^`]+)`", text)]


def missing_rows(key: str, sources: str) -> list[str]:
    """The quoted row fragments of ``key`` that ``sources`` does not contain."""
    return [row for row in quoted_rows(key) if row not in sources]


def test_the_answer_key_quotes_rows_the_study_produces():
    key = (REPO / "docs" / "answer-key.md").read_text()
    sources = "".join((REPO / "docs" / name).read_text() for name in ("recipe-study.md", "laptop-regime.md"))
    assert len(quoted_rows(key)) >= 6
    missing = missing_rows(key, sources)
    assert not missing, f"the answer key quotes rows that the study no longer produces: {missing}"


def test_a_number_the_study_no_longer_produces_is_caught():
    study = (REPO / "docs" / "recipe-study.md").read_text()
    row = next(line for line in study.splitlines() if line.startswith("| medium without SAM |"))
    quoted = " | ".join(row.split(" | ")[:2]) + " |"
    assert missing_rows(f"`{quoted}`", study) == []
    changed = re.sub(r"\d(?=\.\d\d)", lambda digit: str((int(digit.group()) + 1) % 10), quoted, count=1)
    assert changed != quoted and missing_rows(f"`{changed}`", study) == [changed]

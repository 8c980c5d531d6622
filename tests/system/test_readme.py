"""The README's two commands are the truth: CI runs the second one verbatim."""

from __future__ import annotations

import re

from tests.conftest import REPO, run_segkit


def readme_commands() -> list[str]:
    section = (REPO / "README.md").read_text().split("## Two commands", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_two_commands_and_ci_runs_the_second():
    setup_and_run, setup_and_test = readme_commands()
    assert setup_and_run.startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[teaching]' && ")
    assert setup_and_test.startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && ")
    ci = (REPO / ".ci" / "run").read_text()
    assert setup_and_test in ci.splitlines()


def test_readme_cli_lines_parse():
    # Every `segkit ...` line of the README is a valid command line (checked with --help parsing).
    from segkit.cli import build_parser

    text = (REPO / "README.md").read_text()
    lines = re.findall(r"\.venv/bin/segkit ([^#\n]+)", text)
    assert len(lines) >= 6
    for line in lines:
        build_parser().parse_args(line.split(">")[0].split())


def test_recipes_listing_matches_readme_claim():
    listing = run_segkit("recipes")
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["baseline", "mild", "medium", "hot"]
    assert "sam_rho=0.3" in lines[2] and "mixup_alpha=0.5" in lines[3]

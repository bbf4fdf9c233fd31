"""docs/orpheus.md, docs/replay-report.md, docs/orpheus-lifecycle.md and docs/compare.md: the
options tables of `orpheus run`, `orpheus replay`, `orpheus report`, `orpheus demo`, `orpheus
fail-node`, `orpheus energy` and `orpheus compare` list exactly the flags their parsers have
(every spelling of each), as tests/unit/test_testbed_docs.py does for `orpheus testbed up`."""

import argparse
import re
from pathlib import Path

import pytest

from orpheus.cli import build_parser

DOCS = Path(__file__).resolve().parents[2] / "docs"
FLAG = re.compile(r"`(--?[a-zA-Z][a-zA-Z-]*)")


def table_flags(doc: str, heading: str) -> set[str]:
    """The flags named in the first column of the table under ``heading`` (up to the next
    heading of any level)."""
    section = (DOCS / doc).read_text().split(heading, 1)[1]
    section = re.split(r"^#", section, maxsplit=1, flags=re.M)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    cells = [re.split(r"(?<!\\)\|", row)[1] for row in rows]
    return {f for cell in cells for f in FLAG.findall(cell)}


def parser_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions for o in a.option_strings} - {"-h", "--help"}


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser(name)
    return next(a for a in parser._actions if a.dest == "command").choices[name]


def test_the_table_reader_finds_the_tables() -> None:
    assert {"--mode", "--rekick"} <= table_flags("orpheus.md", "## Options")
    assert {"-o", "--output", "--time-scale"} <= table_flags(
        "replay-report.md", "## `orpheus replay WORKLOAD")


def test_orpheus_run_options_table_matches_the_parser() -> None:
    top = parser_flags(build_parser("run"))  # -v/--verbose, given before `run`
    assert top == {"-v", "--verbose"}
    assert table_flags("orpheus.md", "## Options") == parser_flags(subcommand("run")) | top


@pytest.mark.parametrize(("command", "doc", "heading"), [
    ("replay", "replay-report.md", "## `orpheus replay WORKLOAD"),
    ("report", "replay-report.md", "## `orpheus report ("),
    ("demo", "orpheus.md", "## `orpheus demo`"),
    ("fail-node", "orpheus-lifecycle.md", "## `orpheus fail-node`"),
    ("energy", "orpheus-lifecycle.md", "## `orpheus energy`"),
    ("compare", "compare.md", "## `orpheus compare RUN"),
])
def test_other_options_tables_match_their_parsers(command: str, doc: str, heading: str) -> None:
    assert table_flags(doc, heading) == parser_flags(subcommand(command))

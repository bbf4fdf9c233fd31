"""docs/testbed.md: every command example parses with the real CLI, and the flag table of
`testbed up` lists exactly the flags the parser has."""

import re
import shlex
from pathlib import Path

import pytest

from orpheus.cli import build_parser

DOC = (Path(__file__).resolve().parents[2] / "docs" / "testbed.md").read_text()
EXAMPLES = [line.split("#")[0].strip() for block in re.findall(r"```sh\n(.*?)```", DOC, re.S)
            for line in block.splitlines() if line.startswith("orpheus ")]


def test_the_doc_has_examples_for_each_command() -> None:
    assert {shlex.split(e)[1] for e in EXAMPLES} >= {"testbed", "install", "uninstall"}
    assert {shlex.split(e)[2] for e in EXAMPLES if " testbed " in e} == {"up", "status", "down"}


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_parses(example: str) -> None:
    args = build_parser().parse_args(shlex.split(example)[1:])
    assert callable(args.func)


def test_flag_table_matches_the_parser() -> None:
    section = DOC.split("## `orpheus testbed up`")[1].split("\n## ")[0]
    documented = set(re.findall(r"^\| `(--[a-z-]+)", section, re.M))
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["testbed"]
    up = next(a for a in sub._actions if a.dest == "action").choices["up"]
    flags = {o for a in up._actions for o in a.option_strings if o.startswith("--")}
    assert documented == flags - {"--help"}

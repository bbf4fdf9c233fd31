"""docs/job-arguments.md: every example command gives the job spec or error shown after it.

Each ```text block of commands is followed by a ```json block with one line per command: the
JobSpec fields expected (``args`` compared with the parsed table, integer keys written as
JSON strings), or ``{"error": "<part of the message>"}``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from orpheus.spec import SpecError, parse_command

DOC = Path(__file__).resolve().parents[2] / "docs" / "job-arguments.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def examples() -> list[tuple[str, dict[str, object]]]:
    """(command, expected) pairs: each text block zipped with the json block right after it."""
    blocks = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    pairs: list[tuple[str, dict[str, object]]] = []
    for (kind, body), (next_kind, next_body) in itertools.pairwise([*blocks, ("end", "")]):
        if kind != "text":
            continue
        assert next_kind == "json", f"the text block {body!r} is not followed by a json block"
        commands, expected = body.splitlines(), next_body.splitlines()
        assert len(commands) == len(expected), f"{len(commands)} commands, {len(expected)} results"
        pairs += [(c, json.loads(e)) for c, e in zip(commands, expected, strict=True)]
    return pairs


EXAMPLES = examples()


def test_the_doc_has_examples_of_each_kind() -> None:
    assert len(EXAMPLES) >= 20
    assert any("error" in e for _, e in EXAMPLES)
    assert any("args" in e for _, e in EXAMPLES)
    assert sum(1 for b in BLOCK.findall(DOC.read_text(encoding="utf-8")) if b[0] == "text") >= 4


def jsonable(value: object) -> object:
    """A parsed value as the doc writes it in JSON (keys as strings)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("command", "expected"), EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_doc_example(command: str, expected: dict[str, object]) -> None:
    if "error" in expected:
        with pytest.raises(SpecError) as caught:
            parse_command(command)
        assert str(expected["error"]) in str(caught.value)
        return
    spec = parse_command(command)
    for name, value in expected.items():
        if name == "args":
            assert jsonable(spec.args) == value
        else:
            assert getattr(spec, name) == value, name

"""The examples of docs/adage.md run as written: each ``$ adage`` line of a ``console`` block
runs from one fresh directory, and every output line shown must appear in its output (``…``
matches anything)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "adage.md"


def blocks() -> list[list[tuple[str, list[str]]]]:
    """Each console block as (command, expected output lines) pairs."""
    out = []
    for body in re.findall(r"```console\n(.*?)```", DOC.read_text(), re.S):
        steps: list[tuple[str, list[str]]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
        out.append(steps)
    return out


def test_the_documented_examples_run_as_shown(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ADAGE_HOME": str(tmp_path / "home")}
    found = blocks()
    assert len(found) >= 3
    for steps in found:
        for command, expected in steps:
            argv = shlex.split(command)
            assert argv[0] == "adage"
            argv = [str(ROOT / a) if a.startswith("examples/") else a for a in argv[1:]]
            if argv[0] not in ("status", "clean"):
                argv += ["--local-root", str(tmp_path / "nodes")]
            r = subprocess.run([sys.executable, "-m", "adage", *argv], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=120,
                               check=False)
            assert r.returncode == 0, (command, r.stderr)
            got = (r.stdout + r.stderr).splitlines()
            for line in expected:
                pattern = ".*".join(re.escape(part) for part in line.split("…"))
                assert any(re.fullmatch(pattern, g.rstrip()) for g in got), (command, line, got)

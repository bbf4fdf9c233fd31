"""The satellite's program: the code compiled by this Python, run when the node's Python
reads the same bytecode, the source otherwise."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from adage.deploy.program import satellite_program


def run(tmp_path: Path, program: str) -> str:
    path = tmp_path / "satellite-n1.py"
    path.write_text(program)
    return subprocess.run([sys.executable, "-S", str(path), "n1"], capture_output=True,
                          text=True, check=True, stdin=subprocess.DEVNULL, timeout=30).stdout


def test_a_python_reading_the_same_bytecode_runs_the_compiled_code(tmp_path: Path) -> None:
    program = satellite_program('import sys\nprint("ran", __name__, sys.argv[1:])\n')
    assert run(tmp_path, program) == "ran __main__ ['n1']\n"
    marked = program.replace("exec(compile(", 'print("from the source") or exec(compile(')
    assert marked != program
    assert run(tmp_path, marked) == "ran __main__ ['n1']\n"


def test_a_python_reading_another_bytecode_runs_the_source(tmp_path: Path) -> None:
    program = satellite_program('print("ran", __name__)\n').replace(
        "exec(compile(", 'print("from the source") or exec(compile(')
    other = program.replace(repr(importlib.util.MAGIC_NUMBER), repr(b"\x00\x00\r\n"))
    assert other != program
    assert run(tmp_path, other) == "from the source\nran __main__\n"


def test_the_satellite_program_imports_neither_json_subprocess_re_enum_nor_contextlib(
        tmp_path: Path) -> None:
    """Its start is paid on every node (``satellite``'s docstring); ``-X importtime`` names
    every module it imports (stdin closed: it says hello and ends)."""
    path = tmp_path / "satellite-n1.py"
    path.write_text(satellite_program())
    out = subprocess.run([sys.executable, "-S", "-X", "importtime", str(path), "n1"],
                         capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL,
                         timeout=30)
    assert '"ev": "hello"' in out.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert {"binascii", "select", "_json"} <= imported  # the compiled path
    assert not imported & {"json", "subprocess", "re", "enum", "contextlib"}


def test_a_traceback_of_the_program_quotes_neither_its_code_nor_its_source(
        tmp_path: Path) -> None:
    path = tmp_path / "satellite-n1.py"
    path.write_text(satellite_program('raise SystemError("boom")\n'))
    out = subprocess.run([sys.executable, "-S", str(path), "n1"], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, timeout=30)
    assert out.returncode == 1 and "SystemError: boom" in out.stderr
    assert "exec(loads(a2b_base64(CODE)))" in out.stderr  # the program's line, quoted
    assert max(len(line) for line in out.stderr.splitlines()) < 300, out.stderr

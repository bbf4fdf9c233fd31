"""``orpheus model``: the CSV in and out, bad input, and every example of docs/io-models.md."""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from orpheus.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "io-models.md"
JOBS = """job_id,start,command
4,15,"sim {exec_time=30, io=1, io_workload=5}"
1,0,"sim {exec_time=30, io=1, io_workload=5}"
2,0,"sim {exec_time=30, io=1, io_workload=5}"
3,0,"sim {exec_time=30, io=1, io_workload=5}"
5,2.5,oarsh_job_with_no_args
"""


def run(argv: list[str], stdin: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["model", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def doc_examples() -> list[tuple[str, str, str]]:
    """(arguments, stdin, expected stdout) of each console block of the doc."""
    examples = []
    for block in re.findall(r"```console\n(.*?)```", DOC.read_text(), re.S):
        command, rest = block.split("\n", 1)
        stdin, expected = rest.split("EOF\n", 1)
        match = re.fullmatch(r"\$ orpheus model (.*) - <<'EOF'", command)
        assert match, command
        examples.append((match.group(1), stdin, expected))
    return examples


def test_doc_has_examples() -> None:
    assert len(doc_examples()) == 8


@pytest.mark.parametrize(("args", "stdin", "expected"), doc_examples())
def test_doc_examples(args: str, stdin: str, expected: str, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run([*shlex.split(args), "-"], stdin, monkeypatch, capsys) == (0, expected, "")


def test_file_in_file_out_in_input_order(tmp_path: Path) -> None:
    src, dst = tmp_path / "jobs.csv", tmp_path / "ends.csv"
    src.write_text(JOBS)
    assert main(["model", "--io-capacity", "10", "--default-exec-time", "4", str(src),
                 "-o", str(dst)]) == 0
    assert dst.read_text() == ("job_id,start,end\n4,15,65\n1,0,55\n2,0,55\n3,0,55\n"
                               "5,2.5,6.5\n")


def test_unlimited_capacity_by_default(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["-"], JOBS, monkeypatch, capsys)
    assert (code, out) == (0, "job_id,start,end\n4,15,45\n1,0,30\n2,0,30\n3,0,30\n5,2.5,12.5\n")


@pytest.mark.parametrize(("row", "message"), [
    ('2,0,"sim {exec_time=30, io=2}"', "line 3: job 2: io must be true or false (or 1 or 0)"),
    ('2,0,"sim {exec_time=}"', "line 3: job 2: expected a value but found '}' at column 16"),
    ("2,soon,sim", "line 3: job 2: start must be a finite number of seconds, got 'soon'"),
    ("2,inf,sim", "line 3: job 2: start must be a finite number of seconds, got 'inf'"),
    ("two,0,sim", "line 3: job_id must be an integer, got 'two'"),
    ("1_0,0,sim", "line 3: job_id must be an integer, got '1_0'"),
    ("\u0662,0,sim", "line 3: job_id must be an integer, got '\u0662'"),
    ("2,1_0,sim", "line 3: job 2: start must be a finite number of seconds, got '1_0'"),
    ("2,\u0661,sim", "line 3: job 2: start must be a finite number of seconds, got '\u0661'"),
    ('2,0,"sim {exec_time=1,\nio=2}"', "line 3: job 2: io must be true or false"),
    ("1,0,sim", "line 3: job 1: duplicate job_id"),
    ("2,0", "line 3: expected 3 fields (job_id,start,command), got 2"),
])
def test_bad_row_fails_without_output(row: str, message: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = tmp_path / "jobs.csv", tmp_path / "ends.csv"
    src.write_text(f"job_id,start,command\n1,0,sim\n{row}\n3,1,sim\n")
    assert main(["model", str(src), "-o", str(dst)]) == 2
    out, err = capsys.readouterr()
    assert (out, dst.exists()) == ("", False)
    assert err.startswith(f"orpheus model: {src}: {message}") and err.count("\n") == 1


def test_bad_rows_skipped_on_request(monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    stdin = 'job_id,start,command\n1,0,sim\n2,0,"sim {io=2}"\n\n3,1,"sleep 5"\n4,x,sim\n'
    code, out, err = run(["--on-error", "skip", "-"], stdin, monkeypatch, capsys)
    assert (code, out) == (0, "job_id,start,end\n1,0,10\n3,1,6\n")
    assert err.splitlines() == [
        "orpheus model: <stdin>: line 3: job 2: io must be true or false (or 1 or 0), "
        "but is 2 (at column 9): skipped",
        "orpheus model: <stdin>: line 6: job 4: start must be a finite number of seconds, "
        "got 'x': skipped",
    ]


@pytest.mark.parametrize(("stdin", "message"), [
    ("", "line 1: expected the header job_id,start,command, got None"),
    ("id,start,command\n", "line 1: expected the header job_id,start,command, got ['id', "),
    ('job_id,start,command\n1,0,"sim {\n\n', "line 2: bad CSV: unexpected end of data"),
])
def test_bad_file(stdin: str, message: str, monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["--on-error", "skip", "-"], stdin, monkeypatch, capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"orpheus model: <stdin>: {message}")


def test_byte_order_mark_before_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "jobs.csv"
    src.write_bytes(b"\xef\xbb\xbfjob_id,start,command\r\n1,0,sim {exec_time=30}\r\n")
    assert main(["model", str(src)]) == 0
    assert capsys.readouterr().out == "job_id,start,end\n1,0,30\n"
    assert run(["-"], src.read_text(encoding="utf-8"), monkeypatch, capsys)[:2] == (
        0, "job_id,start,end\n1,0,30\n")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", str(tmp_path / "nope.csv")]) == 2
    assert capsys.readouterr().err == (
        f"orpheus model: cannot read {tmp_path / 'nope.csv'}: No such file or directory\n")


@pytest.mark.parametrize(("argv", "message"), [
    (["--io-capacity", "scratch=0"],
     "argument --io-capacity: 'scratch=0': capacity of 'scratch' must be a number > 0"),
    (["--model", "quadratic"], "argument --model/--io-model: invalid choice: 'quadratic'"),
    (["--default-exec-time", "nan"], "argument --default-exec-time: invalid seconds value: 'nan'"),
    (["--default-exec-time", "-1"], "argument --default-exec-time: invalid seconds value: '-1'"),
])
def test_bad_options(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["model", *argv, "-"])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_console_entry_point(tmp_path: Path) -> None:
    """The real interpreter and module entry point (on this checkout's sources)."""
    src = tmp_path / "jobs.csv"
    src.write_text(JOBS)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        ["/opt/orpheus-adage/venv/bin/python", "-m", "orpheus.cli", "model", "--model", "fair",
         "--io-capacity", "default=10", str(src)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "job_id,start,end\n4,15,65\n1,0,55\n2,0,55\n3,0,55\n5,2.5,12.5\n"

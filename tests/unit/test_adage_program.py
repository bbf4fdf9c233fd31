"""The satellite's program: the code compiled by this Python, run when the node's Python
reads the same bytecode, the source otherwise; and ``BOOT``, which reads it from stdin."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

from adage.deploy.program import BOOT, framed, satellite_program


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


def test_boot_reads_the_program_from_stdin_and_leaves_the_rest_to_it(tmp_path: Path) -> None:
    """``python -S -c BOOT NODE`` with the framed program then operations on stdin: the
    satellite runs (as ``__main__``, the node as its argument) and reads what follows, even
    when it comes a byte at a time."""
    run = tmp_path / "run" / "p" / "0"  # made by the satellite: no tree was sent
    launch = {"op": "launch", "key": "A/0", "procs": [
        {"id": "p/0", "cwd": str(run), "argv": ["sh", "-c", "echo $0 > out"], "env": []}]}
    data = framed(satellite_program()) + (json.dumps(launch) + '\n{"op": "detach"}\n').encode()
    sat = subprocess.Popen([sys.executable, "-S", "-c", BOOT, "n1"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=False)
    assert sat.stdin is not None and sat.stdout is not None
    for i in range(0, len(data), 7000):  # in pieces, as an ssh channel delivers it
        sat.stdin.write(data[i:i + 7000])
        sat.stdin.flush()
        time.sleep(0.01)
    sat.stdin.close()
    events = [json.loads(line) for line in sat.stdout]
    assert sat.wait(timeout=30) == 0
    assert [e["ev"] for e in events] == ["hello", "started", "detached"]
    assert events[0]["node"] == "n1"
    deadline = time.time() + 10
    while not (run / "adage.exit").exists() and time.time() < deadline:
        time.sleep(0.05)
    assert (run / "out").read_text() == "sh\n" and (run / "adage.exit").read_text() == "0\n"


def test_boot_says_so_when_stdin_ends_before_the_program() -> None:
    out = subprocess.run([sys.executable, "-S", "-c", BOOT, "n1"], capture_output=True,
                         input=framed(satellite_program())[:5000], timeout=30)
    assert out.returncode == 1
    assert b"adage: stdin ended before the satellite's program did" in out.stderr


def boot(frame: bytes) -> str:
    return subprocess.run([sys.executable, "-S", "-c", BOOT, "n1"], input=frame,
                          capture_output=True, check=True, timeout=30).stdout.decode()


def with_source(frame: bytes, source: str) -> bytes:
    """``frame`` with its source replaced (its code kept)."""
    code = frame[28:28 + int(frame[4:16])]
    text = source.encode()
    return frame[:4] + b"%12d%12d" % (len(code), len(text)) + code + text


def test_framed_carries_the_code_run_by_a_python_reading_its_bytecode() -> None:
    frame = framed('import sys\nprint("ran", __name__, sys.argv[1:])\n')
    assert frame[:4] == importlib.util.MAGIC_NUMBER
    assert boot(frame) == "ran __main__ ['n1']\n"
    assert boot(with_source(frame, 'print("from the source")\n')) == "ran __main__ ['n1']\n"


def test_framed_carries_the_source_run_by_a_python_reading_another_bytecode() -> None:
    frame = with_source(framed('print("from the code")\n'), 'print("from the source", __name__)\n')
    assert boot(b"\x00\x00\r\n" + frame[4:]) == "from the source __main__\n"


def test_framed_is_bytes_not_python_literals_and_is_made_once() -> None:
    """What ``BOOT`` reads needs no parsing on the node (program's docstring), and the front
    end compiles the satellite once however many nodes it starts."""
    frame = framed()
    source = (Path(__file__).parents[2] / "src/adage/deploy/satellite.py").read_bytes()
    assert frame.endswith(source) and int(frame[16:28]) == len(source)
    assert framed() is frame

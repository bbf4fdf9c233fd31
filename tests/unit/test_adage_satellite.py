"""The satellite itself, run here as the nodes run it (``python3 -S satellite.py NODE``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from adage.deploy import satellite


def start(tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-S", satellite.__file__, "n1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def launch(tmp_path: Path, *argv: str) -> str:
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    return json.dumps({"op": "launch", "key": "A/0", "procs": [
        {"id": "p/0", "cwd": str(run), "argv": list(argv), "env": []}]}) + "\n"


def test_a_detached_satellite_says_so_last_then_outlives_its_stdin_until_its_processes_end(
        tmp_path: Path) -> None:
    sat = start(tmp_path)
    assert sat.stdin is not None and sat.stdout is not None
    assert json.loads(sat.stdout.readline())["ev"] == "hello"
    sat.stdin.write(launch(tmp_path, "sleep", "1"))
    sat.stdin.flush()
    started = json.loads(sat.stdout.readline())
    assert started["ev"] == "started" and list(started["pids"]) == ["p/0"]
    sat.stdin.write(json.dumps({"op": "detach"}) + "\n")
    sat.stdin.close()
    assert json.loads(sat.stdout.readline()) == {"ev": "detached"}
    assert sat.poll() is None  # stdin closed after "detach": the satellite goes on
    assert sat.stdout.read() == ""  # and says nothing more until it exits with its process
    assert sat.wait(timeout=10) == 0
    assert (tmp_path / "run" / "adage.exit").read_text() == "0\n"


def test_a_satellite_whose_stdin_closes_without_detach_kills_its_processes(
        tmp_path: Path) -> None:
    sat = start(tmp_path)
    assert sat.stdin is not None and sat.stdout is not None
    sat.stdin.write(launch(tmp_path, "sleep", "60"))
    sat.stdin.close()
    t0 = time.monotonic()
    events = [json.loads(line)["ev"] for line in sat.stdout]
    assert events == ["hello", "started", "exit", "killed"]
    assert sat.wait(timeout=10) == 0 and time.monotonic() - t0 < 10
    assert (tmp_path / "run" / "adage.exit").read_text() == "-15\n"

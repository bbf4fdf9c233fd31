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


def launch(tmp_path: Path, *argv: str, watch: bool = False) -> str:
    run = tmp_path / "run"
    run.mkdir(parents=True, exist_ok=True)
    report = ["ADAGE_REPORT", str(run / "report"), "set"]
    op = {"op": "launch", "key": "A/0", "procs": [
        {"id": "p/0", "cwd": str(run), "argv": list(argv), "env": [report]}]}
    return json.dumps({**op, "watch": True} if watch else op) + "\n"


def timed_events(sat: subprocess.Popen[str], n: int) -> dict[str, float]:
    """The next ``n`` events, each with the time it came at (s from now)."""
    assert sat.stdout is not None
    t0 = time.monotonic()
    return {json.loads(sat.stdout.readline())["ev"]: time.monotonic() - t0 for _ in range(n)}


def test_an_idle_satellite_still_tells_values_and_tells_an_end_at_once(
        tmp_path: Path) -> None:
    """After 3 s of nothing, report files are read every POLL_MAX s: a value written then
    comes within POLL_MAX (at once for a watched process), an end at once (SIGCHLD)."""
    for watch in (False, True):
        sat = start(tmp_path)
        assert sat.stdin is not None and sat.stdout is not None
        assert json.loads(sat.stdout.readline())["ev"] == "hello"
        script = 'sleep 3; echo A=1 >>"$ADAGE_REPORT"; exec sleep 1'
        sat.stdin.write(launch(tmp_path / str(watch), "sh", "-c", script, watch=watch))
        sat.stdin.flush()
        assert json.loads(sat.stdout.readline())["ev"] == "started"
        at = timed_events(sat, 2)
        assert list(at) == ["value", "exit"]
        late = at["exit"] - at["value"]  # the value came this long before the end (1 s)
        assert late > 1 - (2 * satellite.POLL if watch else satellite.POLL_MAX + 0.25)
        assert at["exit"] - 4 < 0.3  # the end, at once
        sat.stdin.close()
        sat.wait(timeout=10)


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

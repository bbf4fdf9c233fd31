"""The satellite itself, run here as the nodes run it (``python3 -S FILE NODE``, the file being
``program.satellite_program()``: its code compiled, its source beside)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adage.deploy import satellite
from adage.deploy.program import satellite_program


def start(tmp_path: Path) -> subprocess.Popen[str]:
    prog = tmp_path / "satellite-n1.py"
    prog.write_text(satellite_program())
    return subprocess.Popen([sys.executable, "-S", str(prog), "n1"],
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


def test_values_written_before_detach_come_before_detached(tmp_path: Path) -> None:
    """A value in the report file when "detach" comes is told before "detached", however
    long the idle satellite's wait between two readings (POLL_MAX)."""
    sat = start(tmp_path)
    assert sat.stdin is not None and sat.stdout is not None
    assert json.loads(sat.stdout.readline())["ev"] == "hello"
    sat.stdin.write(launch(tmp_path, "sleep", "1"))
    sat.stdin.flush()
    assert json.loads(sat.stdout.readline())["ev"] == "started"
    time.sleep(4 * satellite.POLL)  # its readings now come farther apart
    (tmp_path / "run" / "report").write_text("A=1\n")
    sat.stdin.write(json.dumps({"op": "detach"}) + "\n")
    sat.stdin.close()
    events = [json.loads(line) for line in sat.stdout]
    assert events == [{"ev": "value", "key": "A/0", "proc": "p/0", "name": "A", "value": "1"},
                      {"ev": "detached"}]
    assert sat.wait(timeout=10) == 0


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


def events_of(tmp_path: Path, *argv: str, env: list[list[str]] | None = None) -> list[dict]:
    """Every event of a satellite given one launch of ``argv`` then ``detach``."""
    run = tmp_path / "run"
    run.mkdir(parents=True, exist_ok=True)
    op = {"op": "launch", "key": "A/0", "procs": [
        {"id": "p/0", "cwd": str(run), "argv": list(argv), "env": env or []}]}
    prog = tmp_path / "satellite-n1.py"
    prog.write_text(satellite_program())
    sat = subprocess.run([sys.executable, "-S", str(prog), "n1"], text=True,
                         input=json.dumps(op) + '\n{"op": "detach"}\n', capture_output=True,
                         timeout=30, check=True)
    return [json.loads(line) for line in sat.stdout.splitlines()]


def test_a_process_runs_in_its_directory_in_its_own_session_as_subprocess_would_start_it(
        tmp_path: Path) -> None:
    """stdin from /dev/null, stdout and stderr to its files, SIGPIPE not ignored."""
    script = ('pwd; ls -l /proc/self/fd/0; grep SigIgn /proc/self/status; '
              'ps -o sid= -p $$; echo $$; echo oops >&2')
    events = events_of(tmp_path, "sh", "-c", script)
    assert [e["ev"] for e in events] == ["hello", "started", "detached"]
    run = tmp_path / "run"
    for _ in range(100):
        if (run / "adage.exit").exists():
            break
        time.sleep(0.05)
    lines = (run / "stdout").read_text().splitlines()
    assert lines[0] == str(run) and lines[1].endswith("/dev/null")
    ignored = int(lines[2].split()[1], 16)
    assert not ignored & (1 << (13 - 1))  # SIGPIPE (13) at its default
    assert lines[3].strip() == lines[4] == str(events[1]["pids"]["p/0"])  # session leader
    assert (run / "stderr").read_text() == "oops\n"
    assert (run / "adage.exit").read_text() == "0\n"


def test_an_executable_is_looked_up_on_the_processs_own_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "hello-adage").write_text("#!/bin/sh\necho hi\n")
    (bin_dir / "hello-adage").chmod(0o755)
    events = events_of(tmp_path, "hello-adage", env=[["PATH", str(bin_dir), "prepend"]])
    assert events[1]["ev"] == "started"
    assert satellite.which("hello-adage", {"PATH": f"/nowhere:{bin_dir}"}) == \
        str(bin_dir / "hello-adage")
    assert satellite.which("./x", {}) == "./x"


def test_makedirs_makes_a_path_and_its_missing_parents_as_os_makedirs_does(
        tmp_path: Path) -> None:
    satellite.makedirs(str(tmp_path / "a" / "b" / "c"))
    assert (tmp_path / "a" / "b" / "c").is_dir()
    satellite.makedirs(f"{tmp_path}/a/d/")  # a parent that exists; a trailing slash
    assert (tmp_path / "a" / "d").is_dir()
    with pytest.raises(FileExistsError):
        satellite.makedirs(str(tmp_path / "a" / "d"))
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError):
        satellite.makedirs(str(tmp_path / "f" / "x"))
    with pytest.raises(FileExistsError):
        satellite.makedirs(str(tmp_path / "f"))


def test_the_environment_is_decoded_as_os_decodes_it() -> None:
    """``environ()`` (the environment as started, decoded) is ``dict(os.environ)``,
    undecodable bytes included (surrogateescape), in a process given such an environment."""
    env = {**os.environb, b"ADAGE_RAW": b"caf\xe9 \xff", b"ADAGE_UTF8": "\u00e9t\u00e9".encode()}
    out = subprocess.run(
        [sys.executable, "-c", "import os; from adage.deploy import satellite; "
         "e = satellite.environ(); print(e == dict(os.environ), repr(e['ADAGE_RAW']))"],
        env=env, capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.split(" ", 1) == ["True", "'caf\\udce9 \\udcff'\n"]


def test_processes_get_the_environment_the_node_gave_not_pythons_c_locale_coercion(
        tmp_path: Path) -> None:
    """Started under the C locale (no LANG, no LC_*: an ssh session's usual environment),
    CPython sets LC_CTYPE=C.UTF-8 in its own environment (PEP 538); a launched process must
    not get it, and gets everything else the satellite was started with."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    env["ADAGE_MARK"] = "x y"
    run = tmp_path / "run"
    op = {"op": "launch", "key": "A/0", "procs": [
        {"id": "p/0", "cwd": str(run), "argv": ["sh", "-c", "env > env.txt"], "env": []}]}
    prog = tmp_path / "satellite-n1.py"
    prog.write_text(satellite_program())
    coerced = subprocess.run(
        [sys.executable, "-S", "-c", "import os; print(os.environ['LC_CTYPE'])"], env=env,
        capture_output=True, text=True, check=True, timeout=30)
    assert coerced.stdout == "C.UTF-8\n"  # what the satellite's own Python does
    subprocess.run([sys.executable, "-S", str(prog), "n1"], env=env, text=True,
                   input=json.dumps(op) + '\n{"op": "detach"}\n', capture_output=True,
                   timeout=30, check=True)
    deadline = time.time() + 10
    while not (run / "adage.exit").exists() and time.time() < deadline:
        time.sleep(0.05)
    got = dict(line.split("=", 1) for line in (run / "env.txt").read_text().splitlines()
               if "=" in line)
    assert "LC_CTYPE" not in got and got["ADAGE_MARK"] == "x y"
    assert {k: got.get(k) for k in env if k not in ("PWD", "SHLVL", "_")} == \
        {k: v for k, v in env.items() if k not in ("PWD", "SHLVL", "_")}


def test_a_launch_into_a_run_directory_to_make_imports_no_os(tmp_path: Path) -> None:
    """``os`` would cost 1.1 ms of every start: the satellite uses ``posix`` (``-X
    importtime`` names every module imported), and makes the missing run directory."""
    run = tmp_path / "run" / "g" / "0"
    op = {"op": "launch", "key": "A/0", "procs": [
        {"id": "p/0", "cwd": str(run), "argv": ["sleep", "0.5"], "env": []}]}
    prog = tmp_path / "satellite-n1.py"
    prog.write_text(satellite_program())
    sat = subprocess.run([sys.executable, "-S", "-X", "importtime", str(prog), "n1"],
                         text=True, input=json.dumps(op) + '\n{"op": "detach"}\n',
                         capture_output=True, timeout=30, check=True)
    assert [json.loads(line)["ev"] for line in sat.stdout.splitlines()] == [
        "hello", "started", "detached"]
    imported = {line.rsplit("|", 1)[1].strip() for line in sat.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "select" in imported and "os" not in imported
    for _ in range(100):  # the satellite watches ``sleep`` to its end after the detach
        # (it lasts past the detach: a ``true`` could end, and be told, before it)
        if (run / "adage.exit").exists():
            break
        time.sleep(0.05)
    assert (run / "adage.exit").read_text() == "0\n" and (run / "stdout").exists()


def test_a_process_that_cannot_start_is_an_error_event_naming_it(tmp_path: Path) -> None:
    events = events_of(tmp_path, "no-such-program-adage", "x")
    assert events[1] == {"ev": "error", "key": "A/0", "proc": "p/0", "message":
                         "no-such-program-adage: [Errno 2] No such file or directory: "
                         "'no-such-program-adage'"}
    (tmp_path / "plain").write_text("not a program")
    events = events_of(tmp_path, str(tmp_path / "plain"))
    assert events[1]["ev"] == "error" and "Permission denied" in events[1]["message"]


def test_the_satellite_imports_neither_json_subprocess_re_enum_nor_contextlib() -> None:
    """Its start is paid on every node (module docstring)."""
    code = ("import sys; sys.argv = ['satellite', 'n1']; "
            f"sys.path.insert(0, {str(Path(satellite.__file__).parent)!r}); import satellite; "
            "print(' '.join(m for m in ('json', 'subprocess', 're', 'enum', 'contextlib') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.dictionaries(st.text(), inner, max_size=4), max_leaves=12)


@given(json_values)
def test_events_are_written_as_json_dumps_writes_them(value: object) -> None:
    assert satellite.dumps(value) == json.dumps(value)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text()
                    | st.floats(allow_nan=False),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(), inner, max_size=4), max_leaves=12))
def test_operations_are_read_as_json_loads_reads_them(value: object) -> None:
    assert satellite.loads(json.dumps(value) + " ") == json.loads(json.dumps(value))


def test_an_operation_with_extra_data_is_refused() -> None:
    with pytest.raises(ValueError, match="extra data"):
        satellite.loads('{"op": "detach"} x')


@pytest.mark.parametrize("line", ["", "  ", "{", '{"op": }', "x"])
def test_a_line_that_is_not_json_is_a_value_error_as_json_loads_raises(line: str) -> None:
    with pytest.raises(ValueError):
        json.loads(line)
    with pytest.raises(ValueError):  # not StopIteration, which the C scanner raises
        satellite.loads(line)


def test_a_missing_run_directory_is_an_error_and_the_satellite_stays_where_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    fds = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        satellite.spawn(["true"], str(tmp_path / "nowhere"), {})
    (tmp_path / "run").mkdir()
    with pytest.raises(FileNotFoundError, match="no-such-program"):
        satellite.spawn(["no-such-program"], str(tmp_path / "run"), {"PATH": "/usr/bin"})
    assert sorted(os.listdir("/proc/self/fd")) == fds  # nothing left open
    pid = satellite.spawn(["true"], str(tmp_path / "run"), {"PATH": "/usr/bin:/bin"})
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert Path.cwd() == tmp_path and (tmp_path / "run" / "stdout").exists()

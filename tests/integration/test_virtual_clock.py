"""OAR 2.5.9 on the virtual clock (``orpheus testbed up --clock virtual``): hours of OAR's
time pass in seconds of wall time, and OAR records them as a real run would.

The module puts the test bed on the virtual clock and gives it back on the real one.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ORPHEUS, SUBMITTER, db, submit_array, wait_final, wait_state

from oarlib import oarcli, preload, testbed, vclock
from orpheus.testbed_cli import bring_up

pytestmark = pytest.mark.oar
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module", autouse=True)
def virtual_bed() -> Iterator[None]:
    found = testbed.current()
    st = bring_up(dataclasses.replace(found, clock="virtual"))
    assert st["clock"]["mode"] == "virtual" and testbed.pg_clock() == "virtual"
    assert st["clock"]["preload_pid"] == preload.server_pid() is not None
    yield
    st = bring_up(dataclasses.replace(found, clock="real"))
    assert st["clock"] == {"mode": "real", "offset": 0.0}
    assert testbed.almighty_clock() == "real" and testbed.pg_clock() == "real"
    with db() as conn:  # else Hulot would take the nodes the virtual jobs ran on as busy
        ahead = conn.scalar("SELECT COUNT(*) FROM resources WHERE last_job_date > %s",
                            (time.time() + 1,))
    assert ahead == 0


def db_now() -> float:
    with db() as conn:
        return float(conn.scalar("SELECT EXTRACT(EPOCH FROM current_timestamp)"))


def job_row(job_id: int) -> dict[str, object]:
    with db() as conn:
        [row] = conn.query("SELECT state, start_time, stop_time, submission_time "
                           "FROM jobs WHERE job_id = %s", [job_id])
    return dict(zip(("state", "start", "stop", "submission"), row, strict=True))


def running_span(job_id: int) -> tuple[int, int]:
    with db() as conn:
        [(start, stop)] = conn.query("SELECT date_start, date_stop FROM job_state_logs "
                                     "WHERE job_id = %s AND job_state = 'Running'", [job_id])
    return int(start), int(stop)


def events(job_id: int) -> list[str]:
    with db() as conn:
        return [t for (t,) in conn.query("SELECT type FROM event_logs WHERE job_id = %s",
                                         [job_id])]


def test_the_database_almighty_and_the_daemon_share_one_clock_ahead_of_real_time(
        daemon_factory) -> None:
    daemon_factory()
    offset_file = vclock.OFFSET_FILE
    assert offset_file.stat().st_uid == pwd.getpwnam("oar").pw_uid
    before = vclock.Clock().now()
    [job] = submit_array(["{exec_time=7200}"], "core=1,walltime=3:00:00")
    wait_final([job], timeout=120)
    after = vclock.Clock().now()
    assert after - before > 7000  # the clock jumped over two idle hours
    assert abs(db_now() - vclock.Clock().now()) < 2  # PostgreSQL reads the same offset
    almighty = testbed.almighty_pid()
    env = Path(f"/proc/{almighty}/environ").read_bytes().split(b"\0")
    assert f"FAKETIME_TIMESTAMP_FILE={offset_file}".encode() in env
    assert after > time.time() + 7000


def ssl_loaded_by_oar_modules(env: dict[str, str]) -> str:
    """Whether OAR's logging module, which every OAR module uses, loads IO::Socket::SSL."""
    return subprocess.run(
        ["perl", "-e", 'use OAR::Modules::Judas; print $INC{"IO/Socket/SSL.pm"} ? "yes" : "no"'],
        env=env, user="oar", capture_output=True, text=True, check=True, cwd="/").stdout


def test_the_oar_modules_almighty_starts_do_not_load_ssl() -> None:
    almighty = testbed.almighty_pid()
    env = dict(e.split("=", 1) for e in
               Path(f"/proc/{almighty}/environ").read_text().split("\0") if "=" in e)
    assert env == testbed.almighty_env("virtual")
    assert ssl_loaded_by_oar_modules(env) == "no"
    assert ssl_loaded_by_oar_modules(testbed.ALMIGHTY_ENV) == "yes"  # Debian's, for the API


PROBE = """#!/usr/bin/perl
open(my $f, "<", "/proc/" . getppid() . "/cmdline");
my $parent = <$f>;
print(($INC{"OAR/IO.pm"} ? "OAR::IO loaded" : "OAR::IO not loaded"), " in a child of $parent\\n");
exit 7;
"""


def test_almighty_s_modules_are_forked_from_the_preloaded_perl() -> None:
    almighty = testbed.almighty_pid()
    env = dict(e.split("=", 1) for e in
               Path(f"/proc/{almighty}/environ").read_text().split("\0") if "=" in e)
    assert env["OARDIR"] == str(preload.OARDIR) and preload.server_pid() is not None
    mods = preload.scripts()
    assert {"NodeChangeState", "oar_meta_sched", "sarko", "finaud", "Leon", "bipbip.real",
            "schedulers/oar_sched_gantt_with_timesharing"} <= set(mods)
    for name, script in mods.items():
        assert f"'{script}'" in (preload.OARDIR / name).read_text()
    work = Path(tempfile.mkdtemp(prefix="preload-"))
    try:
        shutil.chown(work, "oar", "oar")
        (work / "probe.pl").write_text(PROBE)
        (work / "probe").write_text(preload.client_text(work / "probe.pl"))
        for f in ("probe.pl", "probe"):
            (work / f).chmod(0o755)
        # as Almighty runs a module: user oar, Almighty's environment, streams opened by oar
        res = subprocess.run(["sh", "-c", f"cd {work} && ./probe </dev/null >out 2>&1"],
                             env=env, user="oar", group="oar", extra_groups=[], timeout=30)
        out = (work / "out").read_text()
    finally:
        shutil.rmtree(work)
    assert res.returncode == 7
    assert out.startswith(f"OAR::IO loaded in a child of /usr/bin/perl\0{preload.SERVER}\0"), out


def parent_cmdline(pid: int) -> bytes:
    ppid = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1]
    return Path(f"/proc/{ppid}/cmdline").read_bytes()


def test_oarsub_run_by_root_for_a_user_is_forked_from_the_preloaded_perl() -> None:
    """As a replay runs it: runuser, /usr/bin/oarsub (setuid oar), streams that are root's
    pipes. Caught while it waits on its param file (a FIFO), oarsub is a child of the server."""
    work = Path(tempfile.mkdtemp(prefix="oarsub-"))
    try:
        work.chmod(0o755)
        fifo = work / "params"
        os.mkfifo(fifo)
        fifo.chmod(0o666)
        p = subprocess.Popen(["runuser", "-u", SUBMITTER, "--", "oarsub", "--hold", "-l",
                              "core=1", "--array-param-file", str(fifo), "sim"],
                             cwd="/tmp", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        try:
            deadline, parents = time.monotonic() + 20, []
            while not parents and p.poll() is None and time.monotonic() < deadline:
                for proc in Path("/proc").iterdir():
                    with contextlib.suppress(OSError):
                        cmd = (proc / "cmdline").read_bytes()
                        if proc.name.isdigit() and cmd.startswith(b"/usr/lib/oar/oarsub.real"):
                            parents.append(parent_cmdline(int(proc.name)))
                time.sleep(0.02)
        finally:
            with fifo.open("w") as f:
                f.write("{exec_time=60}\n")
            out, err = p.communicate(timeout=60)
    finally:
        shutil.rmtree(work)
    assert p.returncode == 0, err
    [job] = [int(line.split("=")[1]) for line in out.splitlines()
             if line.startswith("OAR_JOB_ID=")]
    oarcli.oardel([job], SUBMITTER)
    assert parents and all(str(preload.SERVER).encode() in cmd for cmd in parents), parents


def test_a_one_hour_job_ends_one_virtual_hour_after_its_start(daemon_factory) -> None:
    daemon_factory()
    wall = time.monotonic()
    [job] = oarcli.oarsub(["-l", "core=1,walltime=2:00:00", "sim {exec_time=3600}"], SUBMITTER)
    assert wait_final([job], timeout=120) == {job: "Terminated"}
    elapsed = time.monotonic() - wall
    start, stop = running_span(job)
    assert 3599 <= stop - start <= 3601
    assert elapsed < 30, f"one virtual hour took {elapsed:.1f} s of wall time"
    # oarstat shows the virtual dates OAR recorded
    row = job_row(job)
    info = json.loads(subprocess.run(["oarstat", "-J", "-f", "-j", str(job)],
                                     capture_output=True, text=True, check=True).stdout)
    [(_, j)] = info.items()
    assert (int(j["startTime"]), int(j["stopTime"])) == (row["start"], row["stop"])
    assert int(j["stopTime"]) - int(j["startTime"]) in (3599, 3600, 3601)
    assert int(j["stopTime"]) > time.time() + 3000  # virtual dates, ahead of the wall
    # `orpheus energy` ends its window at OAR's now (virtual), after the job: its node was
    # busy for the job's hour (on the wall clock's now, the window would end before it began)
    with db() as conn:
        [node] = {n for (n,) in conn.query(
            "SELECT r.network_address FROM jobs j JOIN assigned_resources a "
            "ON a.moldable_job_id = j.assigned_moldable_job JOIN resources r "
            "ON r.resource_id = a.resource_id WHERE j.job_id = %s", (job,))}
    res = subprocess.run([*ORPHEUS, "energy", "--since", str(start), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["until"] >= stop
    assert report["nodes"][node]["seconds"]["busy"] >= 3599


def test_a_walltime_kill_happens_at_the_virtual_walltime(daemon_factory) -> None:
    daemon_factory()
    [job] = oarcli.oarsub(["-l", "core=1,walltime=0:30:00", "sim {exec_time=7200}"], SUBMITTER)
    assert wait_final([job], timeout=120) == {job: "Error"}
    start, stop = running_span(job)
    assert 1800 <= stop - start <= 1802  # sarko: now > start + walltime
    assert "WALLTIME" in events(job)
    row = job_row(job)
    assert 1800 <= int(row["stop"]) - int(row["start"]) <= 1802


def test_a_reservation_starts_on_its_virtual_date(daemon_factory) -> None:
    daemon_factory()
    at = int(db_now()) + 3 * 3600
    date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    out = subprocess.run(["su", "-", SUBMITTER, "-c",
                          f"cd /tmp && oarsub -r '{date}' -l core=2,walltime=0:10:00 "
                          "'sim {exec_time=120}'"],
                         capture_output=True, text=True, check=True).stdout
    [job] = [int(line.split("=")[1]) for line in out.splitlines()
             if line.startswith("OAR_JOB_ID=")]
    assert wait_final([job], timeout=120) == {job: "Terminated"}
    row = job_row(job)
    assert row["start"] == at
    start, stop = running_span(job)
    assert start in (at - 1, at) and 119 <= stop - start <= 121


def test_a_kill_9_of_the_daemon_loses_no_job(daemon_factory) -> None:
    first = daemon_factory()
    # held at now, the clock does not jump to the jobs' ends before the kill (without it
    # the four could end within one look of wait_state)
    vclock.hold("kill-9-test", vclock.Clock().now())
    try:
        jobs = submit_array([f"{{exec_time={600 * (i + 1)}}}" for i in range(4)],
                            "core=1,walltime=2:00:00")
        wait_state(jobs, "Running", timeout=60)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
        time.sleep(2)  # the clock runs at the real rate while no daemon moves it
        daemon_factory()
    finally:
        vclock.hold("kill-9-test", None)
    assert set(wait_final(jobs, timeout=180).values()) == {"Terminated"}
    spans = [running_span(j) for j in jobs]
    assert [stop - start for start, stop in spans] == pytest.approx(
        [600, 1200, 1800, 2400], abs=2)


def swf(path: Path) -> Path:
    """Four jobs over five virtual hours; job 2 ran into its one-hour walltime."""
    path.write_text("; MaxProcs: 4\n"
                    "1 0 0 1800 1 -1 -1 1 3600 -1 1 1 1 -1 1 -1 -1 -1\n"
                    "2 600 0 3600 2 -1 -1 2 3600 -1 0 1 1 -1 1 -1 -1 -1\n"
                    "3 9000 0 600 4 -1 -1 4 1200 -1 1 2 1 -1 1 -1 -1 -1\n"
                    "4 18000 0 60 1 -1 -1 1 120 -1 1 2 1 -1 1 -1 -1 -1\n")
    return path


def test_a_replay_at_time_scale_1_runs_on_virtual_time_and_reproduces_a_walltime_kill(
        daemon_factory, tmp_path: Path) -> None:
    daemon_factory()
    out = tmp_path / "r"
    wall = time.monotonic()
    replay = subprocess.run([*ORPHEUS, "replay", str(swf(tmp_path / "t.swf")), "-o", str(out),
                             "--timeout", "300"], capture_output=True, text=True,
                            timeout=400, cwd="/tmp",
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": SRC})
    assert replay.returncode == 0, replay.stderr
    elapsed = time.monotonic() - wall
    meta = json.loads((out / "replay.json").read_text())
    assert meta["clock"] == "virtual" and meta["clock_seconds"] > 18000
    assert meta["speedup"] > 50 and elapsed < 240
    assert "virtual clock:" in replay.stdout and "speed-up" in replay.stdout
    assert not list(vclock.CLOCK_DIR.glob("hold.*"))  # the replay released its hold
    report = subprocess.run([*ORPHEUS, "report", "--replay", str(out), "-o", str(out / "rep"),
                             "--no-plots"], capture_output=True, text=True, cwd="/tmp",
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": SRC})
    assert report.returncode == 0, report.stderr
    rows = {r["job_id"]: r for r in csv.DictReader((out / "rep" / "jobs.csv").open())}
    assert rows["2"]["final_state"] == "COMPLETED_WALLTIME_REACHED"
    assert float(rows["2"]["execution_time"]) == pytest.approx(3601, abs=2)
    assert rows["1"]["final_state"] == "COMPLETED_SUCCESSFULLY"
    assert float(rows["1"]["execution_time"]) == pytest.approx(1800, abs=2)
    # submissions at the trace's offsets, in virtual seconds
    subs = sorted(float(r["submission_time"]) for r in rows.values())
    assert [s - subs[0] for s in subs] == pytest.approx([0, 600, 9000, 18000], abs=2)

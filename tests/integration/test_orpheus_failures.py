"""Kills, walltime, best-effort, checkpoint, user signals, failures and node crashes, through
the real OAR 2.5.9 and the real Orpheus daemon (docs/orpheus-lifecycle.md)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ORPHEUS, SUBMITTER, db, state_durations, submit_array, wait_final

from oarlib import oarcli

pytestmark = pytest.mark.oar

SPOOL = Path("/var/lib/oar/orpheus")
ACTIVE = ("Waiting", "Hold", "toLaunch", "Launching", "Running", "Finishing")


# ----------------------------------------------------------------------------- helpers

def wait_state(job_id: int, state: str, timeout: float) -> float:
    """Wait until the job is in ``state``; return when (fail naming its state otherwise)."""
    deadline = time.time() + timeout
    with db() as conn:
        while True:
            now = conn.scalar("SELECT state FROM jobs WHERE job_id = %s", (job_id,))
            if now == state:
                return time.time()
            if time.time() > deadline:
                pytest.fail(f"job {job_id} is {now}, not {state}, after {timeout} s")
            time.sleep(0.1)


def states(job_ids: list[int]) -> dict[int, str]:
    with db() as conn:
        return {int(j): s for j, s in conn.query(
            "SELECT job_id, state FROM jobs WHERE job_id = ANY(%s)", (job_ids,))}


def events(job_id: int) -> list[str]:
    with db() as conn:
        return [t for (t,) in conn.query(
            "SELECT type FROM event_logs WHERE job_id = %s ORDER BY event_id", (job_id,))]


def running_span(job_id: int) -> tuple[int, int] | None:
    return state_durations([job_id])[job_id].get("Running")


def cancel(job_ids: list[int]) -> None:
    """oardel the jobs still active (cleanup); never fails the test."""
    live = [j for j, s in states(job_ids).items() if s in ACTIVE]
    if live:
        with contextlib.suppress(oarcli.OarCommandError):
            oarcli.oardel(live, user=SUBMITTER)


class BedHold:
    """Keep other test runs' daemons off the test bed while ours is stopped.

    The fixture ``daemon_factory`` of a concurrent test run waits while ``orpheus.pid`` names
    a live process whose command line contains "orpheus": a sleeping stand-in that ignores
    SIGUSR1 (the shims send it) holds the bed until ``release``.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import signal, time\n"
             "signal.signal(signal.SIGUSR1, signal.SIG_IGN)\ntime.sleep(3600)",
             "orpheus-test-bed-hold"])
        (SPOOL / "orpheus.pid").write_text(f"{self.proc.pid}\n")

    def release(self) -> None:
        pidfile = SPOOL / "orpheus.pid"
        with contextlib.suppress(FileNotFoundError):
            if pidfile.read_text().strip() == str(self.proc.pid):
                pidfile.unlink()
        self.proc.kill()
        self.proc.wait()


@contextlib.contextmanager
def bed_held() -> Iterator[BedHold]:
    hold = BedHold()
    try:
        yield hold
    finally:
        hold.release()


def submit(args: list[str]) -> int:
    (job,) = oarcli.oarsub(args, user=SUBMITTER)
    return job


def records(*daemons: object) -> list[dict[str, str]]:
    return [r for d in daemons for r in d.records()]  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- oardel

def test_oardel_of_a_waiting_job_errors_without_running(daemon_factory) -> None:
    daemon_factory("--mode", "event")
    blocker = submit(["-l", "core=1", "sim {exec_time=300}"])
    try:
        wait_state(blocker, "Running", 60)
        waiting = submit(["-l", "core=1", "-a", str(blocker), "sim {exec_time=5}"])
        wait_state(waiting, "Waiting", 10)
        oarcli.oardel([waiting], user=SUBMITTER)
        wait_state(waiting, "Error", 10)
        assert "Launching" not in state_durations([waiting])[waiting]
        assert "Running" not in state_durations([waiting])[waiting]
        assert "FRAG_JOB_REQUEST" in events(waiting)
        assert "SEND_KILL_JOB" not in events(waiting)  # Leon set it Error itself, no signal
        assert states([blocker])[blocker] == "Running"
    finally:
        cancel([blocker])


def test_oardel_of_a_tolaunch_job_never_runs(daemon_factory) -> None:
    """The kept TERM is applied when the job is launched; another job launched in the same
    pass starts after it (the kill advanced the daemon's clock: a crash once)."""
    first = daemon_factory("--mode", "event")
    first.stop()
    with bed_held():  # no daemon: the jobs stay toLaunch
        job = submit(["-l", "core=1", "sim {exec_time=300}"])
        other = submit(["-l", "core=1", "sim {exec_time=3}"])
        try:
            wait_state(job, "toLaunch", 30)
            wait_state(other, "toLaunch", 30)
            oarcli.oardel([job], user=SUBMITTER)
            deadline = time.time() + 15
            while "SEND_KILL_JOB" not in events(job):  # Leon signalled "oarexec"
                assert time.time() < deadline, f"no SEND_KILL_JOB for job {job}: {events(job)}"
                time.sleep(0.2)
            assert states([job])[job] == "toLaunch"
        except BaseException:
            cancel([job, other])
            raise
    try:
        restart = time.time()
        second = daemon_factory("--mode", "event")
        ended = wait_state(job, "Error", 10)
        span = running_span(job)
        assert span is None or span[1] - span[0] <= 1, (
            f"job {job} ran {span} after its oardel; daemon log:\n{second.log.read_text()}")
        assert ended - restart <= 5
        wait_state(other, "Terminated", 20)
        span = running_span(other)
        assert span is not None and 3 <= span[1] - span[0] <= 4, span
        assert second.proc.poll() is None, second.log.read_text()
    finally:
        cancel([job, other])


def test_a_noop_job_runs_until_oar_ends_it(daemon_factory) -> None:
    """bipbip sets a noop job Running and runs nothing: it holds its resources until oardel
    (or its walltime), when Leon ends it itself; Orpheus must not end it at its exec_time."""
    daemon = daemon_factory()
    job = submit(["-t", "noop", "-l", "core=1,walltime=0:05:00", "sim {exec_time=2}"])
    try:
        wait_state(job, "Running", 30)
        time.sleep(5)
        assert states([job])[job] == "Running"
        oarcli.oardel([job], user=SUBMITTER)
        deadline = time.time() + 30
        while states([job])[job] not in ("Terminated", "Error"):
            assert time.time() < deadline, f"noop job {job} still {states([job])[job]}"
            time.sleep(0.5)
    finally:
        cancel([job])
    log = daemon.stop()
    assert f"job {job}: noop" in log
    assert not [r for r in daemon.records() if r["job_id"] == str(job)]


def test_an_interactive_oarsub_is_told_and_its_job_runs(daemon_factory) -> None:
    """``oarsub -I`` waits for its job to connect to: the fake nodes have none, so Orpheus
    tells it (it prints the message and exits 11) and simulates the job as any other."""
    daemon_factory("--default-exec-time", "3")
    done = subprocess.run(["runuser", "-u", SUBMITTER, "--", "oarsub", "-I", "-l", "core=1"],
                          capture_output=True, text=True, timeout=90, cwd="/tmp")
    out = done.stdout + done.stderr
    assert done.returncode == 11, out
    assert "is simulated by Orpheus for 3 s: there is no node to connect to" in out, out
    job = int(next(line for line in out.splitlines() if "OAR_JOB_ID=" in line).split("=")[1])
    try:
        wait_state(job, "Terminated", 20)
        span = running_span(job)
        assert span is not None and 3 <= span[1] - span[0] <= 4, span
    finally:
        cancel([job])


# ----------------------------------------------------------------------------- walltime

@pytest.mark.parametrize("mode", ["oarexec", "event"])
def test_walltime_kill(daemon_factory, mode: str) -> None:
    daemon = daemon_factory("--mode", mode)
    job = submit(["-l", "core=1,walltime=0:0:20", "sim {exec_time=120}"])
    try:
        assert wait_final([job], timeout=90) == {job: "Error"}
    finally:
        cancel([job])
    start, stop = running_span(job)
    assert 20 <= stop - start <= 35, (start, stop)  # sarko looks every ~10 s
    assert {"WALLTIME", "FRAG_JOB_REQUEST", "SEND_KILL_JOB"} <= set(events(job))
    (rec,) = [r for r in daemon.records() if int(r["job_id"]) == job]
    assert rec["outcome"] == "killed" and rec["oarexec_exit"] == "3"


# ----------------------------------------------------------------------------- best-effort

def free_cores() -> int:
    with db() as conn:
        return int(conn.scalar(
            "SELECT count(*) FROM resources r WHERE r.state = 'Alive' AND NOT EXISTS ("
            "SELECT 1 FROM assigned_resources a JOIN jobs j "
            "ON j.assigned_moldable_job = a.moldable_job_id "
            "WHERE a.resource_id = r.resource_id AND a.assigned_resource_index = 'CURRENT' "
            "AND j.state IN ('toLaunch', 'Launching', 'Running', 'Finishing'))"))


@pytest.mark.parametrize("mode", ["oarexec", "event"])
def test_besteffort_preemption(daemon_factory, mode: str) -> None:
    daemon_factory("--mode", mode)
    with db() as conn:
        cores = int(conn.scalar("SELECT count(*) FROM resources WHERE state = 'Alive'"))
        first_id = int(conn.scalar("SELECT COALESCE(MAX(job_id), 0) FROM jobs")) + 1
    besteffort = submit_array(["{exec_time=600}"] * cores,
                              extra=("-t", "besteffort", "-t", "idempotent"))
    normal: list[int] = []
    try:
        deadline = time.time() + 90
        while free_cores() > 0 or "Running" not in states(besteffort).values():
            assert time.time() < deadline, f"cores still free: {free_cores()}"
            time.sleep(0.5)
        submitted = time.time()
        normal = [submit(["-l", "core=1", "sim {exec_time=5}"])]
        started = wait_state(normal[0], "Running", 60)
        final = wait_final(normal, timeout=30)
        assert final == {normal[0]: "Terminated"}
        killed = [j for j, s in states(besteffort).items() if s == "Error"]
        assert killed, "no best-effort job was killed"
        for j in killed:
            assert {"BESTEFFORT_KILL", "SEND_KILL_JOB"} <= set(events(j)), (j, events(j))
        print(f"{mode}: normal job Running {started - submitted:.1f} s after oarsub; "
              f"{len(killed)} best-effort job(s) killed")
        if mode == "oarexec":  # bipbip's check_end_of_job resubmits besteffort+idempotent
            with db() as conn:
                resubmitted = {int(o): int(n) for n, o in conn.query(
                    "SELECT job_id, resubmit_job_id FROM jobs WHERE resubmit_job_id = ANY(%s)",
                    (killed,))}
            assert set(resubmitted) == set(killed)
            for j in killed:
                assert "RESUBMIT_JOB_AUTOMATICALLY" in events(j)
    finally:
        # delete every best-effort job of this test, resubmissions included, until none is left
        for _ in range(20):
            with db() as conn:
                live = [int(j) for (j,) in conn.query(
                    "SELECT job_id FROM jobs WHERE job_id >= %s AND state = ANY(%s)",
                    (first_id, list(ACTIVE)))]
            if not live:
                break
            cancel(live)
            time.sleep(2)


# ----------------------------------------------------------------------------- signals

def test_oardel_checkpoint_reaches_the_job(daemon_factory) -> None:
    daemon = daemon_factory("--mode", "oarexec")
    quits = submit(["-l", "core=1", "sim {exec_time=120, checkpoint_exit=true}"])
    goes_on = submit(["-l", "core=1", "sim {exec_time=12}"])
    try:
        wait_state(quits, "Running", 60)
        wait_state(goes_on, "Running", 60)
        sent = time.time()
        oarcli.oardel([quits, goes_on], SUBMITTER, "-c")
        ended = wait_state(quits, "Terminated", 10)
        assert ended - sent <= 3
        assert states([goes_on])[goes_on] == "Running"
        assert wait_final([goes_on], timeout=30) == {goes_on: "Terminated"}
    finally:
        cancel([quits, goes_on])
    for j in (quits, goes_on):
        assert "CHECKPOINT_SUCCESS" in events(j)
    start, stop = running_span(goes_on)
    assert abs((stop - start) - 12) <= 1.5
    recs = {int(r["job_id"]): r for r in daemon.records()}
    assert (recs[quits]["outcome"], recs[quits]["oarexec_exit"]) == ("checkpointed", "40")
    assert (recs[goes_on]["outcome"], recs[goes_on]["oarexec_exit"]) == ("done", "40")


def test_oarsub_checkpoint_signals_before_the_walltime(daemon_factory) -> None:
    daemon_factory("--mode", "oarexec")
    job = submit(["--checkpoint", "15", "-l", "core=1,walltime=0:0:30",
                  "sim {exec_time=120, checkpoint_exit=true}"])
    try:
        assert wait_final([job], timeout=90) == {job: "Terminated"}
    finally:
        cancel([job])
    start, stop = running_span(job)
    assert 15 <= stop - start <= 27, (start, stop)  # sarko: walltime - 15 s, every ~10 s
    assert "CHECKPOINT" in events(job) and "WALLTIME" not in events(job)


def test_oardel_signal_reaches_the_job_which_goes_on(daemon_factory) -> None:
    daemon = daemon_factory("--mode", "oarexec")
    job = submit(["-l", "core=1", "sim {exec_time=10}"])
    try:
        wait_state(job, "Running", 60)
        oarcli.oardel([job], SUBMITTER, "-s", "USR1")
        assert "SIG_SUCCESS" in events(job)
        time.sleep(2)
        assert states([job])[job] == "Running"  # a user signal does not end the job
        assert wait_final([job], timeout=30) == {job: "Terminated"}
    finally:
        cancel([job])
    start, stop = running_span(job)
    assert abs((stop - start) - 10) <= 1.5
    (rec,) = [r for r in daemon.records() if int(r["job_id"]) == job]
    assert rec["oarexec_exit"] == "42", rec  # oarexec's "received SIGURG" exit value


# ----------------------------------------------------------------------------- failures

@pytest.mark.parametrize("mode", ["oarexec", "event"])
def test_fail_at_ends_the_job_with_its_fail_exit_code(daemon_factory, mode: str) -> None:
    daemon = daemon_factory("--mode", mode)
    job = submit(["-l", "core=1", "sim {exec_time=60, fail_at=4, fail_exit_code=7}"])
    try:
        assert wait_final([job], timeout=60) == {job: "Terminated"}
    finally:
        cancel([job])
    start, stop = running_span(job)
    assert abs((stop - start) - 4) <= 1.5
    with db() as conn:
        assert conn.scalar("SELECT exit_code FROM jobs WHERE job_id = %s", (job,)) == 7 << 8
    (rec,) = [r for r in daemon.records() if int(r["job_id"]) == job]
    assert (rec["outcome"], rec["exit_code"]) == ("failed", "7")


def node_states(node: str) -> set[str]:
    with db() as conn:
        return {s for (s,) in conn.query(
            "SELECT state FROM resources WHERE network_address = %s", (node,))}


def fail_node(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ORPHEUS, "fail-node", *args], capture_output=True, text=True,
                          timeout=60)


def test_fail_node_crashes_its_jobs_and_suspects_it(daemon_factory) -> None:
    daemon = daemon_factory("--mode", "oarexec")
    crashing = submit(["-l", "nodes=2", "-p", "host IN ('node3','node4')",
                       "sim {exec_time=300}"])
    elsewhere = submit(["-l", "core=1", "-p", "host = 'node1'", "sim {exec_time=300}"])
    try:
        wait_state(crashing, "Running", 60)
        wait_state(elsewhere, "Running", 60)
        t0 = time.time()
        out = fail_node("node3")
        assert out.returncode == 0, out.stderr
        assert f"jobs crashed: {crashing}" in out.stdout
        wait_state(crashing, "Error", 10)
        print(f"fail-node: job in Error {time.time() - t0:.1f} s after the command")
        assert node_states("node3") == {"Suspected"}
        assert node_states("node4") == {"Alive"}
        assert states([elsewhere])[elsewhere] == "Running"
        with db() as conn:
            hosts = [h for (h,) in conn.query(
                "SELECT h.hostname FROM event_logs e JOIN event_log_hostnames h "
                "ON h.event_id = e.event_id WHERE e.type = 'FINAUD_ERROR' AND e.date >= %s",
                (int(t0) - 1,))]
            decision = {f for (f,) in conn.query(
                "SELECT finaud_decision FROM resources WHERE network_address = 'node3'")}
        assert hosts == ["node3"] and decision == {"YES"}
        again = fail_node("node3")
        assert again.returncode != 0 and "node3 is Suspected, not Alive" in again.stderr
        back = fail_node("node3", "--recover")
        assert back.returncode == 0, back.stderr
        assert node_states("node3") == {"Alive"}
        assert any("crashed (SIGCRASH)" in line for line in daemon.log.read_text().splitlines())
        (rec,) = [r for r in daemon.records() if int(r["job_id"]) == crashing]
        assert (rec["outcome"], rec["oarexec_exit"]) == ("crashed", "3")
    finally:
        cancel([crashing, elsewhere])
        if node_states("node3") != {"Alive"}:
            subprocess.run(["oarnodesetting", "-s", "Alive", "-h", "node3"], check=False)


def test_fail_node_refuses_unknown_nodes() -> None:
    out = fail_node("node-that-does-not-exist")
    assert out.returncode != 0
    assert "no resource has network_address 'node-that-does-not-exist'" in out.stderr

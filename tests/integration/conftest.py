"""Fixtures for tests against the real OAR 2.5.9 test bed (started by ``scripts/test``).

Nothing here is mocked: jobs are submitted with the real ``oarsub`` as the test bed's ordinary
user, the real Orpheus daemon runs as user ``oar``, and results are read from OAR's database.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from oarlib import conf as oarconf
from oarlib import oarcli
from oarlib.db import Db
from orpheus.daemon import running_daemon

SUBMITTER = os.environ.get("ORPHEUS_TEST_USER", "alice")
ORPHEUS = [sys.executable, "-m", "orpheus.cli"]
FINAL = ("Terminated", "Error")


def db() -> Db:
    return Db(oarconf.DbParams.from_conf(oarconf.read()))


def submit_array(commands: list[str], resources: str = "core=1",
                 extra: tuple[str, ...] = ()) -> list[int]:
    """Submit ``sim <args>`` jobs in one oarsub (an array job with one parameter line each)."""
    return oarcli.oarsub_array(commands, "sim", resources, extra, user=SUBMITTER)


def wait_final(job_ids: list[int], timeout: float) -> dict[int, str]:
    """Wait until every job is Terminated or Error; fail naming the stragglers otherwise."""
    deadline = time.time() + timeout
    with db() as conn:
        while True:
            rows = conn.query("SELECT job_id, state FROM jobs WHERE job_id = ANY(%s)",
                              (job_ids,)) if conn.kind == "Pg" else conn.query(
                f"SELECT job_id, state FROM jobs WHERE job_id IN "
                f"({','.join(['%s'] * len(job_ids))})", job_ids)
            states = {int(j): s for j, s in rows}
            left = {j: s for j, s in states.items() if s not in FINAL}
            if not left and len(states) == len(job_ids):
                return states
            if time.time() > deadline:
                sample = dict(list(left.items())[:10])
                pytest.fail(f"{len(left)} job(s) not ended after {timeout} s: {sample}")
            time.sleep(0.5)


def wait_state(job_ids: list[int], state: str, timeout: float) -> None:
    """Wait until every job is in ``state``; fail naming their states otherwise."""
    deadline = time.time() + timeout
    marks = ",".join(["%s"] * len(job_ids))
    with db() as conn:
        while True:
            states = dict(conn.query(
                f"SELECT job_id, state FROM jobs WHERE job_id IN ({marks})", job_ids))
            if len(states) == len(job_ids) and set(states.values()) == {state}:
                return
            if time.time() > deadline:
                pytest.fail(f"jobs not all {state} after {timeout} s: {states}")
            time.sleep(0.1)


def state_durations(job_ids: list[int]) -> dict[int, dict[str, tuple[int, int]]]:
    """job_state_logs: job -> state -> (date_start, date_stop)."""
    out: dict[int, dict[str, tuple[int, int]]] = {j: {} for j in job_ids}
    with db() as conn:
        marks = ",".join(["%s"] * len(job_ids))
        for j, s, a, b in conn.query(
                f"SELECT job_id, job_state, date_start, date_stop FROM job_state_logs "
                f"WHERE job_id IN ({marks})", job_ids):
            out[int(j)][s] = (int(a), int(b))
    return out


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[str]
    log: Path
    record: Path

    def stop(self) -> str:
        """SIGTERM, wait, and return the daemon's log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.log.read_text()

    def records(self) -> list[dict[str, str]]:
        import csv

        with self.record.open() as f:
            return list(csv.DictReader(f))


def _launch_daemon(log: Path, record: Path, args: tuple[str, ...]) -> DaemonProcess | None:
    """Start one daemon; None if another one took the test bed first."""
    proc = subprocess.Popen([*ORPHEUS, "-v", "run", "--record", str(record), "--log-file",
                             str(log), "--stats-interval", "5", *args],
                            stderr=subprocess.PIPE, text=True)
    pidfile = Path("/var/lib/oar/orpheus/orpheus.pid")
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            if "another daemon" in err:
                return None
            pytest.fail(f"orpheus run exited with {proc.returncode}: {err}{log.read_text()}")
        if pidfile.exists() and pidfile.read_text().strip() == str(proc.pid):
            return DaemonProcess(proc, log, record)
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"orpheus run wrote no pid file in 20 s: {log.read_text()}")


def start_daemon(tmp: Path, *args: str) -> DaemonProcess:
    """The real daemon, started as root (it drops to user oar) with a log and a record file.

    One daemon serves the test bed at a time: wait (bounded) while another test run's
    daemon holds it.
    """
    log = tmp / "orpheus.log"
    record = tmp / "record.csv"
    for p in (log, record):
        p.touch()
        os.chmod(p, 0o666)
    os.chmod(tmp, 0o777)
    deadline = time.time() + 900
    while time.time() < deadline:
        if running_daemon() is None and (d := _launch_daemon(log, record, args)) is not None:
            return d
        time.sleep(1)
    pytest.fail(f"another Orpheus daemon (pid {running_daemon()}) kept the test bed for 900 s")


ACTIVE = ("Waiting", "Hold", "toAckReservation", "toLaunch", "Launching", "Running",
          "Suspended", "Resuming", "Finishing")


def _active_jobs() -> list[tuple[int, str, str]]:
    with db() as conn:
        return [(int(j), u, s) for j, u, s in conn.query(
            f"SELECT job_id, job_user, state FROM jobs WHERE state IN "
            f"({','.join(['%s'] * len(ACTIVE))})", ACTIVE)]


def quiet(timeout: float = 180) -> None:
    """Delete every active job with the real oardel and wait until all have ended: a test
    starts from a test bed where nothing holds the cores (or the nodes) it counts on. A
    daemon must be serving the test bed, to apply the kills of running jobs."""
    rows = _active_jobs()
    by_user: dict[str, list[int]] = {}
    for job_id, user, state in rows:
        if state != "Finishing":
            by_user.setdefault(user, []).append(job_id)
    for user, ids in by_user.items():
        with contextlib.suppress(oarcli.OarCommandError):
            oarcli.oardel(ids, user=user)
    deadline = time.time() + timeout
    while rows := _active_jobs():
        if time.time() > deadline:
            pytest.fail(f"{len(rows)} job(s) still active after {timeout} s: {rows[:10]}")
        time.sleep(0.5)


@pytest.fixture(scope="session", autouse=True)
def quiet_test_bed(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Start from a quiet test bed: an earlier run (or the demo) may have left jobs."""
    if not _active_jobs():
        return
    daemon = start_daemon(tmp_path_factory.mktemp("quiet"), "--mode", "event")
    try:
        quiet()
    finally:
        daemon.stop()


RUN_TREES = ("/tmp/*/adage-*", "/tmp/*/prestage-tree-adage-*")


@pytest.fixture(scope="session", autouse=True)
def no_run_trees_left() -> Iterator[None]:
    """Remove the nodes' run directories that this session's deployments left: a failed
    deployment keeps its files on purpose (to be looked at), and tests fail deployments on
    purpose."""
    before = {p for pattern in RUN_TREES for p in glob.glob(pattern)}
    yield
    for path in {p for pattern in RUN_TREES for p in glob.glob(pattern)} - before:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[object]:
    """Start Orpheus daemons (``factory(*run_args)``); all are stopped at the end."""
    started: list[DaemonProcess] = []

    def factory(*args: str) -> DaemonProcess:
        workdir = tmp_path / f"d{len(started)}"
        workdir.mkdir()
        started.append(start_daemon(workdir, *args))
        if len(started) == 1:
            quiet()  # what an earlier test left must not hold this test's cores or nodes
        return started[-1]

    yield factory
    for d in started:
        d.stop()

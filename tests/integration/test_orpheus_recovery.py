"""Recovery through the real OAR: the daemon killed -9 mid-run, PostgreSQL restarted,
Almighty unreachable. Nothing is lost, nothing ends twice, ends come at their time."""

from __future__ import annotations

import random
import subprocess
import time
from collections import Counter

import pytest
from conftest import db, state_durations, submit_array, wait_final
from test_orpheus_failures import bed_held, records

from oarlib import testbed

pytestmark = pytest.mark.oar


def running_count(job_ids: list[int]) -> int:
    with db() as conn:
        return int(conn.scalar("SELECT count(*) FROM jobs WHERE job_id = ANY(%s) "
                               "AND state = 'Running'", (job_ids,)))


def wait_running(job_ids: list[int], at_least: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while running_count(job_ids) < at_least:
        assert time.time() < deadline, f"fewer than {at_least} jobs Running after {timeout} s"
        time.sleep(0.2)


def check_ends(jobs: dict[int, float], outage: tuple[float, float], recs: list[dict[str, str]],
               slack: float = 1.5) -> None:
    """Every job ended once in the records and Terminated; Running lasted its exec_time
    (within ``slack``), or, for an end due during ``outage``, it was delivered within
    ``slack`` of the outage's end."""
    counts = Counter(int(r["job_id"]) for r in recs)
    assert set(counts) == set(jobs), f"missing {set(jobs) - set(counts)}"
    assert [j for j, n in counts.items() if n > 1] == [], "jobs ended twice"
    spans = state_durations(list(jobs))
    late = []
    for job, exec_time in jobs.items():
        start, stop = spans[job]["Running"]
        due = start + exec_time
        if outage[0] - slack <= due <= outage[1]:
            if not due - slack <= stop <= outage[1] + slack:
                late.append((job, exec_time, start, stop, "due in the outage"))
        elif abs((stop - start) - exec_time) > slack:
            late.append((job, exec_time, start, stop))
    assert late == [], f"{len(late)} job(s) off time, outage {outage}: {late[:10]}"


def test_kill_9_of_the_daemon_in_the_middle_of_300_jobs(daemon_factory) -> None:
    rng = random.Random(7)
    exec_times = [rng.randint(20, 40) for _ in range(300)]
    first = daemon_factory("--mode", "event")
    ids = submit_array([f"{{exec_time={t}}}" for t in exec_times])
    jobs = dict(zip(ids, exec_times, strict=True))
    wait_running(ids, 60, 90)
    time.sleep(17)  # the first ends come from here on
    with bed_held():
        first.proc.kill()  # SIGKILL: no summary, no cleanup
        first.proc.wait()
        killed_at = time.time()
        time.sleep(4)
    second = daemon_factory("--mode", "event")
    restarted = time.time()
    final = wait_final(ids, timeout=400)
    assert set(final.values()) == {"Terminated"}
    log = second.stop()
    assert "adopted" in log
    check_ends(jobs, (killed_at, restarted), records(first, second))
    print(f"kill -9 at {killed_at:.0f}, restart after {restarted - killed_at:.1f} s; "
          f"{len(ids)} jobs ended once each")


def test_postgresql_restart_loses_nothing(daemon_factory) -> None:
    rng = random.Random(11)
    exec_times = [rng.randint(8, 20) for _ in range(60)]
    daemon = daemon_factory("--mode", "event")
    ids = submit_array([f"{{exec_time={t}}}" for t in exec_times])
    wait_running(ids, 60, 90)
    time.sleep(9)
    down = time.time()
    subprocess.run(["pg_ctlcluster", testbed.pg_version(), "main", "restart"], check=True,
                   timeout=120)
    testbed.wait_until(testbed.pg_ready, 60, "PostgreSQL")
    up = time.time()
    final = wait_final(ids, timeout=120)
    assert set(final.values()) == {"Terminated"}
    log = daemon.stop()
    check_ends(dict(zip(ids, exec_times, strict=True)), (down, up), daemon.records(),
               slack=2.0)  # + the daemon's reconnection backoff (0.5 s, then 1 s)
    assert "database unreachable" in log
    print(f"PostgreSQL down for {up - down:.1f} s; {len(ids)} jobs ended once each")


@pytest.mark.parametrize("mode", ["oarexec", "event"])
def test_almighty_outage_delivers_every_end_once(daemon_factory, mode: str) -> None:
    rng = random.Random(13)
    exec_times = [rng.randint(6, 14) for _ in range(40)]
    daemon = daemon_factory("--mode", mode)
    ids = submit_array([f"{{exec_time={t}}}" for t in exec_times])
    jobs = dict(zip(ids, exec_times, strict=True))
    wait_running(ids, 40, 90)
    time.sleep(4)
    down = time.time()
    try:
        assert testbed.stop_almighty(), "Almighty was not running"
        time.sleep(12)  # every job is due meanwhile
    finally:
        testbed.start_almighty()
    up = time.time()
    final = wait_final(ids, timeout=90)
    delivered = time.time()
    assert set(final.values()) == {"Terminated"}
    daemon.stop()
    recs = daemon.records()
    counts = Counter(int(r["job_id"]) for r in recs)
    assert counts == Counter(ids), "each job must be handed to OAR exactly once"
    for r in recs:  # Orpheus ended each job at its time, and handed it over once OAR could
        start, intended = float(r["start"]), float(r["intended_end"])
        assert abs(intended - start - jobs[int(r["job_id"])]) <= 0.5, r
    print(f"{mode}: Almighty down {up - down:.1f} s; all {len(ids)} Terminated "
          f"{delivered - up:.1f} s after it came back")
    assert delivered - up <= 15

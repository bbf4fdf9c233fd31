"""Orpheus against the real OAR 2.5.9: launches, ends, exit codes, restarts, both end modes."""

from __future__ import annotations

import random
import time

import pytest
from conftest import db, state_durations, submit_array, wait_final, wait_state

pytestmark = pytest.mark.oar


def running_time(logs: dict[str, tuple[int, int]]) -> int:
    start, stop = logs["Running"]
    return stop - start


def check_run(daemon, ids: list[int], exec_times: list[int], tolerance: float,
              share: float = 1.0) -> None:
    """All Terminated, each ended once by the daemon, promptly; the Running time of at least
    ``share`` of the jobs within ``tolerance`` of their exec_time."""
    states = wait_final(ids, timeout=600)
    assert set(states.values()) == {"Terminated"}, states
    logs = state_durations(ids)
    off = [(job_id, exec_time, logs[job_id]) for job_id, exec_time
           in zip(ids, exec_times, strict=True)
           if abs(running_time(logs[job_id]) - exec_time) > tolerance]
    assert len(off) <= (1 - share) * len(ids), off[:10]
    records = daemon.records()
    assert sorted(int(r["job_id"]) for r in records) == sorted(ids)
    late = sorted(float(r["lateness"]) for r in records)
    slow = [line for line in daemon.log.read_text().splitlines() if "slow wake-up" in line]
    assert late[int(0.99 * len(late))] < 0.5, f"Orpheus itself must not be late: {slow}"
    assert f"summary: launched={len(ids)}" in daemon.stop()


def test_200_jobs_on_64_cores_end_at_their_exec_time_event_mode(daemon_factory) -> None:
    rng = random.Random(7)
    exec_times = [rng.choice([0, 1, 2, 3, 5, 8]) for _ in range(200)]
    daemon = daemon_factory("--mode", "event", "--rekick", "1.2")
    ids = submit_array([f"{{exec_time={t}}}" for t in exec_times])
    assert len(ids) == 200
    check_run(daemon, ids, exec_times, tolerance=1.5)


def test_oarexec_mode_runs_oars_own_end_of_job(daemon_factory) -> None:
    # Orpheus hands every end over within milliseconds (checked on its record), but then each
    # end forks OAR's own Perl bipbip (~0.25 s of CPU), which stamps Finishing: on two cores
    # shared with OAR's scheduler, bursts of ends queue there for a few seconds, as they
    # would on a real server (and, rarely, one end is recorded tens of seconds late: under
    # investigation, see docs/orpheus.md)
    rng = random.Random(11)
    exec_times = [rng.randint(4, 20) for _ in range(120)]
    daemon = daemon_factory("--mode", "oarexec")
    ids = submit_array([f"{{exec_time={t}}}" for t in exec_times])
    check_run(daemon, ids, exec_times, tolerance=5, share=0.97)


def test_exit_code_reaches_oar_as_a_wait_status(daemon_factory) -> None:
    daemon_factory()
    ids = submit_array(["{exec_time=1, exit_code=3}", "{exec_time=1}",
                        "{exit_code=0; exec_time=0}"])
    states = wait_final(ids, timeout=120)
    with db() as conn:
        codes = {j: c for j, c in conn.query(
            "SELECT job_id, exit_code FROM jobs WHERE job_id IN (%s, %s, %s)", ids)}
    # oarexec reports the script's raw wait status ($?): exit code 3 is 768, as oarstat shows
    assert codes == {ids[0]: 3 << 8, ids[1]: 0, ids[2]: 0}
    # a script's failure is not an OAR error: OAR sets Terminated, as for a real job
    assert set(states.values()) == {"Terminated"}


def test_malformed_arguments_end_the_job_and_keep_the_daemon(daemon_factory) -> None:
    daemon = daemon_factory("--mode", "event")
    ids = submit_array(['{exec_time=os.execute("touch /tmp/pwned")}', "{exec_time=",
                        "{exec_time=2}"])
    states = wait_final(ids, timeout=120)
    assert set(states.values()) == {"Terminated"}
    with db() as conn:
        codes = dict(conn.query("SELECT job_id, exit_code FROM jobs WHERE job_id IN (%s,%s,%s)",
                                ids))
    assert codes[ids[0]] == 1 << 8 and codes[ids[1]] == 1 << 8 and codes[ids[2]] == 0
    assert daemon.proc.poll() is None, "the daemon must survive malformed arguments"
    log = daemon.stop()
    assert f"job {ids[0]}: bad job arguments" in log
    assert f"job {ids[1]}: bad job arguments" in log


def test_jobs_launched_while_orpheus_was_stopped_are_picked_up(daemon_factory) -> None:
    first = daemon_factory()
    first.stop()
    ids = submit_array(["{exec_time=1}"] * 4)
    wait_state(ids, "toLaunch", 60)  # OAR schedules them: they wait for a runner
    daemon_factory()
    states = wait_final(ids, timeout=60)
    assert set(states.values()) == {"Terminated"}


def test_running_jobs_are_adopted_after_a_daemon_crash(daemon_factory) -> None:
    first = daemon_factory()
    ids = submit_array(["{exec_time=12}"] * 3)
    wait_state(ids, "Running", 60)
    first.proc.kill()  # SIGKILL: no summary, no cleanup
    first.proc.wait()
    time.sleep(2)
    second = daemon_factory()
    wait_final(ids, timeout=60)
    logs = state_durations(ids)
    for job_id in ids:
        assert abs(running_time(logs[job_id]) - 12) <= 1.5, logs[job_id]
    assert "adopted 3 job(s)" in second.stop()

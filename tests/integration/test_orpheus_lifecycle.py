"""A job's whole life through the real OAR: kills by oardel, advance reservations."""

from __future__ import annotations

import time

import pytest
from conftest import SUBMITTER, db, state_durations, submit_array, wait_final, wait_state

from oarlib import oarcli

pytestmark = pytest.mark.oar


@pytest.mark.parametrize("mode", ["oarexec", "event"])
def test_oardel_of_a_running_job_is_error_within_2s_and_no_node_suspected(
        daemon_factory, mode: str) -> None:
    daemon = daemon_factory("--mode", mode)
    (job,) = submit_array(["{exec_time=300}"])
    wait_state([job], "Running", 60)
    t0 = time.time()
    oarcli.oardel([job], user=SUBMITTER)
    wait_state([job], "Error", 10)
    assert time.time() - t0 <= 2.5  # oardel itself takes ~0.3 s
    with db() as conn:
        suspected = conn.scalar("SELECT count(*) FROM resources WHERE state = 'Suspected'")
        events = {t for (t,) in conn.query("SELECT type FROM event_logs WHERE job_id = %s",
                                           (job,))}
    assert suspected == 0
    assert {"FRAG_JOB_REQUEST", "SEND_KILL_JOB"} <= events
    assert "killed (SIGTERM)" in daemon.stop()


def test_reservation_starts_on_time_with_the_kick(daemon_factory) -> None:
    daemon_factory("--mode", "event", "--kick-reservations")
    start = int(time.time()) + 15
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start))
    (job,) = oarcli.oarsub(["-r", when, "-l", "core=1,walltime=0:1:0", "sim {exec_time=5}"],
                           user=SUBMITTER)
    wait_final([job], timeout=90)
    running = state_durations([job])[job]["Running"]
    assert 0 <= running[0] - start <= 2, (running, start)
    assert abs((running[1] - running[0]) - 5) <= 1.5

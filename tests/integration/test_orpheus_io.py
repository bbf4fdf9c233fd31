"""I/O contention through the real OAR: the linear model's analytic case, end to end."""

from __future__ import annotations

import pytest
from conftest import state_durations, submit_array, wait_final

pytestmark = pytest.mark.oar


def test_three_io_jobs_sharing_capacity_10_end_at_45(daemon_factory) -> None:
    # W = 15 > C = 10: each job progresses at 10/15, so 30 s of work take 45 s
    daemon_factory("--mode", "event", "--io-model", "linear", "--io-capacity", "10")
    ids = submit_array(["{exec_time=30, io=1, io_workload=5}"] * 3)
    assert set(wait_final(ids, timeout=150).values()) == {"Terminated"}
    logs = state_durations(ids)
    starts = {logs[j]["Running"][0] for j in ids}
    assert max(starts) - min(starts) <= 1, "the three jobs must start together"
    for j in ids:
        start, stop = logs[j]["Running"]
        assert abs((stop - start) - 45) <= 1.5, (j, logs[j])


def test_jobs_on_different_targets_do_not_contend(daemon_factory) -> None:
    daemon_factory("--mode", "event", "--io-capacity", "scratch=5,home=5")
    ids = submit_array(['{exec_time=10, io=1, io_workload=5, io_target="scratch"}',
                        '{exec_time=10, io=1, io_workload=5, io_target="home"}'])
    wait_final(ids, timeout=90)
    logs = state_durations(ids)
    for j in ids:
        start, stop = logs[j]["Running"]
        assert abs((stop - start) - 10) <= 1.5, (j, logs[j])

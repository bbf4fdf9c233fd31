"""Report metrics on hand-computed schedules; Gantt boxes and their overlap check; figures."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orpheus import metrics, plots
from orpheus.metrics import (
    FAILED,
    KILLED,
    REJECTED,
    SUCCESS,
    WALLTIME,
    Box,
    JobRecord,
    OarJob,
)

# nb_resources = 4; hand-computed below
A = JobRecord("A", 0, SUCCESS, 2, 20, 0, 10, (0, 1))
B = JobRecord("B", 0, WALLTIME, 1, 5, 10, 15, (0,))
C = JobRecord("C", 2, FAILED, 1, 10, 2, 2, (2,))  # ran 0 s
D = JobRecord("D", 5, REJECTED, 8, metadata={"reason": "too big"})
E = JobRecord("E", 6, None, 1, 100, 6, None, (3,))  # still running
RECORDS = [A, B, C, D, E]


def test_per_job_times() -> None:
    assert (A.waiting_time, A.execution_time, A.turnaround_time, A.stretch) == (0, 10, 10, 1)
    assert (B.waiting_time, B.execution_time, B.turnaround_time, B.stretch) == (10, 5, 15, 3)
    assert (C.execution_time, C.turnaround_time, C.stretch) == (0, 0, None)
    assert (D.waiting_time, D.execution_time, D.stretch) == (None, None, None)
    assert (E.waiting_time, E.execution_time, E.turnaround_time) == (0, None, None)
    assert B.bounded_slowdown(10) == 1.5 and A.bounded_slowdown(10) == 1
    assert C.bounded_slowdown(10) == 1 and B.bounded_slowdown(2) == 3
    assert [r.success for r in RECORDS] == [True, False, False, False, False]


def test_summary_hand_computed() -> None:
    s = metrics.summary(RECORDS, nb_resources=4, tau=10)
    assert s["nb_jobs"] == 5
    assert s["nb_jobs_finished"] == 4 and s["nb_jobs_not_finished"] == 1
    assert (s["nb_jobs_success"], s["nb_jobs_killed"], s["nb_jobs_rejected"]) == (1, 1, 1)
    assert s["nb_jobs_per_final_state"] == {SUCCESS: 1, FAILED: 1, WALLTIME: 1, KILLED: 0,
                                            REJECTED: 1}
    assert s["success_rate"] == pytest.approx(1 / 5)
    assert s["makespan"] == 15
    assert s["mean_waiting_time"] == pytest.approx(10 / 4)  # A 0, B 10, C 0, E 0
    assert s["max_waiting_time"] == 10
    assert s["mean_turnaround_time"] == pytest.approx(25 / 3)  # A 10, B 15, C 0
    assert s["max_turnaround_time"] == 15
    assert s["mean_slowdown"] == pytest.approx(2) and s["max_slowdown"] == 3  # C: 0 s, left out
    assert s["mean_bounded_slowdown"] == pytest.approx(3.5 / 3)
    assert s["max_bounded_slowdown"] == 1.5 and s["bounded_slowdown_tau"] == 10
    assert s["time_computing"] == 25  # A 10 s x 2 + B 5 s x 1
    assert s["time_idle"] == 35  # 4 x 15 - 25
    assert s["utilisation"] == pytest.approx(25 / 60)
    assert s["nb_computing_machines"] == 4
    assert list(s) == sorted(s)


def test_summary_of_nothing() -> None:
    s = metrics.summary([], 4)
    assert s["nb_jobs"] == 0 and s["makespan"] == 0 and s["utilisation"] is None
    assert s["mean_waiting_time"] is None and s["success_rate"] is None


def test_utilisation_series() -> None:
    assert metrics.utilisation_series(RECORDS, now=20) == [
        (0, 2), (6, 3), (10, 2), (15, 1), (20, 0)]
    assert metrics.utilisation_series(RECORDS) == [(0, 2), (10, 1), (15, 0)]


def test_gantt_boxes_split_runs_of_resources() -> None:
    boxes = metrics.gantt_boxes(RECORDS, now=20)
    assert boxes == [Box("A", 0, 1, 0, 10, SUCCESS), Box("B", 0, 0, 10, 15, WALLTIME),
                     Box("C", 2, 2, 2, 2, FAILED), Box("E", 3, 3, 6, 20, None)]
    split = metrics.gantt_boxes([JobRecord("S", 0, SUCCESS, 5, None, 1, 3, (6, 0, 1, 3, 5))])
    assert [(b.lo, b.hi) for b in split] == [(0, 1), (3, 3), (5, 6)]
    assert metrics.overlaps(boxes) == []


def test_overlap_found() -> None:
    x = JobRecord("X", 0, SUCCESS, 1, None, 0, 10, (0,))
    y = JobRecord("Y", 0, SUCCESS, 2, None, 5, 12, (0, 1))
    z = JobRecord("Z", 0, SUCCESS, 1, None, 12, 14, (1,))  # touches Y: no overlap
    assert metrics.overlaps(metrics.gantt_boxes([x, y, z])) == [(0, "X", "Y")]


@st.composite
def schedules(draw: st.DrawFn) -> list[JobRecord]:
    jobs = []
    for i in range(draw(st.integers(0, 12))):
        start = draw(st.integers(0, 30))
        res = draw(st.sets(st.integers(0, 7), min_size=1, max_size=4))
        jobs.append(JobRecord(str(i), 0, SUCCESS, len(res), None, start,
                              start + draw(st.integers(0, 10)), tuple(res)))
    return jobs


@given(schedules())
def test_overlaps_match_a_pairwise_check(jobs: list[JobRecord]) -> None:
    expected = set()
    for a, b in itertools.combinations(jobs, 2):
        assert a.starting_time is not None and b.starting_time is not None
        assert a.finish_time is not None and b.finish_time is not None
        common = set(a.allocated) & set(b.allocated)
        if (common and a.starting_time < b.finish_time and b.starting_time < a.finish_time
                and a.finish_time > a.starting_time and b.finish_time > b.starting_time):
            expected |= common
    found = {res for res, _, _ in metrics.overlaps(metrics.gantt_boxes(jobs))}
    assert found == expected
    busy = max((n for _, n in metrics.utilisation_series(jobs)), default=0)
    assert busy <= sum(len(j.allocated) for j in jobs)


@pytest.mark.parametrize(("state", "code", "events", "started", "expected"), [
    ("Terminated", 0, (), True, SUCCESS),
    ("Terminated", 768, (), True, FAILED),
    ("Error", None, ("WALLTIME", "FRAG_JOB_REQUEST", "SWITCH_INTO_ERROR_STATE"), True, WALLTIME),
    ("Error", None, ("FRAG_JOB_REQUEST", "SEND_KILL_JOB"), True, KILLED),
    ("Error", None, ("BESTEFFORT_KILL", "FRAG_JOB_REQUEST"), True, KILLED),
    ("Error", None, ("SWITCH_INTO_ERROR_STATE",), True, FAILED),
    ("Error", None, ("FRAG_JOB_REQUEST",), False, REJECTED),
    ("Running", None, (), True, None),
    ("Waiting", None, (), False, None),
])
def test_final_state(state: str, code: int | None, events: tuple[str, ...], started: bool,
                     expected: str | None) -> None:
    assert metrics.final_state(state, code, events, started) == expected


def test_interval_set() -> None:
    assert metrics.interval_set([8, 0, 1, 2, 3]) == "0-3 8"
    assert metrics.interval_set([5]) == "5" and metrics.interval_set([]) == ""
    assert metrics.interval_set([10, 11, 13, 20, 21, 22]) == "10-11 13 20-22"


def test_record_from_oar_and_csv_row() -> None:
    job = OarJob(job_id=42, state="Error", submission_time=1000, start_time=1005,
                 stop_time=1012, walltime=5, requested=2, resources=(3, 4),
                 events=("WALLTIME", "FRAG_JOB_REQUEST"), queue="default", user="alice",
                 command="sim {exec_time=30}")
    r = metrics.record_from_oar(job, origin=990, job_id="7", workload_name="w",
                                profile="delay_10s", trace_wait=1.5)
    assert (r.submission_time, r.starting_time, r.finish_time) == (10, 15, 22)
    assert (r.final_state, r.allocated, r.requested_number_of_resources) == (WALLTIME, (2, 3), 2)
    row = metrics.jobs_csv_row(r)
    assert list(row) == list(metrics.JOBS_CSV_COLUMNS)
    assert row == {
        "job_id": "7", "workload_name": "w", "profile": "delay_10s", "submission_time": "10",
        "requested_number_of_resources": "2", "requested_time": "5", "success": "0",
        "final_state": WALLTIME, "starting_time": "15", "execution_time": "7",
        "finish_time": "22", "waiting_time": "5", "turnaround_time": "12",
        "stretch": "1.71429", "allocated_resources": "2-3", "consumed_energy": "-1",
        "metadata": '{"events":["FRAG_JOB_REQUEST","WALLTIME"],"oar_job_id":42,'
                    '"oar_state":"Error","queue":"default","user":"alice"}',
    }
    assert metrics.wait_comparison([r]) == [
        {"job_id": "7", "trace_wait": "1.5", "oar_wait": "5", "difference": "3.5"}]


def test_record_of_a_job_not_started_yet() -> None:
    job = OarJob(job_id=1, state="Waiting", submission_time=50, start_time=0, stop_time=0)
    r = metrics.record_from_oar(job, origin=40)
    row = metrics.jobs_csv_row(r)
    assert (row["final_state"], row["starting_time"], row["allocated_resources"]) == ("", "", "")
    assert row["job_id"] == "1" and row["submission_time"] == "10"


@pytest.mark.parametrize(("groups", "units", "expected"), [
    ([[("network_address", 2), ("core", 4)]], {}, 8),
    ([[("network_address", 2)]], {"network_address": 4}, 8),
    ([[("resource_id", 3)], [("core", 2)]], {}, 5),
    ([[("core", -1)]], {}, None),
    ([[("switch", 1)]], {}, None),
    ([], {}, None),
])
def test_requested_resources(groups: list[list[tuple[str, int]]], units: dict[str, float],
                             expected: int | None) -> None:
    assert metrics.requested_resources(groups, units) == expected


def test_percentiles() -> None:
    p = metrics.percentiles(float(i) for i in range(1, 101))
    assert p == {"n": 100, "p50": 50.5, "p99": 99.0, "max": 100.0}
    assert metrics.percentiles([]) == {"n": 0, "p50": None, "p99": None, "max": None}
    assert metrics.percentiles([3.0])["p99"] == 3.0


def test_figures_are_written(tmp_path: Path) -> None:
    boxes = metrics.gantt_boxes(RECORDS, now=20)
    paths = plots.gantt(boxes, 4, tmp_path / "gantt", "t")
    paths += plots.utilisation(metrics.utilisation_series(RECORDS, 20), 4, 20,
                               tmp_path / "util", "t")
    paths += plots.waits([{"job_id": "1", "trace_wait": "0", "oar_wait": "3"},
                          {"job_id": "2", "trace_wait": "40", "oar_wait": "12"}],
                         tmp_path / "waits", "t")
    for p in paths:
        data = p.read_bytes()
        assert data.startswith(b"\x89PNG") if p.suffix == ".png" else b"<svg" in data[:2000]
    svg = (tmp_path / "gantt.svg").read_text()
    assert "killed at walltime" in svg and "time since the first submission" in svg


def test_resource_order_groups_nodes_naturally() -> None:
    res = [(5, "node10"), (1, "node2"), (900, "node2"), (7, "node1"), (3, "node10")]
    assert metrics.order_resources(res) == [(7, "node1"), (1, "node2"), (900, "node2"),
                                            (3, "node10"), (5, "node10")]
    assert metrics.resource_index(res, used=[42, 1]) == {7: 0, 1: 1, 900: 2, 3: 3, 5: 4, 42: 5}

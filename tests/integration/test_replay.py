"""``orpheus replay`` and ``orpheus report`` against the real OAR 2.5.9 and the real daemon.

The report's numbers are checked against values computed here straight from OAR's tables.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from conftest import db
from evalys.jobset import JobSet
from matplotlib.patches import Rectangle

from orpheus import cli, metrics

pytestmark = pytest.mark.oar

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
DOC = ROOT / "docs" / "replay-report.md"


@pytest.fixture
def orpheus_daemon(daemon_factory) -> None:
    daemon_factory("--mode", "event")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def interval_count(text: str) -> int:
    n = 0
    for part in text.split():
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def oar_events(row: dict[str, str]) -> list[tuple[str, int]]:
    """OAR's events of a report row's job, each with its date in seconds from the job's start
    (what a failure needs to tell a late kill from a lost one)."""
    job = json.loads(row["metadata"])["oar_job_id"]
    with db() as conn:
        return [(kind, int(date) - int(start)) for kind, date, start in conn.query(
            "SELECT e.type, e.date, j.start_time FROM event_logs e JOIN jobs j "
            "ON j.job_id = e.job_id WHERE e.job_id = %s ORDER BY e.event_id", [job])]


def oar_rows(job_ids: list[int]) -> dict[int, dict[str, int | str]]:
    """Straight from OAR: times, state and the number of assigned resources of each job; a
    job's start is when it first entered Running in job_state_logs."""
    marks = ",".join(["%s"] * len(job_ids))
    with db() as conn:
        out = {int(j): {"sub": int(s), "start": int(a), "stop": int(b), "state": st, "nres": 0}
               for j, s, a, b, st in conn.query(
                   "SELECT job_id, submission_time, start_time, stop_time, state FROM jobs "
                   f"WHERE job_id IN ({marks})", job_ids)}
        for j, n in conn.query(
                "SELECT j.job_id, COUNT(*) FROM jobs j JOIN assigned_resources a "
                "ON a.moldable_job_id = j.assigned_moldable_job "
                f"WHERE j.job_id IN ({marks}) GROUP BY j.job_id", job_ids):
            out[int(j)]["nres"] = int(n)
        for j, since in conn.query(
                "SELECT job_id, MIN(date_start) FROM job_state_logs WHERE job_state = 'Running' "
                f"AND job_id IN ({marks}) GROUP BY job_id", job_ids):
            out[int(j)]["start"] = int(since)
    return out


def check_report_against_oar(out: Path, report: Path) -> list[dict[str, str]]:
    """jobs.csv agrees with OAR's tables; schedule.json with jobs.csv; no resource clash."""
    mapping = read_csv(out / "mapping.csv")
    jobs = read_csv(report / "jobs.csv")
    assert list(jobs[0]) == list(metrics.JOBS_CSV_COLUMNS)
    assert sorted(j["job_id"] for j in jobs) == sorted(m["trace_job_id"] for m in mapping)
    order = [m["trace_job_id"] for m in sorted(mapping, key=lambda m: float(m["scheduled"]))]
    assert [j["job_id"] for j in jobs] == order  # jobs.csv is in trace order
    by_trace = {m["trace_job_id"]: m for m in mapping}
    ids = [int(m["oar_job_id"]) for m in mapping if m["oar_job_id"]]
    oar = oar_rows(ids)
    origin = min(int(r["sub"]) for r in oar.values())
    for j in jobs:
        oar_id = by_trace[j["job_id"]]["oar_job_id"]
        if not oar_id:
            assert j["final_state"] == "REJECTED" and json.loads(j["metadata"])["reason"]
            continue
        o = oar[int(oar_id)]
        assert o["state"] in ("Terminated", "Error")
        assert float(j["submission_time"]) == int(o["sub"]) - origin
        if int(o["start"]):
            assert float(j["waiting_time"]) == int(o["start"]) - int(o["sub"])
            assert float(j["turnaround_time"]) == max(int(o["stop"]), int(o["start"])) - int(
                o["sub"])
            assert interval_count(j["allocated_resources"]) == o["nres"]
    schedule = json.loads((report / "schedule.json").read_text())
    states = [j["final_state"] for j in jobs]
    assert schedule["nb_jobs"] == len(jobs) and schedule["nb_jobs_not_finished"] == 0
    assert schedule["nb_jobs_per_final_state"] == {s: states.count(s) for s in
                                                   metrics.FINAL_STATES}
    waits = [float(j["waiting_time"]) for j in jobs if j["waiting_time"]]
    assert schedule["mean_waiting_time"] == pytest.approx(sum(waits) / len(waits))
    assert schedule["max_waiting_time"] == max(waits)
    # the Gantt data: no two jobs on one resource at the same time
    records = [metrics.JobRecord(
        j["job_id"], float(j["submission_time"]), j["final_state"] or None,
        starting_time=float(j["starting_time"]), finish_time=float(j["finish_time"]),
        allocated=tuple(r for part in j["allocated_resources"].split()
                        for r in range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1)))
        for j in jobs if j["starting_time"]]
    assert metrics.overlaps(metrics.gantt_boxes(records)) == []
    assert schedule["nb_resource_overlaps"] == 0
    for name in ("gantt", "utilisation"):
        assert (report / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert b"<svg" in (report / f"{name}.svg").read_bytes()[:2000]
    check_evalys_reads(report, jobs)
    return jobs


def check_evalys_reads(report: Path, jobs: list[dict[str, str]]) -> None:
    """evalys loads the run's jobs.csv (every job, its times and resources) and its Gantt
    chart draws one box per started job and run of consecutive resources."""
    js = JobSet.from_csv(str(report / "jobs.csv"))
    df = js.df.set_index("jobID")
    assert list(df.index) == [j["job_id"] for j in jobs]
    for j in jobs:
        row = df.loc[j["job_id"]]
        assert row.submission_time == pytest.approx(float(j["submission_time"]))
        assert row.proc_alloc == (interval_count(j["allocated_resources"])
                                  if j["allocated_resources"] else 0)
        if j["starting_time"]:
            assert (row.starting_time, row.finish_time) == (float(j["starting_time"]),
                                                            float(j["finish_time"]))
        else:
            assert pd.isna(row.starting_time)
    with warnings.catch_warnings():  # gantt() shows its figure: a no-op without a display
        warnings.filterwarnings("ignore", "FigureCanvasAgg is non-interactive")
        js.gantt(title=f"evalys: {report / 'jobs.csv'}")
    fig = plt.gcf()
    try:
        boxes = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
        fig.savefig(report / "evalys-gantt.png")
    finally:
        plt.close(fig)
    assert len(boxes) == sum(len(j["allocated_resources"].split()) for j in jobs
                             if j["starting_time"])
    assert (report / "evalys-gantt.png").read_bytes().startswith(b"\x89PNG")


def test_batsim_walltime_workload(orpheus_daemon, tmp_path: Path) -> None:
    """test_walltime.json stretched x4: 10-s jobs last 40 s, walltimes 4..80 s.

    sarko checks walltimes every ~10 s, so a job is surely killed only when its walltime is
    more than that before its end (trace walltime <= 6, i.e. 24 s), and surely not killed when
    its walltime is after its end (trace walltime >= 11); 7..10 may go either way.
    """
    out, report = tmp_path / "replay", tmp_path / "report"
    workload = DATA / "batsim" / "test_walltime.json"
    assert cli.main(["replay", str(workload), "-o", str(out), "--time-scale", "0.25",
                     "--no-progress", "--timeout", "300"]) == 0
    assert cli.main(["report", "--replay", str(out), "-o", str(report)]) == 0
    jobs = check_report_against_oar(out, report)
    spec = json.loads(workload.read_text())
    assert sorted(j["job_id"] for j in jobs) == sorted(str(j["id"]) for j in spec["jobs"])
    for raw in spec["jobs"]:
        row = next(j for j in jobs if j["job_id"] == str(raw["id"]))
        assert row["requested_number_of_resources"] == str(raw["res"])
        assert row["workload_name"] == "test_walltime" and row["profile"] == raw["profile"]
        wall = raw.get("walltime")
        if wall is not None:
            assert row["requested_time"] == str(wall * 4)
        if wall is not None and wall <= 6:
            assert row["final_state"] == "COMPLETED_WALLTIME_REACHED", (row, oar_events(row))
            assert float(row["execution_time"]) < 40
        elif wall is None or wall >= 11:
            assert row["final_state"] == "COMPLETED_SUCCESSFULLY", row
            assert 39 <= float(row["execution_time"]) <= 42
        else:
            assert row["final_state"] in ("COMPLETED_WALLTIME_REACHED",
                                          "COMPLETED_SUCCESSFULLY"), row
    late = json.loads((out / "replay.json").read_text())
    assert late["finished"] and late["counts"]["submitted"] == 44
    assert late["lateness_s"]["n"] == 44 and late["lateness_s"]["max"] < 5


def worked_example(out: Path) -> list[list[str]]:
    """The commands of the docs' worked example, writing under ``out`` (their workload paths
    are relative to the clone's root: the test runs them from there)."""
    text = DOC.read_text()
    block = re.search(r"<!-- worked-example -->\s*```sh\n(.*?)```", text, re.S)
    assert block, "docs/replay-report.md has no worked-example block"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    commands = [shlex.split(ln.replace("/tmp/gofree-slice", str(out)))
                for ln in lines if ln.startswith("orpheus ")]
    assert [c[1] for c in commands] == ["replay", "report"]
    return [c[1:] for c in commands]


def test_docs_worked_example_gofree_slice(orpheus_daemon, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A 32-job slice of gofree_sample.swf (default, best-effort, 336-core jobs, cancellations)."""
    monkeypatch.chdir(ROOT)  # as a user runs the docs' commands
    out = tmp_path / "slice"
    replay, report = worked_example(out)
    assert cli.main([*replay, "--no-progress", "--timeout", "400"]) == 0
    assert cli.main(report) == 0
    jobs = check_report_against_oar(out, out / "report")
    mapping = read_csv(out / "mapping.csv")
    assert len(mapping) == 32
    submitted = [m for m in mapping if m["status"] == "submitted"]
    rejected = [m for m in mapping if m["status"] == "rejected"]
    assert len(submitted) + len(rejected) == 32 and all(m["reason"] for m in rejected)
    assert sum("cancelled before it started" in m["reason"] for m in rejected) == 10
    assert {m["user"] for m in submitted} == {"replay-u42", "replay-u48"}
    assert [m["queue"] for m in submitted].count("besteffort") == 4  # queue 2
    assert {m["queue"] for m in submitted} == {"", "besteffort"}  # "": default, queue 3
    assert max(int(m["res"]) for m in submitted) == 61  # 336 x 64/352 on 64 cores
    states = {j["final_state"] for j in jobs}
    assert "REJECTED" in states and "COMPLETED_SUCCESSFULLY" in states
    waits = read_csv(out / "report" / "waits.csv")
    started = [j for j in jobs if j["waiting_time"]]
    assert len(waits) == len(started) > 0
    for w in waits:
        trace = next(m for m in mapping if m["trace_job_id"] == w["job_id"])
        assert float(w["trace_wait"]) == pytest.approx(float(trace["trace_wait"]) / 2000)
    assert (out / "report" / "waits.png").read_bytes().startswith(b"\x89PNG")
    meta = json.loads((out / "replay.json").read_text())
    assert meta["counts"]["rejected"] == len(rejected) and meta["finished"]


"""`orpheus compare`: every reader on small hand-written inputs and on data/real-oar, matching,
metrics against data/README.md's published figures, properties (a run against itself, time
shifts, N identical runs), errors naming the file and line, figures, the CLI, docs/compare.md."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orpheus import compare, compare_cli, metrics
from orpheus.compare import CompareError, Schedule, parse_schedule, read_schedule
from orpheus.metrics import REJECTED, SUCCESS, WALLTIME, JobRecord
from orpheus.report import write_jobs_csv

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "data" / "real-oar"
SEED = {s: REAL / f"g5k_workload_delay_seed{s}_size32.real.csv" for s in (0, 1)}
# data/README.md: makespan (s) and mean wait (s) of the real OAR runs
PUBLISHED = {0: (11705, 250.6), 1: (12716, 551.1)}

BATSIM_JOBS_CSV = """\
job_id,workload_name,profile,submission_time,requested_number_of_resources,requested_time,\
success,final_state,starting_time,execution_time,finish_time,waiting_time,turnaround_time,\
stretch,allocated_resources,consumed_energy,metadata
w0!1,w0,delay,10.000000,2,100.000000,1,COMPLETED_SUCCESSFULLY,12.000000,30.000000,42.000000,\
2.000000,32.000000,1.066667,0-1,-1,
w0!2,w0,delay,15.000000,1,5.000000,0,COMPLETED_WALLTIME_REACHED,42.000000,5.000000,\
47.000000,27.000000,32.000000,6.400000,0,-1,
w0!3,w0,delay,20.000000,64,5.000000,0,REJECTED,,,,,,,,-1,
"""

REAL_CSV = """\
batsim_id,oar_id,res,walltime,state,submission,start,stop,profile
7,801,2,60,Terminated,1000,1002,1030,delay_a
8,802,1,60,Error,1010,1030,1090,delay_b
9,803,4,60,Error,1020,0,0,delay_c
"""

# oarstat -J -f (OAR 2.5 get_job_data; Perl's DBI gives quoted numbers)
OARSTAT = {
    "801": {"Job_Id": 801, "state": "Terminated", "submissionTime": "1000", "startTime": "1002",
            "stopTime": "1030", "walltime": "60", "assigned_resources": ["3", "4"],
            "exit_code": "0", "events": [], "queue": "default", "owner": "alice"},
    "802": {"Job_Id": 802, "state": "Error", "submissionTime": "1010", "startTime": "1030",
            "stopTime": "1090", "walltime": "60", "assigned_resources": ["3"],
            "exit_code": None, "events": [{"type": "WALLTIME", "job_id": 802}],
            "queue": "default", "owner": "alice"},
    "803": {"Job_Id": 803, "state": "Waiting", "submissionTime": "1020", "startTime": "0",
            "stopTime": "0", "walltime": "60", "assigned_resources": [], "events": []},
}

# oarstat -J --gantt "start, stop" (OAR 2.5 get_history; later 2.5 releases say "resources")
GANTT = {
    "resources": [{"resource_id": 3, "network_address": "node-10"},
                  {"resource_id": 4, "network_address": "node-2"}],
    "jobs": {
        "801": {"job_id": 801, "state": "Terminated", "submission_time": 1000,
                "start_time": 1002, "stop_time": 1030, "walltime": 60,
                "resource_id": [3, 4, 4], "network_address": ["node-10", "node-2"],
                "queue_name": "default", "user": "alice"},
        "805": {"job_id": 805, "state": "Waiting", "submission_time": 1020,
                "start_time": 1100, "stop_time": 1160, "walltime": 60, "resources": [3]},
    },
    "dead_resources": {},
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def times(r: JobRecord) -> tuple[object, ...]:
    return (r.job_id, r.submission_time, r.starting_time, r.finish_time, r.final_state)


# ------------------------------------------------------------------------------ readers

def test_batsim_jobs_csv(tmp_path: Path) -> None:
    s = read_schedule(write(tmp_path, "out_jobs.csv", BATSIM_JOBS_CSV))
    assert (s.format, s.knows_walltime, s.has_resources) == ("jobs.csv", True, True)
    assert [times(r) for r in s.records] == [
        ("1", 0, 2, 32, SUCCESS), ("2", 5, 32, 37, WALLTIME), ("3", 10, None, None, REJECTED)]
    assert [r.allocated for r in s.records] == [(0, 1), (0,), ()]
    assert [r.requested_number_of_resources for r in s.records] == [2, 1, 64]


def test_replay_directory_and_its_report(tmp_path: Path) -> None:
    """A replay's directory is read through report/jobs.csv (the report's own writer)."""
    records = [JobRecord("10", 0, SUCCESS, 1, 60, 3, 13, (5,), metadata={"oar_job_id": 40}),
               JobRecord("11", 2.5, None, 2, 60, 4, None, (6, 7)),
               JobRecord("12", 3, REJECTED, 99, metadata={"reason": "too big"})]
    (tmp_path / "report").mkdir()
    write_jobs_csv(records, tmp_path / "report" / "jobs.csv")
    s = read_schedule(tmp_path)
    assert s.path == str(tmp_path / "report" / "jobs.csv")
    assert [times(r) for r in s.records] == [times(r) for r in records]
    assert s.records[0].metadata["oar_job_id"] == 40
    (tmp_path / "empty").mkdir()
    with pytest.raises(CompareError, match=r"no jobs\.csv nor report/jobs\.csv"):
        read_schedule(tmp_path / "empty")


def test_real_csv(tmp_path: Path) -> None:
    s = read_schedule(write(tmp_path, "x.real.csv", REAL_CSV))
    assert (s.format, s.knows_walltime, s.has_resources) == ("real.csv", False, False)
    assert [times(r) for r in s.records] == [
        ("7", 0, 2, 30, SUCCESS), ("8", 10, 30, 90, metrics.FAILED), ("9", 20, None, None,
                                                                      REJECTED)]
    assert [r.metadata["oar_job_id"] for r in s.records] == [801, 802, 803]


def test_oarstat_json(tmp_path: Path) -> None:
    s = read_schedule(write(tmp_path, "oarstat.json", json.dumps(OARSTAT)))
    assert (s.format, s.knows_walltime, s.has_resources) == ("oarstat", True, True)
    assert [times(r) for r in s.records] == [
        ("801", 0, 2, 30, SUCCESS), ("802", 10, 30, 90, WALLTIME), ("803", 20, None, None, None)]
    assert [r.allocated for r in s.records] == [(0, 1), (0,), ()]  # rank of the ids used


def test_oarstat_gantt_json(tmp_path: Path) -> None:
    s = read_schedule(write(tmp_path, "gantt.json", json.dumps(GANTT, indent=1)))
    assert (s.format, s.knows_walltime) == ("oarstat-gantt", False)
    # a predicted start is not a start; resources numbered by node: node-2 (id 4) first
    assert [times(r) for r in s.records] == [("801", 0, 2, 30, SUCCESS),
                                            ("805", 20, None, None, None)]
    assert s.records[0].allocated == (1, 0)
    assert s.records[0].requested_number_of_resources == 2
    assert (s.platform, compare.platform_size(s)) == (2, 2)  # the resources it lists


@pytest.mark.parametrize("seed", [0, 1])
def test_real_files_give_the_published_figures(seed: int) -> None:
    s = read_schedule(SEED[seed])
    assert len(s.records) == 800
    m = compare.side_metrics(s.records, s.knows_walltime)
    makespan, mean_wait = PUBLISHED[seed]
    assert m["makespan"] == makespan
    assert round(m["mean_waiting_time"], 1) == mean_wait  # type: ignore[arg-type]
    assert m["nb_walltime_reached"] is None


@pytest.mark.parametrize("seed", [0, 1])
def test_a_real_file_against_itself(seed: int) -> None:
    s = read_schedule(SEED[seed])
    out = compare.summary(compare.compare(s, s))
    assert out["jobs"] | {"only_in_run_ids": [], "only_in_reference_ids": []} == {
        "matched": 800, "only_in_run": 0, "only_in_reference": 0, "only_in_run_ids": [],
        "only_in_reference_ids": []}
    for name, v in out["metrics"].items():
        if name == "nb_walltime_reached":
            assert v == {"run": None, "reference": None, "ratio": None, "difference": None}
        else:
            assert (v["ratio"], v["difference"]) == (1, 0), name


def test_the_seeds_match_by_workload_id_and_differ() -> None:
    c = compare.compare(read_schedule(SEED[0]), read_schedule(SEED[1]))
    out = compare.summary(c)["metrics"]
    assert (out["makespan"]["run"], out["makespan"]["reference"]) == (11705, 12716)
    assert out["makespan"]["difference"] == -1011
    assert out["mean_waiting_time"]["ratio"] == pytest.approx(250.5975 / 551.10375)


# Batsim 1 (v1.x): completed jobs only, processors, a hacky_job_id; success but no final_state
BATSIM1_JOBS_CSV = """\
job_id,hacky_job_id,workload_name,submission_time,requested_number_of_processors,requested_time,\
success,starting_time,execution_time,finish_time,waiting_time,turnaround_time,stretch,\
consumed_energy,allocated_processors
1,10,w0,10.000000,2,100.000000,1,12.000000,30.000000,42.000000,2.000000,32.000000,1.066667,\
0.000000,0-1
2,20,w0,15.000000,1,5.000000,0,42.000000,5.000000,47.000000,27.000000,32.000000,6.400000,\
0.000000,0
"""
# Batsim 2 (v2.0): the same columns in alphabetical order, and a quoted metadata
BATSIM2_JOBS_CSV = """\
allocated_processors,consumed_energy,execution_time,finish_time,job_id,metadata,\
requested_number_of_processors,requested_time,starting_time,stretch,submission_time,success,\
turnaround_time,waiting_time,workload_name
0-1,0,30,42,1,"",2,100,12,1.066667,10,1,32,2,w0
0,0,5,47,2,"",1,5,42,6.4,15,0,32,27,w0
"""


@pytest.mark.parametrize("text", [BATSIM1_JOBS_CSV, BATSIM2_JOBS_CSV])
def test_batsim_1_and_2_jobs_csv(tmp_path: Path, text: str) -> None:
    """processors are resources; without final_state, success 0 is a kill whose kind (walltime
    or not) is unknown."""
    s = read_schedule(write(tmp_path, "old_jobs.csv", text))
    assert (s.format, s.knows_walltime, s.has_resources) == ("jobs.csv", False, True)
    assert [times(r) for r in s.records] == [("1", 0, 2, 32, SUCCESS),
                                            ("2", 5, 32, 37, metrics.KILLED)]
    assert [(r.requested_number_of_resources, r.allocated) for r in s.records] == [
        (2, (0, 1)), (1, (0,))]
    assert compare.side_metrics(s.records, s.knows_walltime)["nb_walltime_reached"] is None


def test_batsim_3_unfinished_jobs_and_no_walltime(tmp_path: Path) -> None:
    """Batsim 3 writes every job: one never submitted has starting_time -1, a RUNNING one a
    finish_time of start - 1; requested_time -1 is no walltime."""
    text = BATSIM_JOBS_CSV + (
        "w0!4,w0,delay,25,1,-1.000000,0,NOT_SUBMITTED,-1.000000,-1.000000,-2.000000,-26,-27,1,,"
        "0,\"\"\n"
        "w0!5,w0,delay,30,1,-1.000000,0,RUNNING,40.000000,-1.000000,39.000000,10,9,1,3,0,\"\"\n")
    s = read_schedule(write(tmp_path, "jobs.csv", text))
    assert [times(r) for r in s.records][3:] == [("4", 15, None, None, None),
                                                ("5", 20, 30, None, None)]
    assert [r.requested_time for r in s.records][3:] == [None, None]
    m = compare.side_metrics(s.records, s.knows_walltime)
    assert m["mean_waiting_time"] == (2 + 27 + 10) / 3  # the rejected and unsubmitted: no wait


@pytest.mark.parametrize("encode", [
    lambda t: t.encode(), lambda t: ("\ufeff" + t).encode(),
    lambda t: t.replace("\n", "\r\n").encode(), lambda t: gzip.compress(t.encode()),
    lambda t: gzip.compress(("\ufeff" + t.replace("\n", "\r\n")).encode()),
], ids=["plain", "bom", "crlf", "gzip", "gzip-bom-crlf"])
@pytest.mark.parametrize("text", [BATSIM_JOBS_CSV, REAL_CSV, json.dumps(OARSTAT, indent=1)],
                         ids=["jobs.csv", "real.csv", "oarstat"])
def test_bom_crlf_and_gzip_read_the_same(tmp_path: Path, text: str, encode: object) -> None:
    plain = read_schedule(write(tmp_path, "plain", text))
    path = tmp_path / "encoded"
    path.write_bytes(encode(text))  # type: ignore[operator]
    assert read_schedule(path).records == plain.records


def test_quoted_fields_reordered_and_minimal_columns(tmp_path: Path) -> None:
    """Columns by name in any order, quoted fields with commas; a file with only the four
    needed columns keeps its finish times (its jobs' states are unknown)."""
    text = ('finish_time,"profile",submission_time,job_id,starting_time\n'
            '42,"delay, big",10,"w0!1",12\n47,x,15,w0!2,42\n')
    s = read_schedule(write(tmp_path, "mine.csv", text))
    assert [times(r) for r in s.records] == [("1", 0, 2, 32, None), ("2", 5, 32, 37, None)]
    assert (s.knows_walltime, s.has_resources) == (False, False)


def test_two_workloads_keep_their_prefix(tmp_path: Path) -> None:
    text = BATSIM_JOBS_CSV.replace("w0!3,", "w1!1,")
    s = read_schedule(write(tmp_path, "jobs.csv", text))
    assert [r.job_id for r in s.records] == ["w0!1", "w0!2", "w1!1"]


def test_real_csv_empty_start_is_never_started(tmp_path: Path) -> None:
    s = read_schedule(write(tmp_path, "x.real.csv", REAL_CSV.replace("1020,0,0", "1020,,")))
    assert times(s.records[2]) == ("9", 20, None, None, REJECTED)


def test_oar_running_and_never_started_jobs(tmp_path: Path) -> None:
    """A Running job has a start and no finish; an Error job that never started (start 0) is
    REJECTED, not a wait of 0; a makespan with no job finished is unknown, not 0."""
    doc = {"1": {"state": "Running", "submissionTime": 100, "startTime": 105, "stopTime": 0},
           "2": {"state": "Error", "submissionTime": 101, "startTime": 0, "stopTime": 0}}
    s = read_schedule(write(tmp_path, "o.json", json.dumps(doc)))
    assert [times(r) for r in s.records] == [("1", 0, 5, None, None), ("2", 1, None, None,
                                                                       REJECTED)]
    m = compare.side_metrics(s.records, s.knows_walltime)
    assert (m["makespan"], m["mean_waiting_time"]) == (None, 5)


# ---------------------------------------------------------------------------- matching

def test_unmatched_jobs_are_counted_and_listed(tmp_path: Path) -> None:
    ref = read_schedule(write(tmp_path, "x.real.csv", REAL_CSV))
    run = read_schedule(write(tmp_path, "b.csv", BATSIM_JOBS_CSV.replace("w0!1,", "w0!7,")))
    c = compare.compare(run, ref)
    out = compare.summary(c)["jobs"]
    assert out == {"matched": 1, "only_in_run": 2, "only_in_reference": 2,
                   "only_in_run_ids": ["2", "3"], "only_in_reference_ids": ["8", "9"]}
    rows = compare.job_rows(c)
    assert [(r["job_id"], r["matched"]) for r in rows] == [
        ("7", "both"), ("2", "run"), ("3", "run"), ("8", "reference"), ("9", "reference")]
    # each side's time 0 is its first matched submission
    assert {k: rows[0][k] for k in ("run_submission", "ref_submission", "run_wait", "ref_wait",
                                    "wait_difference", "wait_ratio")} == {
        "run_submission": "0", "ref_submission": "0", "run_wait": "2", "ref_wait": "2",
        "wait_difference": "0", "wait_ratio": "1"}
    assert rows[1]["ref_state"] == "" and rows[3]["run_state"] == ""


def test_match_on_oar_ids(tmp_path: Path) -> None:
    ref = read_schedule(write(tmp_path, "o.json", json.dumps(OARSTAT)))
    run = read_schedule(write(tmp_path, "x.real.csv", REAL_CSV))
    c = compare.compare(run, ref, match="oar")
    assert [(a.job_id, b.job_id) for a, b in c.pairs] == [("7", "801"), ("8", "802"),
                                                          ("9", "803")]
    with pytest.raises(CompareError, match=r"no job of .* matches one of .* by id"):
        compare.compare(run, ref)


def test_ratio_with_a_zero_reference_is_empty() -> None:
    assert compare.ratio(3, 0) is None and compare.ratio(None, 2) is None
    assert compare.ratio(3, 2) == 1.5 and compare.difference(3, None) is None


# --------------------------------------------------------------------------- properties

@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    n = draw(st.integers(1, 12))
    records = []
    for i in range(n):
        sub = draw(st.integers(0, 1000))
        wait, run = draw(st.integers(0, 500)), draw(st.integers(0, 300))
        state = draw(st.sampled_from([SUCCESS, WALLTIME, metrics.FAILED]))
        records.append(JobRecord(str(i), sub, state, draw(st.integers(1, 4)), 600, sub + wait,
                                 sub + wait + run))
    return Schedule("h.csv", "jobs.csv", compare.rebase(records), True, False)


@given(schedules())
def test_a_run_against_itself_has_ratios_1(s: Schedule) -> None:
    for name, v in compare.summary(compare.compare(s, s))["metrics"].items():
        assert v["difference"] == 0, name
        assert v["ratio"] in (1, None), name  # None: the reference's value is 0


@given(schedules(), st.integers(-10**6, 10**6))
def test_shifting_one_side_changes_nothing(s: Schedule, shift: int) -> None:
    def moved(r: JobRecord) -> JobRecord:
        return replace(r, submission_time=r.submission_time + shift,
                       starting_time=r.starting_time + shift,  # type: ignore[operator]
                       finish_time=r.finish_time + shift)  # type: ignore[operator]
    other = replace(s, records=tuple(moved(r) for r in s.records))
    assert compare.summary(compare.compare(other, s)) == compare.summary(compare.compare(s, s))


@given(schedules(), st.integers(2, 5))
def test_identical_runs_have_no_spread(s: Schedule, n: int) -> None:
    one = compare.summary(compare.compare(s, s))
    spread = compare.variability([one] * n)
    for name, v in spread.items():
        if v["reference"] is None:
            continue
        assert v["n"] == n and v["std"] == 0, name
        assert v["min"] == v["max"] == one["metrics"][name]["run"], name
        assert v["mean"] == pytest.approx(v["min"])  # fmean of n equal floats, to rounding


def test_variability_by_hand() -> None:
    assert compare.describe([1, 3, None, 5]) == {"n": 3, "mean": 3, "std": 2, "min": 1,
                                                 "max": 5}
    assert compare.describe([2])["std"] is None
    assert compare.describe([None])["mean"] is None


@settings(max_examples=50)
@given(schedules())
def test_first_fit_never_overlaps_and_gives_each_job_its_count(s: Schedule) -> None:
    placed = compare.first_fit(s.records)
    assert metrics.overlaps(metrics.gantt_boxes(placed)) == []
    assert [len(r.allocated) for r in placed] == [
        r.requested_number_of_resources for r in sorted(
            s.records, key=lambda r: (r.starting_time, r.job_id))]


# ------------------------------------------------------------------------------- errors

@pytest.mark.parametrize(("name", "text", "message"), [
    ("a.csv", BATSIM_JOBS_CSV.replace("15.000000,1,5", "soon,1,5"),
     r"a.csv:3: job 2: submission_time: not a number: 'soon'"),
    ("b.real.csv", REAL_CSV.replace("1030,delay_a", "10.5e,delay_a"),
     r"b.real.csv:2: job 7: stop: not a number: '10.5e'"),
    ("c.real.csv", REAL_CSV.replace("1010,", "1010.5,"), r"c.real.csv:3: job 8: submission: not an "
     r"integer: '1010.5'"),
    ("d.csv", REAL_CSV.replace(",delay_b", ""), r"d.csv:3: fewer fields than the header"),
    ("e.csv", REAL_CSV + "10,804,1,60,Terminated,1,2,3,p,extra\n",
     r"e.csv:5: more fields than the header"),
    ("f.csv", REAL_CSV.replace("8,802", "7,802"), r"f.csv:3: job 7 already appears \(2\)"),
    ("g.csv", "a,b,c\n1,2,3\n", r"g.csv:1: not a schedule"),
    ("h.csv", "", r"h.csv: empty file"),
    ("i.json", '{"1": {"state": "Terminated",\n "submissionTime": }}', r"i.json:2:20: invalid"),
    ("j.json", '{"nb_res": 4, "jobs": [], "profiles": {}}', r"j.json: a Batsim workload"),
    ("k.json", '{"1": {"state": "Terminated", "submissionTime": "x"}}',
     r"k.json: job 1: submission time: not a number: 'x'"),
    ("l.json", '{"1": {"state": "Terminated"}}', r"l.json: job 1: no submissionTime or"),
    ("m.json", '{"1": 3}', r"m.json: job 1: not an OAR job"),
    ("n.csv", BATSIM_JOBS_CSV.replace("0-1,-1", "0-x,-1"),
     r"n.csv:2: job 1: allocated_resources: not an interval set: '0-x'"),
    ("o.csv", BATSIM_JOBS_CSV.replace("REJECTED", "GONE"), r"o.csv:4: job 3: final_state 'GONE'"),
    ("p.csv", BATSIM_JOBS_CSV.replace("15.000000,1,5", "15.000000,1.5,5"),
     r"p.csv:3: job 2: requested_number_of_resources: not an integer: '1.5'"),
    ("q.csv", BATSIM_JOBS_CSV.replace("15.000000,1,5", "15.000000,1e12,5"),
     r"q.csv:3: job 2: requested_number_of_resources: 1000000000000 is not a resource count"),
    ("r.csv", BATSIM_JOBS_CSV.replace("0-1,-1", "1-0,-1"),
     r"r.csv:2: job 1: allocated_resources: not an interval set: '1-0'"),
    ("s.csv", BATSIM_JOBS_CSV.replace("0-1,-1", "0-99999999,-1"),
     r"s.csv:2: job 1: allocated_resources: not an interval set"),
    ("t.csv", BATSIM_JOBS_CSV.replace("0-1,-1", "0-999999 1000000-1000001,-1"),
     r"t.csv:2: job 1: allocated_resources: more than 1000000 resources"),
    ("u.csv", BATSIM_JOBS_CSV.replace("42.000000,2.000000", "11.000000,2.000000"),
     r"u.csv:2: job 1: finishes \(11\) before it starts \(12\)"),
    ("v.csv", BATSIM_JOBS_CSV.replace("12.000000,30", "9.000000,30"),
     r"v.csv:2: job 1: starts \(9\) before its submission \(10\)"),
    ("w.csv", BATSIM_JOBS_CSV.replace("12.000000,30", "1e300,30"),
     r"w.csv:2: job 1: starting_time: too large: '1e300'"),
    ("x.csv", BATSIM_JOBS_CSV.replace("12.000000,30", "nan,30"),
     r"x.csv:2: job 1: starting_time: not a finite number: 'nan'"),
    ("y.csv", BATSIM_JOBS_CSV.replace("10.000000,2", "-inf,2"),
     r"y.csv:2: job 1: submission_time: not a finite number: '-inf'"),
    ("z.csv", BATSIM_JOBS_CSV.replace(",-1,\nw0!3", ',-1,"open\nw0!3'),
     r"z.csv:3: not valid CSV: unexpected end of data"),
    ("aa.csv", BATSIM_JOBS_CSV.replace("0-1,-1,", "0-1,-1," + "x" * 200_000),
     r"aa.csv:2: not valid CSV: field larger than field limit"),
    ("ab.csv", BATSIM_JOBS_CSV.replace("47.000000,27", ",27"),
     r"ab.csv:3: job 2: finish_time: empty for a COMPLETED_WALLTIME_REACHED job"),
    ("ac.csv", BATSIM1_JOBS_CSV.replace("100.000000,1,", "100.000000,yes,"),
     r"ac.csv:2: job 1: success: not 0 or 1: 'yes'"),
    ("ad.csv", BATSIM_JOBS_CSV.replace("w0!3", "w0!2"), r"ad.csv:4: job 2 already appears \(3\)"),
    ("ae.csv", BATSIM_JOBS_CSV.splitlines()[0] + "\n", r"ae.csv: no job"),
    ("af.real.csv", REAL_CSV.replace(",2,60", ",-2,60"),
     r"af.real.csv:2: job 7: res: -2 is not a resource count"),
    ("ag.real.csv", REAL_CSV.replace("1010,1030", "1010,1000"),
     r"ag.real.csv:3: job 8: starts \(1000\) before its submission \(1010\)"),
    ("ah.json", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", r"ah.json: invalid JSON: nested"),
    ("ai.json", '{"1": {"state": "Terminated", "submissionTime": 1, "startTime": 1' + "0" * 400
     + "}}", r"ai.json: job 1: start time: too large"),
    ("aj.json", '{"1": {"state": "Terminated", "submissionTime": 1, "startTime": 1' + "0" * 5000
     + "}}", r"aj.json: invalid JSON: .*4300"),
    ("ak.json", '{"1": {"state": "Error", "submissionTime": 1, "startTime": 2, "stopTime": 3, '
     '"events": "WALLTIME"}}', r"ak.json: job 1: events must be a list"),
    ("al.json", json.dumps({"1": OARSTAT["801"], "x": OARSTAT["801"]}),
     r"al.json: job x: OAR job 801 already appears \(as 1\)"),
    ("am.json", '{"1": {"state": null, "submissionTime": 1}}', r"am.json: job 1: not an OAR job"),
    ("an.json", '{"1": {"state": "Terminated", "submissionTime": NaN}}',
     r"an.json: job 1: submission time: not an integer: 'nan'"),
    ("ao.json", '{"jobs": {}, "resources": []}', r"ao.json: no job"),
])
def test_malformed_inputs_name_the_file_and_line(tmp_path: Path, name: str, text: str,
                                                 message: str) -> None:
    with pytest.raises(CompareError, match=message):
        read_schedule(write(tmp_path, name, text))


@pytest.mark.parametrize(("data", "message"), [
    (b"\x00\xff\xfe", r"bad: not UTF-8 text \(byte 1"),
    (gzip.compress(BATSIM_JOBS_CSV.encode())[:30], r"bad: a damaged gzip file"),
    (gzip.compress(b"\xff"), r"bad: not UTF-8 text \(byte 0"),
])
def test_unreadable_files_name_the_file(tmp_path: Path, data: bytes, message: str) -> None:
    (tmp_path / "bad").write_bytes(data)
    with pytest.raises(CompareError, match=message):
        read_schedule(tmp_path / "bad")


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3), st.integers(0, 16), st.text(max_size=12))
def test_any_field_value_is_read_or_refused_by_name(line: int, column: int,
                                                    value: str) -> None:
    """Whatever one field of a valid jobs.csv holds, reading gives records or a CompareError
    naming the file (never another exception)."""
    rows = list(csv.reader(BATSIM_JOBS_CSV.splitlines()))
    rows[line][column] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    try:
        s = parse_schedule(out.getvalue(), "f.csv")
    except CompareError as e:
        assert str(e).startswith("f.csv")
    else:
        for r in s.records:
            assert r.waiting_time is None or r.waiting_time >= 0
            assert r.execution_time is None or r.execution_time >= 0


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["submissionTime", "startTime", "stopTime", "state", "events",
                        "assigned_resources", "exit_code", "walltime", "Job_Id"]),
       st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=5))
def test_any_oarstat_value_is_read_or_refused_by_name(key: str, value: object) -> None:
    doc = {k: dict(v) for k, v in OARSTAT.items()}
    doc["802"][key] = value
    try:
        parse_schedule(json.dumps(doc), "o.json")
    except CompareError as e:
        assert str(e).startswith("o.json")


@settings(max_examples=100, deadline=None)
@given(st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(0, 10**4), st.integers(0, 10**4),
              st.sampled_from([SUCCESS, WALLTIME, metrics.KILLED, metrics.FAILED, REJECTED,
                               None])), min_size=1, max_size=8))
def test_a_report_jobs_csv_reads_back(tmp_path_factory: pytest.TempPathFactory,
                                      jobs: list[tuple[int, int, int, str | None]]) -> None:
    """What `orpheus report` writes reads back as written, rebased: a rejected job has no
    wait, a job not over no finish."""
    records = []
    for i, (sub, wait, run, state) in enumerate(jobs):
        start = None if state == REJECTED else sub + wait
        end = None if state in (REJECTED, None) else sub + wait + run
        records.append(JobRecord(str(i), sub, state, 1, 600, start, end,
                                 () if start is None else (i,)))
    path = tmp_path_factory.mktemp("r") / "jobs.csv"
    write_jobs_csv(records, path)
    assert [times(r) for r in read_schedule(path).records] == [
        times(r) for r in compare.rebase(records)]


def test_format_is_told_by_content_not_extension(tmp_path: Path) -> None:
    assert read_schedule(write(tmp_path, "looks.json", REAL_CSV)).format == "real.csv"
    assert parse_schedule(json.dumps(GANTT), "x.csv").format == "oarstat-gantt"


# --------------------------------------------------------------------- outputs and CLI

def test_outputs_and_figures(tmp_path: Path) -> None:
    ref = read_schedule(write(tmp_path, "x.real.csv", REAL_CSV))
    run = read_schedule(write(tmp_path, "o.json", json.dumps(OARSTAT)))
    cs = [compare.compare(run, ref, "oar")] * 2
    result = compare_cli.write_outputs(cs, tmp_path / "out", tau=10, match="oar", plot=True)
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert names == {"compare_jobs.csv", "summary.csv", "compare.json"} | {
        f"{f}.{ext}" for f in ("wait_scatter", "wait_cdf", "gantt") for ext in ("png", "svg")}
    assert json.loads((tmp_path / "out" / "compare.json").read_text()) == json.loads(
        json.dumps(result))
    walltime = result["summary"]["nb_walltime_reached"]  # the .real.csv cannot tell
    assert (walltime["reference"], walltime["mean"], walltime["ratio"]) == (None, 1, None)
    with (tmp_path / "out" / "compare_jobs.csv").open() as f:
        assert [r["run"] for r in csv.DictReader(f)] == ["1", "1", "1", "2", "2", "2"]


# ------------------------------------------------------- what a reference ran, and on what

def record(job_id: str, start: float | None, stop: float | None, res: int,
           submit: float = 0.0, walltime: float | None = None) -> JobRecord:
    return JobRecord(job_id, submit, SUCCESS if stop is not None else None, res, walltime,
                     start, stop)


def test_busiest_counts_resources_in_use_at_once() -> None:
    # 0-10 uses 2, 5-15 uses 3 (5 at once), 10-20 uses 4 starts as the first ends (7 at 10)
    records = [record("a", 0, 10, 2), record("b", 5, 15, 3), record("c", 10, 20, 4),
               record("d", None, None, 32)]  # never ran: not counted
    assert compare.busiest(records) == 7
    assert compare.busiest([record("a", 0, 10, 2), record("b", 10, 20, 3)]) == 3
    assert compare.busiest([]) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 20), st.integers(1, 8)),
                max_size=30))
def test_busiest_is_the_peak_of_the_usage_profile(jobs: list[tuple[int, int, int]]) -> None:
    records = [record(str(i), s, s + d, n) for i, (s, d, n) in enumerate(jobs)]
    peak = max((sum(n for s, d, n in jobs if s <= t < s + d) for t in range(71)), default=0)
    assert compare.busiest(records) == peak


def test_the_real_runs_platforms() -> None:
    """Seed 1's reservation had 22 nodes alive (upstream's oar_gant export lists 22
    resources; its jobs never had more busy at once), seed 0's 32."""
    assert [compare.platform_size(read_schedule(SEED[s])) for s in (0, 1)] == [32, 22]


def test_agreement_tells_whether_a_reference_ran_a_workload() -> None:
    from orpheus.workload import read_workload
    jobs = {s: read_workload(REAL / f"g5k_workload_delay_seed{s}_size32.json").jobs
            for s in (0, 1)}
    refs = {s: read_schedule(SEED[s]) for s in (0, 1)}
    assert compare.agreement(jobs[1], refs[1]) == 1.0
    assert compare.agreement(jobs[0], refs[0]) < 0.1  # seed 0's real run ran other jobs
    assert compare.agreement(jobs[1], refs[0]) < 0.1
    assert compare.agreement([], refs[1]) == 0.0


def test_job_overhead_is_the_median_of_what_the_real_jobs_ran_beyond_their_run_time(
        ) -> None:
    from orpheus.workload import TraceJob, read_workload
    seed1 = read_workload(REAL / "g5k_workload_delay_seed1_size32.json").jobs
    # seed 1's first job: delay 88.51 s, ran 1462814042 - 1462813954 = 88 s
    assert compare.job_overhead(seed1, read_schedule(SEED[1])) == 0.47
    s = parse_schedule(REAL_CSV, "x.real.csv")
    ran = {r.job_id: r for r in s.records if r.execution_time is not None}
    jobs = [TraceJob(id=i, submit=0, res=r.requested_number_of_resources or 1,
                     run_time=r.execution_time - extra, walltime=r.requested_time)
            for (i, r), extra in zip(sorted(ran.items()), (1.0, 3.0), strict=True)]
    assert compare.job_overhead(jobs, s) == 2.0  # the median of 1 and 3
    shorter = [replace(j, run_time=(j.run_time or 0) + 10) for j in jobs]
    assert compare.job_overhead(shorter, s) == 0.0  # never below 0
    other = [replace(j, res=j.res + 1) for j in jobs]
    assert compare.job_overhead(other, s) == 0.0  # jobs it did not run as asked: none


def test_as_run_replays_a_reference_as_it_ran(tmp_path: Path) -> None:
    from orpheus.workload import read_workload
    ref = read_schedule(SEED[0])
    doc = compare.as_run(ref)
    assert (len(doc["jobs"]), doc["nb_res"]) == (800, 32)
    path = write(tmp_path, "as-run.json", json.dumps(doc))
    workload = read_workload(path)
    by_id = {r.job_id: r for r in ref.records}
    for job in workload.jobs:
        r = by_id[job.id]
        assert (job.submit, job.res, job.walltime, job.run_time) == (
            r.submission_time, r.requested_number_of_resources, r.requested_time,
            r.execution_time)
    assert compare.agreement(workload.jobs, ref) == 1.0
    # a job that never ran is left out
    s = parse_schedule(REAL_CSV, "x.real.csv")
    assert [j["id"] for j in compare.as_run(s)["jobs"]] == ["7", "8"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "orpheus.cli", "compare", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
                          check=False)


def test_cli_on_the_real_files(tmp_path: Path) -> None:
    done = run_cli(str(SEED[0]), str(SEED[1]), str(SEED[1]), "-o", str(tmp_path))
    assert (done.returncode, done.stderr) == (0, "")
    assert "800 jobs matched, 0 only in the run, 0 only in the reference" in done.stdout
    with (tmp_path / "summary.csv").open() as f:
        rows = {r["metric"]: r for r in csv.DictReader(f)}
    assert (rows["makespan"]["reference"], rows["makespan"]["min"],
            rows["makespan"]["max"], rows["makespan"]["runs"]) == ("12716", "11705", "12716", "2")
    assert (tmp_path / "gantt.svg").stat().st_size > 0


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.real.csv", REAL_CSV.replace("1002", "x"))
    done = run_cli(str(bad), str(SEED[0]), "-o", str(tmp_path / "out"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == f"orpheus compare: {bad}:2: job 7: start: not a number: 'x'\n"
    done = run_cli(str(SEED[0]), str(SEED[0]), "--tau", "0", "-o", str(tmp_path / "out"))
    assert (done.returncode, done.stderr) == (2, "orpheus compare: --tau must be > 0\n")


def test_the_docs_example(tmp_path: Path) -> None:
    """docs/compare.md's example, run as written (output elsewhere): its summary.csv is the
    one the page shows."""
    page = (ROOT / "docs" / "compare.md").read_text()
    block = page.split("<!-- compare-example -->", 1)[1]
    command, shown = re.findall(r"```\w*\n(.*?)```", block, re.S)[:2]
    argv = command.replace("\\\n", " ").split()
    assert argv[:2] == ["orpheus", "compare"]
    out = argv.index("-o") + 1
    argv[out] = str(tmp_path)
    done = run_cli(*argv[2:])
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "summary.csv").read_text() == shown

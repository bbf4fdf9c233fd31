"""SWF and Batsim readers on the bundled workloads and on malformed input; the replay plan."""

from __future__ import annotations

import gzip
import json
import math
import re
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orpheus.replayplan import (
    MAX_SECONDS,
    Capacity,
    PlanError,
    PlanOptions,
    arguments,
    hms,
    parse_queue_map,
    plan,
)
from orpheus.spec import parse_command
from orpheus.workload import (
    ProfileRun,
    ProfileRuns,
    Rates,
    TraceJob,
    Workload,
    WorkloadError,
    decode,
    parse_batsim,
    parse_swf,
    parse_workload,
    read_workload,
)

DATA = Path(__file__).resolve().parents[2] / "data"
GOFREE = DATA / "gofree_sample.swf"
BATSIM = DATA / "batsim"


# ------------------------------------------------------------------------------- SWF

def test_gofree_header_and_counts() -> None:
    w = read_workload(GOFREE)
    assert (w.name, w.format, w.max_procs, w.max_nodes) == ("gofree_sample", "swf", 352, 29)
    # listed default, admin, besteffort; oarDB-2-swf numbers them alphabetically
    assert w.queues == {1: "admin", 2: "besteffort", 3: "default"}
    assert len(w.jobs) == 1448
    subs = [j.submit for j in w.jobs]
    assert subs == sorted(subs) and subs[0] == 0 and subs[-1] == 5542612
    # 129 records have no processor count (cancelled before they started): kept, to be rejected
    assert sum(1 for j in w.jobs if j.skip) == 129
    assert all("cancelled before it started" in j.skip for j in w.jobs if j.skip)


def test_gofree_first_and_last_records() -> None:
    jobs = {j.id: j for j in read_workload(GOFREE).jobs}
    # "1 0 2 7 1 -1 -1 1 7200 -1 1 3 3 -1 3 -1 -1 -1"
    assert jobs["1"] == TraceJob(id="1", submit=0, res=1, run_time=7, walltime=7200,
                                 exit_code=0, user="3", queue=3, trace_wait=2, status=1)
    # "1447 5542612 1 356 1 -1 -1 1 1200 -1 1 23 0 -1 2 -1 -1 -1": run 356 s > walltime
    last = jobs["1447"]
    assert (last.res, last.run_time, last.walltime, last.queue, last.user) == (1, 356, 1200, 2,
                                                                               "23")


def test_swf_status_gives_exit_code() -> None:
    lines = "".join(f"{i} {i} 0 10 1 -1 -1 1 100 -1 {status} 1 1 -1 1 -1 -1 -1\n"
                    for i, status in enumerate([1, 0, 5, -1, 4, 3, 2], 1))
    assert [j.exit_code for j in parse_swf(lines).jobs] == [0, 1, 143, 0, 1, 0, 0]


def _swf_line(number: int, submit: float, run: float, status: int) -> str:
    return f"{number} {submit} 0 {run} 1 -1 -1 1 100 -1 {status} 1 1 -1 1 -1 -1 -1\n"


def test_swf_partial_executions_replay_their_job_once_from_its_summary_line() -> None:
    # job 1 was swapped out twice: summary line (status 1) then partial executions (2, 2, 3)
    text = (_swf_line(1, 0, 90, 1) + _swf_line(1, 0, 30, 2) + _swf_line(2, 5, 7, 0)
            + _swf_line(1, 0, 30, 2) + _swf_line(1, 0, 30, 3)
            + _swf_line(3, 9, 20, 2) + _swf_line(3, 9, 20, 4)  # partial lines only
            + _swf_line(4, 12, 15, 3))  # one line, whatever its status: the job itself
    jobs = {j.id: j for j in parse_swf(text).jobs}
    assert list(jobs) == ["1", "2", "3", "4"]
    assert (jobs["1"].run_time, jobs["1"].status, jobs["1"].skip) == (90, 1, None)
    assert jobs["3"].skip == "2 partial-execution lines (SWF status 2-4) and no summary line"
    assert (jobs["4"].run_time, jobs["4"].exit_code, jobs["4"].skip) == (15, 0, None)
    (rejected,) = plan(parse_swf(text), CAP, PlanOptions()).rejections
    assert rejected.job.id == "3"


def test_swf_repeated_job_number_names_its_line_in_linear_time() -> None:
    text = "".join(_swf_line(i, i, 10, 1) for i in range(1, 60001)) + _swf_line(60000, 1, 1, 0)
    started = time.monotonic()
    with pytest.raises(WorkloadError, match=r"^big\.swf:60001: job number 60000 appears more "
                       r"than once \(first at line 60000;"):
        parse_swf(text, "big.swf")
    assert time.monotonic() - started < 10  # quadratic: ~50 s


def test_swf_lines_end_at_newlines_only() -> None:
    text = "; note\fnot data\x1c\x85\u2028\r\n" + _swf_line(1, 0, 1, 1).replace("\n", "\r\n")
    assert [j.id for j in parse_swf(text).jobs] == ["1"]
    with pytest.raises(WorkloadError, match=r"^t\.swf:4: 17 fields"):
        parse_swf(text + "; \v\f\n1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n", "t.swf")


def test_swf_allocated_procs_when_none_requested_and_unknown_run_time() -> None:
    w = parse_swf("1 0 0 10 4 -1 -1 -1 -1 -1 1 1 1 -1 1 -1 -1 -1\n"
                  "2 5 0 -1 4 -1 -1 4 60 -1 1 -1 1 -1 -1 -1 -1 -1\n")
    a, b = w.jobs
    assert (a.res, a.walltime, a.skip) == (4, None, None)
    assert b.skip == "unknown run time (field 4 is -1)" and b.user is None and b.queue is None


@pytest.mark.parametrize(("text", "message"), [
    ("1 0 0 10 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1\n", "bad.swf:1: 17 fields, SWF has 18"),
    ("; comment\n\n1 0 0 ten 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1\n",
     "bad.swf:3: field 4 (run time): not a number: 'ten'"),
    ("1 0 0 10 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1\n"
     "1 0 0 10 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1\n",
     "bad.swf:2: job number 1 appears more than once (first at line 1;"),
    ("1 -5 0 10 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1\n",
     "bad.swf:1: job 1: field 2 (submit time): -5 is negative"),
    ("1 0 0 1e 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1 ; trailing comment\n",
     "bad.swf:1: field 4 (run time): not a number: '1e'"),
    ("1.5 0 0 10 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1\n",
     "bad.swf:1: field 1 (job number): 1.5 is not an integer"),
    ("-3 0 0 10 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1\n",
     "bad.swf:1: field 1 (job number): -3 is negative"),
    ("1 0 0 nan 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1\n",
     "bad.swf:1: field 4 (run time): not a number: 'nan'"),
    ("1 0 0 1_0 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1\n",
     "bad.swf:1: field 4 (run time): not a number: '1_0'"),
    ("1 0 0 \u0661 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1\n",
     "bad.swf:1: field 4 (run time): not a number: '\u0661'"),
    ("1 0 0 1e 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1\n",
     "bad.swf:1: field 4 (run time): not a number: '1e'"),
    ("1 0 0 1e999 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1\n",
     "bad.swf:1: field 4 (run time): not a number: '1e999'"),
    ("1 0 0 10 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1\x00\n",
     "bad.swf:1: field 18 (think time): not a number: '-1\\x00'"),
    ("1 0 0 10 1 -1 -1 1 100 -1 5.9 1 1 -1 1 -1 -1 -1\n",
     "bad.swf:1: field 11 (status): 5.9 is not an integer"),
    ("1 0 0 10 2.5 -1 -1 -1 100 -1 1 1 1 -1 1 -1 -1 -1\n",
     "bad.swf:1: field 5 (allocated processors): 2.5 is not an integer"),
    ("1 0 0 10 2 -1 -1 2.5 100 -1 1 1 1 -1 1 -1 -1 -1\n",
     "bad.swf:1: field 8 (requested processors): 2.5 is not an integer"),
    ("1 0 0 10 2 -1 -1 2 100 -1 1 3.7 1 -1 1 -1 -1 -1\n",
     "bad.swf:1: field 12 (user id): 3.7 is not an integer"),
    ("1 0 0 10 2 -1 -1 2 100 -1 1 3 1 -1 1.5 -1 -1 -1\n",
     "bad.swf:1: field 15 (queue): 1.5 is not an integer"),
    ("1 0 0 10 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1 0\n", "bad.swf:1: 19 fields, SWF has 18"),
    ("; MaxProcs: 128\n;  MaxNodes: 1,024\n1 0 0 10 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1\n",
     "bad.swf:2: header MaxNodes: '1,024' is not an integer"),
    ("; only a header\n", "bad.swf: no job line"),
])
def test_malformed_swf_names_file_and_line(text: str, message: str) -> None:
    with pytest.raises(WorkloadError, match="^" + re.escape(message)):
        parse_swf(text, "bad.swf")


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="cannot read"):
        read_workload(tmp_path / "missing.swf")
    (tmp_path / "bin.swf").write_bytes(b"\xff\xfe\x00")  # UTF-16
    with pytest.raises(WorkloadError, match=r"bin\.swf:1: not UTF-8 text \(byte 0xff at column 1"):
        read_workload(tmp_path / "bin.swf")
    (tmp_path / "cut.swf.gz").write_bytes(gzip.compress(b"1 2 3\n" * 100)[:30])
    with pytest.raises(WorkloadError, match=r"cut\.swf\.gz: cannot read"):
        read_workload(tmp_path / "cut.swf.gz")


def test_swf_queue_block_ends_at_a_shallower_key() -> None:
    text = (";   Queues:\n;     * short\n;       priority: 1\n;     * long\n;   Note: x\n"
            ";     * not_a_queue\n1 0 0 1 1 -1 -1 1 1 -1 1 1 1 -1 2 -1 -1 -1\n")
    assert parse_swf(text).queues == {1: "short", 2: "long"}


def test_swf_queue_numbers_follow_the_header_unless_oar_converted_it() -> None:
    queues = ";   Queues:\n;     * short\n;     * long\n;\n"
    job = "1 0 0 1 1 -1 -1 1 1 -1 1 1 1 -1 2 -1 -1 -1\n"
    assert parse_swf(queues + job).queues == {1: "short", 2: "long"}
    oar = ";    Conversion: oarDB-2-swf script\n" + queues
    assert parse_swf(oar + job).queues == {1: "long", 2: "short"}


LINE = "1 0 0 10 1 -1 -1 1 100 -1 1 1 1 -1 1 -1 -1 -1"


@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbf; MaxProcs: 8\n" + LINE.encode() + b"\n",  # UTF-8 BOM (Windows editors)
    b"; MaxProcs: 8\r\n" + LINE.encode() + b"\r\n",  # CRLF
    b"; MaxProcs: 8.0\n;  Note: Universit\xe9 (Latin-1)\n\n" + LINE.replace(" ", " \t  ").encode()
    + b"  \t\n\n",  # several spaces and tabs, trailing blanks, blank lines
    gzip.compress(b"; MaxProcs: 8\n" + LINE.encode() + b"\n"),  # as the Archive publishes it
])
def test_swf_files_as_archives_and_editors_write_them(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "t.swf.gz").write_bytes(data)
    w = read_workload(tmp_path / "t.swf.gz")
    assert (w.name, w.max_procs, [(j.id, j.res, j.run_time) for j in w.jobs]) == (
        "t", 8, [("1", 1, 10)])


def test_a_byte_that_is_not_utf8_outside_a_comment_names_its_line() -> None:
    assert decode(b"; \xe9\n" + LINE.encode(), "t.swf") == "; \ufffd\n" + LINE
    with pytest.raises(WorkloadError, match=r"^t\.swf:2: not UTF-8 text \(byte 0xe9 at column 4"):
        decode(b"; \xe9\n1 2\xe9", "t.swf")
    with pytest.raises(WorkloadError, match=r"^w\.json:1: not UTF-8 text"):
        decode(b'{"jobs": "\xe9"}', "w.json")


def test_swf_unknown_values_floats_and_unsorted_submissions() -> None:
    w = parse_swf("3 20 -1 0 -1 -1 -1 2.0 0 -1 1 -1 -1 -1 -1 -1 -1 -1\n"   # run 0, no walltime
                  "1 10.5 0 12.5 4 -1 -1 -1 -1 -1 1 1 1 -1 1 -1 -1 -1\n"  # requested -1: alloc
                  "2 10.5 0 -7 4 -1 -1 4 60 -1 1 1 1 -1 1 -1 -1 -1\n"
                  "4 0 0 5 0 -1 -1 0 60 -1 1 1 1 -1 1 -1 -1 -1\n")
    assert [(j.id, j.submit, j.res, j.run_time, j.walltime, j.skip) for j in w.jobs] == [
        ("4", 0, 0, 5, 60, "no processor count (requested and allocated are 0 or -1)"),
        ("1", 10.5, 4, 12.5, None, None),
        ("2", 10.5, 4, None, 60, "unknown run time (field 4 is -7)"),
        ("3", 20, 2, 0, None, None)]
    assert w.jobs[3].user is None and w.jobs[3].trace_wait is None and w.jobs[3].queue is None


_swf_record = st.tuples(
    st.integers(0, 10**6) | st.floats(0, 1e7).map(lambda x: round(x, 3)),  # submit
    st.integers(-1, 10**5),  # wait
    st.just(-1) | st.integers(0, 10**6) | st.floats(0, 1e6).map(lambda x: round(x, 2)),  # run
    st.integers(-1, 512),  # allocated processors
    st.integers(-1, 512),  # requested processors
    st.just(-1) | st.integers(1, 10**6),  # requested time
    st.sampled_from([-1, 0, 1, 5]),  # status
    st.integers(-1, 99),  # user
    st.integers(-1, 5),  # queue
)


@given(st.lists(_swf_record, min_size=1, max_size=30), st.sampled_from([" ", "\t", "  \t "]),
       st.sampled_from(["\n", "\r\n"]), st.booleans(), st.booleans())
def test_a_written_swf_reads_back_as_its_jobs(records: list[tuple], sep: str, eol: str,
                                              bom: bool, gzipped: bool) -> None:
    lines = ["; Version: 2.2", "; MaxProcs: 512", ";"]
    expected = []
    for number, (submit, wait, run, alloc, req, req_time, status, user, queue) in enumerate(
            records, 1):
        fields = [number, submit, wait, run, alloc, -1, -1, req, req_time, -1, status, user, 3,
                  -1, queue, -1, -1, -1]
        lines.append(sep.join(str(f) for f in fields))
        res = req if req > 0 else alloc if alloc > 0 else 0
        expected.append((str(number), submit, res, run if run >= 0 else None,
                         req_time if req_time > 0 else None,
                         None if user < 0 else str(user), None if queue < 0 else queue,
                         status, res > 0 and run >= 0))
    data = (b"\xef\xbb\xbf" if bom else b"") + eol.join(lines).encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "t.swf.gz" if gzipped else "t.swf")
        path.write_bytes(gzip.compress(data) if gzipped else data)
        w = read_workload(path)
    assert w.max_procs == 512
    assert [(j.id, j.submit, j.res, j.run_time, j.walltime, j.user, j.queue, j.status,
             j.skip is None) for j in w.jobs] == sorted(expected, key=lambda e: e[1])


@given(st.text(st.sampled_from("0123456789 -.eE;\t\n\r{}[]\"ab:\ufeff\x00"), max_size=200)
       | st.lists(st.sampled_from(["1", "-1", "0", "2.5", "1e3", "x", ";", "\n", " "]),
                  max_size=60).map(" ".join))
def test_any_text_reads_or_is_a_workload_error(text: str) -> None:
    try:
        parse_workload(text, "t")
    except WorkloadError as e:
        assert str(e).startswith("t")


# ------------------------------------------------------------------------------ Batsim

def test_batsim_test_walltime() -> None:
    w = read_workload(BATSIM / "test_walltime.json")
    assert (w.format, w.max_procs, len(w.jobs)) == ("batsim", 64, 44)
    jobs = {j.id: j for j in w.jobs}
    assert jobs["1"].walltime == 1 and jobs["1"].run_time == 10 and jobs["1"].profile == "delay_10s"
    assert jobs["21"].walltime is None and jobs["22"].submit == 10
    # compute_only_10s: ptask_homogeneous with cpu=1e10 at the default 1e9 flops/s -> 10 s
    assert jobs["1001"].run_time == pytest.approx(10)
    fast = {j.id: j for j in read_workload(BATSIM / "test_walltime.json",
                                           Rates(flops_per_second=2e9)).jobs}
    assert fast["1001"].run_time == pytest.approx(5) and fast["1"].run_time == 10


def test_batsim_bundled_workloads_read() -> None:
    big = read_workload(BATSIM / "example_workload_hpc_seed1_jobs250.json")
    assert (len(big.jobs), big.max_procs) == (250, 128)
    first = next(j for j in big.jobs if j.id == "0")
    assert (first.res, first.run_time, first.walltime, first.profile) == (8, 172.94, 300, "ft.D.8")
    same = read_workload(BATSIM / "test_same_submit_time.json")
    assert [j.submit for j in same.jobs] == sorted(j.submit for j in same.jobs)
    assert [j.id for j in same.jobs[:6]] == ["10", "11", "12", "20", "22", "21"]  # stable order
    delays = read_workload(BATSIM / "test_delays.json")
    assert {j.run_time for j in delays.jobs} == {10} and delays.max_procs == 2


PROFILES = {
    "d": {"type": "DelayProfile", "delay": 3, "ret": 2},
    "p": {"type": "ParallelTaskProfile", "cpu": [4e9, 2e9], "com": [0, 1e9, 3e9, 0]},
    "h": {"type": "parallel_homogeneous", "cpu": 2e9, "com": 1e9},
    "ht": {"type": "parallel_homogeneous_total", "cpu": 8e9, "com": 12e9},
    "pfs": {"type": "ParallelTaskOnStorageHomogeneousProfile", "bytes_to_read": 3e9,
            "bytes_to_write": 1e9},
    "stage": {"type": "data_staging", "nb_bytes": 5e9, "from": "a", "to": "b"},
    "seq": {"type": "SequentialCompositionProfile", "repeat": 2, "seq": ["d", "h"]},
    "loop": {"type": "composed", "seq": ["loop"]},
    "smpi": {"type": "TraceReplayProfile", "trace_type": "SMPI", "filename": "x"},
    "what": {"type": "Whatever", "delay": 1},
    "untyped": {"delay": 1},
}


@pytest.mark.parametrize(("name", "res", "exec_time", "io"), [
    ("d", 4, 3.0, False),
    ("p", 2, 4.0 + 3.0, False),  # max cpu 4 s; host 1 sends 3e9 bytes: 3 s
    ("h", 4, 2.0 + 3.0, False),  # 2 s of cpu; 1e9 bytes to each of 3 others: 3 s
    ("ht", 4, 2.0 + 3.0, False),  # 8e9/4 flops; 12e9/(4*3) = 1e9 per pair, 3 pairs
    ("pfs", 4, 4.0, True),
    ("stage", 1, 5.0, True),
    ("seq", 4, 2 * (3.0 + 5.0), False),
])
def test_profile_rules(name: str, res: int, exec_time: float, io: bool) -> None:
    run = ProfileRuns(PROFILES, Rates(1e9, 1e9)).run(name, res)
    assert run.exec_time == pytest.approx(exec_time)
    assert run.io is io
    if name == "pfs":
        assert run.io_workload == res


@pytest.mark.parametrize(("name", "message"), [
    ("loop", "nested deeper than"),
    ("what", "profile 'what': profile type 'Whatever' is not a Batsim type Orpheus knows"),
    ("untyped", "profile 'untyped': missing 'type'"),
    ("nope", "profile 'nope': no such profile"),
])
def test_bad_profiles(name: str, message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        ProfileRuns(PROFILES, Rates()).run(name, 1)


def _batsim(jobs: object, profiles: object = None) -> str:
    return json.dumps({"nb_res": 4, "jobs": jobs,
                       "profiles": profiles if profiles is not None else PROFILES})


@pytest.mark.parametrize(("text", "message"), [
    ('{"jobs": [', "w.json:1:11: invalid JSON"),
    ("[]", "w.json: not a Batsim workload"),
    (_batsim("x"), "w.json: 'jobs' must be a list"),
    (_batsim([{"subtime": 0}]), r"w.json: jobs\[0\] has no id"),
    (_batsim([{"id": 7, "subtime": 0, "res": 1}]), "w.json: job 7: missing profile"),
    (_batsim([{"id": 7, "subtime": -1, "res": 1, "profile": "d"}]),
     "w.json: job 7: subtime must be a finite number >= 0"),
    (_batsim([{"id": 7, "subtime": 0, "res": 1, "profile": "zz"}]),
     "w.json: job 7: profile 'zz': no such profile"),
    (_batsim([{"id": 7, "subtime": 0, "res": 1, "profile": "d", "walltime": "1h"}]),
     "w.json: job 7: walltime must be a number > 0, or -1 for none, not '1h'"),
    (_batsim([{"id": 7, "subtime": 0, "res": 1, "profile": "d"}],
             {"d": {"type": "DelayProfile"}}), "job 7: profile 'd': missing 'delay'"),
    (_batsim([{"id": 7, "subtime": 0, "res": 1, "profile": "d"}],
             {"d": {"type": "delay", "delay": 1, "ret": 300}}), "ret must be an integer 0-255"),
    (_batsim([{"id": 1, "subtime": 0, "res": 1, "profile": "d"}] * 2),
     "job 1: id appears more than once"),
    (_batsim([]), "w.json: no job"),
])
def test_malformed_batsim_names_file_and_job(text: str, message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        parse_batsim(text, "w.json")


def test_batsim_ret_user_queue_and_no_walltime() -> None:
    w = parse_batsim(_batsim([{"id": "a", "subtime": 1.5, "res": 2, "profile": "d",
                               "walltime": -1,
                               "extra_data": json.dumps({"user": 12, "queue": "besteffort"})}]))
    (j,) = w.jobs
    assert (j.id, j.exit_code, j.walltime, j.user, j.queue) == ("a", 2, None, "12", "besteffort")


JOB7 = {"id": 7, "subtime": 0, "res": 2, "profile": "d"}


@pytest.mark.parametrize(("job", "profiles", "message"), [
    ({"walltime": math.inf}, None, "job 7: walltime must be a number > 0, or -1 for none, "
     "not inf"),
    ({"walltime": math.nan}, None, "job 7: walltime must be a number > 0, or -1 .*, not nan"),
    ({"walltime": 10**400}, None, "job 7: walltime must be a number > 0"),
    ({"walltime": 0}, None, "job 7: walltime must be a number > 0, or -1 for none, not 0"),
    ({"walltime": -2}, None, "job 7: walltime must be a number > 0, or -1 for none, not -2"),
    ({"walltime": True}, None, "job 7: walltime must be a number > 0"),
    ({"res": -1}, None, "job 7: res must be an integer >= 0, not -1"),
    ({"res": 2.0}, None, "job 7: res must be an integer >= 0, not 2.0"),
    ({"id": "\ud800"}, None, r"jobs\[0\]: id must be a string or an integer, not '\\ud800'"),
    ({"user": "john doe"}, None, "job 7: user must be a string or an integer of at most 24 "),
    ({"user": [1]}, None, "job 7: user must be a string or an integer"),
    ({"extra_data": {"queue": "a;b"}}, None, "job 7: queue must be a string or an integer"),
    ({"subtime": math.inf}, None, "job 7: subtime must be a finite number >= 0, not inf"),
    ({"res": 10**400}, None, "job 7: res must be an integer >= 0"),
    ({"id": None}, None, r"w.json: jobs\[0\]: id must be a string or an integer, not None"),
    ({"id": [1]}, None, r"jobs\[0\]: id must be a string or an integer, not \[1\]"),
    ({"id": True}, None, r"jobs\[0\]: id must be a string or an integer, not True"),
    ({"id": 1.5}, None, r"jobs\[0\]: id must be a string or an integer, not 1.5"),
    ({}, {"d": {"type": "parallel", "cpu": [1, 1]}}, "job 7: profile 'd': missing 'com'"),
    ({}, {"d": {"type": "msg_par_hg", "com": 1}}, "job 7: profile 'd': missing 'cpu'"),
    ({}, {"d": {"type": "parallel", "cpu": [], "com": []}}, "cpu has 0 values and com 0"),
    ({}, {"d": {"type": "data_staging", "from": "a"}}, "profile 'd': missing 'nb_bytes'"),
    ({}, {"d": {"type": "parallel_homogeneous_pfs"}}, "missing 'bytes_to_read' and 'bytes_"),
    ({}, {"d": {"type": "composed", "seq": []}}, "seq must be a non-empty list"),
    ({}, {"d": {"type": "composed", "seq": ["e"], "repeat": 10**400}, "e": PROFILES["d"]},
     "repeat must be an integer 0 to 2\\*\\*53"),
    ({}, {"d": {"type": "composed", "seq": ["big", "big"]},
          "big": {"type": "delay", "delay": 1e308}},
     r"job 7: profile 'd': its run time overflows \(inf s\)"),
])
def test_batsim_non_finite_and_missing_values_are_errors(job: dict[str, object],
                                                         profiles: object, message: str) -> None:
    with pytest.raises(WorkloadError, match=message):
        parse_batsim(_batsim([JOB7 | job], profiles), "w.json")


@pytest.mark.parametrize(("old", "new"), [
    ({"type": "msg_par", "cpu": [4e9, 2e9], "com": [0, 1e9, 3e9, 0]}, "p"),
    ({"type": "msg_par_hg", "cpu": 2e9, "com": 1e9}, "h"),
    ({"type": "msg_par_hg_tot", "cpu": 8e9, "com": 12e9}, "ht"),
    ({"type": "msg_par_hg_pfs", "bytes_to_read": 3e9, "bytes_to_write": 1e9}, "pfs"),
    ({"type": "msg_par_hg_pfs_tiers", "size": 4e9, "direction": "to_storage"}, "pfs"),
    ({"type": "ptask_on_storage_homogeneous", "bytes_to_read": 4e9}, "pfs"),
    ({"type": "ptask_homogeneous", "cpu": 8e9, "com": 12e9,
      "generation_strategy": "defined_amount_spread_uniformly"}, "ht"),
    ({"type": "ptask_data_staging_between_storages", "nb_bytes": 5e9}, "stage"),
    ({"type": "sequential_composition", "repeat": 2, "seq": ["d", "h"]}, "seq"),
    ({"type": "composed", "nb": 2, "seq": ["d", "h"]}, "seq"),  # Batsim 2 spelled repeat nb
])
def test_older_batsim_profile_names(old: dict[str, object], new: str) -> None:
    res = 2 if new == "p" else 4
    runs = ProfileRuns(PROFILES | {"old": old}, Rates())
    assert runs.run("old", res) == runs.run(new, res)


def test_parallel_profile_for_another_host_count_rejects_its_jobs() -> None:
    jobs = [{"id": i, "subtime": i, "res": res, "profile": name}
            for i, (res, name) in enumerate([(2, "p"), (3, "p"), (3, "seq_p")])]
    w = parse_batsim(_batsim(jobs, PROFILES | {"seq_p": {"type": "composed", "seq": ["d", "p"]}}))
    assert [j.skip for j in w.jobs] == [None] + [
        "profile 'p' is for 2 hosts (its cpu), the job asks 3: Batsim refuses it"] * 2
    p = plan(w, CAP, PlanOptions())
    assert [s.job.id for s in p.submissions] == ["0"]
    assert [r.reason for r in p.rejections] == [w.jobs[1].skip] * 2


def test_nested_sequences_compute_each_profile_once(monkeypatch: pytest.MonkeyPatch) -> None:
    profiles: dict[str, object] = {f"p{i}": {"type": "composed", "seq": [f"p{i + 1}"] * 10}
                                   for i in range(7)}
    profiles["p7"] = {"type": "delay", "delay": 1}
    calls: list[str] = []
    compute = ProfileRuns._run

    def counted(self: ProfileRuns, name: str, *args: object) -> ProfileRun:
        calls.append(name)
        return compute(self, name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ProfileRuns, "_run", counted)
    jobs = [{"id": i, "subtime": 0, "res": 1, "profile": "p0"} for i in range(3)]
    w = parse_batsim(_batsim(jobs, profiles))
    assert [j.run_time for j in w.jobs] == [1e7] * 3
    assert sorted(calls) == sorted(profiles)  # once each, for every job of the workload


@pytest.mark.parametrize(("profile", "skip"), [
    ({"type": "usage_trace", "trace": "u.txt"}, "profile 'x' is of type 'usage_trace'"),
    ({"type": "smpi", "trace": "t.txt"}, "profile 'x' is of type 'smpi'"),
    ({"type": "TraceReplayProfile", "trace_type": "FractionalComputation", "filename": "u"},
     "profile 'x' is of type 'TraceReplayProfile'"),
    ({"type": "composed", "seq": ["d", "m"]}, "profile 'm' is of type 'send'"),
])
def test_batsim_jobs_orpheus_cannot_replay_are_rejected_not_the_workload(
        profile: dict[str, object], skip: str) -> None:
    profiles = PROFILES | {"x": profile, "m": {"type": "send", "msg": {"a": 1}}}
    w = parse_batsim(_batsim([JOB7, JOB7 | {"id": 8, "profile": "x"}], profiles))
    assert w.jobs[0].skip is None and w.jobs[1].skip is not None
    assert w.jobs[1].skip.startswith(skip)
    (rejected,) = plan(w, CAP, PlanOptions()).rejections
    assert rejected.job.id == "8" and rejected.reason == w.jobs[1].skip


def test_batsim_res_0_is_rejected_and_res_beyond_nb_res_is_read() -> None:
    w = parse_batsim(_batsim([JOB7 | {"res": 0}, JOB7 | {"id": 8, "res": 100}]))
    assert w.max_procs == 4 and [j.res for j in w.jobs] == [0, 100]
    assert w.jobs[0].skip == "res is 0: OAR cannot run a job on no resource"
    p = plan(w, CAP, PlanOptions())
    assert [r.reason for r in p.rejections] == [w.jobs[0].skip,
                                                "requests 100 cores; the test bed has 64"]


@pytest.mark.parametrize(("text", "message"), [
    ("\ufeff" + _batsim([JOB7]), None),
    (_batsim([JOB7 | {"extra_data": "[" * 100_000}]), None),  # unreadable extra_data: ignored
    ("[" * 100_000, "w.json: invalid JSON: maximum recursion depth exceeded"),
    ('{"nb_res": ' + "9" * 5000 + "}", "w.json: invalid JSON: Exceeds the limit"),
    ('[{"id": 1}]', "w.json: not a Batsim workload"),
])
def test_batsim_bom_and_json_python_cannot_hold(text: str, message: str | None) -> None:
    if message is None:
        assert [j.id for j in parse_workload(text, "w.json").jobs] == ["7"]
    else:
        with pytest.raises(WorkloadError, match="^" + re.escape(message)):
            parse_workload(text, "w.json")


@given(st.lists(st.tuples(st.integers(0, 10**6) | st.text("ab!_-0123", min_size=1),
                          st.floats(0, 1e6), st.integers(0, 64),
                          st.none() | st.just(-1) | st.floats(0.001, 1e6),
                          st.sampled_from(["d", "h", "seq"])), min_size=1, max_size=20,
                unique_by=lambda t: str(t[0])))
def test_a_written_batsim_workload_reads_back_as_its_jobs(jobs: list[tuple]) -> None:
    raw = [{"id": i, "subtime": sub, "res": res, "profile": prof, "extra": [1]}
           | ({} if wall is None else {"walltime": wall}) for i, sub, res, wall, prof in jobs]
    w = parse_batsim(_batsim(raw))
    runs = ProfileRuns(PROFILES, Rates())
    assert [(j.id, j.submit, j.res, j.walltime, j.run_time, j.skip is None) for j in w.jobs] == [
        (str(i), sub, res, None if wall in (None, -1) else wall,
         runs.run(prof, res).exec_time, res > 0)
        for i, sub, res, wall, prof in sorted(jobs, key=lambda t: t[1])]


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)


@given(st.dictionaries(st.sampled_from(["id", "subtime", "res", "profile", "walltime", "user",
                                        "queue", "extra_data"]), _json),
       st.dictionaries(st.sampled_from(["type", "delay", "cpu", "com", "seq", "repeat", "ret",
                                        "nb_bytes", "bytes_to_read"]),
                       _json | st.sampled_from(["delay", "composed", "parallel", "p", "d"])))
def test_any_batsim_job_reads_or_is_a_workload_error(job: dict[str, object],
                                                      profile: dict[str, object]) -> None:
    try:
        parse_batsim(_batsim([JOB7 | job], {"d": profile, "p": profile}), "w.json")
    except WorkloadError as e:
        assert str(e).startswith("w.json")


# -------------------------------------------------------------------------------- plan

CAP = Capacity(resources=64, nodes=16)


def test_plan_of_gofree_scaled() -> None:
    w = read_workload(GOFREE)
    p = plan(w, Capacity(352, 22), PlanOptions(time_scale=10000))
    assert len(p.submissions) + len(p.rejections) == len(w.jobs)
    reasons = [r.reason for r in p.rejections]
    assert sum("cancelled before it started" in r for r in reasons) == 129
    assert len(reasons) == 129  # every other job fits on 352 cores
    first = p.submissions[0]
    assert (first.at, first.user, first.queue, first.walltime) == (0, "replay-u3", None, 1)
    assert first.oarsub_options() == ["-l", "core=1,walltime=0:00:01"]
    assert first.arguments == "{exec_time=0.001, exit_code=0}"
    last = p.submissions[-1]
    assert last.at == pytest.approx(554.2612)
    assert last.queue == "besteffort" and last.oarsub_options()[2:] == ["-t", "besteffort"]


def test_plan_window_rejects_misfits_and_maps_queues() -> None:
    w = parse_swf("1 100 0 50 8 -1 -1 8 100 -1 1 1 1 -1 2 -1 -1 -1\n"
                  "2 110 0 50 80 -1 -1 80 100 -1 1 1 1 -1 1 -1 -1 -1\n"
                  "3 120 0 50 2 -1 -1 2 -1 -1 0 2 1 -1 2 -1 -1 -1\n")
    p = plan(w, CAP, PlanOptions(start=1, time_scale=2, queue_map=parse_queue_map("2=long")))
    (rej,) = p.rejections
    assert rej.job.id == "2" and rej.at == 0 and rej.reason == (
        "requests 80 cores; the test bed has 64")
    (sub,) = p.submissions
    assert (sub.at, sub.walltime, sub.queue, sub.user) == (5, None, "long", "replay-u2")
    assert sub.oarsub_options() == ["-l", "core=2", "-q", "long"]
    assert sub.arguments == "{exec_time=25, exit_code=1}"
    half = plan(w, CAP, PlanOptions(size_scale=0.5, user="bob"))
    assert [s.res for s in half.submissions] == [4, 40, 1] and not half.rejections
    assert {s.user for s in half.submissions} == {"bob"}
    nodes = plan(w, CAP, PlanOptions(unit="node", limit=2))
    assert [s.request for s in nodes.submissions] == ["nodes=2"]
    assert nodes.submissions[0].res == 8
    assert nodes.rejections[0].reason.startswith("needs 20 nodes of 4 cores for 80 processors")


def test_times_beyond_oars_largest_walltime_are_rejected() -> None:
    w = Workload("t", "swf", [TraceJob("1", 0, 1, 10, 1e300), TraceJob("2", 0, 1, 1e308),
                              TraceJob("3", 0, 1, 10, MAX_SECONDS * 0.1)])
    p = plan(w, CAP, PlanOptions(time_scale=0.1))
    assert [r.reason for r in p.rejections] == [
        f"walltime 1e+301 s is beyond OAR's largest walltime ({MAX_SECONDS} s, about 68 years)",
        f"run time inf s is beyond OAR's largest walltime ({MAX_SECONDS} s, about 68 years)"]
    (sub,) = p.submissions
    assert sub.walltime == MAX_SECONDS and sub.oarsub_options()[1] == "core=1,walltime=596523:14:07"


@pytest.mark.parametrize("opts", [PlanOptions(time_scale=0), PlanOptions(size_scale=-1),
                                  PlanOptions(start=5), PlanOptions(unit="socket"),
                                  PlanOptions(min_walltime=0), PlanOptions(job_overhead=-1),
                                  PlanOptions(job_overhead=math.nan)])
def test_bad_plan_options(opts: PlanOptions) -> None:
    w = parse_swf("1 0 0 1 1 -1 -1 1 1 -1 1 1 1 -1 1 -1 -1 -1\n")
    with pytest.raises(PlanError):
        plan(w, CAP, opts)


@pytest.mark.parametrize("text", ["2", "x=default", "2=", "=a"])
def test_bad_queue_map(text: str) -> None:
    with pytest.raises(PlanError, match="NUMBER=NAME"):
        parse_queue_map(text)


@given(run=st.floats(0, 1e7), wall=st.floats(0.001, 1e7), scale=st.floats(0.01, 1e5),
       code=st.integers(0, 255))
def test_scaled_arguments_parse_back_and_walltime_covers(run: float, wall: float, scale: float,
                                                         code: int) -> None:
    w = Workload("t", "swf", [TraceJob("1", 0, 1, run, wall, exit_code=code)])
    (sub,) = plan(w, CAP, PlanOptions(time_scale=scale)).submissions
    spec = parse_command(f"sim {sub.arguments}")
    assert sub.walltime is not None and sub.walltime >= 1
    if run >= wall:  # it ran into its walltime: it must outlive it, so that OAR kills it
        assert spec.exec_time == sub.walltime + max(60, sub.walltime)
    else:
        assert spec.exec_time == pytest.approx(run / scale, abs=5e-4)
    assert spec.exit_code == code
    assert sub.walltime >= wall / scale * (1 - 1e-9)
    assert sub.walltime < max(1, wall / scale) + 1


def test_swf_jobs_that_reached_their_walltime_outlive_it_and_batsim_ones_keep_their_time(
        ) -> None:
    jobs = [TraceJob("1", 0, 1, 3600, 3600), TraceJob("2", 0, 1, 4000, 3600),
            TraceJob("3", 0, 1, 3599, 3600), TraceJob("4", 0, 1, 100, None)]
    subs = plan(Workload("t", "swf", jobs), CAP, PlanOptions()).submissions
    assert [parse_command(f"sim {s.arguments}").exec_time for s in subs] == [7200, 7200, 3599,
                                                                             100]
    subs = plan(Workload("t", "swf", jobs), CAP, PlanOptions(time_scale=3600)).submissions
    assert [parse_command(f"sim {s.arguments}").exec_time for s in subs] == pytest.approx(
        [61, 61, 3599 / 3600, 100 / 3600], abs=1e-3)
    subs = plan(Workload("t", "batsim", jobs), CAP, PlanOptions()).submissions
    assert [parse_command(f"sim {s.arguments}").exec_time for s in subs] == [3600, 4000, 3599,
                                                                             100]


def test_the_job_overhead_is_added_to_every_run_time_after_scaling() -> None:
    jobs = [TraceJob("1", 0, 1, 3600, 3600), TraceJob("2", 0, 1, 88.51, 149),
            TraceJob("3", 0, 1, 0, None)]
    subs = plan(Workload("t", "batsim", jobs), CAP, PlanOptions(job_overhead=0.47)).submissions
    assert [parse_command(f"sim {s.arguments}").exec_time for s in subs] == pytest.approx(
        [3600.47, 88.98, 0.47])
    assert [s.walltime for s in subs] == [3600, 149, None]  # walltimes stay the trace's
    subs = plan(Workload("t", "batsim", jobs), CAP,
                PlanOptions(time_scale=100, job_overhead=1)).submissions
    assert [s.exec_time for s in subs] == pytest.approx([37, 1.8851, 1])
    # an SWF job killed at its walltime outlives it as before
    (sub,) = plan(Workload("t", "swf", jobs[:1]), CAP, PlanOptions(job_overhead=5)).submissions
    assert sub.exec_time == 7200


def test_io_arguments_parse_back() -> None:
    spec = parse_command("sim " + arguments(2.5, 0, True, 4))
    assert (spec.exec_time, spec.io, spec.io_workload) == (2.5, True, 4.0)


@given(st.integers(0, 10**6))
def test_hms_round_trips(seconds: int) -> None:
    h, m, s = (int(x) for x in hms(seconds).split(":"))
    assert h * 3600 + m * 60 + s == seconds and m < 60 and s < 60


def test_size_scale_rounds_half_up_and_keeps_one() -> None:
    w = Workload("t", "swf", [TraceJob(str(i), 0, n, 1.0) for i, n in enumerate([1, 3, 5, 352])])
    p = plan(w, Capacity(64, 16), PlanOptions(size_scale=64 / 352))
    assert [s.res for s in p.submissions] == [1, 1, 1, 64]
    assert math.isclose(p.size_scale, 64 / 352)


# ------------------------------------------------------------------------------- docs

DOC = Path(__file__).resolve().parents[2] / "docs" / "replay-report.md"


def test_docs_dry_run_line_is_what_the_plan_prints(capsys: pytest.CaptureFixture[str]) -> None:
    from orpheus.replay import dry_run

    text = DOC.read_text()
    example = text.split("`--dry-run` prints the plan", 1)[1].split("```text\n", 1)[1]
    line = example.split("\n", 1)[0]
    w = read_workload(GOFREE)
    dry_run(plan(w, Capacity(64, 16), PlanOptions(start=1069, limit=32, time_scale=2000,
                                                  size_scale=64 / 352)))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == line
    assert out[-1] == "22 to submit, 10 rejected"


def test_docs_list_every_flag() -> None:
    import argparse

    from orpheus import replay, report

    text = DOC.read_text()
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    replay.register(sub)
    report.register(sub)
    for name, command in sub.choices.items():
        for action in command._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in text or f"`-o`, `{flag}" in text, (name, flag)


@pytest.mark.parametrize("argv", [["--flops-per-second", "nan"], ["--bytes-per-second", "inf"],
                                  ["--flops-per-second", "0"], ["--batch-window", "nan"]])
def test_replay_rates_and_window_must_be_finite(argv: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from orpheus import replay

    parser = argparse.ArgumentParser()
    replay.register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["replay", "w.swf", "-o", "out", *argv])
    assert f"argument {argv[0]}: invalid" in capsys.readouterr().err

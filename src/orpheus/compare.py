"""Compare schedules: a replay against a reference, and the variability of N replays.

Pure: no database and no drawing here (figures: :func:`orpheus.plots.compare_gantts`,
:func:`~orpheus.plots.wait_scatter`, :func:`~orpheus.plots.wait_cdfs`; command line:
:mod:`orpheus.compare_cli`). :func:`read_schedule` reads, told apart by content, a jobs.csv
(Batsim's or a replay report's), a real OAR's ``oarstat -J`` or ``oarstat -J --gantt``
export, or a ``.real.csv`` of data/real-oar, into :class:`metrics.JobRecord` values.
:func:`compare` matches two schedules by job id, with each side's times from its first matched
submission; :func:`variability` gives each metric's spread over N runs. docs/compare.md
defines every format, column and metric.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import statistics
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from orpheus import metrics
from orpheus.errors import OrpheusError
from orpheus.workload import TraceJob

METRICS = ("makespan", "mean_waiting_time", "max_waiting_time", "mean_turnaround_time",
           "mean_bounded_slowdown", "nb_walltime_reached")
JOB_COLUMNS = (
    "job_id", "matched", "run_state", "ref_state", "run_submission", "ref_submission",
    "run_wait", "ref_wait", "wait_difference", "wait_ratio", "run_turnaround",
    "ref_turnaround", "turnaround_difference", "turnaround_ratio",
)
SUMMARY_COLUMNS = ("metric", "reference", "runs", "mean", "std", "min", "max", "ratio",
                   "difference")
JOBS_CSV_NEEDS = ("job_id", "submission_time", "starting_time", "finish_time")
REAL_CSV_NEEDS = ("batsim_id", "oar_id", "res", "state", "submission", "start", "stop")
NOT_STARTED = ("Waiting", "Hold", "toAckReservation", "toLaunch", "Launching")
MATCH_KEYS = ("id", "oar")
# Batsim 1 and 2 name two columns after processors
JOBS_CSV_ALIASES = {"requested_number_of_processors": "requested_number_of_resources",
                    "allocated_processors": "allocated_resources"}
NOT_OVER = ("NOT_SUBMITTED", "SUBMITTED", "RUNNING")  # Batsim 3's states of unfinished jobs
MAX_NUMBER = 2.0**53  # beyond, seconds are no longer exact: refused
MAX_RESOURCES = 1_000_000  # resources per job, and the highest resource number


class CompareError(OrpheusError, ValueError):
    """An input that cannot be compared; the message names the file (and line or job)."""


@dataclass(frozen=True)
class Schedule:
    """The jobs of one run, times in seconds from its first submission."""

    path: str
    format: str  # jobs.csv, real.csv, oarstat, oarstat-gantt
    records: tuple[metrics.JobRecord, ...]
    knows_walltime: bool  # whether a walltime kill can be told (COMPLETED_WALLTIME_REACHED)
    has_resources: bool  # whether jobs name their resources (else the Gantt is first-fit)
    platform: int | None = None  # the resources the export lists (oarstat --gantt), if any


# ------------------------------------------------------------------------------ readers

def resolve(path: Path) -> Path:
    """A file as given; a directory's jobs.csv, else its report/jobs.csv (a replay's
    ``orpheus report --replay DIR -o DIR/report``)."""
    if not path.is_dir():
        return path
    for candidate in (path / "jobs.csv", path / "report" / "jobs.csv"):
        if candidate.is_file():
            return candidate
    raise CompareError(f"{path}: no jobs.csv nor report/jobs.csv in this directory (make it "
                       f"with `orpheus report --replay {path} -o {path}/report`)")


def read_schedule(path: Path) -> Schedule:
    """Read any accepted format (see the module docstring), told apart by its content;
    gzip-compressed or not."""
    path = resolve(path)
    return parse_schedule(decode(path.read_bytes(), str(path)), str(path))


def decode(data: bytes, path: str) -> str:
    """A file's text: UTF-8 with or without a BOM, gunzipped first if gzip-compressed."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise CompareError(f"{path}: a damaged gzip file ({e or 'truncated'})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CompareError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def parse_schedule(text: str, path: str) -> Schedule:
    """:func:`read_schedule` on a file's text; ``path`` names it in errors."""
    if text.lstrip().startswith("{"):
        return _parse_json(text, path)
    try:
        header = next(csv.reader(io.StringIO(text)), [])
    except csv.Error as e:
        raise CompareError(f"{path}:1: not valid CSV: {e}") from None
    columns = {c.strip() for c in header}
    if set(JOBS_CSV_NEEDS) <= columns:
        return parse_jobs_csv(text, path)
    if set(REAL_CSV_NEEDS) <= columns:
        return parse_real_csv(text, path)
    if not text.strip():
        raise CompareError(f"{path}: empty file")
    raise CompareError(
        f"{path}:1: not a schedule: a jobs.csv needs columns {', '.join(JOBS_CSV_NEEDS)}; a "
        f".real.csv {', '.join(REAL_CSV_NEEDS)}; an oarstat export is JSON (header: "
        f"{','.join(header)[:80]!r})")


def _rows(text: str, path: str, aliases: Mapping[str, str] | None = None,
          ) -> Iterable[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV text with a header, columns renamed by ``aliases`` (unless
    the header has both names); short or long rows and malformed quoting are errors."""
    reader = csv.DictReader(io.StringIO(text), skipinitialspace=True, strict=True)
    line = 1  # where the row being read begins
    try:
        names = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = [
            new if (new := (aliases or {}).get(c)) and new not in names else c for c in names]
        while (line := reader.reader.line_num + 1) and (row := next(reader, None)) is not None:
            if None in row:
                raise CompareError(f"{path}:{line}: more fields than the header has")
            if None in row.values():
                raise CompareError(f"{path}:{line}: fewer fields than the header has")
            yield line, row
    except csv.Error as e:
        raise CompareError(f"{path}:{line}: not valid CSV: {e}") from None


def _quote(text: str) -> str:
    """User text for a message: at most 40 characters, escaped."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _number(text: str, where: str) -> float | None:
    """A finite number of magnitude at most :data:`MAX_NUMBER`; None for an empty field."""
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise CompareError(f"{where}: not a number: {_quote(text)}") from None
    if not math.isfinite(value):
        raise CompareError(f"{where}: not a finite number: {_quote(text)}")
    if abs(value) > MAX_NUMBER:
        raise CompareError(f"{where}: too large: {_quote(text)} (at most {MAX_NUMBER:.0f})")
    return value


def _integer(value: Any, where: str) -> int:
    """An integer given as a JSON number or a decimal string (OAR's Perl may quote it)."""
    if isinstance(value, bool) or value is None:
        raise CompareError(f"{where}: not an integer: {value!r}")
    number = _number(value, where) if isinstance(value, str) else value
    if not isinstance(number, int | float) or (
            isinstance(number, float) and not number.is_integer()):
        raise CompareError(f"{where}: not an integer: {_quote(str(value))}")
    if abs(number) > MAX_NUMBER:
        raise CompareError(f"{where}: too large: {_quote(str(value))} (at most "
                           f"{MAX_NUMBER:.0f})")
    return int(number)


def _count(text: str, where: str) -> int | None:
    """A resource count, 0 to :data:`MAX_RESOURCES`; None for an empty field."""
    if not text.strip():
        return None
    n = _integer(text, where)
    if not 0 <= n <= MAX_RESOURCES:
        raise CompareError(f"{where}: {n} is not a resource count (0 to {MAX_RESOURCES})")
    return n


def _interval_set(text: str, where: str) -> tuple[int, ...]:
    """Batsim's interval set (``0-3 8``) as resource numbers (at most :data:`MAX_RESOURCES`)."""
    out: list[int] = []
    for part in text.split():
        lo, _, hi = part.partition("-")
        bounds = (lo, hi or lo)
        if not all(b.isascii() and b.isdigit() and len(b) <= 7 for b in bounds) or (
                int(bounds[0]) > int(bounds[1])):
            raise CompareError(f"{where}: allocated_resources: not an interval set: "
                               f"{_quote(text)}")
        first, last = map(int, bounds)
        if last > MAX_RESOURCES or len(out) + last - first >= MAX_RESOURCES:
            raise CompareError(f"{where}: allocated_resources: more than {MAX_RESOURCES} "
                               f"resources: {_quote(text)}")
        out += range(first, last + 1)
    return tuple(out)


def _unique(records: list[metrics.JobRecord], lines: list[str], path: str) -> None:
    seen: dict[str, str] = {}
    for r, line in zip(records, lines, strict=True):
        if r.job_id in seen:
            raise CompareError(f"{path}:{line}: job {r.job_id} already appears ({seen[r.job_id]})")
        seen[r.job_id] = line


def _check_times(r: metrics.JobRecord, where: str) -> metrics.JobRecord:
    """The record, if it starts no earlier than its submission and finishes no earlier than
    its start."""
    if r.starting_time is not None and r.starting_time < r.submission_time:
        raise CompareError(f"{where}: starts ({r.starting_time:g}) before its submission "
                           f"({r.submission_time:g})")
    if r.starting_time is not None and r.finish_time is not None and (
            r.finish_time < r.starting_time):
        raise CompareError(f"{where}: finishes ({r.finish_time:g}) before it starts "
                           f"({r.starting_time:g})")
    return r


def rebase(records: Iterable[metrics.JobRecord]) -> tuple[metrics.JobRecord, ...]:
    """The records with every time shifted so that the first submission is at 0."""
    records = tuple(records)
    origin = min((r.submission_time for r in records), default=0.0)
    return tuple(replace(
        r, submission_time=r.submission_time - origin,
        starting_time=None if r.starting_time is None else r.starting_time - origin,
        finish_time=None if r.finish_time is None else r.finish_time - origin)
        for r in records)


def parse_jobs_csv(text: str, path: str) -> Schedule:
    """Batsim's jobs.csv (versions 1 to 4) or a replay report's: the job_id, times, state and
    resources (:func:`jobs_csv_record`).

    A ``w0!3`` id (workload!job) becomes ``3`` when every job is of one workload. Without a
    final_state column (Batsim 1, 2) a walltime kill cannot be told.
    """
    rows = list(_rows(text, path, JOBS_CSV_ALIASES))
    if not rows:
        raise CompareError(f"{path}: no job")
    columns = set(rows[0][1])
    one_workload = len({row["job_id"].strip().rpartition("!")[0] for _, row in rows}) == 1
    records = [jobs_csv_record(row, f"{path}:{line}", columns, one_workload)
               for line, row in rows]
    _unique(records, [str(line) for line, _ in rows], path)
    return Schedule(path, "jobs.csv", rebase(records), knows_walltime="final_state" in columns,
                    has_resources=any(r.allocated for r in records))


def _batsim_state(row: Mapping[str, str], where: str, columns: set[str]) -> str | None:
    """A jobs.csv row's final state; None while the job is not over (empty, or Batsim 3's
    NOT_SUBMITTED, SUBMITTED, RUNNING). Without final_state (Batsim 1, 2), success 1 is
    COMPLETED_SUCCESSFULLY and 0 COMPLETED_KILLED (killed or failed: Batsim 1's one state)."""
    if "final_state" in columns:
        state = row["final_state"].strip()
        if state in metrics.FINAL_STATES:
            return state
        if state in ("", *NOT_OVER):
            return None
        raise CompareError(f"{where}: final_state {_quote(state)} is not one of Batsim's "
                           f"({', '.join(metrics.FINAL_STATES + NOT_OVER)})")
    if "success" not in columns:
        return None
    success = row["success"].strip()
    if success not in ("0", "1"):
        raise CompareError(f"{where}: success: not 0 or 1: {_quote(success)}")
    return metrics.SUCCESS if success == "1" else metrics.KILLED


def jobs_csv_record(row: Mapping[str, str], where: str, columns: set[str],
                    strip_workload: bool = True) -> metrics.JobRecord:
    """One jobs.csv row (``where``: file and line). REJECTED, an empty or negative (Batsim 3's
    -1) starting_time: never started. A job not over has no finish_time; one over must have
    one. requested_time -1: no walltime."""
    job_id = row["job_id"].strip()
    job_id = job_id.rpartition("!")[2] if strip_workload else job_id
    if not job_id:
        raise CompareError(f"{where}: empty job_id")
    where = f"{where}: job {job_id}"
    state = _batsim_state(row, where, columns)
    sub = _number(row["submission_time"], f"{where}: submission_time")
    if sub is None:
        raise CompareError(f"{where}: empty submission_time")
    start = _number(row["starting_time"], f"{where}: starting_time")
    finish = _number(row["finish_time"], f"{where}: finish_time")
    if state == metrics.REJECTED or start is None or start < 0:
        start = finish = None
    elif state is None and "final_state" in columns:
        finish = None  # RUNNING: Batsim 3 writes start - 1
    elif state is not None and finish is None:
        raise CompareError(f"{where}: finish_time: empty for a {state} job that started")
    walltime = _number(row.get("requested_time", ""), f"{where}: requested_time")
    return _check_times(metrics.JobRecord(
        job_id=job_id, submission_time=sub, final_state=state,
        requested_number_of_resources=_count(row.get("requested_number_of_resources", ""),
                                             f"{where}: requested_number_of_resources"),
        requested_time=None if walltime is None or walltime < 0 else walltime,
        starting_time=start, finish_time=finish,
        allocated=_interval_set(row.get("allocated_resources", ""), where)
        if start is not None else (),
        metadata=_metadata(row.get("metadata", ""))), where)


def _metadata(text: str) -> dict[str, Any]:
    """The replay report's metadata JSON (for ``oar_job_id``); {} for anything else."""
    try:
        value = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def parse_real_csv(text: str, path: str) -> Schedule:
    """A data/real-oar ``.real.csv``: OAR's dates (epoch s) of each workload job (batsim_id)."""
    records: list[metrics.JobRecord] = []
    lines: list[str] = []
    for line, row in _rows(text, path):
        batsim_id = row["batsim_id"].strip()
        if not batsim_id:
            raise CompareError(f"{path}:{line}: empty batsim_id")
        where = f"{path}:{line}: job {batsim_id}"
        values = {k: _integer(row[k], f"{where}: {k}") for k in ("oar_id", "submission")}
        values |= {k: _integer(row[k], f"{where}: {k}") if row[k].strip() else 0
                   for k in ("start", "stop")}  # empty: 0, never
        walltime = row.get("walltime", "").strip()
        job = metrics.OarJob(
            job_id=values["oar_id"], state=row["state"].strip(),
            submission_time=values["submission"], start_time=values["start"],
            stop_time=values["stop"], walltime=_integer(walltime, f"{where}: walltime")
            if walltime else None, requested=_count(row["res"], f"{where}: res"))
        records.append(_check_times(metrics.record_from_oar(
            job, 0, job_id=batsim_id, profile=row.get("profile", "").strip()), where))
        lines.append(str(line))
    _unique(records, lines, path)
    if not records:
        raise CompareError(f"{path}: no job")
    return Schedule(path, "real.csv", rebase(records), knows_walltime=False,
                    has_resources=False)


def _parse_json(text: str, path: str) -> Schedule:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise CompareError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except RecursionError:
        raise CompareError(f"{path}: invalid JSON: nested too deep") from None
    except ValueError as e:  # e.g. an integer of over 4300 digits
        raise CompareError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise CompareError(f"{path}: not an oarstat -J export (the top level is not an object)")
    if isinstance(doc.get("jobs"), list):
        raise CompareError(f"{path}: a Batsim workload (the jobs to submit), not a schedule: "
                           "compare its replay's jobs.csv, or Batsim's jobs.csv")
    if isinstance(doc.get("jobs"), dict):  # oarstat -J --gantt: {jobs, resources, ...}
        schedule = parse_oarstat(doc["jobs"], path, "oarstat-gantt", doc.get("resources"))
        listed = doc.get("resources")
        return replace(schedule, platform=len(listed) if isinstance(listed, list) and listed
                       else None)
    return parse_oarstat(doc, path, "oarstat")


# OAR 2.5's names: oarstat -J (get_job_data) first, then --gantt (parse_jobs_from_range)
OAR_KEYS = {
    "submission": ("submissionTime", "submission_time"),
    "start": ("startTime", "start_time"),
    "stop": ("stopTime", "stop_time"),
    "resources": ("assigned_resources", "resources", "resource_id"),
    "queue": ("queue", "queue_name"),
    "user": ("owner", "user", "job_user"),
}


def _field(job: Mapping[str, Any], name: str) -> Any:
    return next((job[k] for k in OAR_KEYS[name] if job.get(k) is not None), None)


def parse_oarstat(jobs: Mapping[str, Any], path: str, fmt: str,
                  resources: Any = None) -> Schedule:
    """``oarstat -J [-f]`` (job id -> job) or the ``jobs`` of ``oarstat -J --gantt``.

    Jobs keep OAR's ids. Resources are numbered as the report does when the export lists the
    resources (``--gantt``: by node, then id), else by rank of the ids used. A job not yet
    started (Waiting, ...: --gantt gives its predicted start) has no start.
    """
    if not jobs:
        raise CompareError(f"{path}: no job")
    parsed: list[metrics.OarJob] = []
    keys: dict[int, str] = {}  # OAR id -> its key in the export
    for key, job in jobs.items():
        where = f"{path}: job {key}"
        if not isinstance(job, dict) or not isinstance(job.get("state"), str):
            raise CompareError(f"{where}: not an OAR job (an object with a state): neither an "
                               "oarstat -J export nor one of --gantt")
        times = {}
        for name in ("submission", "start", "stop"):
            value = _field(job, name)
            if name == "submission" and value is None:
                raise CompareError(f"{where}: no {' or '.join(OAR_KEYS[name])}")
            times[name] = 0 if value is None else _integer(value, f"{where}: {name} time")
        state = str(job["state"])
        ids = _field(job, "resources") or []
        if not isinstance(ids, list):
            raise CompareError(f"{where}: resources must be a list, not {ids!r}")
        events = job.get("events") or []
        if not isinstance(events, list):
            raise CompareError(f"{where}: events must be a list, not {_quote(str(events))}")
        exit_code = job.get("exit_code")
        parsed.append(metrics.OarJob(
            job_id=_integer(job.get("Job_Id", job.get("job_id", key)), f"{where}: id"),
            state=state, submission_time=times["submission"],
            start_time=0 if state in NOT_STARTED else times["start"],
            stop_time=times["stop"],
            exit_code=None if exit_code in (None, "") else _integer(exit_code,
                                                                    f"{where}: exit_code"),
            walltime=None if job.get("walltime") in (None, "") else _integer(
                job["walltime"], f"{where}: walltime"),
            resources=tuple(sorted({_integer(r, f"{where}: resource") for r in ids})),
            events=tuple(str(e.get("type", "")) if isinstance(e, dict) else str(e)
                         for e in events if e),
            queue=str(_field(job, "queue") or ""), user=str(_field(job, "user") or "")))
        if (first := keys.setdefault(parsed[-1].job_id, key)) != key:
            raise CompareError(f"{where}: OAR job {parsed[-1].job_id} already appears (as "
                               f"{first})")
    index = _oar_index(resources, (r for j in parsed for r in j.resources))
    records = [_check_times(metrics.record_from_oar(j, 0, requested=len(j.resources) or None,
                                                    index=index), f"{path}: job {j.job_id}")
               for j in sorted(parsed, key=lambda j: j.job_id)]
    return Schedule(path, fmt, rebase(records),
                    knows_walltime=any("events" in j for j in jobs.values()),
                    has_resources=any(j.resources for j in parsed))


def _oar_index(resources: Any, used: Iterable[int]) -> dict[int, int]:
    """Batsim numbers of OAR resource ids (see :func:`metrics.resource_index`)."""
    known: list[tuple[int, str]] = []
    if isinstance(resources, list):
        for r in resources:
            if isinstance(r, dict) and "resource_id" in r:
                try:
                    known.append((int(r["resource_id"]), str(r.get("network_address", ""))))
                except (TypeError, ValueError):
                    continue
    return metrics.resource_index(known, used)


# ----------------------------------------------------------------------------- matching

def job_key(record: metrics.JobRecord, match: str) -> str | None:
    """The id two runs' jobs are matched on: the job id, or OAR's job id (``oar``)."""
    if match == "id":
        return record.job_id
    oar_id = record.metadata.get("oar_job_id")
    return None if oar_id is None else str(oar_id)


@dataclass(frozen=True)
class Comparison:
    """Two schedules' matched jobs (each side rebased to its first matched submission)."""

    run: Schedule
    reference: Schedule
    pairs: tuple[tuple[metrics.JobRecord, metrics.JobRecord], ...]  # (run, reference)
    only_run: tuple[metrics.JobRecord, ...]
    only_reference: tuple[metrics.JobRecord, ...]

    def side(self, which: str) -> tuple[metrics.JobRecord, ...]:
        return tuple(p[0 if which == "run" else 1] for p in self.pairs)


def compare(run: Schedule, reference: Schedule, match: str = "id") -> Comparison:
    """Match the jobs of ``run`` and ``reference`` by :func:`job_key`, in reference order."""
    if match not in MATCH_KEYS:
        raise CompareError(f"match on {match!r}: give one of {', '.join(MATCH_KEYS)}")
    ours = {k: r for r in run.records if (k := job_key(r, match)) is not None}
    theirs = {k: r for r in reference.records if (k := job_key(r, match)) is not None}
    keys = [k for k in theirs if k in ours]
    if not keys:
        raise CompareError(
            f"no job of {run.path} matches one of {reference.path} by {match} (e.g. "
            f"{next(iter(ours), '-')!r} vs {next(iter(theirs), '-')!r})")
    runs, refs = rebase(ours[k] for k in keys), rebase(theirs[k] for k in keys)
    return Comparison(
        run, reference, tuple(zip(runs, refs, strict=True)),
        tuple(r for r in run.records if job_key(r, match) not in theirs),
        tuple(r for r in reference.records if job_key(r, match) not in ours))


def side_metrics(records: Sequence[metrics.JobRecord], knows_walltime: bool,
                 tau: float = metrics.DEFAULT_TAU) -> dict[str, float | None]:
    """:data:`METRICS` of some records, as :func:`metrics.summary` defines them; the
    makespan is None when no job finished, the walltime-reached count when the format cannot
    tell it."""
    s = metrics.summary(records, 0, tau)
    out = {k: s[k] for k in METRICS if k in s}
    if all(r.finish_time is None for r in records):
        out["makespan"] = None
    out["nb_walltime_reached"] = (s["nb_jobs_per_final_state"][metrics.WALLTIME]
                                  if knows_walltime else None)
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b; None when either is unknown or b is 0."""
    return None if a is None or b is None or b == 0 else a / b


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def summary(c: Comparison, tau: float = metrics.DEFAULT_TAU) -> dict[str, Any]:
    """One run against the reference: job counts and, per metric, run, reference, ratio
    (run / reference) and difference (run - reference), over the matched jobs."""
    mine = side_metrics(c.side("run"), c.run.knows_walltime, tau)
    ref = side_metrics(c.side("reference"), c.reference.knows_walltime, tau)
    return {
        "path": c.run.path, "format": c.run.format,
        "jobs": {"matched": len(c.pairs), "only_in_run": len(c.only_run),
                 "only_in_reference": len(c.only_reference),
                 "only_in_run_ids": [r.job_id for r in c.only_run],
                 "only_in_reference_ids": [r.job_id for r in c.only_reference]},
        "metrics": {k: {"run": mine[k], "reference": ref[k], "ratio": ratio(mine[k], ref[k]),
                        "difference": difference(mine[k], ref[k])} for k in METRICS},
    }


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else f"{x:.6g}"


def job_rows(c: Comparison) -> list[dict[str, str]]:
    """Per-job CSV rows: matched jobs, then those only in the run, then only in the reference.
    Differences are run - reference, ratios run / reference (empty when the reference's is 0)."""
    def side(prefix: str, r: metrics.JobRecord | None) -> dict[str, str]:
        return {f"{prefix}_state": (r.final_state or "") if r else "",
                f"{prefix}_submission": _fmt(r.submission_time) if r else "",
                f"{prefix}_wait": _fmt(r.waiting_time) if r else "",
                f"{prefix}_turnaround": _fmt(r.turnaround_time) if r else ""}

    rows = []
    for run, ref in c.pairs:
        rows.append({"job_id": ref.job_id, "matched": "both", **side("run", run),
                     **side("ref", ref),
                     "wait_difference": _fmt(difference(run.waiting_time, ref.waiting_time)),
                     "wait_ratio": _fmt(ratio(run.waiting_time, ref.waiting_time)),
                     "turnaround_difference": _fmt(difference(run.turnaround_time,
                                                              ref.turnaround_time)),
                     "turnaround_ratio": _fmt(ratio(run.turnaround_time,
                                                    ref.turnaround_time))})
    for r in c.only_run:
        rows.append({"job_id": r.job_id, "matched": "run", **side("run", r), **side("ref", None)})
    for r in c.only_reference:
        rows.append({"job_id": r.job_id, "matched": "reference", **side("run", None),
                     **side("ref", r)})
    return [{k: row.get(k, "") for k in JOB_COLUMNS} for row in rows]


# -------------------------------------------------------------------------- variability

def describe(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Count, mean, sample standard deviation (None below 2 values), min and max of the
    known values."""
    xs = [v for v in values if v is not None]
    if not xs:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": len(xs), "mean": statistics.fmean(xs),
            "std": statistics.stdev(xs) if len(xs) > 1 else None, "min": min(xs),
            "max": max(xs)}


def variability(summaries: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per metric over the runs' :func:`summary`: the reference's value, the runs' spread
    (:func:`describe`), ratio (mean / reference) and difference (mean - reference)."""
    out = {}
    for k in METRICS:
        ref = summaries[0]["metrics"][k]["reference"] if summaries else None
        d = describe([s["metrics"][k]["run"] for s in summaries])
        out[k] = {"reference": ref, **d, "ratio": ratio(d["mean"], ref),
                  "difference": difference(d["mean"], ref)}
    return out


def summary_rows(spread: Mapping[str, Mapping[str, Any]]) -> list[dict[str, str]]:
    """summary.csv rows from :func:`variability`."""
    return [{"metric": k, "reference": _fmt(v["reference"]), "runs": str(v["n"]),
             "mean": _fmt(v["mean"]), "std": _fmt(v["std"]), "min": _fmt(v["min"]),
             "max": _fmt(v["max"]), "ratio": _fmt(v["ratio"]),
             "difference": _fmt(v["difference"])} for k, v in spread.items()]


# ------------------------------------------------------------ what a reference ran, and on what

def busiest(records: Iterable[metrics.JobRecord]) -> int:
    """The most resources in use at once (requested counts over [start, finish); an end and
    a start at the same instant do not overlap): a lower bound of the run's platform."""
    events: list[tuple[float, int]] = []
    for r in records:
        if r.starting_time is not None and r.finish_time is not None:
            n = r.requested_number_of_resources or len(r.allocated) or 1
            events += [(r.starting_time, n), (r.finish_time, -n)]
    busy = most = 0
    for _, n in sorted(events):
        busy += n
        most = max(most, busy)
    return most


def platform_size(schedule: Schedule) -> int:
    """The resources the run had: those its export lists, else the most it used at once
    (the platform itself in a run whose jobs queued)."""
    return schedule.platform or busiest(schedule.records)


def _agreeing(jobs: Iterable[TraceJob],
              schedule: Schedule) -> list[tuple[TraceJob, metrics.JobRecord | None]]:
    """Each job, with the schedule's job of the same id if that one ran it as asked (same
    resource count, same walltime when both say one)."""
    ran = {r.job_id: r for r in schedule.records}
    return [(j, r if (r := ran.get(j.id)) is not None
             and r.requested_number_of_resources == j.res
             and (r.requested_time is None or j.walltime is None
                  or round(r.requested_time) == round(j.walltime)) else None) for j in jobs]


def agreement(jobs: Iterable[TraceJob], schedule: Schedule) -> float:
    """The share of a workload's jobs that the schedule's job of the same id ran as asked:
    1.0 for a run of that workload."""
    pairs = _agreeing(jobs, schedule)
    return sum(1 for _, r in pairs if r is not None) / len(pairs) if pairs else 0.0


def job_overhead(jobs: Iterable[TraceJob], schedule: Schedule) -> float:
    """How much longer than its run time a job of the workload ran in the schedule: the
    median over the jobs it ran as asked (execution time minus run time), at least 0; what
    the real runner added around each command (ssh, oarexec, the end's report)."""
    extra = [r.execution_time - j.run_time for j, r in _agreeing(jobs, schedule)
             if r is not None and r.execution_time is not None and j.run_time is not None]
    return round(max(0.0, statistics.median(extra)), 3) if extra else 0.0


def as_run(schedule: Schedule) -> dict[str, Any]:
    """A Batsim workload of the jobs a schedule ran, as they ran: each submitted at its
    submission time, asking its resource count and walltime, and running its execution time
    (a delay profile). Jobs that never ran are left out."""
    jobs, profiles = [], {}
    for r in sorted(schedule.records, key=lambda r: (r.submission_time, r.job_id)):
        if r.execution_time is None:
            continue
        name = f"as_run_{r.execution_time:g}"
        profiles[name] = {"type": "delay", "delay": r.execution_time}
        job = {"id": r.job_id, "subtime": r.submission_time, "profile": name,
               "res": max(1, r.requested_number_of_resources or len(r.allocated) or 1)}
        if r.requested_time is not None:
            job["walltime"] = r.requested_time
        jobs.append(job)
    return {"description": f"the jobs of {schedule.path} as they ran", "nb_res":
            platform_size(schedule), "jobs": jobs, "profiles": profiles}


# --------------------------------------------------------------------------- Gantt data

def first_fit(records: Iterable[metrics.JobRecord]) -> list[metrics.JobRecord]:
    """The records with resources made up for drawing: in start order, each started job
    takes the lowest-numbered resources free at its start (its requested count, at least 1)."""
    free_at: list[float] = []  # per resource: when it is free again
    out = []
    started = sorted((r for r in records if r.starting_time is not None),
                     key=lambda r: (r.starting_time, r.job_id))
    for r in started:
        start = r.starting_time or 0.0
        end = r.finish_time if r.finish_time is not None else math.inf
        need = max(1, r.requested_number_of_resources or 1)
        chosen = [i for i, t in enumerate(free_at) if t <= start][:need]
        chosen += range(len(free_at), len(free_at) + need - len(chosen))
        free_at += [0.0] * (max(chosen) + 1 - len(free_at))
        for i in chosen:
            free_at[i] = end
        out.append(replace(r, allocated=tuple(chosen)))
    return out


def gantt_records(schedule: Schedule,
                  records: Sequence[metrics.JobRecord]) -> list[metrics.JobRecord]:
    """The records to draw: as they are, or :func:`first_fit` when the format has no
    resource ids."""
    return list(records) if schedule.has_resources else first_fit(records)

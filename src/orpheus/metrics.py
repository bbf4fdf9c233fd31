"""Schedule metrics over plain job records: Batsim's jobs.csv and schedule.json, and plot data.

Pure: no database here. ``report.py`` reads OAR's tables into :class:`OarJob` values;
:func:`record_from_oar` turns each into a :class:`JobRecord` (times in seconds from the first
submission, resources 0-based as in Batsim); the other functions compute from records only.
docs/replay-report.md defines every column and metric.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ClusterShell.RangeSet import RangeSet

SUCCESS = "COMPLETED_SUCCESSFULLY"
FAILED = "COMPLETED_FAILED"
WALLTIME = "COMPLETED_WALLTIME_REACHED"
KILLED = "COMPLETED_KILLED"
REJECTED = "REJECTED"
FINAL_STATES = (SUCCESS, FAILED, WALLTIME, KILLED, REJECTED)
KILL_EVENTS = ("BESTEFFORT_KILL", "FRAG_JOB_REQUEST")
DEFAULT_TAU = 10.0

JOBS_CSV_COLUMNS = (
    "job_id", "workload_name", "profile", "submission_time", "requested_number_of_resources",
    "requested_time", "success", "final_state", "starting_time", "execution_time",
    "finish_time", "waiting_time", "turnaround_time", "stretch", "allocated_resources",
    "consumed_energy", "metadata",
)


@dataclass(frozen=True)
class OarJob:
    """What OAR's database says of one job (epoch seconds, OAR resource ids)."""

    job_id: int
    state: str
    submission_time: int
    start_time: int  # when it began Running (job_state_logs), else OAR's start_time; 0: never
    stop_time: int  # 0 when not stopped
    exit_code: int | None = None  # the wait status OAR stores
    walltime: int | None = None
    requested: int | None = None  # resources asked (from the request), None if unknown
    resources: tuple[int, ...] = ()  # assigned resource ids
    events: tuple[str, ...] = ()  # event_logs types
    queue: str = ""
    user: str = ""
    command: str = ""


@dataclass(frozen=True)
class JobRecord:
    """One line of jobs.csv; times in seconds from the origin (the first submission)."""

    job_id: str
    submission_time: float
    final_state: str | None  # None while the job is not over
    requested_number_of_resources: int | None = None
    requested_time: float | None = None
    starting_time: float | None = None
    finish_time: float | None = None
    allocated: tuple[int, ...] = ()  # 0-based resource indexes
    workload_name: str = ""
    profile: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    trace_wait: float | None = None  # the wait the trace recorded (already time-scaled)

    @property
    def execution_time(self) -> float | None:
        if self.starting_time is None or self.finish_time is None:
            return None
        return self.finish_time - self.starting_time

    @property
    def waiting_time(self) -> float | None:
        return None if self.starting_time is None else self.starting_time - self.submission_time

    @property
    def turnaround_time(self) -> float | None:
        return None if self.finish_time is None else self.finish_time - self.submission_time

    @property
    def stretch(self) -> float | None:
        """turnaround / execution; None when the execution lasted 0 s (OAR counts seconds)."""
        ex, ta = self.execution_time, self.turnaround_time
        return None if not ex or ta is None else ta / ex

    def bounded_slowdown(self, tau: float = DEFAULT_TAU) -> float | None:
        """max(1, turnaround / max(execution, tau))."""
        ex, ta = self.execution_time, self.turnaround_time
        return None if ex is None or ta is None else max(1.0, ta / max(ex, tau))

    @property
    def success(self) -> bool:
        return self.final_state == SUCCESS


def final_state(state: str, exit_code: int | None, events: Iterable[str],
                started: bool) -> str | None:
    """Batsim's final state of an OAR job; None while it is not Terminated or Error.

    Terminated: exit code 0 -> COMPLETED_SUCCESSFULLY, else COMPLETED_FAILED. Error: event
    WALLTIME -> COMPLETED_WALLTIME_REACHED; BESTEFFORT_KILL or FRAG_JOB_REQUEST (oardel) ->
    COMPLETED_KILLED if it had started, REJECTED if not; any other error -> COMPLETED_FAILED
    if it had started, REJECTED if not.
    """
    if state == "Terminated":
        return SUCCESS if not exit_code else FAILED
    if state != "Error":
        return None
    kinds = set(events)
    if "WALLTIME" in kinds:
        return WALLTIME
    if not started:
        return REJECTED
    return KILLED if kinds & set(KILL_EVENTS) else FAILED


def interval_set(ids: Iterable[int]) -> str:
    """Batsim's interval-set text: ``0-3 8`` (closed ranges separated by spaces)."""
    values = sorted(set(ids))
    return str(RangeSet.fromlist([str(i) for i in values])).replace(",", " ") if values else ""


def _natural(name: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p)


def order_resources(resources: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    """(resource_id, node) pairs in Batsim order: nodes in natural order (node2 < node10),
    then resource_id within a node."""
    return sorted(resources, key=lambda r: (_natural(r[1]), r[0]))


def resource_index(resources: Iterable[tuple[int, str]],
                   used: Iterable[int] = ()) -> dict[int, int]:
    """Batsim's 0-based resource numbers: the rank of each OAR resource in
    :func:`order_resources`; ids no longer in the test bed (used by old jobs) come after."""
    known = [rid for rid, _ in order_resources(resources)]
    extra = sorted(set(used) - set(known))
    return {rid: i for i, rid in enumerate(known + extra)}


def record_from_oar(job: OarJob, origin: float, *, job_id: str | None = None,
                    workload_name: str = "", profile: str = "", trace_wait: float | None = None,
                    requested: int | None = None, extra: Mapping[str, Any] | None = None,
                    index: Mapping[int, int] | None = None) -> JobRecord:
    """The jobs.csv record of an OAR job; resources numbered by ``index`` (see
    :func:`resource_index`; without it, resource_id - 1)."""
    started = job.start_time > 0
    state = final_state(job.state, job.exit_code, job.events, started)
    finished = state is not None and started
    meta: dict[str, Any] = {"oar_job_id": job.job_id, "oar_state": job.state}
    if job.exit_code is not None and state is not None:
        meta["exit_code"] = job.exit_code
    if job.events:
        meta["events"] = sorted(set(job.events))
    for key in ("queue", "user"):
        if getattr(job, key):
            meta[key] = getattr(job, key)
    meta.update(extra or {})
    return JobRecord(
        job_id=job_id if job_id is not None else str(job.job_id),
        submission_time=job.submission_time - origin, final_state=state,
        requested_number_of_resources=requested if requested is not None else job.requested,
        requested_time=job.walltime,
        starting_time=job.start_time - origin if started else None,
        finish_time=max(job.stop_time, job.start_time) - origin if finished else None,
        allocated=tuple(index[r] if index else r - 1 for r in job.resources) if started else (),
        workload_name=workload_name, profile=profile or job.command, metadata=meta,
        trace_wait=trace_wait,
    )


PER_RESOURCE_TYPES = ("resource_id", "core", "cpuset")


def requested_resources(groups: Iterable[Sequence[tuple[str, int]]],
                        per_unit: Mapping[str, float]) -> int | None:
    """Resources an OAR request asks: per group, the product of its levels' values times the
    resources per unit of its innermost level (1 for resource_id/core/cpuset, else
    ``per_unit[type]``); summed over groups. None when a value is ALL (-1) or a unit unknown.
    """
    total = 0
    for levels in groups:
        if not levels:
            continue
        count = 1.0
        for _, value in levels:
            if value < 1:
                return None
            count *= value
        inner = levels[-1][0]
        if inner not in PER_RESOURCE_TYPES:
            if inner not in per_unit:
                return None
            count *= per_unit[inner]
        total += round(count)
    return total or None


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else f"{x:.6g}"


def jobs_csv_row(r: JobRecord) -> dict[str, str]:
    """Batsim's jobs.csv columns; empty where a value does not apply (rejected, unfinished)."""
    return {
        "job_id": r.job_id, "workload_name": r.workload_name, "profile": r.profile,
        "submission_time": _fmt(r.submission_time),
        "requested_number_of_resources": _fmt(r.requested_number_of_resources),
        "requested_time": _fmt(r.requested_time), "success": "1" if r.success else "0",
        "final_state": r.final_state or "", "starting_time": _fmt(r.starting_time),
        "execution_time": _fmt(r.execution_time), "finish_time": _fmt(r.finish_time),
        "waiting_time": _fmt(r.waiting_time), "turnaround_time": _fmt(r.turnaround_time),
        "stretch": _fmt(r.stretch), "allocated_resources": interval_set(r.allocated),
        "consumed_energy": "-1",
        "metadata": json.dumps(dict(r.metadata), sort_keys=True, separators=(",", ":")),
    }


def _mean(xs: Sequence[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def summary(records: Sequence[JobRecord], nb_resources: int,
            tau: float = DEFAULT_TAU) -> dict[str, Any]:
    """schedule.json: Batsim's aggregate fields plus bounded slowdown and utilisation."""
    done = [r for r in records if r.finish_time is not None]
    waits = [w for r in records if (w := r.waiting_time) is not None]
    turns = [r.turnaround_time for r in done if r.turnaround_time is not None]
    slows = [s for r in done if (s := r.stretch) is not None]
    bslows = [b for r in done if (b := r.bounded_slowdown(tau)) is not None]
    states = Counter(r.final_state for r in records if r.final_state)
    makespan = max((r.finish_time for r in done if r.finish_time is not None), default=0.0)
    computing = sum((r.execution_time or 0.0) * len(r.allocated) for r in done)
    capacity = nb_resources * makespan
    out: dict[str, Any] = {
        "nb_jobs": len(records),
        "nb_jobs_finished": sum(states.values()),
        "nb_jobs_success": states[SUCCESS],
        "nb_jobs_killed": states[WALLTIME] + states[KILLED],
        "nb_jobs_rejected": states[REJECTED],
        "nb_jobs_not_finished": len(records) - sum(states.values()),
        "nb_jobs_per_final_state": {s: states[s] for s in FINAL_STATES},
        "success_rate": states[SUCCESS] / len(records) if records else None,
        "makespan": makespan,
        "mean_waiting_time": _mean(waits), "max_waiting_time": max(waits, default=None),
        "mean_turnaround_time": _mean(turns), "max_turnaround_time": max(turns, default=None),
        "mean_slowdown": _mean(slows), "max_slowdown": max(slows, default=None),
        "mean_bounded_slowdown": _mean(bslows),
        "max_bounded_slowdown": max(bslows, default=None),
        "bounded_slowdown_tau": tau,
        "nb_computing_machines": nb_resources,
        "time_computing": computing,
        "time_idle": max(0.0, capacity - computing),
        "utilisation": computing / capacity if capacity else None,
    }
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class Box:
    """A job on a run of consecutive resources, for the Gantt chart: [start, end) x [lo, hi]."""

    job_id: str
    lo: int
    hi: int
    start: float
    end: float
    state: str | None


def gantt_boxes(records: Iterable[JobRecord], now: float | None = None) -> list[Box]:
    """One box per job and run of consecutive resources; running jobs end at ``now``."""
    boxes: list[Box] = []
    for r in records:
        if r.starting_time is None or not r.allocated:
            continue
        end = r.finish_time if r.finish_time is not None else now
        if end is None:
            continue
        ids = sorted(set(r.allocated))
        lo = prev = ids[0]
        for i in [*ids[1:], None]:
            if i is not None and i == prev + 1:
                prev = i
                continue
            boxes.append(Box(r.job_id, lo, prev, r.starting_time, end, r.final_state))
            if i is not None:
                lo = prev = i
    return boxes


def overlaps(boxes: Iterable[Box]) -> list[tuple[int, str, str]]:
    """(resource, job, job) for every two jobs that use one resource at the same time."""
    per_res: dict[int, list[Box]] = {}
    for b in boxes:
        for res in range(b.lo, b.hi + 1):
            per_res.setdefault(res, []).append(b)
    found = []
    for res, bs in sorted(per_res.items()):
        bs.sort(key=lambda b: (b.start, b.end))
        latest: Box | None = None
        for b in bs:
            if latest is not None and b.start < latest.end and b.end > b.start:
                found.append((res, latest.job_id, b.job_id))
            if latest is None or b.end > latest.end:
                latest = b
    return found


def utilisation_series(records: Iterable[JobRecord],
                       now: float | None = None) -> list[tuple[float, int]]:
    """Step function (time, busy resources from that time on), starting at (0, 0)."""
    delta: Counter[float] = Counter()
    for r in records:
        end = r.finish_time if r.finish_time is not None else now
        if r.starting_time is None or end is None or not r.allocated:
            continue
        delta[r.starting_time] += len(set(r.allocated))
        delta[end] -= len(set(r.allocated))
    series = [(0.0, 0)]
    busy = 0
    for t in sorted(t for t, d in delta.items() if d):
        busy += delta[t]
        if t == series[-1][0]:
            series[-1] = (t, busy)
        else:
            series.append((t, busy))
    return series


def wait_comparison(records: Iterable[JobRecord]) -> list[dict[str, str]]:
    """waits.csv rows: each started job's wait in OAR next to the wait its trace recorded."""
    rows = []
    for r in records:
        if r.trace_wait is None or r.waiting_time is None:
            continue
        rows.append({"job_id": r.job_id, "trace_wait": _fmt(r.trace_wait),
                     "oar_wait": _fmt(r.waiting_time),
                     "difference": _fmt(r.waiting_time - r.trace_wait)})
    return rows


def percentiles(values: Iterable[float]) -> dict[str, float | None]:
    """Count, median, p99 (nearest rank) and max of the values (None each when empty)."""
    xs = sorted(values)
    if not xs:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {"n": len(xs), "p50": statistics.median(xs),
            "p99": xs[max(0, math.ceil(0.99 * len(xs)) - 1)], "max": xs[-1]}

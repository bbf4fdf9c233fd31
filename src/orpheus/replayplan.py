"""What ``orpheus replay`` submits: trace jobs -> timed oarsub requests, or rejections.

Pure: given a :class:`~orpheus.workload.Workload`, the test bed's size and the options, decide
for every job of the window either a :class:`Submission` (when, as whom, ``-l`` resources and
walltime, queue, job arguments) or a :class:`Rejection` with its reason. docs/replay-report.md
states every rule; the main ones:

- times are divided by ``time_scale`` and counted from the first job of the window;
- resources are multiplied by ``size_scale`` (rounded half up, at least 1) and asked as
  ``core=N`` or, with ``unit="node"``, as ``nodes=ceil(N / cores per node)``;
- the walltime is ``ceil(walltime / time_scale)`` seconds, at least ``min_walltime``
  (OAR counts walltimes in whole seconds);
- a job whose scaled submission offset, run time or walltime exceeds ``MAX_SECONDS`` (OAR
  stores walltimes as a 32-bit integer) is rejected;
- the arguments are ``{exec_time=<run time / time_scale + job_overhead>, exit_code=<trace's>}``
  plus ``io=1, io_workload=<w>`` for I/O profiles (``job_overhead``, 0 by default: what a real
  runner adds around a command, for traces whose run times leave it out).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from orpheus.errors import OrpheusError
from orpheus.workload import TraceJob, Workload

USER_PREFIX = "replay-u"
BESTEFFORT = "besteffort"
DEFAULT_QUEUE = "default"
UNITS = ("core", "node")
MAX_SECONDS = 2**31 - 1
"""The largest walltime OAR stores (``moldable_walltime`` is a 32-bit integer): ~68 years."""
WALLTIME_MARGIN = 60  # s: an SWF job killed at its walltime runs at least this long beyond it


class PlanError(OrpheusError, ValueError):
    """Options that cannot make a replay (the message says which)."""


@dataclass(frozen=True)
class Capacity:
    """The test bed: how many resources (cores), on how many nodes."""

    resources: int
    nodes: int

    @property
    def per_node(self) -> int:
        return max(1, self.resources // max(1, self.nodes))


@dataclass(frozen=True)
class PlanOptions:
    time_scale: float = 1.0
    size_scale: float = 1.0
    start: int = 0  # index of the first job of the window, in submission order
    limit: int | None = None  # number of jobs of the window (None: to the end)
    user: str | None = None  # submit every job as this user
    default_user: str = "alice"  # jobs whose trace has no user id
    user_prefix: str = USER_PREFIX  # trace user N -> <prefix>N
    queue_map: Mapping[int, str] = field(default_factory=dict)  # overrides the SWF header
    unit: str = "core"
    min_walltime: int = 1
    job_overhead: float = 0.0  # seconds added to every job's run time (after scaling)

    def check(self) -> None:
        for name in ("time_scale", "size_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise PlanError(f"--{name.replace('_', '-')} must be a number > 0, not {value}")
        if self.start < 0 or (self.limit is not None and self.limit < 0):
            raise PlanError("--start and --limit must be >= 0")
        if self.unit not in UNITS:
            raise PlanError(f"--unit must be one of {', '.join(UNITS)}, not {self.unit!r}")
        if not (math.isfinite(self.job_overhead) and self.job_overhead >= 0):
            raise PlanError(f"--job-overhead must be a number >= 0, not {self.job_overhead}")
        if self.min_walltime < 1:
            raise PlanError("--min-walltime must be >= 1 (OAR walltimes are whole seconds)")


@dataclass(frozen=True)
class Submission:
    """One job to submit with oarsub."""

    job: TraceJob
    at: float  # seconds after the replay's start
    user: str
    queue: str | None  # None: OAR's default queue
    res: int  # resources (cores) asked on the test bed
    request: str  # the -l value's resource part: "core=4" or "nodes=2"
    walltime: int | None  # seconds
    exec_time: float
    arguments: str  # the Lua table after "sim"

    def oarsub_options(self) -> list[str]:
        """oarsub's options, without the command."""
        spec = self.request if self.walltime is None else (
            f"{self.request},walltime={hms(self.walltime)}")
        opts = ["-l", spec]
        if self.queue == BESTEFFORT:
            opts += ["-t", BESTEFFORT]
        elif self.queue is not None:
            opts += ["-q", self.queue]
        return opts

    @property
    def request_key(self) -> tuple[str, tuple[str, ...]]:
        """Jobs with equal keys can go in one ``oarsub --array-param-file``."""
        return (self.user, tuple(self.oarsub_options()))


@dataclass(frozen=True)
class Rejection:
    job: TraceJob
    at: float
    reason: str
    res: int = 0  # resources it would have asked on the test bed (0: unknown)


@dataclass(frozen=True)
class Plan:
    submissions: list[Submission]
    rejections: list[Rejection]
    size_scale: float


def hms(seconds: int) -> str:
    """OAR's walltime syntax, H:MM:SS."""
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def number(x: float) -> str:
    """A Lua number with at most millisecond precision and no trailing zeros."""
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def arguments(exec_time: float, exit_code: int, io: bool, io_workload: float) -> str:
    parts = [f"exec_time={number(exec_time)}", f"exit_code={exit_code}"]
    if io:
        parts += ["io=1", f"io_workload={number(io_workload)}"]
    return "{" + ", ".join(parts) + "}"


def queue_name(job: TraceJob, workload: Workload, queue_map: Mapping[int, str]) -> str | None:
    """The OAR queue of a job; None for the default queue."""
    q = job.queue
    name = (queue_map.get(q) or workload.queues.get(q)) if isinstance(q, int) else q
    return None if name in (None, "", DEFAULT_QUEUE) else name


def user_name(job: TraceJob, opts: PlanOptions) -> str:
    if opts.user:
        return opts.user
    return f"{opts.user_prefix}{job.user}" if job.user is not None else opts.default_user


def scaled_res(res: int, size_scale: float) -> int:
    return max(1, math.floor(res * size_scale + 0.5))


def plan(workload: Workload, capacity: Capacity, opts: PlanOptions) -> Plan:
    """Every job of the window, as a Submission or a Rejection, in submission order."""
    opts.check()
    end = None if opts.limit is None else opts.start + opts.limit
    window = workload.jobs[opts.start:end]
    if not window:
        raise PlanError(f"the window --start {opts.start} --limit {opts.limit} holds no job "
                        f"({len(workload.jobs)} in {workload.name})")
    origin = window[0].submit
    subs: list[Submission] = []
    rejects: list[Rejection] = []
    for job in window:
        at = (job.submit - origin) / opts.time_scale
        reason = job.skip or _misfit(job, capacity, opts) or _too_long(job, at, opts)
        if reason:
            res = scaled_res(job.res, opts.size_scale) if job.res > 0 else 0
            rejects.append(Rejection(job, at, reason, res))
            continue
        assert job.run_time is not None  # a job without run time has a skip reason
        res = scaled_res(job.res, opts.size_scale)
        if opts.unit == "node":
            nodes = math.ceil(res / capacity.per_node)
            res, request = nodes * capacity.per_node, f"nodes={nodes}"
        else:
            request = f"core={res}"
        walltime = None if job.walltime is None else max(
            opts.min_walltime, math.ceil(job.walltime / opts.time_scale - 1e-9))
        exec_time = job.run_time / opts.time_scale + opts.job_overhead
        if workload.format == "swf" and walltime is not None and job.walltime is not None \
                and job.run_time >= job.walltime:
            # it ran into its walltime (the batch system killed it): it runs beyond its walltime
            # here too, so that OAR kills it there, whatever the pace of sarko's checks
            exec_time = walltime + max(WALLTIME_MARGIN, walltime)
        subs.append(Submission(
            job=job, at=at, user=user_name(job, opts),
            queue=queue_name(job, workload, opts.queue_map), res=res, request=request,
            walltime=walltime, exec_time=exec_time,
            arguments=arguments(exec_time, job.exit_code, job.io, job.io_workload),
        ))
    return Plan(subs, rejects, opts.size_scale)


def _misfit(job: TraceJob, capacity: Capacity, opts: PlanOptions) -> str | None:
    """Why the job cannot fit on the test bed, if it cannot."""
    res = scaled_res(job.res, opts.size_scale)
    scale = "" if opts.size_scale == 1 else f" (trace: {job.res} x size scale {opts.size_scale:g})"
    if opts.unit == "node":
        nodes = math.ceil(res / capacity.per_node)
        if nodes > capacity.nodes:
            return (f"needs {nodes} nodes of {capacity.per_node} cores for {res} processors"
                    f"{scale}; the test bed has {capacity.nodes} nodes")
    elif res > capacity.resources:
        return f"requests {res} cores{scale}; the test bed has {capacity.resources}"
    return None


def _too_long(job: TraceJob, at: float, opts: PlanOptions) -> str | None:
    """Why the job's scaled times are beyond what OAR stores, if they are."""
    scaled = {"submission offset": at, "run time": (job.run_time or 0) / opts.time_scale,
              "walltime": (job.walltime or 0) / opts.time_scale}
    for name, value in scaled.items():
        if value > MAX_SECONDS:
            return (f"{name} {value:g} s is beyond OAR's largest walltime ({MAX_SECONDS} s, "
                    "about 68 years)")
    return None


def parse_queue_map(text: str) -> dict[int, str]:
    """``2=default,3=besteffort`` -> {2: "default", 3: "besteffort"}."""
    out: dict[int, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        number_text, sep, name = item.partition("=")
        if not sep or not number_text.strip().isdigit() or not name.strip():
            raise PlanError(f"--queue-map: {item!r} is not NUMBER=NAME")
        out[int(number_text)] = name.strip()
    return out

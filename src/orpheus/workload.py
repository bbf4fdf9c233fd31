"""Workload readers: SWF traces and Batsim JSON workloads, read into one list of trace jobs.

Pure: the readers take text (``parse_swf``, ``parse_batsim``) or a path (``read_workload``) and
return a :class:`Workload`; nothing is submitted here. Every error is a :class:`WorkloadError`
naming the file and the line (SWF) or the job / profile (Batsim).

Files are UTF-8 (a BOM is dropped), optionally gzip-compressed (told by their first bytes:
the Parallel Workloads Archive publishes ``.swf.gz``); an SWF comment line may hold other bytes.

SWF (Standard Workload Format, Parallel Workloads Archive): 18 whitespace-separated numeric
fields per job, ``;`` comments, ``-1`` for unknown; lines end at ``\n`` (or ``\r\n``) only.
Fields 1, 5, 8, 11, 12 and 15 (numbers, processors, status, user, queue) must be integers.
The header's ``MaxProcs``, ``MaxNodes`` and ``Queues`` (the ``* name`` lines that follow it,
numbered from 1 in that order) are used. A job number is unique, except that the
partial-execution lines of a checkpointed or swapped job (status 2, 3, 4) repeat the number of
its summary line: the job is replayed once, from its summary line. No maintained PyPI package
reads SWF (the format is 18 columns), so this module does.

Batsim JSON: ``nb_res``, ``jobs`` (``id``, ``subtime``, ``res``, ``profile``, optional
``walltime``) and ``profiles``. A profile gives the job's run time (``exec_time``) as follows,
with ``flops`` = ``--flops-per-second`` and ``bw`` = ``--bytes-per-second`` (a deliberate
approximation: computation then communication, no overlap, no network contention):

=========================================================  =====================================
profile type (v5 name / older names)                       exec_time
=========================================================  =====================================
``DelayProfile`` / ``delay``                               ``delay``
``ParallelTaskProfile`` / ``parallel``, ``ptask``,         max over hosts of ``cpu[i]`` / flops
``msg_par``                                                + max over hosts of bytes sent / bw;
                                                           ``len(cpu)`` must be ``res``
``ParallelTaskHomogeneousProfile`` / ``parallel_homo-``    ``cpu`` / flops + ``com`` * (n-1) / bw
``geneous``, ``ptask_homogeneous``, ``msg_par_hg``         (n = ``res``; ``DefinedAmountsSpread-
                                                           Uniformly``, ``parallel_homogeneous_
                                                           total`` or ``msg_par_hg_tot``: divide
                                                           by n, resp. n(n-1))
``ParallelTaskOnStorageHomogeneousProfile`` / ``parallel_  (``bytes_to_read`` + ``bytes_to_write``)
homogeneous_pfs``, ``ptask_on_storage_homogeneous``,       / bw (Batsim 2 ``msg_par_hg_pfs_tiers``
``msg_par_hg_pfs``, ``msg_par_hg_pfs_tiers``               : ``size`` / bw), ``io_workload=n``
``ParallelTaskDataStagingBetweenStoragesProfile`` /        ``nb_bytes`` / bw, ``io=1,
``data_staging``, ``ptask_data_staging_between_storages``  io_workload=1``
``SequentialCompositionProfile`` / ``composed``,           ``repeat`` (Batsim 2: ``nb``) x sum of
``sequential_composition``, ``sequence``                   its ``seq``
=========================================================  =====================================

The amounts a type uses are required (``cpu`` and ``com``, ``delay``, ``nb_bytes``, one of the
``bytes_to_*``), finite and >= 0. A profile's ``ret`` is the job's exit code. Trace replays
(SMPI, usage traces) and scheduler messages (``send``, ``recv``) cannot be replayed, nor a job
on ``res`` 0, nor a ``parallel`` profile whose ``cpu`` has not ``res`` values (Batsim aborts on
them): those jobs are kept and rejected (``skip``). A type Batsim does not know is an error.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orpheus.errors import OrpheusError
from orpheus.spec import decimal

SWF_FIELDS = 18
SWF_FIELD_NAMES = (
    "job number", "submit time", "wait time", "run time", "allocated processors",
    "average CPU time", "used memory", "requested processors", "requested time",
    "requested memory", "status", "user id", "group id", "executable", "queue", "partition",
    "preceding job", "think time")
SWF_INTEGERS = (0, 4, 7, 10, 11, 14)
"""0-based indices of the fields read as integers: job number, processors, status, user, queue."""
SWF_STATUS_EXIT = {0: 1, 4: 1, 5: 143}
"""Exit code of a job by SWF status: failed (0, or 4: its last partial execution failed) -> 1,
cancelled -> 143 (128 + SIGTERM); others 0."""
SWF_PARTIAL = (2, 3, 4)
"""SWF statuses of a partial-execution line (checkpointed or swapped job), which repeats the
job number of the job's summary line."""
DEFAULT_FLOPS = 1e9
DEFAULT_BYTES = 1e9


class WorkloadError(OrpheusError, ValueError):
    """A workload that cannot be read; the message names the file and the line or job."""


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One job of a trace, in the trace's own units (seconds, processors)."""

    id: str
    submit: float  # submission time, seconds, as in the trace
    res: int  # requested resources (processors); 0 = unknown
    run_time: float | None  # how long it runs; None = unknown
    walltime: float | None = None  # requested time; None = none
    exit_code: int = 0
    user: str | None = None
    queue: int | str | None = None  # SWF queue number, or a queue name (Batsim extra_data)
    profile: str = ""  # Batsim profile name; "" for SWF
    io: bool = False
    io_workload: float = 0.0
    trace_wait: float | None = None  # wait recorded in the trace (SWF field 3)
    status: int | None = None  # SWF status (field 11)
    skip: str | None = None  # why this job cannot be replayed (kept, reported as rejected)


@dataclass(frozen=True)
class Workload:
    """A trace: its jobs (in submission order) and what its header says of the machine."""

    name: str
    format: str  # "swf" or "batsim"
    jobs: list[TraceJob]
    max_procs: int | None = None  # SWF MaxProcs / Batsim nb_res
    max_nodes: int | None = None
    queues: dict[int, str] = field(default_factory=dict)  # SWF queue number -> name


# ----------------------------------------------------------------------------------- SWF

_HEADER = re.compile(r"^;\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(.*?)\s*$")
_QUEUE_ITEM = re.compile(r"^;\s*\*\s*(\S+)")
_PLAIN_LINE = re.compile(r"[-+.0-9eE \t]*")
"""A data line whose characters are all these holds only tokens ``float`` reads as ``decimal``
does (no ``nan``, ``inf``, ``_`` or non-ASCII digit): the fast path of :func:`_swf_fields`."""


def _swf_header(lines: list[tuple[int, str]]) -> tuple[dict[str, tuple[str, int]], list[str]]:
    """The ``; Key: value`` pairs of the header (value, line number), and the ``* name`` items
    under ``Queues:``.

    The queue block runs from ``Queues:`` to the next bare ``;`` line or the next key that is
    not indented deeper than ``Queues:`` (items carry sub-keys such as ``priority:``).
    """
    keys: dict[str, tuple[str, int]] = {}
    queues: list[str] = []
    queues_indent: int | None = None
    for lineno, line in lines:
        body = line.lstrip()[1:]
        indent = len(body) - len(body.lstrip())
        if queues_indent is not None:
            item = _QUEUE_ITEM.match(line)
            if item:
                queues.append(item.group(1))
                continue
            if not body.strip() or indent <= queues_indent:
                queues_indent = None
        m = _HEADER.match(line)
        if m:
            key = m.group(1).replace(" ", "")
            keys.setdefault(key, (m.group(2), lineno))
            if key == "Queues":
                queues_indent = indent
    return keys, queues


def _header_int(keys: Mapping[str, tuple[str, int]], key: str, path: str) -> int | None:
    """The header's ``key`` as a count (``128``, ``128.0``, ``128 (nodes)``); None if absent or
    not positive."""
    text, lineno = keys.get(key, ("", 0))
    if not text.split():
        return None
    value = decimal(text.split()[0])
    if value is None or not math.isfinite(value) or not value.is_integer():
        raise WorkloadError(f"{path}:{lineno}: header {key}: {text.split()[0]!r} is not an "
                            "integer")
    return int(value) if value > 0 else None


def _swf_fields(body: str, where: str) -> list[float]:
    """The 18 fields of a data line: plain decimal numbers (see :func:`orpheus.spec.decimal`),
    finite, the :data:`SWF_INTEGERS` ones integers."""
    parts = body.split()
    if len(parts) != SWF_FIELDS:
        raise WorkloadError(f"{where}: {len(parts)} fields, SWF has {SWF_FIELDS}")
    values: list[float] = []
    if _PLAIN_LINE.fullmatch(body):
        with contextlib.suppress(ValueError):  # e.g. '1e' or '1-2': the slow path says which
            values = [float(p) for p in parts]
    if not values or not all(map(math.isfinite, values)):
        values = [_swf_number(text, i, where) for i, text in enumerate(parts)]
    if not all(values[i].is_integer() for i in SWF_INTEGERS):
        i = next(i for i in SWF_INTEGERS if not values[i].is_integer())
        raise WorkloadError(f"{where}: field {i + 1} ({SWF_FIELD_NAMES[i]}): {parts[i]} is "
                            "not an integer")
    return values


def _swf_number(text: str, i: int, where: str) -> float:
    value = decimal(text)
    if value is None or not math.isfinite(value):
        raise WorkloadError(f"{where}: field {i + 1} ({SWF_FIELD_NAMES[i]}): not a number: "
                            f"{text!r}")
    return value


def parse_swf(text: str, path: str = "<swf>") -> Workload:
    """Read an SWF trace; see the module docstring for what each field becomes."""
    jobs: dict[str, TraceJob] = {}  # by job number: its summary line, else its first line
    summary_line: dict[str, int] = {}
    partials: dict[str, int] = {}  # job number -> number of partial-execution lines
    comments: list[tuple[int, str]] = []
    for lineno, line in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        line = line.removesuffix("\r")
        if line.lstrip().startswith(";"):
            comments.append((lineno, line))
            continue
        body = line.split(";", 1)[0].strip()
        if not body:
            continue
        job = _swf_job(_swf_fields(body, f"{path}:{lineno}"), f"{path}:{lineno}")
        if job.status in SWF_PARTIAL:
            partials[job.id] = partials.get(job.id, 0) + 1
            jobs.setdefault(job.id, job)
        elif job.id in summary_line:
            raise WorkloadError(f"{path}:{lineno}: job number {job.id} appears more than once "
                                f"(first at line {summary_line[job.id]}; only partial-execution "
                                "lines, status 2-4, may repeat it)")
        else:
            summary_line[job.id] = lineno
            jobs[job.id] = job
    if not jobs:
        raise WorkloadError(f"{path}: no job line")
    for number, count in partials.items():
        if count > 1 and number not in summary_line:
            jobs[number] = replace(jobs[number], skip=(
                f"{count} partial-execution lines (SWF status 2-4) and no summary line"))
    keys, queue_names = _swf_header(comments)
    return Workload(
        name=workload_name(path), format="swf",
        jobs=sorted(jobs.values(), key=lambda j: j.submit),
        max_procs=_header_int(keys, "MaxProcs", path),
        max_nodes=_header_int(keys, "MaxNodes", path),
        queues=queue_numbers(queue_names, keys.get("Conversion", ("", 0))[0]),
    )


def workload_name(path: str) -> str:
    """The file's name without its suffixes: ``data/ctc.swf.gz`` -> ``ctc``."""
    return Path(path.removesuffix(".gz")).stem


def queue_numbers(names: list[str], conversion: str) -> dict[int, str]:
    """SWF queue numbers of the header's ``Queues:`` names: from 1 in the order listed, but in
    alphabetical order for OAR's ``oarDB-2-swf`` conversion, which numbers them so (its traces
    list default, admin, besteffort; docs/replay-report.md gives the evidence)."""
    if conversion.startswith("oarDB-2-swf"):
        names = sorted(names)
    return dict(enumerate(names, 1))


def _swf_job(f: list[float], where: str) -> TraceJob:
    """One SWF record (fields 1..18 as f[0..17]) as a TraceJob."""
    number, submit, wait, run, alloc, req_procs, req_time, status, user, queue = (
        f[0], f[1], f[2], f[3], f[4], f[7], f[8], f[10], f[11], f[14])
    if number < 0:
        raise WorkloadError(f"{where}: field 1 (job number): {number:g} is negative")
    if submit < 0:
        raise WorkloadError(f"{where}: job {int(number)}: field 2 (submit time): {submit:g} is "
                            "negative (unknown)")
    res = int(req_procs) if req_procs > 0 else int(alloc) if alloc > 0 else 0
    skip = None
    if res <= 0:
        skip = "no processor count (requested and allocated are 0 or -1)"
        if status == 5:
            skip += ": cancelled before it started in the trace"
    elif run < 0:
        skip = f"unknown run time (field 4 is {run:g})"
    st = int(status)
    return TraceJob(
        id=str(int(number)), submit=submit, res=res, run_time=run if run >= 0 else None,
        walltime=req_time if req_time > 0 else None, exit_code=SWF_STATUS_EXIT.get(st, 0),
        user=str(int(user)) if user >= 0 else None,
        queue=int(queue) if queue >= 0 else None,
        trace_wait=wait if wait >= 0 else None, status=st, skip=skip,
    )


# -------------------------------------------------------------------------------- Batsim

_DELAY = {"DelayProfile", "delay"}
_PTASK = {"ParallelTaskProfile", "parallel", "ptask", "msg_par"}
_TOTAL = {"parallel_homogeneous_total", "msg_par_hg_tot"}
_HOMOGENEOUS = {"ParallelTaskHomogeneousProfile", "parallel_homogeneous", "ptask_homogeneous",
                "msg_par_hg", *_TOTAL}
_PFS_TIERS = {"msg_par_hg_pfs_tiers", "msg_par_hg_pfs0"}  # Batsim 2: 'size' bytes per host
_PFS = {"ParallelTaskOnStorageHomogeneousProfile", "parallel_homogeneous_pfs",
        "ptask_on_storage_homogeneous", "ptask_homogeneous_on_storage", "msg_par_hg_pfs",
        *_PFS_TIERS}
_STAGING = {"ParallelTaskDataStagingBetweenStoragesProfile", "data_staging",
            "ptask_data_staging_between_storages", "ptask_data_staging"}
_SEQUENCE = {"SequentialCompositionProfile", "sequential_composition", "composed", "sequence"}
_SPREAD = {"DefinedAmountsSpreadUniformly", "defined_amount_spread_uniformly"}
_UNREPLAYABLE = {"TraceReplayProfile", "smpi", "usage_trace", "send", "recv"}
"""Batsim types that replay a trace file or talk to the scheduler: their jobs are rejected."""
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,23}")
"""A Batsim ``user`` or ``queue``: a user becomes Unix user ``replay-u<user>`` (32 at most)."""
MAX_PROFILE_DEPTH = 20


@dataclass(frozen=True)
class Rates:
    """How Batsim's amounts become seconds."""

    flops_per_second: float = DEFAULT_FLOPS
    bytes_per_second: float = DEFAULT_BYTES


@dataclass(frozen=True)
class ProfileRun:
    """What a profile makes a job do."""

    exec_time: float
    io: bool = False
    io_workload: float = 0.0
    skip: str | None = None  # why a job on this many resources cannot run it


def _finite(value: Any) -> float | None:
    """A JSON number as a finite float; None for anything else (bool, NaN, +-inf, 1e400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _amount(profile: Mapping[str, Any], key: str, where: str,
            default: float | None = None) -> float:
    """``profile[key]``, a finite number >= 0; ``default`` when absent (None: required)."""
    if key not in profile and default is not None:
        return default
    if key not in profile:
        raise WorkloadError(f"{where}: missing {key!r}")
    value = _finite(profile[key])
    if value is None or value < 0:
        raise WorkloadError(f"{where}: {key} must be a finite number >= 0, not {profile[key]!r}")
    return value


def _vector(profile: Mapping[str, Any], key: str, where: str) -> list[float]:
    if key not in profile:
        raise WorkloadError(f"{where}: missing {key!r}")
    value = profile[key]
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise WorkloadError(f"{where}: {key} must be a list of numbers")
    return [_amount({key: v}, key, where) for v in value]


class ProfileRuns:
    """The runs of a workload's profiles, each computed once per resource count (a sequence
    nested d deep, w wide costs one computation per profile, not w ** d)."""

    def __init__(self, profiles: Mapping[str, Any], rates: Rates) -> None:
        self.profiles = profiles
        self.rates = rates
        self.memo: dict[tuple[str, int], ProfileRun] = {}

    def run(self, name: str, res: int, where: str = "", depth: int = 0) -> ProfileRun:
        """The run of profile ``name`` on ``res`` resources; errors start with ``where``."""
        if (name, res) not in self.memo:
            here = f"{where}profile {name!r}"
            if depth > MAX_PROFILE_DEPTH:
                raise WorkloadError(f"{here}: sequences nested deeper than {MAX_PROFILE_DEPTH} "
                                    "(a profile that contains itself?)")
            profile = self.profiles.get(name)
            if not isinstance(profile, dict):
                raise WorkloadError(f"{here}: no such profile" if profile is None
                                    else f"{here}: not a JSON object")
            run = self._run(name, profile, res, where, depth)
            if not math.isfinite(run.exec_time):
                raise WorkloadError(f"{here}: its run time overflows ({run.exec_time} s)")
            self.memo[name, res] = run
        return self.memo[name, res]

    def _run(self, name: str, profile: dict[str, Any], res: int, where: str,
             depth: int) -> ProfileRun:
        here = f"{where}profile {name!r}"
        kind, strategy = profile.get("type"), profile.get("generation_strategy")
        if "type" not in profile or not isinstance(kind, str):
            raise WorkloadError(f"{here}: " + ("missing 'type'" if "type" not in profile
                                               else f"type must be a string, not {kind!r}"))
        flops, bw, n = self.rates.flops_per_second, self.rates.bytes_per_second, max(res, 1)
        spread = kind in _TOTAL or (isinstance(strategy, str) and strategy in _SPREAD)
        if kind in _DELAY:
            return ProfileRun(_amount(profile, "delay", here))
        if kind in _PTASK:
            cpu, com = _vector(profile, "cpu", here), _vector(profile, "com", here)
            hosts = len(cpu)
            if not hosts or len(com) != hosts * hosts:
                raise WorkloadError(f"{here}: cpu has {hosts} values and com {len(com)}: com "
                                    "needs cpu's count squared, cpu at least one")
            sent = max(sum(com[i * hosts:(i + 1) * hosts]) for i in range(hosts))
            skip = None if hosts == res else (
                f"profile {name!r} is for {hosts} hosts (its cpu), the job asks {res}: "
                "Batsim refuses it")
            return ProfileRun(max(cpu) / flops + sent / bw, skip=skip)
        if kind in _HOMOGENEOUS:
            cpu, com = _amount(profile, "cpu", here), _amount(profile, "com", here)
            per_pair = com / (n * (n - 1)) if spread and n > 1 else com
            return ProfileRun((cpu / n if spread else cpu) / flops + per_pair * (n - 1) / bw)
        if kind in _PFS:
            if kind in _PFS_TIERS:
                total = _amount(profile, "size", here)
            elif "bytes_to_read" in profile or "bytes_to_write" in profile:
                total = (_amount(profile, "bytes_to_read", here, 0.0)
                         + _amount(profile, "bytes_to_write", here, 0.0))
            else:
                raise WorkloadError(f"{here}: missing 'bytes_to_read' and 'bytes_to_write'")
            return ProfileRun((total / n if spread else total) / bw, io=True,
                              io_workload=float(n))
        if kind in _STAGING:
            return ProfileRun(_amount(profile, "nb_bytes", here) / bw, io=True, io_workload=1.0)
        if kind in _SEQUENCE:
            seq, repeat = profile.get("seq"), profile.get("repeat", profile.get("nb", 1))
            if not isinstance(seq, list) or not seq or not all(isinstance(s, str) for s in seq):
                raise WorkloadError(f"{here}: seq must be a non-empty list of profile names")
            if isinstance(repeat, bool) or not isinstance(repeat, int) or not (
                    0 <= repeat <= 2**53):
                raise WorkloadError(f"{here}: repeat must be an integer 0 to 2**53, "
                                    f"not {repeat!r}")
            parts = [self.run(s, res, where, depth + 1) for s in seq]
            return ProfileRun(repeat * sum(p.exec_time for p in parts),
                              io=any(p.io for p in parts),
                              io_workload=max(p.io_workload for p in parts),
                              skip=next((p.skip for p in parts if p.skip), None))
        if kind in _UNREPLAYABLE:
            return ProfileRun(0.0, skip=f"profile {name!r} is of type {kind!r} (a trace replay "
                              "or a scheduler message), which Orpheus cannot replay")
        raise WorkloadError(f"{here}: profile type {kind!r} is not a Batsim type Orpheus knows "
                            "(delay, parallel task, homogeneous parallel task, PFS and staging "
                            "I/O, sequences; trace replays and messages are rejected)")


def _extra(job: Mapping[str, Any]) -> dict[str, Any]:
    """The job's ``extra_data`` when it is a JSON object (Batsim recommends it)."""
    extra = job.get("extra_data")
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except (ValueError, RecursionError):
            return {}
    return extra if isinstance(extra, dict) else {}


def parse_batsim(text: str, path: str = "<batsim>", rates: Rates = Rates()) -> Workload:
    """Read a Batsim JSON workload; see the module docstring for the profile rules."""
    try:
        doc = json.loads(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as e:
        raise WorkloadError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    except (ValueError, RecursionError) as e:  # a 5000-digit number; arrays nested too deep
        raise WorkloadError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise WorkloadError(f"{path}: not a Batsim workload (the top level is not an object)")
    raw_jobs, profiles = doc.get("jobs"), doc.get("profiles")
    if not isinstance(raw_jobs, list):
        raise WorkloadError(f"{path}: 'jobs' must be a list")
    if not isinstance(profiles, dict):
        raise WorkloadError(f"{path}: 'profiles' must be an object")
    nb_res = doc.get("nb_res")
    if nb_res is not None and (isinstance(nb_res, bool) or not isinstance(nb_res, int)
                               or nb_res < 1):
        raise WorkloadError(f"{path}: nb_res must be a positive integer, not {nb_res!r}")
    jobs: list[TraceJob] = []
    seen: set[str] = set()
    runs = ProfileRuns(profiles, rates)
    for index, raw in enumerate(raw_jobs):
        job = _batsim_job(raw, index, runs, path)
        if job.id in seen:
            raise WorkloadError(f"{path}: job {job.id}: id appears more than once")
        seen.add(job.id)
        jobs.append(job)
    if not jobs:
        raise WorkloadError(f"{path}: no job")
    return Workload(name=workload_name(path), format="batsim",
                    jobs=sorted(jobs, key=lambda j: j.submit), max_procs=nb_res)


def _batsim_job(raw: Any, index: int, runs: ProfileRuns, path: str) -> TraceJob:
    if not isinstance(raw, dict):
        raise WorkloadError(f"{path}: jobs[{index}] is not an object")
    if "id" not in raw:
        raise WorkloadError(f"{path}: jobs[{index}] has no id")
    if isinstance(raw["id"], bool) or not isinstance(raw["id"], str | int) or not _utf8(
            str(raw["id"])):
        raise WorkloadError(f"{path}: jobs[{index}]: id must be a string or an integer, "
                            f"not {raw['id']!r}")
    where = f"{path}: job {raw['id']}"
    for key in ("subtime", "res", "profile"):
        if key not in raw:
            raise WorkloadError(f"{where}: missing {key}")
    res = raw["res"]
    if isinstance(res, bool) or not isinstance(res, int) or res < 0 or _finite(res) is None:
        raise WorkloadError(f"{where}: res must be an integer >= 0, not {res!r}")
    submit = _amount(raw, "subtime", where)
    walltime = raw.get("walltime", -1)
    if _finite(walltime) is None or not (walltime == -1 or walltime > 0):
        raise WorkloadError(f"{where}: walltime must be a number > 0, or -1 for none, "
                            f"not {walltime!r}")
    name = raw["profile"]
    if not isinstance(name, str) or not _utf8(name):
        raise WorkloadError(f"{where}: profile must be a name, not {name!r}")
    run = runs.run(name, res, f"{where}: ")
    ret = runs.profiles[name].get("ret", 0)
    if isinstance(ret, bool) or not isinstance(ret, int) or not 0 <= ret <= 255:
        raise WorkloadError(f"{where}: profile {name!r}: ret must be an integer 0-255")
    extra = _extra(raw)
    user, queue = (_name(raw.get(key, extra.get(key)), f"{where}: {key}") for key in
                   ("user", "queue"))
    return TraceJob(
        id=str(raw["id"]), submit=submit, res=res, run_time=run.exec_time,
        walltime=None if walltime == -1 else float(walltime), exit_code=ret, user=user,
        queue=queue, profile=name, io=run.io, io_workload=run.io_workload,
        skip=run.skip or (None if res else "res is 0: OAR cannot run a job on no resource"),
    )


def _utf8(text: str) -> bool:
    """Whether ``text`` can be written out (JSON's ``\\ud800`` escapes make lone surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _name(value: Any, where: str) -> str | None:
    """A job's ``user`` or ``queue`` (a string or an integer), as a name; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int) or not _NAME.fullmatch(
            str(value)):
        raise WorkloadError(f"{where} must be a string or an integer of at most 24 letters, "
                            f"digits, '_', '.' or '-', not {value!r}")
    return str(value)


# ---------------------------------------------------------------------------------- both

def parse_workload(text: str, path: str, rates: Rates = Rates()) -> Workload:
    """SWF or Batsim JSON, told apart by the first non-blank character (``{`` or ``[`` is
    JSON)."""
    if text.removeprefix("\ufeff").lstrip()[:1] in ("{", "["):
        return parse_batsim(text, path, rates)
    return parse_swf(text, path)


def decode(data: bytes, path: str) -> str:
    """A file's bytes as text: UTF-8 without its BOM; bytes that are not UTF-8 are allowed in
    ``;`` comment lines only (replaced), elsewhere an error naming the line."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode()
    except UnicodeDecodeError:
        pass
    for lineno, line in enumerate(data.split(b"\n"), 1):
        try:
            line.decode()
        except UnicodeDecodeError as e:
            if not line.lstrip().startswith(b";"):
                raise WorkloadError(f"{path}:{lineno}: not UTF-8 text (byte {line[e.start]:#04x} "
                                    f"at column {e.start + 1})") from None
    return data.decode(errors="replace")


def read_workload(path: Path, rates: Rates = Rates()) -> Workload:
    """Read an SWF trace or a Batsim workload file, gzip-compressed or not."""
    try:
        data = path.read_bytes()
        if data.startswith(b"\x1f\x8b"):
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise WorkloadError(f"{path}: cannot read: {e}") from None
    return parse_workload(decode(data, str(path)), str(path), rates)

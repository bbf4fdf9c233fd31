"""``orpheus replay WORKLOAD``: submit a real workload (SWF or Batsim JSON) to the real OAR.

The pure decisions (what each trace job becomes) are in :mod:`orpheus.replayplan`; this module
is the shell: it reads the test bed's size from OAR's database, creates the replay's users,
submits every job with ``oarsub`` at its scaled time from a thread pool (jobs due at the same
instant with the same user and request go in one ``oarsub --array-param-file``), follows their
states with a rich progress bar, and writes ``mapping.csv`` and ``replay.json`` into ``-o DIR``
for ``orpheus report``. docs/replay-report.md describes every flag and file.
"""

from __future__ import annotations

import argparse
import csv
import grp
import json
import logging
import math
import os
import pwd
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from oarlib import conf as oarconf
from oarlib import faults, oarcli, testbed, vclock
from oarlib.db import Db, chunks, marks
from orpheus.metrics import percentiles
from orpheus.replayplan import (
    UNITS,
    USER_PREFIX,
    Capacity,
    Plan,
    PlanError,
    PlanOptions,
    Rejection,
    Submission,
    parse_queue_map,
    plan,
)
from orpheus.spec import seconds
from orpheus.workload import Rates, Workload, WorkloadError, read_workload

log = logging.getLogger("orpheus.replay")

MAPPING = "mapping.csv"
META = "replay.json"
MAPPING_FIELDS = (
    "trace_job_id", "oar_job_id", "status", "reason", "user", "queue", "trace_res", "res",
    "walltime", "exec_time", "exit_code", "arguments", "profile", "trace_submit", "trace_wait",
    "scheduled", "called", "returned", "lateness",
)
FAULT_CHECK_INTERVAL = 5.0  # seconds between two looks for OAR faults (oarlib.faults)
ENDED = ("Terminated", "Error")
ACTIVE = ("toLaunch", "Launching", "Running", "Finishing", "Suspended", "Resuming")
ADMIN_QUEUE, ADMIN_GROUP = "admin", "admin"  # OAR's default admission rule: group admin only


# ----------------------------------------------------------------------------- OAR side

def testbed_capacity(db: Db) -> Capacity:
    """Resources not Dead, and the nodes (network addresses) that hold them."""
    rows = db.query("SELECT network_address, COUNT(*) FROM resources WHERE state <> %s "
                    "GROUP BY network_address", ("Dead",))
    return Capacity(resources=sum(int(n) for _, n in rows), nodes=len(rows))


def job_states(db: Db, job_ids: list[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in chunks(job_ids, 500):
        out.update({int(j): s for j, s in db.query(
            f"SELECT job_id, state FROM jobs WHERE job_id IN ({marks(chunk)})", chunk)})
    return out


def ensure_users(subs: list[Submission], prefix: str) -> list[str]:
    """Create the missing submitting users (ordinary accounts); return the created ones.

    Users named ``<prefix>N`` that submit to the ``admin`` queue are put in group ``admin``,
    since OAR's default admission rule accepts only that group there.
    """
    created = []
    admin = {s.user for s in subs if s.queue == ADMIN_QUEUE and s.user.startswith(prefix)}
    for name in sorted({s.user for s in subs}):
        try:
            pwd.getpwnam(name)
        except KeyError:
            if os.geteuid() != 0:
                raise PlanError(f"user {name} does not exist: run as root to create the "
                                "replay's users, or map every job to one user with --user"
                                ) from None
            subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True,
                           capture_output=True, text=True)
            created.append(name)
        if name in admin and name not in _group_members(ADMIN_GROUP):
            subprocess.run(["groupadd", "-f", ADMIN_GROUP], check=True, capture_output=True)
            subprocess.run(["usermod", "-a", "-G", ADMIN_GROUP, name], check=True,
                           capture_output=True)
    return created


def _group_members(group: str) -> list[str]:
    try:
        return list(grp.getgrnam(group).gr_mem)
    except KeyError:
        return []


# ------------------------------------------------------------------------------ replay

@dataclass
class Outcome:
    """What happened to one batch of submissions."""

    subs: list[Submission]
    called: float
    returned: float
    job_ids: list[int]
    error: str | None = None


class MappingWriter:
    """mapping.csv, one row per trace job, flushed as rows come (``report`` may read it live)."""

    def __init__(self, path: Path) -> None:
        self.file: IO[str] = path.open("w", newline="")
        self.writer = csv.DictWriter(self.file, MAPPING_FIELDS)
        self.writer.writeheader()

    def row(self, sub: Submission | Rejection, **values: Any) -> None:
        job = sub.job
        base: dict[str, Any] = {
            "trace_job_id": job.id, "trace_res": job.res, "profile": job.profile,
            "exit_code": job.exit_code, "trace_submit": job.submit,
            "trace_wait": "" if job.trace_wait is None else job.trace_wait,
            "scheduled": f"{sub.at:.3f}", "res": sub.res or "",
        }
        if isinstance(sub, Submission):
            base |= {"user": sub.user, "queue": sub.queue or "",
                     "walltime": "" if sub.walltime is None else sub.walltime,
                     "exec_time": f"{sub.exec_time:.3f}", "arguments": sub.arguments}
        self.writer.writerow(base | values)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def batches(subs: list[Submission], window: float | None) -> list[list[Submission]]:
    """Submissions grouped for oarsub, in time order: a batch holds jobs of one user with the
    same request due within ``window`` seconds of its first one (submitted at its first one's
    time); one job per batch when ``window`` is None."""
    in_order = sorted(subs, key=lambda s: s.at)
    if window is None:
        return [[s] for s in in_order]
    out: list[list[Submission]] = []
    open_: dict[tuple[str, tuple[str, ...]], list[Submission]] = {}
    for s in in_order:
        group = open_.get(s.request_key)
        if group is None or s.at - group[0].at > window:
            group = open_[s.request_key] = []
            out.append(group)
        group.append(s)
    return out


def submit_batch(batch: list[Submission], clock: vclock.RealClock | vclock.Clock,
                 t0: float) -> Outcome:
    """One oarsub (an array job when the batch has several jobs), timed from ``t0``."""
    called = clock.now() - t0
    opts = batch[0].oarsub_options()
    try:
        if len(batch) == 1:
            ids = oarcli.oarsub([*opts, f"sim {batch[0].arguments}"], user=batch[0].user)
        else:
            ids = oarcli.oarsub_array([s.arguments for s in batch], "sim", opts[1], opts[2:],
                                      user=batch[0].user)
        error = None if len(ids) == len(batch) else f"oarsub gave {len(ids)} ids for {len(batch)}"
    except (oarcli.OarCommandError, subprocess.SubprocessError, OSError) as e:
        ids, error = [], " ".join(str(e).split())
    return Outcome(batch, called, clock.now() - t0, ids, error)


class Replay:
    """Runs one plan against OAR and records it in ``out``."""

    def __init__(self, the_plan: Plan, out: Path, db_params: oarconf.DbParams, *,
                 workers: int, batch_window: float | None, show_progress: bool,
                 header: dict[str, Any] | None = None, clock: str = "real") -> None:
        self.plan = the_plan
        # under the virtual clock, the daemon jumps it: the replay holds it at its next
        # submission (oarlib.vclock.hold) and submits when it gets there
        self.virtual = clock == "virtual"
        self.clock = vclock.Clock() if self.virtual else vclock.RealClock()
        self.header = header or {}
        self.out = out
        self.db_params = db_params
        self.workers = workers
        self.batches = batches(the_plan.submissions, batch_window)
        self.show_progress = show_progress
        self.submitted: dict[int, Submission] = {}
        self.failed: list[tuple[Submission, str]] = []
        self.lateness: list[float] = []
        self.durations: list[float] = []
        self.states: dict[int, str] = {}
        self.told: set[str] = set()  # faults already logged
        self.elapsed = (0.0, 0.0)  # seconds of the clock and of wall time the run took

    def counts(self) -> dict[str, int]:
        c = Counter("done" if s in ENDED else "running" if s in ACTIVE else "waiting"
                    for s in self.states.values())
        return {"jobs": len(self.plan.submissions) + len(self.plan.rejections),
                "submitted": len(self.submitted), "waiting": c["waiting"],
                "running": c["running"], "done": c["done"],
                "rejected": len(self.plan.rejections) + len(self.failed)}

    def _record(self, mapping: MappingWriter, o: Outcome) -> None:
        self.durations.append(o.returned - o.called)
        for i, sub in enumerate(o.subs):
            common = {"called": f"{o.called:.3f}", "returned": f"{o.returned:.3f}",
                      "lateness": f"{o.called - sub.at:.3f}"}
            if o.error is None:
                self.submitted[o.job_ids[i]] = sub
                self.lateness.append(o.called - sub.at)
                mapping.row(sub, oar_job_id=o.job_ids[i], status="submitted", **common)
            else:
                self.failed.append((sub, o.error))
                mapping.row(sub, status="rejected", reason=f"oarsub refused: {o.error}",
                            **common)

    def run(self, wait_end: bool, timeout: float | None) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        mapping = MappingWriter(self.out / MAPPING)
        for r in self.plan.rejections:
            mapping.row(r, status="rejected", reason=r.reason)
        t0 = self.clock.now()
        wall0 = time.monotonic()
        meta = {**self.header, "start_epoch": t0, "clock": "virtual" if self.virtual else "real"}
        self.write_meta(meta, finished=False)
        pending = list(reversed(self.batches))
        futures: dict[Future[Outcome], float] = {}  # oarsub under way -> its due time
        holding: float | None = None  # the instant this replay holds the virtual clock at
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="oarsub")
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("submitted {task.fields[submitted]}  running {task.fields[running]}  "
                       "done {task.fields[done]}  rejected {task.fields[rejected]}"),
            TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), disable=not self.show_progress, transient=False,
        )
        counts = self.counts()
        task = progress.add_task("replay", total=counts["jobs"], **counts)
        last_poll, last_log, code = 0.0, time.monotonic(), 0
        next_fault_check = time.monotonic()
        deadline = None
        try:
            with progress, Db(self.db_params) as db:
                while True:
                    now = self.clock.now() - t0
                    while pending and pending[-1][0].at <= now:
                        batch = pending.pop()
                        futures[pool.submit(submit_batch, batch, self.clock, t0)] = batch[0].at
                    done = (wait(futures, timeout=0, return_when=FIRST_COMPLETED)[0]
                            if futures else set())
                    for f in done:
                        del futures[f]
                        self._record(mapping, f.result())
                    if self.virtual:
                        dues = [*futures.values()] + ([pending[-1][0].at] if pending else [])
                        if (held := t0 + min(dues) if dues else None) != holding:
                            vclock.hold("replay", held)
                            holding = held
                    if time.monotonic() - last_poll >= (2 if pending or futures else 0.1):
                        # an ended job's state is final: ask only for the others'
                        self.states.update(job_states(db, [
                            j for j in self.submitted if self.states.get(j) not in ENDED]))
                        last_poll = time.monotonic()
                    if time.monotonic() >= next_fault_check:
                        next_fault_check = time.monotonic() + FAULT_CHECK_INTERVAL
                        if blocking := self.blocking_faults(db):
                            log.error("replay: its jobs can no longer be scheduled: %s",
                                      "; ".join(map(str, blocking)))
                            code = 1
                            break
                    counts = self.counts()
                    progress.update(task, completed=counts["done"] + counts["rejected"], **counts)
                    if not self.show_progress and time.monotonic() - last_log >= 10:
                        log.info("replay: %s", counts)
                        last_log = time.monotonic()
                    if not pending and not futures:
                        all_done = counts["done"] == counts["submitted"]
                        if not wait_end or all_done:
                            break
                        if deadline is None and timeout is not None:
                            deadline = time.monotonic() + timeout
                        if deadline is not None and time.monotonic() > deadline:
                            log.error("replay: %d job(s) not ended %g s after the last "
                                      "submission", counts["submitted"] - counts["done"],
                                      timeout)
                            code = 1
                            break
                    next_due = pending[-1][0].at - (self.clock.now() - t0) if pending else 0.5
                    # the virtual clock jumps: look again soon
                    step = 0.01 if self.virtual else 0.05 if futures else 0.5
                    time.sleep(max(0.0, min(step, next_due)))
        except KeyboardInterrupt:
            log.warning("replay: interrupted; %d batch(es) not submitted", len(pending))
            code = 130
        finally:
            if self.virtual:
                vclock.hold("replay", None)
            pool.shutdown(wait=True, cancel_futures=True)
            for f in futures:
                if f.done() and not f.cancelled():
                    self._record(mapping, f.result())
            mapping.close()
        self.elapsed = (self.clock.now() - t0, time.monotonic() - wall0)
        meta |= {"clock_seconds": self.elapsed[0], "wall_seconds": self.elapsed[1],
                 "speedup": self.elapsed[0] / max(self.elapsed[1], 1e-9)}
        self.write_meta(meta, finished=code == 0)
        self.print_summary()
        return code

    def blocking_faults(self, db: Db) -> list[faults.Fault]:
        """The faults that keep this replay's jobs from ever running (other faults are
        logged once as warnings)."""
        queues = {f"queue {s.queue or 'default'}" for s in self.plan.submissions}
        found = faults.check(db, testbed.almighty_pid() is not None)
        for f in found:
            if str(f) not in self.told:
                self.told.add(str(f))
                log.warning("OAR fault: %s", f)
        return [f for f in found if f.blocking and (f.subject == "Almighty"
                                                    or f.subject in queues)]

    def summary(self) -> dict[str, Any]:
        reasons = Counter(r.reason for r in self.plan.rejections)
        reasons.update(f"oarsub refused: {e}" for _, e in self.failed)
        return {
            "counts": self.counts(),
            "rejected_by_reason": dict(reasons.most_common()),
            "lateness_s": percentiles(self.lateness),
            "oarsub_duration_s": percentiles(self.durations),
            "oarsub_calls": len(self.durations),
        }

    def write_meta(self, meta: dict[str, Any], finished: bool) -> None:
        meta |= {"finished": finished, **self.summary()}
        (self.out / META).write_text(json.dumps(meta, indent=2, default=str) + "\n")

    def print_summary(self) -> None:
        s = self.summary()
        c, late = s["counts"], s["lateness_s"]
        lines = [f"replay: {c['jobs']} trace jobs: {c['submitted']} submitted "
                 f"({c['done']} ended), {c['rejected']} rejected"]
        if late["n"]:
            lines.append(f"submission lateness over {late['n']} jobs: p50={late['p50']:.3f} s "
                         f"p99={late['p99']:.3f} s max={late['max']:.3f} s "
                         f"({s['oarsub_calls']} oarsub calls)")
        lines += [f"  rejected x{n}: {reason}" for reason, n in s["rejected_by_reason"].items()]
        clock, wall = self.elapsed
        lines.append(f"{'virtual' if self.virtual else 'real'} clock: {clock:.0f} s in "
                     f"{wall:.0f} s of wall time (speed-up {clock / max(wall, 1e-9):.1f})")
        lines.append(f"mapping: {self.out / MAPPING}")
        print("\n".join(lines))


# -------------------------------------------------------------------------------- CLI

def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "replay", help="submit an SWF or Batsim workload to OAR at its (scaled) times",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", type=Path, help="SWF trace or Batsim JSON workload")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="directory for mapping.csv and replay.json (created)")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="divide every time (submission offsets, run times, walltimes) by this")
    p.add_argument("--size-scale", default="1",
                   help="multiply requested resources by this, or 'auto' (test bed cores / "
                        "the trace's MaxProcs or nb_res)")
    p.add_argument("--start", type=int, default=0,
                   help="first job of the window (0-based index in submission order)")
    p.add_argument("--limit", type=int, help="number of jobs in the window (default: all)")
    p.add_argument("--user", help="submit every job as this user (default: one user per trace "
                                  f"user, {USER_PREFIX}<N>, created when missing)")
    p.add_argument("--default-user", default="alice",
                   help="user of jobs whose trace gives no user (default: alice)")
    p.add_argument("--queue-map", default="",
                   help="SWF queue numbers to OAR queues, e.g. 2=default,3=besteffort "
                        "(default: the header's Queues list, numbered from 1)")
    p.add_argument("--unit", choices=UNITS, default="core",
                   help="ask resources as core=N (default) or as whole nodes, nodes=ceil(N/C)")
    p.add_argument("--min-walltime", type=int, default=1,
                   help="smallest walltime given to OAR, in seconds (default 1)")
    p.add_argument("--job-overhead", type=float, default=0.0, metavar="S",
                   help="seconds added to every job's run time (after --time-scale): what a "
                        "real runner (ssh, oarexec) adds around a command, for workloads whose "
                        "run times leave it out (default 0)")
    p.add_argument("--flops-per-second", type=rate, default=1e9,
                   help="Batsim parallel-task profiles: host speed (default 1e9)")
    p.add_argument("--bytes-per-second", type=rate, default=1e9,
                   help="Batsim communication and I/O profiles: bandwidth (default 1e9)")
    p.add_argument("--workers", type=int, default=6, help="concurrent oarsub calls (default 6)")
    p.add_argument("--batch-window", type=seconds, default=0.5, metavar="S",
                   help="jobs of one user with the same request due within S seconds go in one "
                        "array oarsub, at the first one's time (default 0.5: OAR dates "
                        "submissions to the second)")
    p.add_argument("--no-batch", action="store_true",
                   help="one oarsub per job, even for jobs due together with the same request")
    p.add_argument("--no-wait", action="store_true",
                   help="return after the last submission instead of waiting for the ends")
    p.add_argument("--timeout", type=seconds, default=3600,
                   help="give up waiting for the ends this long after the last submission")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (first jobs, rejections) and submit nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--clock", choices=vclock.MODES,
                   help="real, or virtual: the test bed's virtual clock, which the daemon "
                        "jumps over idle time (default: the test bed's clock)")
    p.add_argument("--conf", type=Path, default=oarconf.DEFAULT_PATH, help="OAR's oar.conf")
    p.set_defaults(func=main)


def rate(text: str) -> float:
    """A rate option (argparse ``type``): a finite number > 0."""
    value = float(text)  # ValueError for a non-number: argparse says "invalid rate value"
    if not 0 < value < math.inf:
        raise ValueError(text)
    return value


def size_scale(text: str, workload: Workload, capacity: Capacity) -> float:
    if text != "auto":
        try:
            return float(text)
        except ValueError:
            raise PlanError(f"--size-scale must be a number or 'auto', not {text!r}") from None
    if not workload.max_procs:
        raise PlanError("--size-scale auto needs the trace's MaxProcs (SWF) or nb_res (Batsim)")
    return capacity.resources / workload.max_procs


def main(args: argparse.Namespace) -> int:
    try:
        if args.workers < 1:
            raise PlanError("--workers must be > 0")
        workload = read_workload(args.workload,
                                 Rates(args.flops_per_second, args.bytes_per_second))
        db_params = oarconf.DbParams.from_conf(oarconf.read(args.conf))
        with Db(db_params) as db:
            capacity = testbed_capacity(db)
        if capacity.resources == 0:
            raise PlanError("the test bed has no resource (is `orpheus testbed up` done?)")
        opts = PlanOptions(
            time_scale=args.time_scale, size_scale=size_scale(args.size_scale, workload, capacity),
            start=args.start, limit=args.limit, user=args.user, default_user=args.default_user,
            queue_map=parse_queue_map(args.queue_map), unit=args.unit,
            min_walltime=args.min_walltime, job_overhead=args.job_overhead)
        the_plan = plan(workload, capacity, opts)
        if args.dry_run:
            return dry_run(the_plan)
        bed_clock = testbed.almighty_clock()
        clock = args.clock or bed_clock or "real"
        if clock == "virtual" and bed_clock != "virtual":
            raise PlanError("--clock virtual needs the test bed on the virtual clock "
                            "(orpheus testbed up --clock virtual)")
        created = ensure_users(the_plan.submissions, USER_PREFIX)
        if created:
            log.info("created users: %s", " ".join(created))
    except (WorkloadError, PlanError, OSError, subprocess.CalledProcessError) as e:
        print(f"orpheus replay: {e}", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    header = {"workload": str(args.workload.resolve()), "name": workload.name,
              "format": workload.format, "capacity": asdict(capacity),
              "options": {k: v for k, v in asdict(opts).items() if k != "queue_map"}
              | {"queue_map": {str(k): v for k, v in opts.queue_map.items()},
                 "queues": {str(k): v for k, v in workload.queues.items()}}}
    log.info("replay %s: %d jobs to submit, %d rejected, on %d cores / %d nodes, "
             "time scale %g, size scale %g", workload.name, len(the_plan.submissions),
             len(the_plan.rejections), capacity.resources, capacity.nodes, opts.time_scale,
             opts.size_scale)
    replay = Replay(the_plan, args.output, db_params, workers=args.workers,
                    batch_window=None if args.no_batch else args.batch_window,
                    show_progress=not args.no_progress and sys.stderr.isatty(), header=header,
                    clock=clock)
    return replay.run(wait_end=not args.no_wait, timeout=args.timeout)


def dry_run(the_plan: Plan) -> int:
    for s in the_plan.submissions[:20]:
        print(f"{s.at:10.3f}s  {s.job.id:>8}  {s.user:<12} oarsub {' '.join(s.oarsub_options())} "
              f"'sim {s.arguments}'")
    if len(the_plan.submissions) > 20:
        print(f"... {len(the_plan.submissions) - 20} more")
    for r in the_plan.rejections:
        print(f"{r.at:10.3f}s  {r.job.id:>8}  rejected: {r.reason}")
    print(f"{len(the_plan.submissions)} to submit, {len(the_plan.rejections)} rejected")
    return 0

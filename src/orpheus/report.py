"""``orpheus report``: Batsim-style outputs and figures for a set of OAR jobs.

The jobs are those of a replay (``--replay DIR``: its mapping.csv gives trace ids, rejections
and recorded waits), an id range (``--jobs 100-200,250``) or a submission date (``--since``).
This module reads OAR's tables (jobs, moldable_job_descriptions, job_resource_groups/
descriptions, assigned_resources, event_logs, resources) into plain :class:`OarJob` values; all
computing is in :mod:`orpheus.metrics` and all drawing in :mod:`orpheus.plots`. It can run
during a replay: jobs not over yet have an empty final_state and are drawn as running.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ClusterShell.RangeSet import RangeSet, RangeSetParseError

from oarlib import conf as oarconf
from oarlib.db import Db, chunks, marks
from orpheus import metrics, plots
from orpheus.errors import OrpheusError
from orpheus.replay import MAPPING, META

CHUNK = 500


class ReportError(OrpheusError, RuntimeError):
    """A report that cannot be made; the message says why."""


# ----------------------------------------------------------------------------- OAR side

def resource_columns(db: Db) -> set[str]:
    if db.kind == "Pg":
        rows = db.query("SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = %s", ("resources",))
    else:
        rows = db.query("SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = %s AND table_schema = DATABASE()", ("resources",))
    return {str(r[0]) for r in rows}


def per_unit(db: Db, types: Iterable[str]) -> dict[str, float]:
    """Resources per distinct value of each property named in requests (e.g. network_address)."""
    columns = resource_columns(db)
    out: dict[str, float] = {}
    for t in set(types) - set(metrics.PER_RESOURCE_TYPES):
        if t in columns and re.fullmatch(r"[a-z_][a-z0-9_]*", t):  # a column name, not input
            total, distinct = db.query(f"SELECT COUNT(*), COUNT(DISTINCT {t}) FROM resources")[0]
            if distinct:
                out[t] = int(total) / int(distinct)
    return out


def fetch_jobs(db: Db, job_ids: Sequence[int]) -> dict[int, metrics.OarJob]:
    """Every listed job that OAR knows, with its request, resources and events."""
    rows: dict[int, tuple[Any, ...]] = {}
    molds: dict[int, list[tuple[int, int]]] = {}  # job -> [(moldable_id, walltime)]
    groups: dict[int, dict[int, list[tuple[int, str, int]]]] = {}  # mold -> group -> levels
    resources: dict[int, list[int]] = {}
    events: dict[int, list[str]] = {}
    running: dict[int, int] = {}  # job -> when it first entered Running
    for chunk in chunks(list(job_ids), CHUNK):
        for r in db.query(
                "SELECT job_id, state, submission_time, start_time, stop_time, exit_code, "
                "assigned_moldable_job, queue_name, job_user, command FROM jobs "
                f"WHERE job_id IN ({marks(chunk)})", chunk):
            rows[int(r[0])] = r
        for job, mold, wall in db.query(
                "SELECT moldable_job_id, moldable_id, moldable_walltime FROM "
                f"moldable_job_descriptions WHERE moldable_job_id IN ({marks(chunk)})", chunk):
            molds.setdefault(int(job), []).append((int(mold), int(wall)))
        for mold, group, rtype, value, order in db.query(
                "SELECT g.res_group_moldable_id, g.res_group_id, d.res_job_resource_type, "
                "d.res_job_value, d.res_job_order FROM moldable_job_descriptions m "
                "JOIN job_resource_groups g ON g.res_group_moldable_id = m.moldable_id "
                "JOIN job_resource_descriptions d ON d.res_job_group_id = g.res_group_id "
                f"WHERE m.moldable_job_id IN ({marks(chunk)})", chunk):
            groups.setdefault(int(mold), {}).setdefault(int(group), []).append(
                (int(order), str(rtype), int(value)))
        for job, res in db.query(
                "SELECT m.moldable_job_id, a.resource_id FROM assigned_resources a "
                "JOIN moldable_job_descriptions m ON m.moldable_id = a.moldable_job_id "
                "JOIN jobs j ON j.job_id = m.moldable_job_id "
                "AND j.assigned_moldable_job = m.moldable_id "
                f"WHERE m.moldable_job_id IN ({marks(chunk)})", chunk):
            resources.setdefault(int(job), []).append(int(res))
        for job, kind in db.query(
                f"SELECT job_id, type FROM event_logs WHERE job_id IN ({marks(chunk)})", chunk):
            events.setdefault(int(job), []).append(str(kind))
        for job, since in db.query(
                "SELECT job_id, MIN(date_start) FROM job_state_logs WHERE job_state = %s "
                f"AND job_id IN ({marks(chunk)}) GROUP BY job_id", ["Running", *chunk]):
            running[int(job)] = int(since)
    units = per_unit(db, {t for g in groups.values() for lv in g.values() for _, t, _ in lv})
    out = {}
    for job_id, (_, state, sub, start, stop, code, assigned, queue, user, cmd) in rows.items():
        mold_rows = sorted(molds.get(job_id, []))
        mold = next((m for m in mold_rows if m[0] == assigned), mold_rows[0] if mold_rows
                    else None)
        levels = [[(t, v) for _, t, v in sorted(lv)]
                  for _, lv in sorted(groups.get(mold[0], {}).items())] if mold else []
        out[job_id] = metrics.OarJob(
            job_id=job_id, state=str(state), submission_time=int(sub),
            start_time=running.get(job_id, int(start)),
            stop_time=int(stop), exit_code=None if code is None else int(code),
            walltime=mold[1] if mold else None,
            requested=metrics.requested_resources(levels, units),
            resources=tuple(sorted(resources.get(job_id, []))),
            events=tuple(events.get(job_id, [])), queue=str(queue), user=str(user),
            command=str(cmd or ""),
        )
    return out


def resources(db: Db) -> list[tuple[int, str]]:
    """(resource_id, network_address) of the test bed's resources, in Batsim order."""
    return metrics.order_resources((int(r), str(n)) for r, n in db.query(
        "SELECT resource_id, network_address FROM resources"))


def node_spans(res: list[tuple[int, str]]) -> list[tuple[str, int, int]]:
    """(node, first index, last index) of each run of consecutive resources of one node."""
    spans: list[tuple[str, int, int]] = []
    for i, (_, node) in enumerate(res):
        if spans and spans[-1][0] == node and spans[-1][2] == i - 1:
            spans[-1] = (node, spans[-1][1], i)
        else:
            spans.append((node, i, i))
    return spans


def ids_since(db: Db, since: int) -> list[int]:
    return [int(j) for (j,) in db.query(
        "SELECT job_id FROM jobs WHERE submission_time >= %s ORDER BY job_id", (since,))]


def existing_ids(db: Db, ids: Sequence[int]) -> list[int]:
    found: list[int] = []
    for chunk in chunks(list(ids), CHUNK):
        found += [int(j) for (j,) in db.query(
            f"SELECT job_id FROM jobs WHERE job_id IN ({marks(chunk)})", chunk)]
    return sorted(found)


# ---------------------------------------------------------------------------- selection

@dataclass
class ReplayRun:
    """A replay's output directory: its metadata and mapping rows."""

    meta: dict[str, Any]
    rows: list[dict[str, str]]

    @classmethod
    def load(cls, directory: Path) -> ReplayRun:
        try:
            meta = json.loads((directory / META).read_text())
            with (directory / MAPPING).open(newline="") as f:
                rows = list(csv.DictReader(f))
        except (OSError, ValueError) as e:
            raise ReportError(f"{directory}: not a replay output directory ({e})") from None
        return cls(meta, rows)

    @property
    def time_scale(self) -> float:
        return float(self.meta.get("options", {}).get("time_scale", 1.0))

    def oar_ids(self) -> list[int]:
        return [int(r["oar_job_id"]) for r in self.rows if r.get("oar_job_id")]


def replay_records(run: ReplayRun, jobs: dict[int, metrics.OarJob],
                   index: dict[int, int] | None = None) -> list[metrics.JobRecord]:
    """Records of a replay: trace ids; rejected jobs at their scheduled times."""
    start = float(run.meta.get("start_epoch", 0.0))
    subs = [jobs[int(r["oar_job_id"])].submission_time for r in run.rows
            if r.get("oar_job_id") and int(r["oar_job_id"]) in jobs]
    rejected_at = [start + float(r["scheduled"]) for r in run.rows if not r.get("oar_job_id")]
    origin = min(subs + rejected_at, default=start)
    name = str(run.meta.get("name", ""))
    out = []
    for r in sorted(run.rows, key=lambda r: float(r["scheduled"])):  # trace order
        trace_wait = (float(r["trace_wait"]) / run.time_scale if r.get("trace_wait") else None)
        profile = r.get("profile") or (f"sim {r['arguments']}" if r.get("arguments") else "")
        res = int(r["res"]) if r.get("res") else int(r.get("trace_res") or 0) or None
        oar_id = int(r["oar_job_id"]) if r.get("oar_job_id") else None
        if oar_id is not None and oar_id in jobs:
            out.append(metrics.record_from_oar(
                jobs[oar_id], origin, job_id=r["trace_job_id"], workload_name=name,
                profile=profile, trace_wait=trace_wait, requested=res,
                extra={"trace_res": int(r["trace_res"])} if r.get("trace_res") else None,
                index=index))
        elif oar_id is None:
            out.append(metrics.JobRecord(
                job_id=r["trace_job_id"], workload_name=name, profile=profile,
                submission_time=start + float(r["scheduled"]) - origin,
                final_state=metrics.REJECTED, requested_number_of_resources=res,
                requested_time=float(r["walltime"]) if r.get("walltime") else None,
                metadata={"reason": r.get("reason", "")}, trace_wait=trace_wait))
    return out


def parse_since(text: str) -> int:
    """Epoch seconds, or an ISO 8601 date (local time when no zone is given)."""
    if re.fullmatch(r"\d+", text):
        return int(text)
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        raise ReportError(f"--since {text!r}: give epoch seconds or an ISO 8601 date") from None


def parse_range(text: str) -> list[int]:
    try:
        return [int(i) for i in RangeSet(text.replace(" ", ""))]
    except (RangeSetParseError, ValueError) as e:
        raise ReportError(f"--jobs {text!r}: not a job id range like 100-200,250 ({e})") from None


# ------------------------------------------------------------------------------ outputs

def write_jobs_csv(records: Iterable[metrics.JobRecord], path: Path) -> None:
    """Batsim's jobs.csv: a header, then one row per record."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, metrics.JOBS_CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(metrics.jobs_csv_row(r) for r in records)


def write_outputs(records: list[metrics.JobRecord], nb_res: int, out: Path, *, tau: float,
                  title: str, plot: bool, now: float | None,
                  nodes: Sequence[tuple[str, int, int]] = ()) -> dict[str, Any]:
    """jobs.csv, schedule.json, gantt/utilisation figures, waits.csv (+ figure) when known."""
    out.mkdir(parents=True, exist_ok=True)
    write_jobs_csv(records, out / "jobs.csv")
    schedule = metrics.summary(records, nb_res, tau)
    boxes = metrics.gantt_boxes(records, now)
    clashes = metrics.overlaps(boxes)
    schedule["nb_resource_overlaps"] = len(clashes)
    (out / "schedule.json").write_text(json.dumps(schedule, indent=2, sort_keys=True) + "\n")
    waits = metrics.wait_comparison(records)
    if waits:
        with (out / "waits.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, ["job_id", "trace_wait", "oar_wait", "difference"])
            writer.writeheader()
            writer.writerows(waits)
    if plot:
        end = max([b.end for b in boxes] + [schedule["makespan"]])
        plots.gantt(boxes, nb_res, out / "gantt", f"{title}: jobs on resources", nodes)
        util = "" if schedule["utilisation"] is None else (
            f" (mean {schedule['utilisation']:.0%} up to the makespan)")
        plots.utilisation(metrics.utilisation_series(records, now), nb_res, end,
                          out / "utilisation", f"{title}: utilisation{util}")
        if waits:
            plots.waits(waits, out / "waits", f"{title}: waits in OAR vs the trace")
    if clashes:
        print(f"orpheus report: warning: {len(clashes)} resource overlaps, e.g. {clashes[:3]}",
              file=sys.stderr)
    return schedule


# --------------------------------------------------------------------------------- CLI

def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "report", help="jobs.csv, schedule.json and figures for a replay or a set of OAR jobs",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--replay", type=Path, metavar="DIR",
                       help="the -o directory of `orpheus replay` (its mapping.csv)")
    which.add_argument("--jobs", metavar="RANGE", help="OAR job ids, e.g. 100-200,250")
    which.add_argument("--since", metavar="TIME",
                       help="jobs submitted since TIME (epoch seconds or ISO 8601 date)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    p.add_argument("--tau", type=float, default=metrics.DEFAULT_TAU,
                   help="bounded-slowdown threshold in seconds (default 10)")
    p.add_argument("--title", help="figure titles (default: the workload's name or 'OAR jobs')")
    p.add_argument("--no-plots", action="store_true", help="write only CSV and JSON files")
    p.add_argument("--conf", type=Path, default=oarconf.DEFAULT_PATH, help="OAR's oar.conf")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        if args.tau <= 0:
            raise ReportError("--tau must be > 0")
        run = ReplayRun.load(args.replay) if args.replay else None
        db_params = oarconf.DbParams.from_conf(oarconf.read(args.conf))
        with Db(db_params) as db:
            if run is not None:
                ids = run.oar_ids()
            elif args.jobs:
                ids = existing_ids(db, parse_range(args.jobs))
            else:
                ids = ids_since(db, parse_since(args.since))
            jobs = fetch_jobs(db, ids)
            res = resources(db)
            now = db.now()  # OAR's clock: running jobs are drawn up to it (virtual or not)
        index = metrics.resource_index(res,
                                       (r for j in jobs.values() for r in j.resources))
        if run is not None:
            records = replay_records(run, jobs, index)
            title = args.title or str(run.meta.get("name") or "replay")
        else:
            if not jobs:
                raise ReportError("no OAR job matches the selection")
            origin = min(j.submission_time for j in jobs.values())
            records = [metrics.record_from_oar(jobs[i], origin, index=index)
                       for i in sorted(jobs)]
            title = args.title or "OAR jobs"
        origin_now = now - _origin_epoch(records, jobs, now)
        schedule = write_outputs(records, len(res), args.output, tau=args.tau, title=title,
                                 plot=not args.no_plots, now=origin_now, nodes=node_spans(res))
    except (ReportError, OSError) as e:
        print(f"orpheus report: {e}", file=sys.stderr)
        return 2
    states = schedule["nb_jobs_per_final_state"]
    print(f"report: {schedule['nb_jobs']} jobs ({schedule['nb_jobs_finished']} finished, "
          f"{schedule['nb_jobs_not_finished']} not yet): "
          + ", ".join(f"{k} {v}" for k, v in states.items() if v)
          + f"; makespan {schedule['makespan']:g} s -> {args.output}")
    return 0


def _origin_epoch(records: list[metrics.JobRecord], jobs: dict[int, metrics.OarJob],
                  now: float) -> float:
    """The epoch of time 0 of the records (for drawing running jobs up to ``now``)."""
    for r in records:
        oar_id = r.metadata.get("oar_job_id")
        if oar_id in jobs:
            return jobs[oar_id].submission_time - r.submission_time
    return now

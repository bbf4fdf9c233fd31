"""``orpheus compare RUN... REFERENCE -o DIR``: one or more runs against a reference schedule.

Each RUN and the REFERENCE is a jobs.csv (Batsim's, or a replay report's), a directory holding
one (DIR/jobs.csv or DIR/report/jobs.csv), a ``.real.csv`` (data/real-oar) or a real OAR's
``oarstat -J`` / ``oarstat -J --gantt`` export, told apart by content. Jobs are matched by id
(``--match oar``: by OAR job id); times count from each side's first matched submission.
Writes jobs.csv-like per-job rows (``compare_jobs.csv``), ``summary.csv``, ``compare.json``
and figures; prints the summary. docs/compare.md describes every file.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from orpheus import compare, metrics


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "compare", help="compare replays with a reference schedule (jobs.csv, oarstat JSON)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                   help="a run: jobs.csv, replay or report directory, .real.csv, oarstat JSON")
    p.add_argument("reference", type=Path, metavar="REFERENCE",
                   help="the reference, in any of the same formats")
    p.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    p.add_argument("--tau", type=float, default=metrics.DEFAULT_TAU,
                   help="bounded-slowdown threshold in seconds (default 10)")
    p.add_argument("--match", choices=compare.MATCH_KEYS, default="id",
                   help="match jobs by job id (default) or by OAR job id")
    p.add_argument("--no-plots", "--no-plot", action="store_true",
                   help="write only the CSV and JSON files")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        if not args.tau > 0:
            raise compare.CompareError("--tau must be > 0")
        reference = compare.read_schedule(args.reference)
        comparisons = [compare.compare(compare.read_schedule(r), reference, args.match)
                       for r in args.runs]
        result = write_outputs(comparisons, args.output, tau=args.tau, match=args.match,
                               plot=not args.no_plots)
    except (compare.CompareError, OSError) as e:
        print(f"orpheus compare: {e}", file=sys.stderr)
        return 2
    show(result)
    return 0


def write_outputs(comparisons: Sequence[compare.Comparison], out: Path, *, tau: float,
                  match: str, plot: bool) -> dict[str, Any]:
    """compare_jobs.csv, summary.csv, compare.json and (``plot``) the figures, in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    reference = comparisons[0].reference
    runs = [compare.summary(c, tau) for c in comparisons]
    spread = compare.variability(runs)
    result = {"reference": {"path": reference.path, "format": reference.format},
              "match": match, "tau": tau, "runs": runs, "summary": spread}
    with (out / "compare_jobs.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["run", *compare.JOB_COLUMNS])
        writer.writeheader()
        for i, c in enumerate(comparisons, 1):
            writer.writerows({"run": str(i), **row} for row in compare.job_rows(c))
    with (out / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, compare.SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(compare.summary_rows(spread))
    (out / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    if plot:
        draw(comparisons, out)
    return result


def _short(path: str) -> str:
    """A file's name (a jobs.csv with its folder's) for figure labels."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.name == "jobs.csv" and p.parent.name else p.name


def _label(i: int, c: compare.Comparison, n: int) -> str:
    return f"run {i}: {_short(c.run.path)}" if n > 1 else f"run: {_short(c.run.path)}"


def draw(comparisons: Sequence[compare.Comparison], out: Path) -> None:
    """wait_scatter, wait_cdf and gantt figures (PNG and SVG)."""
    from orpheus import plots  # matplotlib only when drawing

    n = len(comparisons)
    reference = comparisons[0].reference
    title = (f"{n} runs" if n > 1 else _short(comparisons[0].run.path)) + (
        f" vs {_short(reference.path)}")
    scatter = [(_label(i, c, n), [(ref.waiting_time, run.waiting_time) for run, ref in c.pairs
                                  if run.waiting_time is not None
                                  and ref.waiting_time is not None])
               for i, c in enumerate(comparisons, 1)]
    plots.wait_scatter(scatter, out / "wait_scatter", f"waits per job\n{title}")
    ref_waits = [w for r in comparisons[0].side("reference")
                 if (w := r.waiting_time) is not None]
    cdfs = [(f"reference: {_short(reference.path)}", ref_waits)] + [
        (_label(i, c, n), [w for r in c.side("run") if (w := r.waiting_time) is not None])
        for i, c in enumerate(comparisons, 1)]
    plots.wait_cdfs([(label, ws) for label, ws in cdfs if ws], out / "wait_cdf",
                    f"waits, cumulative distribution\n{title}")
    panels = []
    for label, schedule, records in [
            (f"reference: {_short(reference.path)}", reference, comparisons[0].side("reference")),
            *((_label(i, c, n), c.run, c.side("run")) for i, c in enumerate(comparisons, 1))]:
        if not schedule.has_resources:
            label += " (no resource ids: boxes stacked first-fit by resource count)"
        panels.append((label, metrics.gantt_boxes(compare.gantt_records(schedule, records))))
    plots.compare_gantts(panels, out / "gantt", f"matched jobs on resources\n{title}")


def _value(x: float | None) -> str:
    return "-" if x is None else f"{x:,.6g}" if not float(x).is_integer() else f"{int(x):,}"


def show(result: dict[str, Any]) -> None:
    """The summary as a table (one run: its values; several: their spread)."""
    runs = result["runs"]
    over = f", {len(runs)} runs" if len(runs) > 1 else ""
    table = Table(title=f"compared with {result['reference']['path']} "
                        f"(bounded slowdown tau {result['tau']:g} s{over})")
    table.add_column("metric", no_wrap=True)
    table.add_column("reference", justify="right")
    if len(runs) == 1:
        table.add_column("run", justify="right")
    else:
        for name in ("mean", "std", "min", "max"):
            table.add_column(name, justify="right")
    table.add_column("ratio" if len(runs) == 1 else "mean / ref", justify="right")
    table.add_column("difference", justify="right")
    for metric, v in result["summary"].items():
        values = [v["mean"]] if len(runs) == 1 else [v[k] for k in ("mean", "std", "min", "max")]
        table.add_row(metric, _value(v["reference"]), *map(_value, values), _value(v["ratio"]),
                      _value(v["difference"]))
    console = Console(width=max(120, Console().width))
    console.print(table)
    for i, run in enumerate(runs, 1):
        jobs = run["jobs"]
        print(f"run {i} ({run['path']}): {jobs['matched']} jobs matched, "
              f"{jobs['only_in_run']} only in the run, {jobs['only_in_reference']} only in the "
              "reference")

"""OAR under Orpheus against a real OAR: the 800-job workloads a real OAR 2.5 ran on 32
Grid'5000 nodes in 2016 (``data/real-oar/``), replayed on the virtual clock at time scale 1.

For each seed: the test bed becomes the real run's platform on the virtual clock, with
Debian's scheduler settings unless told otherwise (the real run's queue used OAR3's kamelot,
which reads every waiting job, where OAR 2.5.9's scheduler takes 30 per user a pass:
``--max-jobs-per-user 1000`` lets every job in). One resource per node, as many nodes as the
reference lists (an ``oarstat -J --gantt`` export) or, for a ``.real.csv``, as the real run
had busy at once at most (seed 1's Grid'5000 reservation had 22 nodes alive, seed 0's 32;
``--nodes`` overrides). The workload is the one given when the reference ran it (the same
resource count and walltime for at least 90 % of its jobs, by id); otherwise the reference
ran another workload (seed 0's did) and its own jobs are replayed as they ran (submission,
resources, walltime, execution time: :func:`orpheus.compare.as_run`). It is replayed with
``--unit node`` (jobs ask ``nodes=res,walltime=...`` as the real replay did; oarexec mode;
a given workload's jobs run their delay plus the overhead the real run's jobs show, the
median of execution time minus delay: ``--job-overhead``),
reported, and compared with the real run by ``orpheus compare``. Prints, per seed, the
makespan and the mean wait of both runs with their deviation, against the targets (makespan
within 0.5 %, mean wait within 10 %), and the wall time and speed-up. ``--runs N`` replays each
seed N times and gives each metric's mean and spread. A running daemon is refused
(``--stop-daemon`` stops it); the test bed is given back as it was found.

Run as root on the test bed: ``python benchmarks/bench_fidelity.py [--seeds 0 1] [--runs 1]``;
other runs of that experiment: ``--pair WORKLOAD.json REAL.csv`` (repeatable; a real run's
``oarstat -J`` export works as the reference too).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import benchbed  # run as a script: benchmarks/ is on the path
from rich.console import Console
from rich.table import Table

from oarlib.testbed import Config
from orpheus import compare
from orpheus.testbed_cli import bring_up
from orpheus.workload import read_workload

DATA = Path(__file__).resolve().parents[1] / "data" / "real-oar"
ORPHEUS = [sys.executable, "-m", "orpheus.cli"]
TARGETS = {"makespan": 0.005, "mean_waiting_time": 0.10}
SAME_WORKLOAD = 0.9  # the share of jobs that must agree for the reference to have run it


def orpheus(*args: str) -> None:
    subprocess.run([*ORPHEUS, *args], check=True)


def replay_once(workload: Path, out: Path, mode: str, overhead: float) -> float:
    """Replay, report; return the wall seconds the replay took."""
    orpheus("run", "--daemon", "--mode", mode, "--log-file", str(out.with_suffix(".log")))
    try:
        t0 = time.monotonic()
        orpheus("replay", str(workload), "-o", str(out), "--unit", "node", "--timeout", "1800",
                "--job-overhead", f"{overhead:g}", "--no-progress")
        wall = time.monotonic() - t0
    finally:
        benchbed.stop_daemon()
    orpheus("report", "--replay", str(out), "-o", str(out / "report"))
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1],
                    help="seeds of data/real-oar (default 0 1)")
    ap.add_argument("--pair", nargs=2, action="append", default=[], type=Path,
                    metavar=("WORKLOAD", "REFERENCE"),
                    help="a workload and what a real OAR did with it (repeatable)")
    ap.add_argument("--runs", type=int, default=1, help="replays per seed (default 1)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-fidelity"))
    ap.add_argument("--mode", choices=("oarexec", "event"), default="oarexec")
    ap.add_argument("--sched-interval", type=int, default=Config.sched_interval,
                    help="SCHEDULER_MIN_TIME_BETWEEN_2_CALLS (default: Debian's)")
    ap.add_argument("--max-jobs-per-user", type=int, default=Config.max_jobs_per_user,
                    help="SCHEDULER_FAIRSHARING_MAX_JOB_PER_USER (default: Debian's, "
                    "%(default)s; the real run's kamelot read every waiting job)")
    ap.add_argument("--security-time", type=int, default=Config.security_time,
                    help="SCHEDULER_JOB_SECURITY_TIME (default: Debian's)")
    ap.add_argument("--nodes", type=int,
                    help="nodes of the real run's platform, one resource each (default: "
                    "the reference's, see above)")
    ap.add_argument("--job-overhead", type=float, metavar="S",
                    help="seconds added to each job of a given workload (default: the "
                    "reference's median of execution time minus run time, see above)")
    benchbed.add_options(ap)
    args = ap.parse_args()
    found = benchbed.claim(args)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        pairs = [(DATA / f"g5k_workload_delay_seed{seed}_size32.json",
                  DATA / f"g5k_workload_delay_seed{seed}_size32.real.csv") for seed in args.seeds]
        for workload, reference in pairs + [tuple(p) for p in args.pair]:
            seed = workload.stem
            workload, nodes, overhead, ran = platform(workload, reference, args)
            bring_up(Config(nodes=nodes, cores=1, clock="virtual",
                            sched_interval=args.sched_interval,
                            max_jobs_per_user=args.max_jobs_per_user,
                            security_time=args.security_time))
            runs, walls = [], []
            for n in range(args.runs):
                out = args.out / f"{seed}-run{n}"
                walls.append(replay_once(workload, out, args.mode, overhead))
                runs.append(str(out))
            cmp_dir = args.out / f"{seed}-compare"
            orpheus("compare", *runs, str(reference), "-o", str(cmp_dir))
            metas = [json.loads((Path(r) / "replay.json").read_text()) for r in runs]
            rows.append((seed, nodes, ran, json.loads((cmp_dir / "compare.json").read_text()),
                         walls, [m["speedup"] for m in metas]))
    finally:
        benchbed.give_back(found)
    return report(rows)


def platform(workload: Path, reference: Path,
             args: argparse.Namespace) -> tuple[Path, int, float, str]:
    """(the workload to replay, the nodes of the platform, the job overhead, what is
    replayed): the given workload if the reference ran it, its jobs running as much longer
    than their run time as the reference's did (``compare.job_overhead``); else the
    reference's jobs as they ran (their execution times hold that overhead already)."""
    ref = compare.read_schedule(reference)
    nodes = args.nodes or compare.platform_size(ref)
    jobs = read_workload(workload).jobs
    share = compare.agreement(jobs, ref)
    if share >= SAME_WORKLOAD:
        overhead = compare.job_overhead(jobs, ref) if args.job_overhead is None \
            else args.job_overhead
        return workload, nodes, overhead, f"given, +{overhead:g} s a job"
    print(f"{reference.name} did not run {workload.name} (only {share:.0%} of its jobs "
          "agree): replaying the reference's own jobs as they ran")
    as_run = args.out / f"{workload.stem}.as-run.json"
    as_run.write_text(json.dumps(compare.as_run(ref), indent=1))
    return as_run, nodes, 0.0, f"as run ({share:.0%} agree)"


def _metric(cmp: dict, name: str) -> tuple[float, float]:
    """(ours, real) for a metric of compare.json, ours as the mean over the runs."""
    m = cmp["summary"][name]
    return float(m["mean"]), float(m["reference"])


def report(rows: list) -> int:
    table = Table(title="OAR under Orpheus (virtual clock, time scale 1) vs the real OAR run")
    for col in ("workload", "nodes", "jobs replayed", "makespan real", "ours", "dev",
                "mean wait real", "ours", "dev", "wall s", "speed-up", "targets"):
        table.add_column(col, justify="right")
    ok = True
    for seed, nodes, ran, cmp, walls, speedups in rows:
        cells, met = [seed.removeprefix("g5k_workload_delay_"), str(nodes), ran], []
        for name, target in TARGETS.items():
            ours, real = _metric(cmp, name)
            dev = ours / real - 1
            met.append(abs(dev) <= target)
            cells += [f"{real:.1f}", f"{ours:.1f}", f"{dev:+.1%}"]
        ok &= all(met)
        cells += [f"{sum(walls) / len(walls):.0f}", f"{sum(speedups) / len(speedups):.0f}",
                  "met" if all(met) else "[red]missed[/]"]
        table.add_row(*cells)
    Console(width=160).print(table)  # whole in a log, not cut to 80 columns
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""End-to-end throughput of OAR + Orpheus, and Orpheus's own cost and lateness.

For each end mode: 500 zero-length jobs (one ``oarsub --array-param-file``) on the test bed's
64 fake cores, with OAR's scheduler interval at 1 s and a high per-user cap; prints jobs/s from
submission to the last ``Terminated``, the daemon's share of the machine's CPU time over the
run, and its lateness (end notification minus intended end) p50/p99.

``--resources core=64 --jobs 30`` measures the other limit: every job takes the whole test bed,
so each needs a scheduler pass after the previous end, and the figure is OAR's turnaround
from one end to the next start (with and without ``--rekick``, see docs/orpheus.md).

The bed is brought to ``--nodes`` x ``--cores`` (16 x 4 by default; the reference figures are
for that size); a running daemon is refused (``--stop-daemon`` stops it), and the bed is given
back as it was found. Run as root on the test bed:
``python benchmarks/bench_orpheus.py [--jobs 500] [--nodes 16 --cores 4]``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchbed  # run as a script: benchmarks/ is on the path

from oarlib import conf as oarconf
from oarlib import oarcli
from oarlib.db import Db
from oarlib.testbed import Config
from orpheus.testbed_cli import bring_up

# jobs/s reached so far on a 2-core machine (with a re-kick after 1.2 s: shared/reference notes)
REFERENCE = {"event": 20.0, "oarexec": 6.0}


def cpu_ticks(pid: int | None = None) -> int:
    if pid is None:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        return sum(int(x) for x in fields[:8])
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(stat[11]) + int(stat[12])  # utime + stime


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run_mode(variant: str, jobs: int, resources: str, user: str,
             workdir: Path) -> dict[str, float]:
    """One run; ``variant`` is a mode, optionally with ``+rekick`` (``--rekick 1.2``)."""
    mode, _, extra = variant.partition("+")
    record = workdir / f"record-{variant}.csv"
    log = workdir / f"orpheus-{variant}.log"
    rekick = ["--rekick", "1.2"] if extra == "rekick" else []
    proc = subprocess.Popen([sys.executable, "-m", "orpheus.cli", "run", "--mode", mode,
                             "--record", str(record), "--log-file", str(log), *rekick])
    time.sleep(1.5)
    if proc.poll() is not None:
        raise SystemExit(f"daemon failed: {log.read_text()}")
    params = oarconf.DbParams.from_conf(oarconf.read())
    cpu0, all0 = cpu_ticks(proc.pid), cpu_ticks()
    t0 = time.time()
    ids = oarcli.oarsub_array(["{exec_time=0}"] * jobs, "sim", resources, user=user)
    marks = ",".join(["%s"] * len(ids))
    with Db(params) as db:
        while True:
            left = db.scalar(f"SELECT count(*) FROM jobs WHERE job_id IN ({marks}) "
                             "AND state NOT IN ('Terminated', 'Error')", ids)
            if left == 0:
                break
            if time.time() - t0 > 1200:
                raise SystemExit(f"{mode}: {left} jobs still not ended after 1200 s")
            time.sleep(0.2)
        errors = db.scalar(f"SELECT count(*) FROM jobs WHERE job_id IN ({marks}) "
                           "AND state = 'Error'", ids)
    elapsed = time.time() - t0
    cpu1, all1 = cpu_ticks(proc.pid), cpu_ticks()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    with record.open() as f:
        late = [float(r["lateness"]) * 1000 for r in csv.DictReader(f)]
    return {"jobs": len(ids), "errors": errors, "seconds": elapsed, "jobs_s": len(ids) / elapsed,
            "cpu_share": (cpu1 - cpu0) / max(1, all1 - all0),
            "p50_ms": percentile(late, 0.5), "p99_ms": percentile(late, 0.99)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--modes", default="event,event+rekick,oarexec,oarexec+rekick")
    ap.add_argument("--resources", default="core=1", help="oarsub -l of every job")
    ap.add_argument("--user", default="alice")
    ap.add_argument("--nodes", type=int, default=16, help="fake nodes of the bed (16)")
    ap.add_argument("--cores", type=int, default=4, help="cores per node (4)")
    benchbed.add_options(ap)
    args = ap.parse_args()
    found = benchbed.claim(args)  # the test bed serves one daemon at a time
    try:
        bring_up(Config(nodes=args.nodes, cores=args.cores, sched_interval=1,
                        max_jobs_per_user=100000))
        run_modes(args)
    finally:
        benchbed.give_back(found)
    print("orpheus CPU = the daemon's share of all CPU time spent on the machine during the run;"
          " lateness target: p99 < 50 ms")
    return 0


def run_modes(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o777)
        print(f"{'mode':15} {'jobs':>5} {'err':>4} {'seconds':>8} {'jobs/s':>7} {'ref':>5} "
              f"{'ratio':>6} {'orpheus CPU':>11} {'p50 ms':>7} {'p99 ms':>7}")
        for mode in args.modes.split(","):
            r = run_mode(mode, args.jobs, args.resources, args.user, workdir)
            ref = REFERENCE[mode.partition("+")[0]] if args.resources == "core=1" else math.nan
            print(f"{mode:15} {r['jobs']:5.0f} {r['errors']:4.0f} {r['seconds']:8.1f} "
                  f"{r['jobs_s']:7.1f} {ref:5.1f} {r['jobs_s'] / ref:6.2f} "
                  f"{r['cpu_share']:10.1%} {r['p50_ms']:7.1f} {r['p99_ms']:7.1f}")


if __name__ == "__main__":
    sys.exit(main())

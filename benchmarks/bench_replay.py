"""The whole bundled production trace through OAR + Orpheus, on a test bed of its size.

Replays ``gofree_sample.swf`` (1,448 jobs over 64 days, a 352-core OAR cluster) on 22 fake
nodes x 16 cores at time scale 15000 (under 10 minutes), writes the report, checks that every
job is accounted for (submitted = ended + rejected with a reason) and prints the figures:
wall time, submission lateness, counts per final state, mean waits in OAR and in the trace.
With ``--clock virtual`` the trace is replayed at time scale 1 on the virtual clock (oarexec
mode; docs/virtual-clock.md), and the figures add the speed-up and the walltime kills. A
running daemon is refused (``--stop-daemon`` stops it); the test bed is given back as it was
found.

Run as root on the test bed: ``python benchmarks/bench_replay.py [--trace PATH] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import benchbed  # run as a script: benchmarks/ is on the path

from oarlib.testbed import Config
from orpheus import cli
from orpheus.testbed_cli import bring_up

DATA = Path(__file__).resolve().parents[1] / "data"
TARGET_S = 600  # the whole trace in under 10 minutes of wall time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trace", type=Path, default=DATA / "gofree_sample.swf")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-replay"))
    ap.add_argument("--time-scale", help="default: 15000, or 1 with --clock virtual")
    ap.add_argument("--clock", choices=("real", "virtual"), default="real")
    ap.add_argument("--nodes", type=int, default=22, help="fake nodes (22: the trace's 352 "
                    "cores)")
    ap.add_argument("--cores", type=int, default=16, help="cores per node (16)")
    benchbed.add_options(ap)
    args = ap.parse_args()
    virtual = args.clock == "virtual"
    scale = args.time_scale or ("1" if virtual else "15000")
    found = benchbed.claim(args)
    bring_up(Config(nodes=args.nodes, cores=args.cores, sched_interval=1,
                    max_jobs_per_user=1000, security_time=60 if virtual else 1,
                    clock=args.clock))
    t0 = time.time()
    try:
        daemon = ["--mode", "oarexec"] if virtual else ["--mode", "event", "--rekick", "1.2"]
        subprocess.run([sys.executable, "-m", "orpheus.cli", "run", "--daemon", *daemon,
                        "--log-file", "/tmp/bench-replay-orpheus.log"], check=True)
        time.sleep(1)
        replay = ["replay", str(args.trace), "-o", str(args.out), "--time-scale",
                  scale, "--timeout", "1200"]
        assert cli.main(replay) == 0
        assert cli.main(["report", "--replay", str(args.out), "-o",
                         str(args.out / "report")]) == 0
    finally:
        benchbed.give_back(found)
    meta = json.loads((args.out / "replay.json").read_text())
    with (args.out / "mapping.csv").open() as f:
        mapping = list(csv.DictReader(f))
    schedule = json.loads((args.out / "report" / "schedule.json").read_text())
    counts = meta["counts"]
    unexplained = [m for m in mapping if m["status"] == "rejected" and not m["reason"]]
    print(f"trace jobs {len(mapping)}: submitted {counts['submitted']}, rejected "
          f"{counts['rejected']}, ended {counts['done']}; wall time {time.time() - t0:.0f} s")
    print(f"submission lateness (s): {meta['lateness_s']}")
    print(f"{meta['clock']} clock: {meta['clock_seconds']:.0f} s in {meta['wall_seconds']:.0f} s"
          f" of wall time (speed-up {meta['speedup']:.1f}); target < {TARGET_S} s: ratio "
          f"{meta['wall_seconds'] / TARGET_S:.2f}")
    print(f"final states: {schedule['nb_jobs_per_final_state']}")
    print(f"makespan {schedule['makespan']:.0f} s, mean wait {schedule['mean_waiting_time']:.1f}"
          f" s, utilisation {schedule.get('utilisation')}")
    ok = (counts["submitted"] + counts["rejected"] == len(mapping)
          and counts["done"] == counts["submitted"] and not unexplained)
    print("every job accounted for" if ok else "SOME JOBS ARE NOT ACCOUNTED FOR")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

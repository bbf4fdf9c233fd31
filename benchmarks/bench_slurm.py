"""The reference a user would pick instead: bench_scale's zero-length jobs through Slurm's emulator.

For each bed NODESxCORES (``--beds 16x4,64x16,256x32,1000x32``) Slurm 22.05's front-end
emulator (slurm_emulator.py: one ``slurmd`` stands for ``node[1-N]``; cons_tres with CR_Core,
backfill) is brought to that size, with ``SchedulerParameters`` ``--sched-params``
(``batch_sched_delay=0``: by default Slurm lets a batch job wait up to 3 s after its
submission, and bench_scale's OAR runs with a 1 s scheduler interval; ``''`` for Slurm's
defaults). Then this measures, as bench_scale.py does for OAR:

- **first start**: from the ``sbatch --array`` of ``--jobs`` one-core zero-length jobs
  (``--wrap true``) to the first one started (jobcomp/filetxt's StartTime, whole seconds as
  OAR's ``date_start``);
- **jobs/s** end to end, from that submission to the last job's jobcomp record, for those
  one-core jobs and for ``--node-jobs`` whole-node ones (``-N1 --exclusive``);
- the main scheduler's mean cycle (``sdiag``) over both waves.

Jobs are submitted as ``--user`` (alice) if that user exists, else as the caller. With
``--oar OUT/scale.json`` (bench_scale.py's) OAR's jobs/s are printed beside Slurm's, with
the ratio OAR/Slurm. Rows go to ``OUT/slurm.csv`` and ``OUT/slurm.json``; the emulator's
daemons are stopped at the end unless ``--no-stop``.

Run as root (the first run installs the emulator's packages and builds what it needs,
``slurm_emulator.ensure``):
``python benchmarks/bench_slurm.py [--beds 16x4,1000x32] [--oar bench-scale/scale.json]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import pwd
import re
import subprocess
import sys
import time
from pathlib import Path

import slurm_emulator as emu  # run as a script: benchmarks/ is on the path
from bench_scale import add_wave_options

MEAN_CYCLE = re.compile(r"Main schedule statistics.*?Mean cycle:\s+(\d+)", re.S)


def submit(count: int, resources: list[str], user: str | None) -> str:
    """One ``sbatch --array`` of ``count`` zero-length jobs; its array job id."""
    cmd = ["sbatch-emulator", "--parsable", f"--array=1-{count}", *resources, "-o", "/dev/null",
           "-D", "/tmp", "--wrap", "true"]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True, env=emu.env())
    return run.stdout.strip().split(";")[0]


def wave(count: int, resources: list[str], user: str | None,
         timeout: float) -> dict[str, float]:
    """``count`` zero-length jobs in one array: seconds to the first start, jobs/s."""
    offset = emu.JOBCOMP.stat().st_size if emu.JOBCOMP.exists() else 0
    t0 = time.time()
    array = submit(count, resources, user)
    deadline = t0 + timeout
    while True:
        with emu.JOBCOMP.open() as f:
            f.seek(offset)
            done = [r for r in emu.parse_jobcomp(f.read()) if r.get("ArrayJobId") == array]
        if len(done) >= count:
            break
        if time.time() > deadline:
            raise SystemExit(f"Slurm: {len(done)} of {count} jobs ended after {timeout} s")
        time.sleep(0.1)
    elapsed = time.time() - t0
    failed = [r["JobId"] for r in done if r["JobState"] != "COMPLETED"]
    if failed:
        raise SystemExit(f"Slurm: jobs {failed} did not complete")
    return {"first_start_s": min(float(r["start"]) for r in done) - int(t0),
            "jobs_s": count / elapsed}


def mean_cycle_ms() -> float:
    """The main scheduler's mean cycle since the last ``sdiag -r``, in ms."""
    run = subprocess.run(["sdiag-emulator"], capture_output=True, text=True, check=True,
                         env=emu.env())
    m = MEAN_CYCLE.search(run.stdout)
    return int(m[1]) / 1000 if m else float("nan")


def measure(nodes: int, cores: int, args: argparse.Namespace) -> dict[str, float]:
    t0 = time.time()
    emu.start(nodes, cores, args.sched_params)
    row: dict[str, float] = {"nodes": nodes, "cores": cores, "resources": nodes * cores,
                             "bed_up_s": time.time() - t0}
    subprocess.run(["sdiag-emulator", "-r"], check=True, stdout=subprocess.DEVNULL,
                   env=emu.env())
    one = wave(args.jobs, ["-n1"], args.user, args.timeout)
    whole = wave(min(args.node_jobs, nodes), ["-N1", "--exclusive"], args.user, args.timeout)
    return row | {"first_start_s": one["first_start_s"], "core_jobs_s": one["jobs_s"],
                  "node_jobs_s": whole["jobs_s"], "sched_cycle_ms": mean_cycle_ms()}


def oar_rows(path: Path | None) -> dict[tuple[int, int], dict[str, float]]:
    """bench_scale.py's rows by (nodes, cores)."""
    if path is None:
        return {}
    return {(r["nodes"], r["cores"]): r for r in json.loads(path.read_text())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_wave_options(ap)
    ap.add_argument("--timeout", type=float, default=1800, help="seconds a wave may take")
    ap.add_argument("--user", default="alice", help="submitting user, if it exists (alice)")
    ap.add_argument("--sched-params", default="batch_sched_delay=0",
                    help="SchedulerParameters ('' for Slurm's defaults; default %(default)s)")
    ap.add_argument("--oar", type=Path, help="bench_scale.py's scale.json, for the ratios")
    ap.add_argument("--out", type=Path, default=Path("bench-slurm"), help="output directory")
    ap.add_argument("--stop", action=argparse.BooleanOptionalAction, default=True,
                    help="stop the emulator's daemons at the end (default: yes)")
    args = ap.parse_args()
    beds = [tuple(int(x) for x in b.split("x")) for b in args.beds.split(",")]
    try:
        pwd.getpwnam(args.user)
    except KeyError:
        args.user = None
    oar = oar_rows(args.oar)
    emu.ensure()
    args.out.mkdir(parents=True, exist_ok=True)
    cols = ["resources", "bed_up_s", "first_start_s", "core_jobs_s", "node_jobs_s",
            "sched_cycle_ms"]
    ratios = ["oar_core_jobs_s", "core_oar_slurm", "oar_node_jobs_s", "node_oar_slurm"]
    print(" ".join(f"{c:>15}" for c in ["bed", *cols, *(ratios if oar else [])]))
    rows = []
    try:
        for nodes, cores in beds:
            row = measure(nodes, cores, args)
            if (o := oar.get((nodes, cores))) is not None:
                row |= {"oar_core_jobs_s": o["core_jobs_s"],
                        "core_oar_slurm": o["core_jobs_s"] / row["core_jobs_s"],
                        "oar_node_jobs_s": o["node_jobs_s"],
                        "node_oar_slurm": o["node_jobs_s"] / row["node_jobs_s"]}
            rows.append(row)
            print(f"{f'{nodes}x{cores}':>15} " + " ".join(
                f"{row.get(c, float('nan')):15.2f}" for c in [*cols, *(ratios if oar else [])]),
                flush=True)
    finally:
        if args.stop:
            emu.stop()
    with (args.out / "slurm.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "slurm.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"outputs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The scale study: what OAR 2.5.9 does as its bed grows, with Orpheus running the jobs.

For each bed NODESxCORES (``--beds 16x4,64x16,256x32,1000x32``) the test bed is brought to
that size (with ``LOG_LEVEL`` 3, so that every meta-scheduler pass is logged with its start
and end), an Orpheus daemon is started, and this measures:

- **pass**: the meta-scheduler's pass time (``Starting Meta Scheduler`` to ``End of Meta
  Scheduler`` in oar.log), median over the passes of a phase, with 0, 100 and 1,000 jobs
  waiting (``--waiting``): a job holding every node runs while the waiting one-core jobs are
  submitted, and the scheduler is kicked ``--passes`` times;
- **first start**: from the ``oarsub`` of ``--jobs`` one-core zero-length jobs (one array) to
  the first one Running;
- **jobs/s** end to end, for those one-core jobs and for ``--node-jobs`` whole-node jobs;
- Orpheus's share of the machine's CPU time and its peak memory (VmHWM) during the runs;
- the database's size (PostgreSQL).

Each bed's row is printed as it comes, then written to ``OUT/scale.csv`` and
``OUT/scale.json``, with plots of pass time and jobs/s against resources
(``OUT/scale-pass.{png,svg}``, ``OUT/scale-jobs.{png,svg}``). A running daemon is refused
(``--stop-daemon`` stops it). The bed is given back as it was found (``benchbed``).

Run as root on the test bed: ``python benchmarks/bench_scale.py [--beds 16x4,1000x32]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import benchbed  # run as a script: benchmarks/ is on the path
import matplotlib.pyplot as plt
from bench_orpheus import cpu_ticks

from oarlib import conf as oarconf
from oarlib import oarcli
from oarlib.almighty import notify
from oarlib.db import Db, chunks

LOG = Path("/var/log/oar.log")
NAN = float("nan")
SCHEDULER_TIMEOUT = 30  # oar.conf's default: a pass is cut after it
# what the issue asks of a 1,000 x 32 bed: 100 one-core jobs run; the daemon stays below 5 %
TARGET_CPU_SHARE = 0.05
STAMP = re.compile(r"^\[\w+\] \[([\d-]+ [\d:.]+)\] \[MetaSched\] (Starting Meta Scheduler|"
                   r"End of Meta Scheduler)")


class BedFailed(Exception):
    """OAR did not do what a phase asked in time: the bed's row records why."""


def peak_memory_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pass_times(offset: int) -> list[float]:
    """Seconds of every meta-scheduler pass logged after byte ``offset`` of oar.log."""
    with LOG.open("rb") as f:
        f.seek(offset)
        lines = f.read().decode(errors="replace").splitlines()
    out, start = [], None
    for line in lines:
        if m := STAMP.match(line):
            t = time.mktime(time.strptime(m[1].split(".")[0], "%Y-%m-%d %H:%M:%S")) \
                + float("0." + m[1].split(".")[1])
            if m[2].startswith("Starting"):
                start = t
            elif start is not None:
                out.append(t - start)
                start = None
    return out


def log_size() -> int:
    return LOG.stat().st_size


def wait_ended(db: Db, ids: list[int], timeout: float) -> None:
    deadline = time.time() + timeout
    marks = ",".join(["%s"] * len(ids))
    while db.scalar(f"SELECT count(*) FROM jobs WHERE job_id IN ({marks}) AND state NOT IN "
                    "('Terminated', 'Error')", ids):
        if time.time() > deadline:
            raise BedFailed(f"{len(ids)} jobs not ended after {timeout} s")
        time.sleep(0.5)


def first_running(db: Db, ids: list[int]) -> float:
    marks = ",".join(["%s"] * len(ids))
    return float(db.scalar("SELECT MIN(date_start) FROM job_state_logs WHERE job_state = "
                           f"'Running' AND job_id IN ({marks})", ids))


def wave(db: Db, count: int, resources: str, user: str, timeout: float) -> dict[str, float]:
    """``count`` zero-length jobs in one array: seconds to the first start, jobs/s."""
    offset = log_size()
    t0 = time.time()
    ids = oarcli.oarsub_array(["{exec_time=0}"] * count, "sim", resources, user=user)
    wait_ended(db, ids, timeout)
    elapsed = time.time() - t0
    return {"first_start_s": first_running(db, ids) - int(t0), "jobs_s": count / elapsed,
            "passes": len(pass_times(offset))}


def waiting_passes(db: Db, waiting: int, nodes: int, passes: int, interval: int,
                   user: str) -> float:
    """Median pass time while ``waiting`` one-core jobs wait behind a job holding the bed."""
    [blocker] = oarcli.oarsub(["-l", f"nodes={nodes}", "sim {exec_time=36000}"], user)
    deadline = time.time() + 900
    while db.scalar("SELECT state FROM jobs WHERE job_id = %s", (blocker,)) != "Running":
        if time.time() > deadline:
            raise BedFailed(f"the job holding the bed ({blocker}) did not start in 900 s")
        time.sleep(0.5)
    ids = oarcli.oarsub_array(["{exec_time=0}"] * waiting, "sim", "core=1",
                              user=user) if waiting else []
    time.sleep(interval + 1)
    offset = log_size()
    server = oarconf.ServerAddress.from_conf(oarconf.read())
    deadline = time.time() + 600
    for n in range(1, passes + 1):  # one kick, then wait for its pass to end
        notify(server, "Scheduling")
        while len(pass_times(offset)) < n and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(interval)
    times = pass_times(offset)
    oarcli.oardel([blocker, *ids], user)
    wait_ended(db, [blocker, *ids], 900)
    return statistics.median(times) if times else float("nan")


def cancel_jobs(user: str) -> None:
    """oardel every unfinished job of ``user`` and wait until OAR has ended them."""
    with Db(oarconf.DbParams.from_conf(oarconf.read())) as db:
        ids = [j for (j,) in db.query("SELECT job_id FROM jobs WHERE job_user = %s AND state "
                                      "NOT IN ('Terminated', 'Error')", (user,))]
        for part in chunks(ids, 1000):
            oarcli.oardel(part, user)
        if ids:
            wait_ended(db, ids, 600)


def measure(nodes: int, cores: int, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    t0 = time.time()
    subprocess.run(["orpheus", "testbed", "up", "--nodes", str(nodes), "--cores", str(cores),
                    "--sched-interval", "1", "--max-jobs-per-user", "100000",
                    "--log-level", "3"], check=True, stdout=subprocess.DEVNULL)
    row: dict[str, float] = {"nodes": nodes, "cores": cores, "resources": nodes * cores,
                             "bed_up_s": time.time() - t0}
    log = workdir / f"orpheus-{nodes}x{cores}.log"
    proc = subprocess.Popen([sys.executable, "-m", "orpheus.cli", "run", "--log-file", str(log)])
    time.sleep(1.5)
    if proc.poll() is not None:
        raise BedFailed(f"daemon failed: {log.read_text()}")
    params = oarconf.DbParams.from_conf(oarconf.read())
    cpu0, all0 = cpu_ticks(proc.pid), cpu_ticks()
    try:
        with Db(params) as db:
            one = wave(db, args.jobs, "core=1", args.user, args.timeout)
            whole = wave(db, min(args.node_jobs, nodes), "nodes=1", args.user, args.timeout)
            row |= {"first_start_s": one["first_start_s"], "core_jobs_s": one["jobs_s"],
                    "node_jobs_s": whole["jobs_s"]}
            for w in args.waiting:
                row[f"pass_s_w{w}"] = waiting_passes(db, w, nodes, args.passes, 1, args.user)
            row["db_mib"] = (db.scalar("SELECT pg_database_size(current_database())") / 2**20
                             if db.kind == "Pg" else float("nan"))
        row["orpheus_cpu"] = (cpu_ticks(proc.pid) - cpu0) / max(1, cpu_ticks() - all0)
        row["orpheus_mib"] = peak_memory_mib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return row


def plot(rows: list[dict[str, float]], waiting: list[int], out: Path) -> None:
    res = [r["resources"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for w in waiting:
        ax.plot(res, [r.get(f"pass_s_w{w}", NAN) for r in rows], "o-", label=f"{w} jobs waiting")
    ax.axhline(SCHEDULER_TIMEOUT, color="grey", linestyle="--", linewidth=1,
               label="SCHEDULER_TIMEOUT")
    ax.set(xscale="log", yscale="log", xlabel="resources (cores)",
           ylabel="meta-scheduler pass (s)", title="OAR 2.5.9 scheduler pass time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out / f"scale-pass.{ext}")
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(res, [r.get("core_jobs_s", NAN) for r in rows], "o-", label="one-core jobs")
    ax.plot(res, [r.get("node_jobs_s", NAN) for r in rows], "s-", label="whole-node jobs")
    ax.set(xscale="log", yscale="log", xlabel="resources (cores)", ylabel="jobs/s end to end",
           title="OAR 2.5.9 + Orpheus throughput")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(out / f"scale-jobs.{ext}")


def add_wave_options(ap: argparse.ArgumentParser) -> None:
    """The beds and waves of zero-length jobs (also bench_slurm.py's, for the same jobs)."""
    ap.add_argument("--beds", default="16x4,64x16,256x32,1000x32",
                    help="NODESxCORES,... (default %(default)s)")
    ap.add_argument("--jobs", type=int, default=100, help="one-core jobs per wave (100)")
    ap.add_argument("--node-jobs", type=int, default=20, help="whole-node jobs per wave (20)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_wave_options(ap)
    ap.add_argument("--waiting", default="0,100,1000", help="jobs waiting (0,100,1000)")
    ap.add_argument("--passes", type=int, default=3, help="passes timed per phase (3)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds a wave may take")
    ap.add_argument("--user", default="alice")
    ap.add_argument("--out", type=Path, default=Path("bench-scale"), help="output directory")
    benchbed.add_options(ap)
    args = ap.parse_args()
    beds = [tuple(int(x) for x in b.split("x")) for b in args.beds.split(",")]
    args.waiting = [int(w) for w in args.waiting.split(",")]
    found = benchbed.claim(args)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    cols = ["resources", "bed_up_s", "first_start_s", "core_jobs_s", "node_jobs_s",
            *(f"pass_s_w{w}" for w in args.waiting), "orpheus_cpu", "orpheus_mib", "db_mib"]
    print(" ".join(f"{c:>13}" for c in ["bed", *cols]))
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o777)
        try:
            for nodes, cores in beds:
                try:
                    row = measure(nodes, cores, args, Path(tmp))
                except BedFailed as exc:  # the limit: later beds are larger still
                    print(f"{f'{nodes}x{cores}':>13} failed: {exc}", flush=True)
                    cancel_jobs(args.user)
                    rows.append({"nodes": nodes, "cores": cores, "resources": nodes * cores,
                                 "failed": str(exc)})
                    break
                rows.append(row)
                print(f"{f'{nodes}x{cores}':>13} " + " ".join(
                    f"{row[c]:13.1%}" if c == "orpheus_cpu" else f"{row[c]:13.2f}"
                    for c in cols), flush=True)
        finally:
            benchbed.give_back(found)
    with (args.out / "scale.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "scale.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, args.waiting, args.out)
    worst = max((r["orpheus_cpu"] for r in rows if "orpheus_cpu" in r), default=NAN)
    print(f"Orpheus CPU share: worst {worst:.1%}, target < {TARGET_CPU_SHARE:.0%} "
          f"(ratio {worst / TARGET_CPU_SHARE:.2f}); outputs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

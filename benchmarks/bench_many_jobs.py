"""Orpheus itself at scale: many jobs running at once on a large bed, and its tools on them.

On a bed of ``--nodes`` x ``--cores`` (1000 x 32 = 32,000 resources by default):

1. **start**: ``--jobs`` one-core jobs with a long exec_time in one ``oarsub`` array; the
   time until all of them run (or as many as run within ``--start-timeout``), and the rate;
2. **report**: ``orpheus report --no-plots`` of the ``--report-jobs`` newest jobs in OAR's
   database (10,000 by default: the running ones and earlier history), its time and peak
   memory;
3. **fail-node**: ``orpheus fail-node`` of a node holding jobs, until they are all Error,
   then ``--recover``;
4. **energy**: ``orpheus energy`` over the run, time and peak memory;
5. **oardel** of every job, until all are Terminated or Error.

Throughout, the daemon's CPU time per wall second (target: below 5 % of one core) and its
peak memory (VmHWM) are measured. A running daemon is refused (``--stop-daemon`` stops it).
The bed is given back as it was found. Run as root on the test bed:
``python benchmarks/bench_many_jobs.py [--nodes 1000 --cores 32 --jobs 10000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import benchbed  # run as a script: benchmarks/ is on the path
from bench_scale import peak_memory_mib

from oarlib import conf as oarconf
from oarlib import oarcli
from oarlib.db import Db, chunks, marks

TARGET_CPU = 0.05  # of one core, while OAR works
FAIL_WAIT = 300  # seconds fail-node waits for Almighty, busy in SCHEDULER_TIMEOUT-long passes
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / TICKS


def timed(argv: Sequence[str]) -> tuple[float, float, str]:
    """Run ``argv``: its seconds, its peak memory (MiB) and its stdout; fail on error."""
    t0 = time.time()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        if proc.returncode:
            raise SystemExit(f"{' '.join(argv)} failed: {text[-1000:]}"
                             f"{err.read().decode()[-2000:]}")
        return time.time() - t0, usage.ru_maxrss / 1024, text


def count(db: Db, ids: list[int], states: Sequence[str]) -> int:
    total = 0
    for part in chunks(ids, 5000):
        total += db.scalar(f"SELECT count(*) FROM jobs WHERE job_id IN ({marks(part)}) AND "
                           f"state IN ({marks(states)})", [*part, *states])
    return total


def wait_for(what: str, done: Callable[[], int], goal: int, timeout: float,
             every: float = 2.0) -> tuple[float, int]:
    """Poll ``done()`` until it reaches ``goal`` or ``timeout``: seconds and last value."""
    t0 = time.time()
    last = -1
    while True:
        value = done()
        if value != last:
            print(f"  {what}: {value}/{goal} after {time.time() - t0:.0f} s", flush=True)
            last = value
        if value >= goal or time.time() - t0 > timeout:
            return time.time() - t0, value
        time.sleep(every)


def delete_all(db: Db, ids: list[int], user: str) -> dict[str, float]:
    """oardel every unfinished job of ``ids`` (1,000 per command): seconds for the commands
    and until OAR has ended them all."""
    t0 = time.time()
    left = [j for part in chunks(ids, 5000) for (j,) in db.query(
        f"SELECT job_id FROM jobs WHERE job_id IN ({marks(part)}) AND state NOT IN "
        "('Terminated', 'Error')", part)]
    for part in chunks(left, 1000):
        oarcli.oardel(part, user)
    commands = time.time() - t0
    wait_for("ended", lambda: count(db, ids, ["Terminated", "Error"]), len(ids), 3600, every=5)
    return {"oardel_jobs": len(left), "oardel_cmd_s": commands, "oardel_s": time.time() - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000, help="fake nodes (1000)")
    ap.add_argument("--cores", type=int, default=32, help="cores per node (32)")
    ap.add_argument("--jobs", type=int, default=10000, help="one-core jobs to run at once")
    ap.add_argument("--start-timeout", type=float, default=3600,
                    help="seconds the jobs may take to start (3600)")
    ap.add_argument("--report-jobs", type=int, default=10000,
                    help="newest jobs `orpheus report` covers (10000)")
    ap.add_argument("--max-jobs-per-user", type=int, default=100000)
    ap.add_argument("--user", default="alice")
    ap.add_argument("--out", type=Path, default=Path("bench-many-jobs"), help="output directory")
    benchbed.add_options(ap)
    args = ap.parse_args()
    found = benchbed.claim(args)
    args.out.mkdir(parents=True, exist_ok=True)
    fig: dict[str, float] = {"resources": args.nodes * args.cores, "jobs": args.jobs}
    orpheus = [sys.executable, "-m", "orpheus.cli"]
    t0 = time.time()
    subprocess.run([*orpheus, "testbed", "up", "--nodes", str(args.nodes), "--cores",
                    str(args.cores), "--sched-interval", "1", "--max-jobs-per-user",
                    str(args.max_jobs_per_user)], check=True, stdout=subprocess.DEVNULL)
    fig["bed_up_s"] = time.time() - t0
    log = args.out / "orpheus.log"
    os.chmod(args.out, 0o777)
    daemon = subprocess.Popen([*orpheus, "run", "--log-file", str(log)])
    time.sleep(1.5)
    if daemon.poll() is not None:
        raise SystemExit(f"daemon failed: {log.read_text()}")
    cpu0, wall0 = cpu_seconds(daemon.pid), time.time()
    ids: list[int] = []
    try:
        with Db(oarconf.DbParams.from_conf(oarconf.read())) as db:
            t0 = time.time()
            ids = oarcli.oarsub_array(["{exec_time=864000}"] * args.jobs, "sim", "core=1",
                                      user=args.user)
            fig["oarsub_s"] = time.time() - t0
            secs, running = wait_for("running", lambda: count(db, ids, ["Running"]),
                                     len(ids), args.start_timeout, every=5)
            fig |= {"start_s": secs + fig["oarsub_s"], "running": running,
                    "start_jobs_s": running / (secs + fig["oarsub_s"])}
            newest = [j for (j,) in db.query("SELECT job_id FROM jobs ORDER BY job_id DESC "
                                             "LIMIT %s", (args.report_jobs,))]
            rep = args.out / "report"
            fig["report_s"], fig["report_mib"], _ = timed(
                [*orpheus, "report", "--jobs", f"{newest[-1]}-{newest[0]}", "--no-plots", "-o",
                 str(rep)])
            fig["report_jobs"] = sum(1 for _ in (rep / "jobs.csv").open()) - 1
            node = db.scalar(
                "SELECT r.network_address FROM jobs j JOIN assigned_resources a ON "
                "a.moldable_job_id = j.assigned_moldable_job JOIN resources r ON "
                "r.resource_id = a.resource_id WHERE j.state = 'Running' AND "
                f"j.job_id IN ({marks(ids[:5000])}) LIMIT 1", ids[:5000])
            if node:
                on_node = [j for (j,) in db.query(
                    "SELECT DISTINCT j.job_id FROM jobs j JOIN assigned_resources a ON "
                    "a.moldable_job_id = j.assigned_moldable_job JOIN resources r ON "
                    "r.resource_id = a.resource_id WHERE j.state = 'Running' AND "
                    "r.network_address = %s", (node,))]
                t0 = time.time()
                timed([*orpheus, "fail-node", "--wait", str(FAIL_WAIT), node])
                wait_for(f"Error on {node}", lambda: count(db, on_node, ["Error"]),
                         len(on_node), 600)
                fig |= {"fail_node_s": time.time() - t0, "fail_node_jobs": len(on_node)}
                if db.scalar("SELECT state FROM resources WHERE network_address = %s LIMIT 1",
                             (node,)) == "Suspected":
                    timed([*orpheus, "fail-node", "--recover", "--wait", str(FAIL_WAIT), node])
            fig["energy_s"], fig["energy_mib"], _ = timed(
                [*orpheus, "energy", "--since", str(int(wall0)), "--json"])
            fig |= delete_all(db, ids, args.user)
            ids = []
        fig["orpheus_cpu"] = (cpu_seconds(daemon.pid) - cpu0) / (time.time() - wall0)
        fig["orpheus_mib"] = peak_memory_mib(daemon.pid)
    finally:
        (args.out / "many-jobs.json").write_text(json.dumps(fig, indent=1) + "\n")
        if ids:  # a phase failed: the daemon ends what OAR kills before the bed shrinks
            with Db(oarconf.DbParams.from_conf(oarconf.read())) as db:
                delete_all(db, ids, args.user)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        benchbed.give_back(found)
    for key, value in fig.items():
        print(f"{key:>16} {value:12.1%}" if key == "orpheus_cpu" else f"{key:>16} {value:12.2f}")
    print(f"Orpheus CPU: {fig['orpheus_cpu']:.1%} of one core, target < {TARGET_CPU:.0%} "
          f"(ratio {fig['orpheus_cpu'] / TARGET_CPU:.2f}); {fig['running']:.0f} of "
          f"{args.jobs} jobs running at once (ratio {fig['running'] / args.jobs:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

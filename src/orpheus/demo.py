"""``orpheus demo``: a small mixed workload through the real OAR, and what happened to it.

Starts the daemon if it does not run, submits (as the test bed's ordinary user) plain jobs,
``sleep N`` jobs, a failing job, jobs that contend for I/O, a job with malformed arguments and a
long job that is then deleted with ``oardel``; waits for all of them and prints one row a job
(id, requested exec_time, OAR start/stop, Running time, state, exit code) and totals.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from rich.table import Table

import orpheus
from oarlib import conf as oarconf
from oarlib import oarcli
from oarlib.db import Db
from orpheus.daemon import running_daemon
from orpheus.spec import SpecError, parse_command, seconds

WORKLOAD = [
    *(f"{{exec_time={t}}}" for t in (2, 3, 5, 8, 13)),
    "{exec_time=4, exit_code=2}",  # the script fails: Terminated, exit code 2
    *("{exec_time=6, io=1, io_workload=5}" for _ in range(3)),  # W=15 > C=10: 9 s each
    '{exec_time=1, name="tagged", t={1, 2, 3}}',
    "{exec_time=}",  # malformed: ends at once with exit code 1, the daemon goes on
]
SLEEPS = ["3", "1.5"]
LONG = "{exec_time=600}"  # deleted with oardel once Running: Error


def ensure_daemon(io_capacity: str, log_file: Path) -> None:
    if running_daemon() is not None:
        return
    subprocess.run([sys.executable, "-m", "orpheus.cli", "run", "--daemon", "--mode", "oarexec",
                    "--io-capacity", io_capacity, "--log-file", str(log_file),
                    "--stats-interval", "10"], check=True)
    deadline = time.time() + 10
    while running_daemon() is None:
        if time.time() > deadline:
            raise SystemExit(f"orpheus demo: the daemon did not start (see {log_file})")
        time.sleep(0.1)


def _wait(db: Db, ids: list[int], states: tuple[str, ...], timeout: float) -> dict[int, str]:
    marks = ",".join(["%s"] * len(ids))
    deadline = time.time() + timeout
    while True:
        got = {int(j): s for j, s in db.query(
            f"SELECT job_id, state FROM jobs WHERE job_id IN ({marks})", ids)}
        if all(got.get(j) in states for j in ids) or time.time() > deadline:
            return got
        time.sleep(0.5)


def _requested(command: str) -> str:
    try:
        return f"{parse_command(command).exec_time:g}"
    except SpecError:
        return "malformed"


def run(args: argparse.Namespace) -> int:
    console = orpheus.console()
    ensure_daemon(args.io_capacity, args.log_file)
    params = oarconf.DbParams.from_conf(oarconf.read(args.conf))
    t0 = time.time()
    ids = oarcli.oarsub_array(WORKLOAD, "sim", user=args.user)
    ids += oarcli.oarsub_array(SLEEPS, "sleep", user=args.user)
    long_id = oarcli.oarsub(["-l", "core=1", f"sim {LONG}"], user=args.user)[0]
    ids.append(long_id)
    console.print(f"submitted {len(ids)} jobs as {args.user}: {ids[0]}..{ids[-1]}")
    with Db(params) as db:
        _wait(db, [long_id], ("Running",), 60)
        oarcli.oardel([long_id], user=args.user)
        states = _wait(db, ids, ("Terminated", "Error"), args.timeout)
        marks = ",".join(["%s"] * len(ids))
        rows = db.query(
            f"SELECT j.job_id, j.command, j.start_time, j.stop_time, j.state, j.exit_code, "
            f"l.date_start, l.date_stop FROM jobs j LEFT JOIN job_state_logs l "
            f"ON l.job_id = j.job_id AND l.job_state = 'Running' "
            f"WHERE j.job_id IN ({marks}) ORDER BY j.job_id", ids)
    table = Table(title="Orpheus demo: jobs as OAR recorded them")
    for col in ("job", "command", "exec_time", "OAR start", "OAR stop", "Running (s)", "state",
                "exit code"):
        table.add_column(col, justify="left" if col == "command" else "right")
    for job_id, command, start, stop, state, code, run_a, run_b in rows:
        ran = "" if run_a is None or not run_b else str(run_b - run_a)
        table.add_row(str(job_id), command, _requested(command),
                      time.strftime("%H:%M:%S", time.localtime(start)) if start else "",
                      time.strftime("%H:%M:%S", time.localtime(stop)) if stop else "",
                      ran, state, "" if code is None else str(code >> 8))
    console.print(table)
    count = Counter(states.values())
    console.print(f"totals: {len(ids)} jobs, " + ", ".join(f"{n} {s}" for s, n in count.items())
                  + f"; wall time {time.time() - t0:.1f} s")
    left = [j for j in ids if states.get(j) not in ("Terminated", "Error")]
    if left:
        console.print(f"[red]not ended in {args.timeout} s: {left}[/red]")
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run a small mixed workload through OAR and show it",
                       description=__doc__)
    p.add_argument("--user", default="alice", help="submitting user (default alice)")
    p.add_argument("--conf", type=Path, default=oarconf.DEFAULT_PATH,
                   help="OAR's oar.conf, for the database (default %(default)s)")
    p.add_argument("--io-capacity", default="10",
                   help="--io-capacity of the daemon if the demo starts it (default 10)")
    p.add_argument("--log-file", type=Path, default=Path("/var/log/orpheus.log"),
                   help="--log-file of the daemon if the demo starts it (default %(default)s)")
    p.add_argument("--timeout", type=seconds, default=180,
                   help="seconds to wait for every job to end (default 180; exit 1 after it)")
    p.set_defaults(func=run)

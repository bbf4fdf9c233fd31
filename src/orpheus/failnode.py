"""``orpheus fail-node NODE``: a node crashes, as OAR's finaud and the jobs on it would see it.

OAR side, exactly what ``/usr/lib/oar/finaud`` does for a node that stops answering
(``OAR::IO::set_node_nextState`` Suspected, ``update_node_nextFinaudDecision`` YES,
``add_new_event_with_host`` FINAUD_ERROR), then ``ChState`` to Almighty so that
NodeChangeState applies the state. Job side: every job Launching or Running on the node ends
as crashed (Error): ``CRASH <node>`` is appended to the spool's ``kill.<job_id>`` and the
Orpheus daemon gets SIGUSR1. ``--recover`` is finaud's other branch: a node it suspected comes
back (next state Alive, FINAUD_RECOVER).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from oarlib import conf as oarconf
from oarlib.almighty import notify
from oarlib.db import Db, connection_errors
from orpheus.errors import OrpheusError

SPOOL = Path("/var/lib/oar/orpheus")
ERROR_TEXT = "Finaud has detected an error on the node"  # finaud's own descriptions
RECOVER_TEXT = "Finaud has detected that the node comes back"


class FailNodeError(OrpheusError, RuntimeError):
    """What cannot be done to the node, with a message for the operator."""


@dataclass(frozen=True)
class Outcome:
    node: str
    state: str  # the state asked for
    event_id: int
    jobs: list[int]  # jobs told they crashed
    daemon_pid: int | None
    applied: bool  # Almighty applied the state within the wait


def node_rows(db: Db, node: str) -> list[tuple[str, str, str]]:
    """(state, next_state, finaud_decision) of the node's resources."""
    return [(s, n, f) for s, n, f in db.query(
        "SELECT state, next_state, finaud_decision FROM resources WHERE network_address = %s",
        (node,))]


def add_event_with_host(db: Db, kind: str, description: str, node: str) -> int:
    """``OAR::IO::add_new_event_with_host`` (job 0, one host); the new event's id."""
    sql = (f"INSERT INTO event_logs (type, job_id, date, description) "
           f"VALUES (%s, 0, {db.now_sql}, %s)")
    if db.kind == "Pg":
        event_id = int(db.scalar(sql + " RETURNING event_id", (kind, description)))
    else:
        db.execute(sql, (kind, description))
        event_id = int(db.scalar("SELECT LAST_INSERT_ID()"))
    db.execute("INSERT INTO event_log_hostnames (event_id, hostname) VALUES (%s, %s)",
               (event_id, node))
    return event_id


def ask_state(db: Db, node: str, state: str, kind: str, description: str) -> int:
    """finaud's three calls, in one transaction; the event id."""
    with db.transaction():
        db.execute("UPDATE resources SET next_state = %s, next_finaud_decision = 'NO' "
                   "WHERE network_address = %s", (state, node))
        db.execute("UPDATE resources SET next_finaud_decision = 'YES' "
                   "WHERE network_address = %s", (node,))
        return add_event_with_host(db, kind, description, node)


def jobs_on(db: Db, node: str) -> list[int]:
    """Jobs Launching or Running with a current resource on the node."""
    return [int(j) for (j,) in db.query(
        "SELECT DISTINCT j.job_id FROM jobs j "
        "JOIN assigned_resources a ON a.moldable_job_id = j.assigned_moldable_job "
        "AND a.assigned_resource_index = 'CURRENT' "
        "JOIN resources r ON r.resource_id = a.resource_id "
        "WHERE r.network_address = %s AND j.state IN ('Launching', 'Running') "
        "ORDER BY j.job_id", (node,))]


def crash_jobs(jobs: list[int], node: str, spool: Path) -> int | None:
    """Append ``CRASH <node>`` to each job's kill file; SIGUSR1 the daemon; its pid."""
    owner = spool.stat()
    for job in jobs:
        path = spool / f"kill.{job}"
        with path.open("a") as f:
            f.write(f"CRASH {node}\n")
        with contextlib.suppress(PermissionError):  # the fake ssh (user oar) appends too
            os.chown(path, owner.st_uid, owner.st_gid)
    try:
        pid = int((spool / "orpheus.pid").read_text())
        os.kill(pid, signal.SIGUSR1)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def check(rows: list[tuple[str, str, str]], node: str, recover: bool) -> None:
    """Refuse what finaud would not do (it only looks at nodes with no pending change)."""
    if not rows:
        raise FailNodeError(f"no resource has network_address {node!r}")
    if any(n != "UnChanged" for _, n, _ in rows):
        raise FailNodeError(f"{node} has a state change pending (next_state "
                            f"{sorted({n for _, n, _ in rows})}): try again in a moment")
    states = {s for s, _, _ in rows}
    if not recover and states != {"Alive"}:
        raise FailNodeError(f"{node} is {'/'.join(sorted(states))}, not Alive: finaud only "
                            f"suspects Alive nodes")
    if recover:
        if states != {"Suspected"}:
            raise FailNodeError(f"{node} is {'/'.join(sorted(states))}, not Suspected: "
                                f"nothing to recover")
        if any(f != "YES" for _, _, f in rows):
            raise FailNodeError(f"{node} was suspected by OAR itself (finaud_decision NO), "
                                f"which finaud never repairs: use oarnodesetting -s Alive -h "
                                f"{node}")


def fail_node(node: str, recover: bool = False, conf: Path = oarconf.DEFAULT_PATH,
              spool: Path = SPOOL, wait: float = 30.0) -> Outcome:
    """Suspect (or recover) ``node`` the finaud way; crash its jobs when suspecting."""
    settings = oarconf.read(conf)
    state, kind, text = (("Alive", "FINAUD_RECOVER", RECOVER_TEXT) if recover
                         else ("Suspected", "FINAUD_ERROR", ERROR_TEXT))
    with Db(oarconf.DbParams.from_conf(settings)) as db:
        check(node_rows(db, node), node, recover)
        event_id = ask_state(db, node, state, kind, text)
        jobs = [] if recover else jobs_on(db, node)
        pid = crash_jobs(jobs, node, spool) if jobs else None
        notify(oarconf.ServerAddress.from_conf(settings), "ChState")
        deadline = time.time() + wait
        while not (applied := {s for s, _, _ in node_rows(db, node)} == {state}):
            if time.time() > deadline:
                break
            time.sleep(0.2)
    return Outcome(node, state, event_id, jobs, pid, applied)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fail-node", help="a node crashes: Suspected as finaud would, its jobs "
                       "end crashed (root)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("node", help="network_address of the node, e.g. node3")
    p.add_argument("--recover", action="store_true",
                   help="bring a node finaud suspected back Alive (FINAUD_RECOVER)")
    p.add_argument("--conf", type=Path, default=oarconf.DEFAULT_PATH, help="OAR's oar.conf")
    p.add_argument("--spool", type=Path, default=SPOOL, help="the Orpheus daemon's spool")
    p.add_argument("--wait", type=float, default=30.0,
                   help="seconds to wait for Almighty to apply the state (default 30)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise SystemExit("orpheus fail-node: must be run as root (it reads oar.conf and "
                         "writes the daemon's spool)")
    try:
        out = fail_node(args.node, args.recover, args.conf, args.spool, args.wait)
    except (FailNodeError, OSError, *connection_errors()) as exc:
        raise SystemExit(f"orpheus fail-node: {exc}") from None
    kind = "FINAUD_RECOVER" if args.recover else "FINAUD_ERROR"
    print(f"{out.node}: next state {out.state} ({kind}, event {out.event_id})"
          f"{'' if out.applied else f'; Almighty did not apply it within {args.wait:g} s'}")
    if out.jobs:
        who = f"daemon pid {out.daemon_pid}" if out.daemon_pid else "no daemon running yet"
        print(f"jobs crashed: {' '.join(map(str, out.jobs))} ({who})")
    return 0 if out.applied else 1

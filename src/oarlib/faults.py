"""What keeps OAR from running jobs, told with its cause and the command that fixes it.

OAR 2.5.9 fails quietly: a scheduler that crashes makes the meta-scheduler disable its queue
(jobs then wait forever), a node set Suspected or Dead takes its resources away, and a stopped
Almighty schedules nothing. ``check`` finds each of these from the database, OAR's log and the
process table; ``testbed status``, the daemon's stats line and ``orpheus replay`` report them.
The log parsing (``log_causes``) is pure; the rest reads the live server.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from oarlib.db import Db

LOG_TAIL = 4 << 20  # bytes of oar.log read: the recent past is what explains today's state
MAX_NODES = 10  # nodes named one by one; the rest are counted

# the meta-scheduler's two messages before it disables a queue (oar_meta_sched, OAR 2.5.9)
_FAILED = re.compile(r"\[MetaSched\] Error: execution of (\S+) failed \(pid=\S+ "
                     r"signal=(\d+) core_dump=\d+\)\. Disabling queue (\S+)")
_BAD_VALUE = re.compile(r"\[MetaSched\] Error: Scheduler (\S+) returned a bad value: (-?\d+), "
                        r"at time \d+\. Disabling queue (\S+)")
_TIMEOUT = re.compile(r"\[(\S+)\] Warning: some jobs were not scheduled because the "
                      r"scheduler's timeout was reached \((\d+) s\)")
_PASS = re.compile(r"\[(\S+)\] Starting scheduler for queue (\S+)")
_STAMP = re.compile(r"^\[\w+\] \[([\d-]+ [\d:.]+)\]")
_START = "[Almighty] Start Almighty"  # a new server: what its predecessor's passes did is past


@dataclass(frozen=True)
class Fault:
    """One reason OAR is not running jobs as asked."""

    subject: str  # "queue default", "node node3", "Almighty", "scheduler X"
    problem: str  # what is wrong now
    cause: str  # why, as far as OAR tells
    fix: str  # the command that fixes it
    blocking: bool = True  # whether no job of the subject can be scheduled any more

    def __str__(self) -> str:
        return f"{self.subject} {self.problem}: {self.cause}; fix: {self.fix}"


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def _crash(policy: str, sig: int) -> str:
    why = " (a stack overflow at this many resources: see docs/testbed.md)" \
        if sig == signal.SIGSEGV else ""
    return f"scheduler {policy} killed by {_signal_name(sig)}{why}"


def log_causes(lines: Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """From oar.log lines, the last cause each queue was disabled for (queue -> cause), and
    the queues whose scheduler reached its timeout in their last pass since Almighty's last
    start (queue -> scheduler and timeout; OAR logs a pass's start and its timeout at
    LOG_LEVEL 3 only)."""
    disabled: dict[str, str] = {}
    timeouts: dict[str, str] = {}
    passes: dict[str, str] = {}  # scheduler -> the queue of its pass under way
    for line in lines:
        if "Disabling queue" in line:
            if m := _FAILED.search(line):
                disabled[m[3]] = _crash(m[1], int(m[2]))
            elif m := _BAD_VALUE.search(line):
                code = int(m[2])
                disabled[m[3]] = (_crash(m[1], code - 128) if code > 128
                                  else f"scheduler {m[1]} exited with {code}")
            else:
                continue
            if s := _STAMP.match(line):
                disabled[m[3]] += f" at {s[1]}"
        elif _START in line:
            timeouts.clear()
            passes.clear()
        elif "Starting scheduler for queue" in line and (m := _PASS.search(line)):
            passes[m[1]] = m[2]
            timeouts.pop(m[2], None)
        elif "scheduler's timeout was reached" in line and (m := _TIMEOUT.search(line)):
            timeouts[passes.get(m[1], "?")] = f"scheduler {m[1]} reached its timeout ({m[2]} s)"
    return disabled, timeouts


def read_log_tail(path: Path, size: int = LOG_TAIL) -> list[str]:
    """The last ``size`` bytes of a log, as whole lines (none if it cannot be read)."""
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            start = max(0, f.tell() - size)
            f.seek(start)
            data = f.read()
    except OSError:
        return []
    lines = data.decode(errors="replace").splitlines()
    return lines[1:] if start else lines


def queue_faults(db: Db, causes: dict[str, str]) -> list[Fault]:
    """Queues that are not Active, with the cause the log gives."""
    out = []
    for name, policy in db.query("SELECT queue_name, scheduler_policy FROM queues "
                                 "WHERE state <> 'Active' ORDER BY priority DESC"):
        cause = causes.get(name, f"disabled by an administrator (oarnotify -d), "
                                 f"scheduler {policy}")
        out.append(Fault(f"queue {name}", "is disabled: its jobs wait forever", cause,
                         f"oarnotify -e {name}" + (" after `orpheus testbed up`"
                                                    if "stack overflow" in cause else "")))
    return out


def node_faults(db: Db) -> list[Fault]:
    """Nodes with a resource Suspected or Dead, with OAR's last event about each."""
    rows = db.query("SELECT network_address, MIN(state) FROM resources "
                    "WHERE state IN ('Suspected', 'Dead') GROUP BY network_address "
                    "ORDER BY network_address")
    if not rows:
        return []
    named = rows[:MAX_NODES]
    events = dict(db.query(
        "SELECT h.hostname, e.type FROM event_logs e JOIN event_log_hostnames h "
        "ON h.event_id = e.event_id WHERE h.hostname IN ({}) ORDER BY e.event_id".format(
            ",".join(["%s"] * len(named))), [n for n, _ in named]))
    out = [Fault(f"node {node}", f"is {state}: its resources take no job",
                 f"OAR event {events[node]}" if node in events
                 else "set by oarnodesetting, orpheus fail-node or an administrator",
                 f"oarnodesetting -s Alive -h {node}", blocking=False)
           for node, state in named]
    if len(rows) > MAX_NODES:
        out.append(Fault(f"{len(rows) - MAX_NODES} more nodes", "are Suspected or Dead",
                         "see oarnodes -s", "oarnodesetting -s Alive -h NODE",
                         blocking=False))
    return out


def timeout_faults(timeouts: dict[str, str]) -> list[Fault]:
    return [Fault(f"queue {queue}", "left jobs unscheduled in its last pass", cause,
                  "raise SCHEDULER_TIMEOUT in oar.conf", blocking=False)
            for queue, cause in timeouts.items()]


def almighty_fault(running: bool) -> list[Fault]:
    if running:
        return []
    return [Fault("Almighty", "is not running: nothing is scheduled",
                  "stopped, or died (see /var/log/oar.log)", "orpheus testbed up")]


def check(db: Db, almighty_running: bool, log_path: Path = Path("/var/log/oar.log")
          ) -> list[Fault]:
    """Every fault found now on the server behind ``db``."""
    causes, timeouts = log_causes(read_log_tail(log_path))
    return (almighty_fault(almighty_running) + queue_faults(db, causes) + node_faults(db)
            + timeout_faults(timeouts))

"""``orpheus energy``: each node's power state over time, and the energy it used.

A node is in one of four power states (see docs/orpheus-lifecycle.md):

- ``off``      from a HALT (Hulot's sleep command, logged by fake-halt in ``energy.log``) until
               a WAKEUP, or until OAR sets the node Alive again by other means;
- ``booting``  from a WAKEUP (fake-wakeup) until OAR sets the node Alive;
- ``busy``     powered on and a Running job holds at least one of its resources;
- ``idle``     powered on otherwise (whatever else its OAR state: Suspected, Absent by hand).

The inputs are OAR's ``resource_logs`` (state changes), ``assigned_resources`` with
``job_state_logs`` Running intervals, and ``energy.log``. The interval computation (the top of
this module) is pure; the database and file reading, and the command, are a thin shell below.
Intervals are computed by hand: a sweep over a few change points per node needs no library.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orpheus
from orpheus.errors import OrpheusError

POWER_STATES = ("off", "booting", "idle", "busy")
DEFAULT_WATTS = {"idle": 95.0, "busy": 190.0, "off": 8.0, "booting": 120.0}
ENERGY_KINDS = ("HALT", "WAKEUP", "ALIVE")
CSV_FIELDS = ("node", "state", "start", "end", "duration_s", "watts", "energy_j")


class EnergyError(OrpheusError, ValueError):
    """Bad input (energy.log line, --watts, window), with a message naming it."""


@dataclass(frozen=True)
class Interval:
    """One node in one power state over [start, end)."""

    node: str
    state: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


# ----------------------------------------------------------------------------- pure core

def parse_watts(text: str, base: Mapping[str, float] = DEFAULT_WATTS) -> dict[str, float]:
    """``idle=95,busy=190`` over ``base``; every state keeps its base value unless given."""
    watts = dict(base)
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in POWER_STATES:
            raise EnergyError(f"--watts: {item!r} is not STATE=WATTS with STATE one of "
                              f"{', '.join(POWER_STATES)}")
        try:
            watts[name] = float(value)
        except ValueError:
            raise EnergyError(f"--watts: {name}={value!r} is not a number") from None
        if not 0 <= watts[name] < float("inf"):
            raise EnergyError(f"--watts: {name}={value} must be a finite number >= 0")
    return watts


def parse_energy_log(text: str, name: str = "energy.log") -> list[tuple[float, str, str]]:
    """(epoch, HALT|WAKEUP|ALIVE, node) of each line ``<epoch> <KIND> <node> [...]``."""
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        words = line.split()
        try:
            when = float(words[0])
        except ValueError:
            when = float("nan")
        if len(words) < 3 or when != when or words[1] not in ENERGY_KINDS:
            raise EnergyError(f"{name}:{number}: expected '<epoch> HALT|WAKEUP|ALIVE <node>', "
                              f"got {line.strip()!r}")
        events.append((when, words[1], words[2]))
    return events


def node_state_changes(resource_changes: Mapping[int, Sequence[tuple[float, str]]],
                       node_of: Mapping[int, str]) -> dict[str, list[tuple[float, str]]]:
    """Per node, (time, OAR state) each time the node's state changes.

    A node is Alive when any of its resources is; otherwise it takes the state most of its
    resources are in (ties: the first in alphabetical order). ``resource_changes`` gives each
    resource's (time, state) rows, in any order.
    """
    per_node: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for rid, rows in resource_changes.items():
        per_node[node_of[rid]].extend((t, rid, s) for t, s in rows)
    out: dict[str, list[tuple[float, str]]] = {}
    for node, rows in per_node.items():
        current: dict[int, str] = {}
        changes: list[tuple[float, str]] = []
        rows.sort(key=lambda r: r[0])
        for i, (t, rid, state) in enumerate(rows):
            current[rid] = state
            if i + 1 < len(rows) and rows[i + 1][0] == t:
                continue  # several resources change at once: one node change
            values = list(current.values())
            if "Alive" in values:
                node_state = "Alive"
            else:
                node_state = min(set(values), key=lambda s: (-values.count(s), s))
            if not changes or changes[-1][1] != node_state:
                changes.append((t, node_state))
        out[node] = changes
    return out


def _merge(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def power_timeline(state_changes: Sequence[tuple[float, str]],
                   energy_events: Sequence[tuple[float, str]]) -> list[tuple[float, str]]:
    """(time, "on"|"off"|"booting") change points of one node, from its OAR state changes
    and its energy.log events. HALT -> off, WAKEUP -> booting, a change to Alive -> on (it
    ends off or booting); other state changes do not change the power. At equal times the
    energy event comes first (a 0-s boot ends at once). Before any event the node is on.
    """
    events = sorted([(t, 0, kind) for t, kind in energy_events]
                    + [(t, 1, state) for t, state in state_changes])
    power = "on"
    points: list[tuple[float, str]] = []
    for t, _, what in events:
        if what == "HALT":
            new = "off"
        elif what == "WAKEUP":
            new = "booting"
        elif what == "Alive":
            new = "on"
        else:  # ALIVE log lines and non-Alive OAR states leave the power as it is
            continue
        if new != power:
            power = new
            points.append((t, power))
    return points


def node_intervals(node: str, state_changes: Sequence[tuple[float, str]],
                   energy_events: Sequence[tuple[float, str]],
                   busy: Sequence[tuple[float, float]], since: float,
                   until: float) -> list[Interval]:
    """The power-state intervals of one node over [since, until): contiguous, in time order,
    adjacent intervals in different states. ``busy`` spans (job Running on the node) may
    overlap and stick out of the window."""
    if until < since:
        raise EnergyError(f"the window ends ({until}) before it starts ({since})")
    power, cuts = "on", []
    for t, p in power_timeline(state_changes, energy_events):
        if t <= since:
            power = p
        elif t < until:
            cuts.append((t, p))
    spans = [(since, power), *cuts]
    busy_spans = _merge((max(a, since), min(b, until)) for a, b in busy)
    out: list[Interval] = []

    def add(state: str, a: float, b: float) -> None:
        if b <= a:
            return
        if out and out[-1].state == state and out[-1].end == a:
            out[-1] = Interval(node, state, out[-1].start, b)
        else:
            out.append(Interval(node, state, a, b))

    for i, (a, p) in enumerate(spans):
        b = spans[i + 1][0] if i + 1 < len(spans) else until
        if p != "on":
            add(p, a, b)
            continue
        t = a
        for ba, bb in busy_spans:
            if bb <= t or ba >= b:
                continue
            add("idle", t, max(t, ba))
            add("busy", max(t, ba), min(b, bb))
            t = min(b, bb)
        add("idle", t, b)
    return out


def all_intervals(nodes: Iterable[str], state_changes: Mapping[str, Sequence[tuple[float, str]]],
                  energy_events: Iterable[tuple[float, str, str]],
                  busy: Mapping[str, Sequence[tuple[float, float]]], since: float,
                  until: float) -> list[Interval]:
    """``node_intervals`` of every node (energy events as (time, kind, node))."""
    per_node: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for t, kind, node in energy_events:
        per_node[node].append((t, kind))
    return [iv for node in nodes
            for iv in node_intervals(node, state_changes.get(node, ()), per_node.get(node, ()),
                                     busy.get(node, ()), since, until)]


@dataclass(frozen=True)
class NodeEnergy:
    """Seconds in each power state and energy (J) of one node."""

    node: str
    seconds: dict[str, float]
    joules: float

    @property
    def wh(self) -> float:
        return self.joules / 3600.0


def energy(intervals: Iterable[Interval], watts: Mapping[str, float]) -> list[NodeEnergy]:
    """Per node (in first-seen order): sum of durations per state, and sum of
    duration x watts(state) in joules."""
    seconds: dict[str, dict[str, float]] = {}
    for iv in intervals:
        per = seconds.setdefault(iv.node, dict.fromkeys(POWER_STATES, 0.0))
        per[iv.state] += iv.duration
    return [NodeEnergy(node, per, sum(per[s] * watts[s] for s in POWER_STATES))
            for node, per in seconds.items()]


def natural_key(node: str) -> tuple[str, int]:
    """node2 before node10."""
    stem = node.rstrip("0123456789")
    digits = node[len(stem):]
    return stem, int(digits) if digits else -1


# ----------------------------------------------------------------------------- shell

@dataclass
class Inputs:
    """What the report needs, read from OAR's database."""

    nodes: list[str]
    state_changes: dict[str, list[tuple[float, str]]]
    busy: dict[str, list[tuple[float, float]]]
    earliest_job: float | None
    until: float  # the window's end: as given, else OAR's now


def read_inputs(conf: Path, since: float | None, until: float | None) -> Inputs:
    """Read resources, their state changes and the Running spans of jobs from OAR's DB, up to
    ``until`` (None: OAR's now, the virtual one under the virtual clock)."""
    from oarlib import conf as oarconf
    from oarlib.db import Db

    lower = since if since is not None else 0
    with Db(oarconf.DbParams.from_conf(oarconf.read(conf))) as db:
        if until is None:
            until = float(db.now())
        node_of = {int(r): n for r, n in db.query(
            "SELECT resource_id, network_address FROM resources WHERE type = %s",
            ("default",))}
        earliest = db.scalar("SELECT MIN(submission_time) FROM jobs")
        if since is None and earliest is not None:
            lower = int(earliest)
        rows = db.query(
            "SELECT resource_id, value, date_start FROM resource_logs "
            "WHERE attribute = %s AND date_start <= %s AND (date_stop = 0 OR date_stop >= %s)",
            ("state", until, lower))
        busy_rows = db.query(
            "SELECT DISTINCT r.network_address, l.date_start, l.date_stop "
            "FROM job_state_logs l JOIN jobs j ON j.job_id = l.job_id "
            "JOIN assigned_resources a ON a.moldable_job_id = j.assigned_moldable_job "
            "JOIN resources r ON r.resource_id = a.resource_id "
            "WHERE l.job_state = %s AND l.date_start <= %s "
            "AND (l.date_stop = 0 OR l.date_stop >= %s)", ("Running", until, lower))
    changes: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for rid, value, start in rows:
        if int(rid) in node_of:
            changes[int(rid)].append((float(start), value))
    busy: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for node, start, stop in busy_rows:
        busy[node].append((float(start), float(stop) if int(stop) else until))
    return Inputs(sorted(set(node_of.values()), key=natural_key),
                  node_state_changes(changes, node_of), dict(busy),
                  float(earliest) if earliest is not None else None, until)


def write_csv(path: Path | None, intervals: Sequence[Interval],
              watts: Mapping[str, float]) -> None:
    out = sys.stdout if path is None or str(path) == "-" else path.open("w", newline="")
    try:
        writer = csv.writer(out)
        writer.writerow(CSV_FIELDS)
        for iv in intervals:
            writer.writerow((iv.node, iv.state, f"{iv.start:.3f}", f"{iv.end:.3f}",
                             f"{iv.duration:.3f}", f"{watts[iv.state]:g}",
                             f"{iv.duration * watts[iv.state]:.3f}"))
    finally:
        if out is not sys.stdout:
            out.close()


def print_report(rows: Sequence[NodeEnergy], since: float, until: float) -> None:
    from rich.table import Table

    table = Table(title=f"Energy from {since:.0f} to {until:.0f} ({until - since:.0f} s)")
    for col in ("node", *(f"{s} s" for s in POWER_STATES), "energy J", "energy Wh"):
        table.add_column(col, justify="left" if col == "node" else "right")
    for r in rows:
        table.add_row(r.node, *(f"{r.seconds[s]:.0f}" for s in POWER_STATES),
                      f"{r.joules:.0f}", f"{r.wh:.3f}")
    total = sum(r.joules for r in rows)
    table.add_row("total", *(f"{sum(r.seconds[s] for r in rows):.0f}" for s in POWER_STATES),
                  f"{total:.0f}", f"{total / 3600:.3f}", style="bold")
    orpheus.console().print(table)


def register(sub: argparse._SubParsersAction) -> None:
    from oarlib import conf as oarconf

    p = sub.add_parser("energy", help="per-node power states and energy over a time window",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", type=Path, default=oarconf.DEFAULT_PATH, help="OAR's oar.conf")
    p.add_argument("--energy-log", type=Path, default=Path("/var/lib/oar/orpheus/energy.log"),
                   help="fake halt/wake-up log (missing: no energy saving happened)")
    p.add_argument("--since", type=float,
                   help="window start, epoch seconds (default: the earliest job's submission)")
    p.add_argument("--until", type=float,
                   help="window end, epoch seconds (default: OAR's now, the virtual one on a "
                        "virtual-clock test bed)")
    p.add_argument("--watts", default="",
                   help="power per state, e.g. idle=95,busy=190,off=8,booting=120 (defaults)")
    p.add_argument("-o", "--output", type=Path,
                   help="write the intervals as CSV here ('-': stdout)")
    p.add_argument("--machine-states", type=Path, metavar="FILE",
                   help="write Batsim's machine_states.csv (nodes per machine state over time)")
    p.add_argument("--json", action="store_true", help="print the per-node figures as JSON")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    import json

    from orpheus import machine_states

    try:
        watts = parse_watts(args.watts)
        try:
            text = args.energy_log.read_text()
        except FileNotFoundError:
            text = ""
        events = parse_energy_log(text, str(args.energy_log))
        inputs = read_inputs(args.conf, args.since, args.until)
        until = inputs.until
        since = args.since if args.since is not None else inputs.earliest_job
        if since is None:
            raise EnergyError("no job in OAR's database: give the window start with --since")
        intervals = all_intervals(inputs.nodes, inputs.state_changes, events, inputs.busy,
                                  since, until)
        if args.machine_states:
            machine_states.write(args.machine_states, machine_states.machine_states(
                intervals, inputs.state_changes, since, until))
    except (EnergyError, OSError) as exc:
        raise SystemExit(f"orpheus energy: {exc}") from None
    rows = energy(intervals, watts)
    if args.output:
        write_csv(args.output, intervals, watts)
    if args.json:
        total = sum(r.joules for r in rows)
        print(json.dumps({"since": since, "until": until, "watts": watts,
                          "total_j": total, "total_wh": total / 3600,
                          "nodes": {r.node: {"seconds": r.seconds, "joules": r.joules,
                                             "wh": r.wh} for r in rows}}))
    elif str(args.output) != "-":
        print_report(rows, since, until)
    return 0

"""Batsim's ``machine_states.csv`` from the power-state intervals of ``orpheus energy``.

Batsim's file counts the hosts in each machine state over time, one row per change. The power
states of :mod:`orpheus.energy` map onto Batsim's states: ``off`` -> sleeping, ``booting`` ->
switching_on, ``busy`` -> computing, ``idle`` -> idle, or unavailable while OAR does not hold
the node Alive (Suspected, Dead, Absent set by hand). switching_off stays 0: a fake node halts
at once (fake-halt). Times are seconds from the window's start, as Batsim's simulated time
starts at 0. Pure, except :func:`write`.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from orpheus.energy import Interval

COLUMNS = ("time", "nb_sleeping", "nb_switching_on", "nb_switching_off", "nb_idle",
           "nb_computing", "nb_unavailable")
COUNTS = COLUMNS[1:]
OF_POWER_STATE = {"off": "nb_sleeping", "booting": "nb_switching_on", "idle": "nb_idle",
                  "busy": "nb_computing"}


def not_alive(changes: Sequence[tuple[float, str]]) -> list[tuple[float, float]]:
    """The spans during which a node's OAR state is not Alive (Alive before its first change;
    the last span may be open: it ends at infinity)."""
    spans: list[tuple[float, float]] = []
    since: float | None = None
    for t, state in sorted(changes):
        if state != "Alive" and since is None:
            since = t
        elif state == "Alive" and since is not None:
            spans.append((since, t))
            since = None
    if since is not None:
        spans.append((since, math.inf))
    return spans


def by_column(intervals: Iterable[Interval],
              state_changes: Mapping[str, Sequence[tuple[float, str]]]
              ) -> list[tuple[str, float, float]]:
    """(column, start, end) of each interval; idle ones are split where the node is not
    Alive in OAR, those parts counting as unavailable."""
    out: list[tuple[str, float, float]] = []
    for iv in intervals:
        column = OF_POWER_STATE[iv.state]
        if column != "nb_idle":
            out.append((column, iv.start, iv.end))
            continue
        t = iv.start
        for a, b in not_alive(state_changes.get(iv.node, ())):
            if b <= t or a >= iv.end:
                continue
            if a > t:
                out.append(("nb_idle", t, a))
            out.append(("nb_unavailable", max(a, t), min(b, iv.end)))
            t = min(b, iv.end)
        if t < iv.end:
            out.append(("nb_idle", t, iv.end))
    return out


def machine_states(intervals: Iterable[Interval],
                   state_changes: Mapping[str, Sequence[tuple[float, str]]],
                   since: float, until: float) -> list[dict[str, float]]:
    """The rows of machine_states.csv over [since, until): one at the window's start, one at
    each time the counts change, and a last one at the window's end repeating the counts (so
    that the series covers the window). No interval, no row."""
    delta: dict[float, Counter[str]] = {}
    for column, a, b in by_column(intervals, state_changes):
        delta.setdefault(a, Counter())[column] += 1
        delta.setdefault(b, Counter())[column] -= 1
    counts: Counter[str] = Counter()
    rows: list[dict[str, float]] = []
    for t in sorted(x for x in delta if x < until):
        counts.update(delta[t])
        row = {"time": t - since, **{c: counts[c] for c in COUNTS}}
        if not rows or any(rows[-1][c] != row[c] for c in COUNTS):
            rows.append(row)
    if rows:
        rows.append({**rows[-1], "time": until - since})
    return rows


def _seconds(x: float) -> str:
    """Up to millisecond precision, no trailing zeros: 12, 12.5, 12.125."""
    return f"{x:.3f}".rstrip("0").rstrip(".") or "0"


def write(path: Path, rows: Iterable[Mapping[str, float]]) -> None:
    """The CSV file: Batsim's header and columns, one row per line (``\\n``)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_seconds(row["time"]), *(int(row[c]) for c in COUNTS)])

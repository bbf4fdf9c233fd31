"""The progress display while deploying: one row per process group, how many of its process
instances are in each state (rich Live table on a terminal; otherwise a line per group whose
counts changed, at most once a second, and the final counts).

rich is imported only for the live table: its import is ~20 ms of every run's start."""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from adage.deploy.state import Machine
from adage.status import FINAL, PState

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table

COLUMNS = (PState.LAUNCHED, PState.ACKED, PState.READY, PState.EXITED, PState.FAILED,
           PState.KILLED)


def counts(machine: Machine) -> dict[str, dict[PState, int]]:
    """Per group: how many process instances reached (or passed) each state."""
    order = list(PState)
    out: dict[str, dict[PState, int]] = {}
    for g in machine.appl.groups:
        states, started_final = machine.tally(g.id)
        c = dict.fromkeys(PState, 0)
        for state, n in states.items():
            if state in FINAL:
                c[state] += n
                continue
            for s in order[order.index(PState.LAUNCHED):order.index(state) + 1]:
                c[s] += n
        c[PState.LAUNCHED] += started_final
        c[PState.ACKED] += started_final
        out[g.id] = c
    return out


def table(machine: Machine) -> Table:
    from rich.table import Table

    t = Table(title="ADAGE deployment", title_justify="left")
    t.add_column("proc_group")
    t.add_column("processes", justify="right")
    for s in COLUMNS:
        t.add_column(s.value, justify="right")
    for gid, c in counts(machine).items():
        total = sum(machine.tally(gid)[0].values())
        t.add_row(gid, str(total), *(str(c[s]) for s in COLUMNS))
    return t


class Progress:
    """Observer for ``deploy.Options.observer``: shows the machine's counts as they change."""

    def __init__(self, stream: TextIO, live: bool) -> None:
        self.stream = stream
        self.live: Live | None = None
        self.use_live = live
        self.last: dict[str, dict[PState, int]] = {}
        self.shown = 0.0
        self.machine: Machine | None = None

    def __enter__(self) -> Progress:
        return self

    def __call__(self, machine: Machine) -> None:
        if self.use_live:
            if self.live is None:
                from rich.console import Console
                from rich.live import Live

                self.live = Live(table(machine), console=Console(file=self.stream),
                                 auto_refresh=False)
                self.live.start()
            now = time.monotonic()
            if now - self.shown > 0.1:
                self.live.update(table(machine), refresh=True)
                self.shown = now
            self.machine = machine
            return
        self.machine = machine
        now = time.monotonic()
        if now - self.shown >= 1.0:
            self._lines(machine)
            self.shown = now

    def _lines(self, machine: Machine) -> None:
        """One line for each group whose counts changed since the last lines."""
        c = counts(machine)
        for gid, row in c.items():
            if row != self.last.get(gid) and any(row.values()):
                print(f"{gid}: " + ", ".join(f"{s.value} {row[s]}" for s in COLUMNS if row[s]),
                      file=self.stream, flush=True)
        self.last = c

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.live is not None and self.machine is not None:
            self.live.update(table(self.machine), refresh=True)
            self.live.stop()
        elif self.machine is not None:
            self._lines(self.machine)

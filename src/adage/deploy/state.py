"""The deployment state machine: events in, actions out; no processes, sockets or clocks.

It launches a process group once every group it depends on has reached the dependency's
condition on all its instances (``ack``: processes started and acknowledged, and ready if the
plugin says the group is not asynchronous; ``ready``: ready; ``exit``: every process exited 0)
and once every value its placeholders use has been reported. It turns a missing callback into
a failure naming the node and the processes after ``timeout`` seconds (``Tick`` events carry
the time), and any failed process into a failure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from adage.model import GenericAppl, Plan


class PState(StrEnum):
    PLANNED = "planned"
    STAGED = "staged"
    LAUNCHED = "launched"
    ACKED = "acked"
    READY = "ready"
    EXITED = "exited"
    FAILED = "failed"
    KILLED = "killed"


FINAL = (PState.EXITED, PState.FAILED, PState.KILLED)
Key = tuple[str, int]  # (proc_group, instance index)


# ------------------------------------------------------------------ events
@dataclass(frozen=True)
class NodeStarting:
    """The satellite of ``node`` was started: its callback is due within the timeout."""

    node: str


@dataclass(frozen=True)
class NodeUp:
    """The satellite of ``node`` called back: the node is staged and can launch."""

    node: str


@dataclass(frozen=True)
class Acked:
    """Every process of an instance started; ``pids`` by process name (``proc/pi``)."""

    group: str
    index: int
    pids: dict[str, int]


@dataclass(frozen=True)
class LaunchError:
    group: str
    index: int
    process: str
    message: str


@dataclass(frozen=True)
class Value:
    group: str
    index: int
    process: str
    key: str
    value: str


@dataclass(frozen=True)
class PluginReady:
    """The plugin of a non-asynchronous group says it is ready."""

    group: str


@dataclass(frozen=True)
class Exited:
    group: str
    index: int
    process: str
    code: int  # negative: killed by that signal
    stderr: str = ""  # the last lines the process wrote on stderr


@dataclass(frozen=True)
class Tick:
    """Time passes (deadlines are checked against ``now``)."""


Event = NodeStarting | NodeUp | Acked | LaunchError | Value | PluginReady | Exited | Tick


# ------------------------------------------------------------------ actions
@dataclass(frozen=True)
class Launch:
    group: str


@dataclass(frozen=True)
class Fail:
    message: str


@dataclass(frozen=True)
class Deployed:
    """Every group launched, every instance acknowledged (and ready where it must be)."""


@dataclass(frozen=True)
class Finished:
    """Every process has exited."""


Action = Launch | Fail | Deployed | Finished


# ------------------------------------------------------------------ records
@dataclass
class ProcRecord:
    group: str
    index: int
    process: str  # proc/pi
    node: str
    state: PState = PState.PLANNED
    pid: int | None = None
    code: int | None = None


@dataclass
class InstanceRecord:
    group: str
    index: int
    node: str
    processes: list[ProcRecord]
    acked: bool = False
    ready: bool = False
    values: dict[str, str] = field(default_factory=dict)
    deadline: float | None = None

    def names(self) -> str:
        return ", ".join(p.process for p in self.processes)


class Machine:
    """State of one deployment. ``asynchronous[g]`` is the plugin's answer for group g;
    ``needs[g]`` the values (group, index, key) that g's placeholders use."""

    def __init__(self, appl: GenericAppl, plan: Plan, asynchronous: dict[str, bool],
                 needs: dict[str, set[tuple[str, int, str]]], timeout: float) -> None:
        self.appl = appl
        self.timeout = timeout
        self.asynchronous = asynchronous
        self.needs = needs
        self.instances: dict[Key, InstanceRecord] = {}
        for inst in plan.instances:
            group = appl.group(inst.proc_group)
            procs = [ProcRecord(group.id, inst.index, f"{p.id}/{pi}", inst.node)
                     for p in group.processes for pi in range(p.cardinality)]
            self.instances[(group.id, inst.index)] = InstanceRecord(
                group.id, inst.index, inst.node, procs)
        self.required: dict[Key, set[str]] = {}
        for keys in needs.values():
            for g, i, k in keys:
                self.required.setdefault((g, i), set()).add(k)
        self.launched: set[str] = set()
        self.plugin_ready: set[str] = set()
        self.nodes_up: set[str] = set()
        self.node_deadline: dict[str, float] = {}
        self.failure: str | None = None
        self.deployed = False
        self.finished = False

    # ---------------------------------------------------------------- queries
    def of(self, group: str) -> list[InstanceRecord]:
        return [r for r in self.instances.values() if r.group == group]

    def processes(self) -> Iterable[ProcRecord]:
        for r in self.instances.values():
            yield from r.processes

    def met(self, group: str, condition: str) -> bool:
        """Whether every instance of ``group`` has reached ``condition``."""
        insts = self.of(group)
        if condition == "exit":
            return all(p.state == PState.EXITED and p.code == 0
                       for r in insts for p in r.processes)
        if condition == "ready" or not self.asynchronous.get(group, True):
            return all(r.ready for r in insts)
        return all(r.acked for r in insts)

    def can_launch(self, group: str) -> bool:
        if group in self.launched:
            return False
        if any(r.node not in self.nodes_up for r in self.of(group)):
            return False
        for d in self.appl.dependencies:
            if d.group == group and not self.met(d.on, d.condition):
                return False
        return all(k in self.instances[(g, i)].values
                   for g, i, k in self.needs.get(group, ()) if (g, i) in self.instances)

    # ---------------------------------------------------------------- transitions
    def feed(self, event: Event, now: float) -> list[Action]:
        """Apply ``event`` at time ``now``; the actions the deployer must carry out."""
        if self.failure is not None:
            if isinstance(event, Exited):
                self._record_exit(event, killed=True)
            return []
        actions: list[Action] = []
        match event:
            case NodeStarting(node):
                self.node_deadline[node] = now + self.timeout
            case NodeUp(node):
                self.node_deadline.pop(node, None)
                self.nodes_up.add(node)
                for r in self.instances.values():
                    if r.node == node:
                        for p in r.processes:
                            p.state = PState.STAGED
            case Acked(group, index, pids):
                r = self.instances[(group, index)]
                r.acked = True
                r.deadline = now + self.timeout
                for p in r.processes:
                    p.pid = pids.get(p.process, p.pid)
                    if p.state not in FINAL:
                        p.state = PState.ACKED
            case LaunchError(group, index, process, message):
                r = self.instances[(group, index)]
                for p in r.processes:
                    if p.process == process:
                        p.state = PState.FAILED
                return self._fail(f"node {r.node}: group {group} instance {index} process "
                                  f"{process} failed to start: {message}")
            case Value(group, index, _process, key, value):
                self.instances[(group, index)].values[key] = value
            case PluginReady(group):
                self.plugin_ready.add(group)
            case Exited():
                p = self._record_exit(event, killed=False)
                if p.code != 0:
                    how = (f"was killed by signal {-p.code}" if p.code is not None and p.code < 0
                           else f"exited with code {p.code}")
                    said = f" (stderr: {event.stderr})" if event.stderr else ""
                    return self._fail(f"node {p.node}: group {p.group} instance {p.index} "
                                      f"process {p.process} {how}{said}")
            case Tick():
                pass
        self._update_ready()
        expired = self._expired(now)
        if expired:
            return self._fail(expired)
        for g in self.appl.groups:
            if self.can_launch(g.id):
                self.launched.add(g.id)
                for r in self.of(g.id):
                    r.deadline = now + self.timeout
                    for p in r.processes:
                        p.state = PState.LAUNCHED
                actions.append(Launch(g.id))
        all_launched = len(self.launched) == len(self.appl.groups)
        if not self.deployed and all_launched and all(
                r.acked and r.ready for r in self.instances.values()):
            self.deployed = True
            actions.append(Deployed())
        if not self.finished and all_launched and all(
                p.state in FINAL for p in self.processes()):
            self.finished = True
            actions.append(Finished())
        return actions

    def _record_exit(self, ev: Exited, killed: bool) -> ProcRecord:
        r = self.instances[(ev.group, ev.index)]
        p = next(p for p in r.processes if p.process == ev.process)
        if p.state not in FINAL:
            p.code = ev.code
            p.state = PState.KILLED if killed else (
                PState.EXITED if ev.code == 0 else PState.FAILED)
        return p

    def _update_ready(self) -> None:
        for r in self.instances.values():
            if r.ready or not r.acked:
                continue
            if not self.asynchronous.get(r.group, True) and r.group not in self.plugin_ready:
                continue
            if self.required.get((r.group, r.index), set()) - r.values.keys():
                continue
            r.ready = True
            r.deadline = None
            for p in r.processes:
                if p.state == PState.ACKED:
                    p.state = PState.READY

    def _expired(self, now: float) -> str | None:
        for node, deadline in self.node_deadline.items():
            if now >= deadline:
                waiting = [f"{r.group}[{r.index}] {p.process}" for r in self.instances.values()
                           if r.node == node for p in r.processes]
                return (f"node {node}: no callback from its satellite within "
                        f"{self.timeout:g} s (processes waiting: {', '.join(waiting)})")
        for r in self.instances.values():
            if r.deadline is None or now < r.deadline or r.ready:
                continue
            if not r.acked:
                return (f"node {r.node}: no callback within {self.timeout:g} s for group "
                        f"{r.group} instance {r.index} (processes {r.names()})")
            missing = sorted(self.required.get((r.group, r.index), set()) - r.values.keys())
            what = ", ".join([*(["plugin readiness"] if r.group not in self.plugin_ready
                                and not self.asynchronous.get(r.group, True) else []),
                              *(f"value {k}" for k in missing)])
            return (f"node {r.node}: group {r.group} instance {r.index} (processes "
                    f"{r.names()}) not ready within {self.timeout:g} s (waiting for {what})")
        return None

    def _fail(self, message: str) -> list[Action]:
        self.failure = message
        return [Fail(message)]

    def kill_all(self) -> None:
        """Mark every process not yet final as killed (the deployer killed them)."""
        for p in self.processes():
            if p.state not in FINAL:
                p.state = PState.KILLED

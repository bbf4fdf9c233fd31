"""The deployment state machine: events in, actions out; no processes, sockets or clocks.

It releases a process group once every group it depends on has reached the dependency's
condition on all its instances (``ack``: processes started and acknowledged, and ready if the
plugin says the group is not asynchronous; ``ready``: ready; ``exit``: every process exited 0)
and once every value its placeholders use has been reported; then each instance is launched
as soon as its node is up (as clush starts each node's command as soon as it is connected),
or, for a group its plugin launches as a whole (``whole``: MPI's ``mpirun``), every instance
at once when all of the group's nodes are up. It turns a missing callback into
a failure naming the node and the processes after ``timeout`` seconds (``Tick`` events carry
the time), and any failed process into a failure.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from adage.deploy.events import (
    Acked,
    Action,
    Deployed,
    Event,
    Exited,
    Fail,
    Finished,
    Key,
    Launch,
    LaunchError,
    NodeStarting,
    NodeUp,
    PluginReady,
    ProcKey,
    Tick,
    Value,
    proc_name,
)
from adage.model import GenericAppl, Plan
from adage.status import FINAL, Failure, PState


# ------------------------------------------------------------------ records
@dataclass
class ProcRecord:
    """One process instance; times are those of the events (seconds since the epoch)."""

    proc_group: str
    index: int
    process: ProcKey
    node: str
    state: PState = PState.PLANNED
    pid: int | None = None
    code: int | None = None
    started: float | None = None
    ended: float | None = None

    @property
    def name(self) -> str:
        return proc_name(self.process)


@dataclass
class InstanceRecord:
    proc_group: str
    index: int
    node: str
    processes: list[ProcRecord]
    acked: bool = False
    ready: bool = False
    values: dict[str, str] = field(default_factory=dict)
    deadline: float | None = None
    launched_at: float | None = None
    acked_at: float | None = None

    def names(self) -> str:
        return ", ".join(p.name for p in self.processes)

    def process(self, key: ProcKey) -> ProcRecord:
        return next(p for p in self.processes if p.process == key)


class Machine:
    """State of one deployment. ``asynchronous[g]`` is the plugin's answer for group g;
    ``needs[g]`` the values (group, index, key) that g's placeholders use.

    Every event costs O(what it touches), not a pass over the deployment: per group it keeps
    counts (processes per state, instances acknowledged and ready, instances on nodes not up
    yet), readiness is re-examined only for the instances an event concerns, and deadlines
    are two heaps (entries that no longer hold are skipped when they surface)."""

    def __init__(self, appl: GenericAppl, plan: Plan, asynchronous: dict[str, bool],
                 needs: dict[str, set[tuple[str, int, str]]], timeout: float,
                 whole: Collection[str] = ()) -> None:
        self.appl = appl
        self.whole = set(whole)
        self.timeout = timeout
        self.asynchronous = asynchronous
        self.needs = needs
        self.instances: dict[Key, InstanceRecord] = {}
        self._by_group: dict[str, list[InstanceRecord]] = {g.id: [] for g in appl.groups}
        self._by_node: dict[str, list[InstanceRecord]] = {}
        for inst in plan.instances:
            group = appl.group(inst.proc_group)
            procs = [ProcRecord(group.id, inst.index, (p.id, pi), inst.node)
                     for p in group.processes for pi in range(p.cardinality)]
            r = InstanceRecord(group.id, inst.index, inst.node, procs)
            self.instances[(group.id, inst.index)] = r
            self._by_group[group.id].append(r)
            self._by_node.setdefault(inst.node, []).append(r)
        for rs in self._by_group.values():
            rs.sort(key=lambda r: r.index)
        self.required: dict[Key, set[str]] = {}
        for keys in needs.values():
            for g, i, k in keys:
                self.required.setdefault((g, i), set()).add(k)
        self._states = {g: Counter({PState.PLANNED: sum(len(r.processes) for r in rs)})
                        for g, rs in self._by_group.items()}
        self._final_with_pid = Counter[str]()  # per group: final processes that had started
        self._acked = Counter[str]()  # per group: instances acknowledged
        self._ready = Counter[str]()  # per group: instances ready
        self._down = Counter(r.proc_group for r in self.instances.values())  # on nodes not up
        self._final = 0  # processes in a final state
        self._total = sum(len(r.processes) for r in self.instances.values())
        self._node_deadlines: list[tuple[float, str]] = []
        self._deadlines: list[tuple[float, Key]] = []
        self._unlaunched = Counter(r.proc_group for r in self.instances.values())
        self.released: set[str] = set()  # dependencies met: instances launch as nodes are up
        self.launched: set[str] = set()  # every instance launched
        self.plugin_ready: set[str] = set()
        self.nodes_up: set[str] = set()
        self.node_deadline: dict[str, float] = {}
        self.failure: Failure | None = None
        self.deployed = False
        self.finished = False

    # ---------------------------------------------------------------- queries
    def of(self, group: str) -> list[InstanceRecord]:
        """The instances of ``group``, by index."""
        return self._by_group.get(group, [])

    def processes(self) -> Iterable[ProcRecord]:
        for r in self.instances.values():
            yield from r.processes

    def tally(self, group: str) -> tuple[Mapping[PState, int], int]:
        """How many processes of ``group`` are in each state, and how many of those in a final
        state had started (acknowledged with a pid)."""
        return self._states[group], self._final_with_pid[group]

    def all_acked(self, group: str) -> bool:
        """Whether every instance of ``group`` has been acknowledged."""
        return self._acked[group] == len(self._by_group[group])

    def met(self, group: str, condition: str) -> bool:
        """Whether every instance of ``group`` has reached ``condition``."""
        if condition == "exit":
            return self._states[group][PState.EXITED] == sum(self._states[group].values())
        if condition == "ready" or not self.asynchronous.get(group, True):
            return self._ready[group] == len(self._by_group[group])
        return self.all_acked(group)

    def can_release(self, group: str) -> bool:
        """Whether ``group``'s instances may start: its dependencies are met, the values its
        placeholders use are known and, for a group launched as a whole, every node of it
        is up."""
        if group in self.released or (group in self.whole and self._down[group]):
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
                self._record_exit(event, now, killed=True)
            return []
        actions: list[Action] = []
        touched: Iterable[InstanceRecord] = ()
        match event:
            case NodeStarting(node):
                self.node_deadline[node] = now + self.timeout
                heapq.heappush(self._node_deadlines, (now + self.timeout, node))
            case NodeUp(node):
                self.node_deadline.pop(node, None)
                if node not in self.nodes_up:
                    self.nodes_up.add(node)
                    for r in self._by_node.get(node, ()):
                        self._down[r.proc_group] -= 1
                        for p in r.processes:
                            self._set(p, PState.STAGED)
                    ready: dict[str, list[InstanceRecord]] = {}
                    for r in self._by_node.get(node, ()):
                        if r.proc_group in self.released and r.proc_group not in self.whole:
                            ready.setdefault(r.proc_group, []).append(r)
                    for g, rs in ready.items():
                        actions += self._launch(g, rs, now)
            case Acked(group, index, pids):
                r = self.instances[(group, index)]
                if not r.acked:
                    r.acked, r.acked_at = True, now
                    self._acked[group] += 1
                self._deadline(r, now)
                for p in r.processes:
                    if p.state in FINAL and p.pid is None and p.process in pids:
                        self._final_with_pid[group] += 1
                    p.pid = pids.get(p.process, p.pid)
                    p.started = p.started or now
                    if p.state not in FINAL:
                        self._set(p, PState.ACKED)
                touched = (r,)
            case LaunchError(group, index, process, message):
                r = self.instances[(group, index)]
                self._set(r.process(process), PState.FAILED)
                return self._fail(Failure(
                    f"node {r.node}: group {group} instance {index} process "
                    f"{proc_name(process)} failed to start: {message}", r.node, group, index,
                    *process, stderr=message))
            case Value(group, index, _process, key, value):
                r = self.instances[(group, index)]
                r.values[key] = value
                touched = (r,)
            case PluginReady(group):
                self.plugin_ready.add(group)
                touched = self.of(group)
            case Exited():
                p = self._record_exit(event, now, killed=False)
                if p.code != 0:
                    how = (f"was killed by signal {-p.code}" if p.code is not None and p.code < 0
                           else f"exited with code {p.code}")
                    said = f" (stderr: {event.stderr})" if event.stderr else ""
                    return self._fail(Failure(
                        f"node {p.node}: group {p.proc_group} instance {p.index} process "
                        f"{p.name} {how}{said}", p.node, p.proc_group, p.index, *p.process,
                        p.code, event.stderr))
            case Tick():
                pass
        for r in touched:
            self._update_ready(r)
        expired = self._expired(now)
        if expired:
            return self._fail(expired)
        for g in self.appl.groups:
            if self.can_release(g.id):
                self.released.add(g.id)
                actions += self._launch(g.id, [r for r in self.of(g.id)
                                               if r.node in self.nodes_up], now)
        all_launched = len(self.launched) == len(self.appl.groups)
        if not self.deployed and all_launched and sum(self._ready.values()) == len(
                self.instances):
            self.deployed = True
            actions.append(Deployed())
        if not self.finished and all_launched and self._final == self._total:
            self.finished = True
            actions.append(Finished())
        return actions

    def _launch(self, group: str, records: list[InstanceRecord], now: float) -> list[Action]:
        """Mark ``records`` of ``group`` launched: one ``Launch`` for them, if any."""
        for r in records:
            r.launched_at = now
            self._deadline(r, now)
            for p in r.processes:
                self._set(p, PState.LAUNCHED)
        self._unlaunched[group] -= len(records)
        if not self._unlaunched[group]:
            self.launched.add(group)
        return [Launch(group, tuple(r.index for r in records))] if records else []

    def _set(self, p: ProcRecord, state: PState) -> None:
        """Move ``p`` to ``state``, keeping the counts."""
        counts = self._states[p.proc_group]
        counts[p.state] -= 1
        counts[state] += 1
        if state in FINAL and p.state not in FINAL:
            self._final += 1
            self._final_with_pid[p.proc_group] += p.pid is not None
        p.state = state

    def _deadline(self, r: InstanceRecord, now: float) -> None:
        r.deadline = now + self.timeout
        heapq.heappush(self._deadlines, (r.deadline, (r.proc_group, r.index)))

    def _record_exit(self, ev: Exited, now: float, killed: bool) -> ProcRecord:
        p = self.instances[(ev.proc_group, ev.index)].process(ev.process)
        if p.state not in FINAL:
            p.code, p.ended = ev.code, now
            self._set(p, PState.KILLED if killed else (
                PState.EXITED if ev.code == 0 else PState.FAILED))
        return p

    def _update_ready(self, r: InstanceRecord) -> None:
        if r.ready or not r.acked:
            return
        if (not self.asynchronous.get(r.proc_group, True)
                and r.proc_group not in self.plugin_ready):
            return
        if self.required.get((r.proc_group, r.index), set()) - r.values.keys():
            return
        r.ready = True
        r.deadline = None
        self._ready[r.proc_group] += 1
        for p in r.processes:
            if p.state == PState.ACKED:
                self._set(p, PState.READY)

    def _expired(self, now: float) -> Failure | None:
        heap = self._node_deadlines
        while heap and self.node_deadline.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # the node called back, or has a later deadline
        if heap and now >= heap[0][0]:
            node = heap[0][1]
            waiting = [f"{r.proc_group}[{r.index}] {p.name}" for r in self._by_node.get(node, ())
                       for p in r.processes]
            return Failure(f"node {node}: no callback from its satellite within "
                           f"{self.timeout:g} s (processes waiting: {', '.join(waiting)})", node)
        heap = self._deadlines
        while heap and self.instances[heap[0][1]].deadline != heap[0][0]:
            heapq.heappop(heap)  # the instance became ready, or has a later deadline
        if not heap or now < heap[0][0]:
            return None
        r = self.instances[heap[0][1]]
        if not r.acked:
            return Failure(f"node {r.node}: no callback within {self.timeout:g} s for group "
                           f"{r.proc_group} instance {r.index} (processes {r.names()})",
                           r.node, r.proc_group, r.index)
        missing = sorted(self.required.get((r.proc_group, r.index), set()) - r.values.keys())
        what = ", ".join([*(["plugin readiness"] if r.proc_group not in self.plugin_ready
                            and not self.asynchronous.get(r.proc_group, True) else []),
                          *(f"value {k}" for k in missing)])
        return Failure(f"node {r.node}: group {r.proc_group} instance {r.index} (processes "
                       f"{r.names()}) not ready within {self.timeout:g} s (waiting for {what})",
                       r.node, r.proc_group, r.index)

    def _fail(self, failure: Failure) -> list[Action]:
        self.failure = failure
        return [Fail(failure.message, failure)]

    def fail(self, failure: Failure) -> None:
        """Record a failure met outside the events (a lost satellite, an interruption)."""
        if self.failure is None:
            self.failure = failure

    def kill_all(self) -> None:
        """Mark every process not yet final as killed (the deployer killed them)."""
        for p in self.processes():
            if p.state not in FINAL:
                self._set(p, PState.KILLED)

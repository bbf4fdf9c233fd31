"""The deployer: a short loop over typed events. The propagation (``propagation.py``: ssh,
chain or TakTuk) stages every node and starts one satellite per node; each satellite line is
decoded (``protocol.py``) into the state machine's events (``state.py``); the machine's actions
launch groups in dependency order, or fail, and on any failure, timeout, SIGINT or SIGTERM
everything launched is killed. Steps: (1) run directories and files per node (``layout``);
(2) plugins' ``pre_configure``; (3) ``propagation.stage()`` starts the transfers, which go on
in the background while (4) the loop turns callbacks into events, the ``Machine``'s actions
and more satellites, until every instance is acknowledged (or, with ``wait``, every process
has exited); (5) ``detach``."""

from __future__ import annotations

import getpass
import os
import selectors
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from adage.deploy import protocol, statedir
from adage.deploy.choice import check_methods, choose, get_transport
from adage.deploy.context import DeployContext, Setup, needs
from adage.deploy.dryrun import dry_run
from adage.deploy.events import (
    Deployed,
    Event,
    Fail,
    Finished,
    Launch,
    NodeStarting,
    NodeUp,
    PluginReady,
    Tick,
)
from adage.deploy.layout import Layout, ProcSpec, node_stages
from adage.deploy.links import Link, Source, log_tail
from adage.deploy.program import satellite_source
from adage.deploy.propagation import propagation
from adage.deploy.snapshot import snapshot
from adage.deploy.ssh import SshOptions
from adage.deploy.state import Machine
from adage.deploy.transport import TransportError
from adage.errors import AdageError
from adage.model import CtrlParams, GenericAppl, Plan, Resources
from adage.plugin import named
from adage.status import FINAL, Failure, Status

KILL_WAIT = 5.0  # seconds to wait for satellites to confirm a kill
DETACH_WAIT = 10.0  # seconds to wait for satellites to confirm a detach


class DeployError(AdageError, RuntimeError):
    """The deployment failed; the message names the node, group and process concerned,
    ``failure`` keeps them as fields."""

    def __init__(self, message: str, failure: Failure | None = None) -> None:
        super().__init__(message)
        self.failure = failure or Failure(message)


class Interrupted(Exception):
    """SIGINT or SIGTERM during the deployment."""


@dataclass
class Options:
    timeout: float = 30.0  # seconds for any callback (satellite start, ack, readiness)
    wait: bool = False  # wait until every process exits
    link_dir: Path | None = None  # where get_status.sh/cleanup.sh are symlinked
    observer: Callable[[Machine], None] | None = None  # called after every change
    trace: Callable[[str, str, dict[str, Any]], None] | None = None  # (node, "<-"/"->", msg)
    ssh: SshOptions = field(default_factory=SshOptions)  # ssh/oarsh: timeouts, fan-out
    propagation: str | None = None  # ssh | taktuk | auto (None: the control parameters')


@dataclass
class Result:
    deployment: statedir.Deployment
    machine: Machine
    elapsed: float
    acked_after: float | None = None  # seconds from start until every instance was acked
    undetached: tuple[str, ...] = ()  # nodes whose satellite did not confirm the detach


def new_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"


@dataclass
class Deployer:
    appl: GenericAppl
    resources: Resources
    ctrl: CtrlParams
    plan: Plan
    options: Options = field(default_factory=Options)

    def __post_init__(self) -> None:
        self.dep_id, self.pid, self.user = new_id(), os.getpid(), getpass.getuser()
        self.layout = Layout(self.resources, self.ctrl, self.user, self.pid, self.dep_id,
                             statedir.free_root_name(self.pid))
        classes = {g.type: named(g.type) for g in self.appl.groups}
        missing = [t for t, c in classes.items() if c is None]
        if missing:  # a description that ``documents`` did not read
            raise DeployError(f"no plugin named {missing[0]!r} is installed (proc_group type)")
        by_type = {t: c() for t, c in classes.items() if c is not None}
        self.plugins = {g.id: by_type[g.type] for g in self.appl.groups}
        self.machine = Machine(
            self.appl, self.plan,
            {g.id: self.plugins[g.id].is_asynchronous(g) for g in self.appl.groups},
            needs(self.appl), self.options.timeout,
            {g.id for g in self.appl.groups if self.plugins[g.id].launches_group(g)})
        self.stages = node_stages(self.appl, self.plan, self.layout)
        self.ctx = DeployContext(self.appl, self.plan, self.resources, self.ctrl, self.layout,
                                 self.machine, self.stages, launcher=self._launch)
        nodes = sorted({i.node for i in self.plan.instances})
        method, transfer = self.ctrl.submission_method, self.ctrl.transfer.method
        check_methods(self.layout, nodes, method, transfer)
        kind = choose(self.options.propagation or self.ctrl.propagation, len(nodes),
                      max(1, self.options.ssh.fanout), method, transfer)
        self.dep = statedir.Deployment(
            self.dep_id, self.pid, self.user, os.getcwd(),
            [self.layout.node(n) for n in nodes], {n: self.layout.root(n) for n in nodes},
            propagation=kind, fanout=max(1, self.options.ssh.fanout))
        self.sel = selectors.DefaultSelector()
        self.propagation = propagation(kind, Setup(
            self.layout, self.stages, nodes, satellite_source(), self.layout.satellite_argv,
            self.dep.dir, Path(f"/tmp/{self.user}/prestage-tree-adage-{self.pid}"),
            self.options.timeout, self.options.ssh, self._watch,
            lambda node: self._feed(NodeStarting(node))),
            get_transport(method, transfer, self.options.ssh))
        self.covers: dict[str, protocol.Cover] = {}  # launch key -> what it stands for
        self.started = time.time()
        self.acked_after: float | None = None
        self.undetached: tuple[str, ...] = ()
        self.done = False

    def dry_run(self) -> str:
        """What would be staged and run on each node, with nothing run."""
        return dry_run(self.ctx, self.plugins, self.propagation, self.dep_id)

    # ---------------------------------------------------------------- the run
    def run(self) -> Result:
        """Deploy; raises DeployError (after killing every launched process) on failure."""
        self.dep.save()
        self._write_state()
        with _signals():
            try:
                for p in dict.fromkeys(self.plugins.values()):
                    p.pre_configure(self.ctx)
                self.propagation.stage()
                self._notify()
                self.propagation.start_ready()
                self._loop()
            except (AdageError, Interrupted, KeyboardInterrupt) as e:
                failure = (e.failure if isinstance(e, DeployError) else Failure(
                    f"interrupted ({e or 'SIGINT'}): every launched process was killed"
                    if isinstance(e, Interrupted | KeyboardInterrupt) else str(e)))
                self.machine.fail(failure)
                self._abort()
                raise DeployError(failure.message, failure) from None
            finally:  # the propagation first: closing it may follow (register) more satellites
                try:
                    self.propagation.close()
                finally:
                    self.sel.close()
        return Result(self.dep, self.machine, time.time() - self.started, self.acked_after,
                      self.undetached)

    def _watch(self, source: Source) -> None:
        self.sel.register(source, selectors.EVENT_READ, source)

    def _loop(self) -> None:
        while not self.done:
            for key, _ in self.sel.select(timeout=0.05):
                source: Source = key.data
                for link, msgs in source.poll():
                    if msgs is None:
                        self._satellite_gone(link)
                        continue
                    for msg in msgs:
                        self._callback(link, msg)
                if source.ended:
                    self.sel.unregister(source)
            if self.propagation.to_start:
                self.propagation.start_ready()
            self._poll_plugins()
            self._feed(Tick())

    # ---------------------------------------------------------------- events in
    def _callback(self, link: Link, obj: dict[str, Any]) -> None:
        if self.options.trace is not None:
            self.options.trace(link.node, "<-", obj)
        msg = protocol.parse(obj)
        match msg:
            case protocol.Hello(pid=pid):
                link.pid = self.dep.satellites[link.node] = pid
                self.propagation.up(link.node)
                self._feed(NodeUp(link.node))
            case protocol.Killed():
                link.killed = True
            case protocol.Detached():
                link.detached = True
            case None:
                pass
            case _:
                cover = self.covers.get(msg.key)
                if cover is None:
                    return
                procs = {i: [p.process for p in self.machine.instances[
                    (cover.proc_group, i)].processes] for i in cover.indexes}
                for event in protocol.events(msg, cover, procs):
                    self._feed(event)

    def _satellite_gone(self, link: Link) -> None:
        link.closed = True
        reason = link.gone_reason()
        if self.done or self.machine.failure is not None:
            return
        tail = log_tail(link.log)
        waiting = [f"{r.proc_group}[{r.index}] {p.name}" for r in self.machine.instances.values()
                   if r.node == link.node for p in r.processes if p.state not in FINAL]
        if waiting:
            message = (f"node {link.node}: {reason} (processes {', '.join(waiting)})"
                       + (f": {tail}" if tail else ""))
            raise DeployError(message, Failure(message, link.node, stderr=tail))

    def _poll_plugins(self) -> None:
        m = self.machine
        for g in self.appl.groups:
            if (g.id in m.launched and g.id not in m.plugin_ready and not m.asynchronous[g.id]
                    and m.all_acked(g.id) and self.plugins[g.id].is_ready(g, self.ctx)):
                self._feed(PluginReady(g.id))

    # ---------------------------------------------------------------- actions out
    def _feed(self, event: Event) -> None:
        actions = self.machine.feed(event, time.time())
        for action in actions:
            match action:
                case Launch(group, indexes):
                    self._launch_group(group, indexes)
                case Fail(message, failure):
                    raise DeployError(message, failure)
                case Deployed():
                    self.acked_after = time.time() - self.started
                    for p in dict.fromkeys(self.plugins.values()):
                        p.post_configure(self.ctx)
                    # the deployment ends here (detach) or when every process has exited
                    (self._write_state if self.options.wait else self._detach)()
                case Finished():
                    (self._detach if self.options.wait else self._write_state)()
        if actions or not isinstance(event, Tick):
            self._notify()

    def _launch_group(self, group_id: str, indexes: tuple[int, ...]) -> None:
        if group_id in self.machine.whole:
            self.plugins[group_id].launch_group(self.appl.group(group_id),
                                                self.ctx.instances(group_id), self.ctx)
            return
        ops: dict[str, list[dict[str, Any]]] = {}  # a node's operations go in one write
        for i in indexes:
            node = self.machine.instances[(group_id, i)].node
            ops.setdefault(node, []).append(
                self._launch_op(node, group_id, [i], self.ctx.instance_specs(group_id, i)))
        for node, batch in ops.items():
            self.propagation.links[node].send(*batch)

    def _launch(self, node: str, group: str, indexes: list[int], specs: list[ProcSpec]) -> None:
        self.propagation.links[node].send(self._launch_op(node, group, indexes, specs))

    def _launch_op(self, node: str, group: str, indexes: list[int],
                   specs: list[ProcSpec]) -> dict[str, Any]:
        key = protocol.launch_key(group, indexes)
        whole = len(indexes) > 1 or len(specs) != len(
            self.machine.instances[(group, indexes[0])].processes)
        self.covers[key] = protocol.Cover(group, tuple(indexes), whole, node, tuple(specs))
        op = protocol.launch_op(key, specs, watch=any(
            self.machine.required.get((group, i)) for i in indexes))
        if self.options.trace is not None:
            self.options.trace(node, "->", op)
        return op

    def _detach(self) -> None:
        """Tell every satellite to go on alone and wait (DETACH_WAIT at most) until each says
        so or is gone: only then may the propagation cut its sessions, which end while the
        state is written."""
        self.done = True
        self.propagation.detach()
        deadline = time.time() + DETACH_WAIT
        links = self.propagation.links.values()
        while time.time() < deadline and any(not k.detached and k.running() for k in links):
            self.sel.select(timeout=0.05)
            for key in list(self.sel.get_map().values()):  # a TakTuk barrier read ahead
                for link, msgs in key.data.poll():  # what else comes now is the satellite's
                    link.detached |= any(isinstance(protocol.parse(m), protocol.Detached)
                                         for m in msgs or ())
        self.undetached = tuple(sorted(k.node for k in links if not k.detached and k.running()))
        self.propagation.cut()
        self._write_state()

    def _abort(self) -> None:
        """Kill every launched process through its satellite (a satellite that never said
        hello launched nothing: it is killed at once), then directly on its node whatever a
        satellite did not confirm; record the state. A second Ctrl-C cannot cut it short."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
        self.done = True
        links = self.propagation.links.values()
        for link in links:
            link.send(protocol.KILL)
        deadline = time.time() + KILL_WAIT
        for link in links:
            while link.pid is not None and link.running() and time.time() < deadline:
                time.sleep(0.05)
            link.force_kill()
        self.machine.kill_all()
        self._collect_watch()
        transport = self.propagation.transport

        def kill_on(node: str) -> None:
            n = self.layout.node(node)
            with suppress(TransportError):
                transport.run(n, transport.shell(n), KILL_WAIT, stdin=statedir
                              .node_cleanup_script(replace(self.dep, roots={}), node))

        nodes = [n.name for n in self.dep.nodes]  # a satellite that never called back too
        with ThreadPoolExecutor(min(self.propagation.fanout, len(nodes) or 1)) as pool:
            list(pool.map(kill_on, nodes))
        self._write_state()

    # ---------------------------------------------------------------- state
    def _collect_watch(self) -> None:
        """The processes started on each node with their pids, for scripts and status (an
        mpirun standing for several instances is watched once per rank it covers)."""
        watched: dict[str, list[statedir.Watched]] = {}
        for c in self.covers.values():
            rec = self.machine.instances[(c.proc_group, c.indexes[0])]
            for s in c.specs:
                key = rec.processes[0].process if c.whole else (s.process, s.pi)
                pid = rec.process(key).pid
                if pid is None:
                    continue
                covered = ([(i, p.process) for i in c.indexes
                            for p in self.machine.instances[(c.proc_group, i)].processes]
                           if c.whole else [(c.indexes[0], key)])
                watched.setdefault(c.node, []).extend(
                    statedir.Watched(c.proc_group, i, proc, pi, pid, s.cwd)
                    for i, (proc, pi) in covered)
        self.dep.watched = watched

    def status(self) -> Status:
        return snapshot(self.machine, self.layout, self.layout.root_name, self.plan.planner,
                        self.started, time.time())

    def _write_state(self) -> None:
        self._collect_watch()
        statedir.write_scripts(self.dep, self.options.link_dir)
        self.dep.save()
        statedir.write_status(self.dep, self.status())

    def _notify(self) -> None:
        if self.options.observer is not None:
            self.options.observer(self.machine)


@contextmanager
def _signals() -> Iterator[None]:
    """SIGTERM (and SIGINT) raise Interrupted while deploying (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def deploy(appl: GenericAppl, resources: Resources, ctrl: CtrlParams, plan: Plan,
           options: Options | None = None) -> Result:
    """Deploy ``appl`` as ``plan`` places it; DeployError on failure (nothing left running)."""
    return Deployer(appl, resources, ctrl, plan, options or Options()).run()

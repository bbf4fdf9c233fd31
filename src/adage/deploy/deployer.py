"""The deployer: stage every node, start one satellite per node, drive the state machine with
the satellites' callbacks, launch groups in dependency order, and kill everything on failure,
on timeout, on SIGINT or SIGTERM.

Steps: (1) lay out run directories and files per node (``layout``); (2) plugins'
``pre_configure``; (3) put each node's tree on it in one transfer: over ssh (tar), a tar stream
written from the stage itself in the session that then runs the satellite; otherwise the
prestage tree ``/tmp/<user>/prestage-tree-adage-<pid>/<node>`` built and copied; (4) start
the satellites (their callbacks come back on their stdout, see ``satellite.py``); (5) loop:
callbacks -> ``Machine`` -> actions, until every instance is acknowledged (or, with ``wait``,
every process has exited).

Propagation ``ssh``: one ssh session per node from the front end (``PipeLink``). Propagation
``taktuk``: one front-end ``taktuk`` whose tree stages the nodes and carries every satellite's
lines (``adage.deploy.taktuk``, ``TaktukLink``). Either way the loop below sees ``Link``s.
"""

from __future__ import annotations

import json
import os
import selectors
import shlex
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib import resources as pkg_resources
from importlib.metadata import entry_points
from pathlib import Path
from subprocess import Popen
from typing import Any, Protocol

from adage.deploy import archive, statedir, taktuk
from adage.deploy.context import DeployContext, needs
from adage.deploy.layout import Layout, ProcSpec, Stage, stages
from adage.deploy.ssh import SshOptions, SshTransport, one_line
from adage.deploy.state import (
    Acked,
    Deployed,
    Event,
    Exited,
    Fail,
    Finished,
    Launch,
    LaunchError,
    Machine,
    NodeStarting,
    NodeUp,
    PluginReady,
    PState,
    Tick,
    Value,
)
from adage.deploy.transport import Transport, TransportError, get_transport, link_or_copy
from adage.model import CtrlParams, GenericAppl, PgInstance, Plan, Resources
from adage.placeholders import PlaceholderError
from adage.plugin import Plugin
from adage.status import InstanceStatus, ProcessStatus, Status

KILL_WAIT = 5.0  # seconds to wait for satellites to confirm a kill


class DeployError(RuntimeError):
    """The deployment failed; the message names the node, group and process concerned."""


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


def load_plugin(name: str) -> Plugin:
    """The plugin named ``name`` (entry point group ``adage.plugins``)."""
    for ep in entry_points(group="adage.plugins", name=name):
        return ep.load()()
    raise DeployError(f"no plugin named {name!r} is installed (proc_group type)")


def new_id() -> str:
    return f"{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"


def user() -> str:
    import getpass

    return getpass.getuser()


def satellite_source() -> str:
    return (pkg_resources.files("adage.deploy") / "satellite.py").read_text()


# ------------------------------------------------------------------ satellite links
class Link(Protocol):
    """The front end's end of one satellite, whatever carries its lines."""

    node: str
    log: Path
    pid: int | None  # the satellite's pid on its node (from "hello")
    closed: bool
    killed: bool

    def send(self, obj: dict[str, Any]) -> None:
        """One operation (a JSON line on the satellite's stdin)."""
        ...

    def close_input(self) -> None:
        """No more operations (the satellite's stdin is closed)."""
        ...

    def running(self) -> bool:
        """Whether the satellite (or what carries it) still runs."""
        ...

    def force_kill(self) -> None:
        """Kill the satellite without asking it."""
        ...

    def gone_reason(self) -> str:
        """Why it is gone (once ``running()`` is false)."""
        ...

    def log_tail(self) -> str:
        ...


class Source(Protocol):
    """What the deployer's selector watches: callbacks of one or several links."""

    ended: bool

    def fileno(self) -> int:
        ...

    def poll(self) -> list[tuple[Any, list[dict[str, Any]] | None]]:
        """(link, callbacks) readable now; (link, None) once that satellite is gone."""
        ...


@dataclass
class PipeLink:
    """A satellite on the other end of a process of ours (ssh session, local process): its
    stdin (operations) and stdout (callbacks). Also its own selector Source."""

    node: str
    popen: Popen[bytes]
    log: Path
    buf: bytes = b""
    pid: int | None = None
    closed: bool = False
    killed: bool = False
    ended: bool = False

    def send(self, obj: dict[str, Any]) -> None:
        if self.closed or self.popen.stdin is None:
            return
        try:
            self.popen.stdin.write((json.dumps(obj) + "\n").encode())
            self.popen.stdin.flush()
        except OSError:
            self.closed = True

    def close_input(self) -> None:
        if self.popen.stdin is not None:
            with suppress(OSError):
                self.popen.stdin.close()
        self.closed = True

    def running(self) -> bool:
        return self.popen.poll() is None

    def force_kill(self) -> None:
        if self.popen.poll() is None:
            with suppress(OSError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def gone_reason(self) -> str:
        return f"satellite exited with code {self.popen.wait()}"

    def fileno(self) -> int:
        assert self.popen.stdout is not None
        return self.popen.stdout.fileno()

    def poll(self) -> list[tuple[Any, list[dict[str, Any]] | None]]:
        msgs = self.read()
        if msgs is None:
            self.ended = True
        return [(self, msgs)]

    def read(self) -> list[dict[str, Any]] | None:
        """Complete callbacks available now; None once the satellite's stdout closed."""
        assert self.popen.stdout is not None
        try:
            data = os.read(self.popen.stdout.fileno(), 65536)
        except BlockingIOError:
            return []
        if not data:
            return None
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # noise from the node's shell or Python: not a callback
        return out

    def log_tail(self) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return one_line(text)[-400:]


@dataclass
class Cover:
    """A launch key's instances: ``whole`` when one process stands for all of them (mpirun)."""

    group: str
    indexes: list[int]
    whole: bool


def node_stages(appl: GenericAppl, plan: Plan, layout: Layout) -> dict[str, Stage]:
    """With destdir=scratch every node gets its own transfer of its own instances, even when
    nodes name the same scratch directory (``/tmp`` on every node of a cluster): only
    destdir=shared means one directory seen by several nodes."""
    if layout.ctrl.transfer.destdir == "shared":
        return stages(appl, plan, layout)
    by_node: dict[str, list[PgInstance]] = {}
    for i in plan.instances:
        by_node.setdefault(i.node, []).append(i)
    return {node: st for insts in by_node.values()
            for node, st in stages(appl, replace(plan, instances=tuple(insts)), layout).items()}


# ------------------------------------------------------------------ the deployer
@dataclass
class Deployer:
    appl: GenericAppl
    resources: Resources
    ctrl: CtrlParams
    plan: Plan
    options: Options = field(default_factory=Options)

    def __post_init__(self) -> None:
        self.dep_id = new_id()
        self.pid = os.getpid()
        self.user = user()
        self.layout = Layout(self.resources, self.ctrl, self.user, self.pid, self.dep_id)
        self.plugins = {g.type: load_plugin(g.type) for g in self.appl.groups}
        self.group_plugin = {g.id: self.plugins[g.type] for g in self.appl.groups}
        try:
            wanted = needs(self.appl)
        except PlaceholderError as e:
            raise DeployError(str(e)) from None
        self.machine = Machine(
            self.appl, self.plan,
            {g.id: self.group_plugin[g.id].is_asynchronous(g) for g in self.appl.groups},
            wanted, self.options.timeout)
        self.stages = node_stages(self.appl, self.plan, self.layout)
        self.ctx = DeployContext(self.appl, self.plan, self.resources, self.ctrl, self.layout,
                                 self.machine, self.stages, launcher=self._launch)
        self.transports: dict[str, Transport] = {}
        method, transfer = self.ctrl.submission_method, self.ctrl.transfer.method
        over_ssh = method in ("ssh", "oarsh") and transfer in ("local", "tar")  # tar stream
        for node in dict.fromkeys(i.node for i in self.plan.instances):
            n = self.layout.node(node)
            if method not in n.submission or (transfer not in n.transfer and not over_ssh):
                raise DeployError(f"node {node} accepts submission {', '.join(n.submission)} "
                                  f"and transfer {', '.join(n.transfer)}, not "
                                  f"{method}/{transfer}")
        if self.plan.instances:
            try:  # one transport (one set of master connections) for every node
                shared = get_transport(method, transfer, self.options.ssh)
            except TransportError as e:
                raise DeployError(str(e)) from None
            self.transports = {i.node: shared for i in self.plan.instances}
        self.fanout = max(1, self.options.ssh.fanout)
        self.propagation = self._propagation(method, transfer)
        self.session: taktuk.TaktukSession | None = None
        self.source: taktuk.TaktukSource | None = None
        self.fifo: tuple[Path, threading.Thread] | None = None
        self.to_start: list[str] = []  # nodes whose satellite is not started yet
        self.staged: set[str] = set()  # nodes whose transfer is done
        self.sel = selectors.DefaultSelector()
        self.links: dict[str, Link] = {}
        self.covers: dict[str, Cover] = {}
        self.launched_specs: dict[tuple[str, int],
                                  tuple[str, list[int], list[ProcSpec], bool]] = {}
        self.times: dict[tuple[str, int], dict[str, float]] = {}
        self.ptimes: dict[tuple[str, int, str], dict[str, float]] = {}
        self.started = time.time()
        self.acked_after: float | None = None
        self.done = False
        nodes = sorted({i.node for i in self.plan.instances})
        self.dep = statedir.Deployment(
            self.dep_id, self.pid, self.user, os.getcwd(),
            [self.layout.node(n) for n in nodes], {n: self.layout.root(n) for n in nodes})

    def _propagation(self, method: str, transfer: str) -> str:
        """ssh or taktuk: ``auto`` means taktuk when there are more nodes than ``fanout``
        (beyond what the front end contacts at once) and the nodes are reached over ssh."""
        wanted = self.options.propagation or self.ctrl.propagation
        nodes = len({i.node for i in self.plan.instances})
        if wanted == "auto":
            wanted = "taktuk" if nodes > self.fanout and method == "ssh" else "ssh"
        if wanted == "taktuk" and (method != "ssh" or transfer not in ("local", "tar")):
            raise DeployError(f"propagation taktuk needs submission ssh and the tar transfer, "
                              f"not {method}/{transfer}")
        if wanted not in ("ssh", "taktuk"):
            raise DeployError(f"unknown propagation {wanted!r} (ssh, taktuk or auto)")
        return wanted

    # ---------------------------------------------------------------- dry run
    def dry_run(self) -> str:
        """What would be staged and run on each node, with nothing run."""
        self.ctx.dry_run = True
        for p in self.plugins.values():
            p.pre_configure(self.ctx)
        out = [f"deployment {self.dep_id} (dry run): {len(self.plan.instances)} instances on "
               f"{len(self.stages)} transfer(s)"]
        if self.propagation == "taktuk":
            hosts = [self.layout.address(n) for n in sorted({i.node for i in
                                                              self.plan.instances})]
            out.append(f"through taktuk: {shlex.join(taktuk.command(hosts, self.options.ssh))}")
        for first, st in self.stages.items():
            origin = ("one tar stream, then the satellite" if self._streamed(first) else
                      f"from prestage-tree-adage-{self.pid}/{first}")
            out.append(f"transfer to {', '.join(st.nodes)}: {st.base}/ ({origin})")
            out += [f"  mkdir {d}" for d in st.dirs]
            out += [f"  copy {src} -> {dest}" for dest, src in sorted(st.files.items())]
            out += [f"  write {dest}" for dest in sorted(st.texts)]
            out += [f"  write {st.rel(self.layout.satellite(n))} (satellite)" for n in st.nodes]
        for g in self.appl.groups:
            deps = [f"{d.on}:{d.condition}" for d in self.appl.dependencies if d.group == g.id]
            out.append(f"group {g.id} ({g.type}) after {', '.join(deps) or 'nothing'}:")
            insts = self.ctx.instances(g.id)
            self.ctx.extra_launches.clear()
            if self.group_plugin[g.id].launch_group(g, insts, self.ctx):
                out += [f"  {line}" for line in self.ctx.extra_launches]
                continue
            for inst in insts:
                for s in self.ctx.instance_specs(g.id, inst.index):
                    out.append(f"  {inst.node}: {s.cwd}$ {' '.join(s.argv)}")
        return "\n".join(out)

    # ---------------------------------------------------------------- real run
    def run(self) -> Result:
        """Deploy; raises DeployError (after killing every launched process) on failure."""
        self.dep.save()
        self._write_state()
        with _signals():
            try:
                for p in self.plugins.values():
                    p.pre_configure(self.ctx)
                self._stage()
                self._start_satellites()
                self._loop()
            except (DeployError, PlaceholderError, TransportError, Interrupted,
                    KeyboardInterrupt) as e:
                message = (f"interrupted ({e or 'SIGINT'}): every launched process was killed"
                           if isinstance(e, Interrupted | KeyboardInterrupt) else str(e))
                self._abort(message)
                raise DeployError(message) from None
            finally:
                self.sel.close()
                self._close_session()
                for t in {id(t): t for t in self.transports.values()}.values():
                    close = getattr(t, "close", None)
                    if close is not None:
                        close()
        return Result(self.dep, self.machine, time.time() - self.started, self.acked_after)

    def _prestage(self) -> Path:
        return Path(f"/tmp/{self.user}/prestage-tree-adage-{self.pid}")

    def _stage(self) -> None:
        prestage = self._prestage()
        shutil.rmtree(prestage, ignore_errors=True)
        sat = satellite_source()
        if self.propagation == "taktuk":
            try:
                self._stage_taktuk(prestage, sat)
            except OSError as e:
                raise DeployError(f"prestage tree {prestage}: {e}") from None
            self._notify()
            return
        try:
            for first, st in self.stages.items():
                for dest, src in st.files.items():
                    if not Path(src).is_file():
                        raise DeployError(f"node {first}: file {src} (to {st.base}/{dest}) "
                                          "does not exist")
                if self._streamed(first) is not None:
                    continue  # its tar stream is written from the stage itself
                root = prestage / first
                for d in st.dirs:
                    (root / d).mkdir(parents=True, exist_ok=True)
                for dest, src in st.files.items():
                    (root / dest).parent.mkdir(parents=True, exist_ok=True)
                    link_or_copy(Path(src), root / dest)  # no copy of big files
                for dest, text in st.texts.items():
                    (root / dest).parent.mkdir(parents=True, exist_ok=True)
                    (root / dest).write_text(text)
                for node in st.nodes:
                    (root / st.rel(self.layout.satellite(node))).write_text(sat)
            self._put_trees(prestage, sat)
        except OSError as e:
            raise DeployError(f"prestage tree {prestage}: {e}") from None
        finally:
            shutil.rmtree(prestage, ignore_errors=True)
        self._notify()

    def _streamed(self, first: str) -> SshTransport | None:
        """The transport carrying the stage of ``first`` and its satellite in one session,
        if it can: ssh or oarsh with the tar transfer and a stage of one node (the tar
        stream, written from the stage itself, then the satellite's JSON lines)."""
        t = self.transports[first]
        one = len(self.stages[first].nodes) == 1
        return t if isinstance(t, SshTransport) and t.transfer == "tar" and one else None

    def _put_trees(self, prestage: Path, sat: str) -> None:
        """One transfer per stage, ``fanout`` at a time; a node's satellite is started as soon
        as its transfer is done, in the same session when the transport can (``_streamed``).
        On the first failure the transfers not started are dropped and those under way
        killed."""
        def put(first: str) -> tuple[str, Popen[bytes] | None]:
            st, node = self.stages[first], self.layout.node(first)
            transport = self._streamed(first)
            if transport is not None:
                texts = {**st.texts, st.rel(self.layout.satellite(first)): sat}
                return first, transport.start_with_tree(
                    node, lambda tf: archive.write_tree(tf, st.dirs, files=st.files,
                                                        texts=texts),
                    st.base, self._satellite_argv(first), self._satellite_log(first))
            self.transports[first].put_tree(node, prestage / first, st.base,
                                            self.options.timeout)
            return first, None

        self.to_start = sorted({i.node for i in self.plan.instances}, reverse=True)
        pool = ThreadPoolExecutor(min(self.fanout, len(self.stages) or 1))
        futures = [pool.submit(put, first) for first in self.stages]
        failed: BaseException | None = None
        for fut in as_completed(futures):
            failed = fut.exception()
            if failed is not None:
                break
            first, popen = fut.result()
            self.staged.update(self.stages[first].nodes)
            if popen is not None:
                self.to_start.remove(first)
                self._link(first, popen)
            self._start_satellites()
        if failed is not None:
            pool.shutdown(wait=False, cancel_futures=True)
            for t in {id(t): t for t in self.transports.values()}.values():
                cancel = getattr(t, "cancel", None)
                if cancel is not None:
                    cancel()
            for fut in futures:  # satellites started by transfers that finished meanwhile
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    first, popen = fut.result()
                    if popen is not None and first not in self.links:
                        self._link(first, popen)
        pool.shutdown(wait=True)
        if failed is not None:
            raise failed

    def _stage_taktuk(self, prestage: Path, sat: str) -> None:
        """Reach every node with one taktuk, then per stage: the common tar stream (once,
        through the tree, to every stage's first node), the node's own small tar, and the
        satellite exec'd on what follows; the other nodes of a shared stage start once the
        first one's satellite says hello."""
        nodes = sorted({i.node for i in self.plan.instances})
        self.session = taktuk.TaktukSession({n: self.layout.address(n) for n in nodes},
                                            self.options.ssh)
        self.session.start(self.dep.dir / "taktuk.log")
        self.session.wait_numbered(self.options.timeout)
        self.source = taktuk.TaktukSource(self.session)
        self.sel.register(self.source, selectors.EVENT_READ, self.source)
        prestage.mkdir(parents=True)
        names = taktuk.common_names(self.stages.values())
        ranks = [self.session.peers[first].rank for first in self.stages]
        for first, st in self.stages.items():
            common = f"{self.layout.adage_dir(first)}/common-{first}"
            taktuk.node_archive(prestage / f"{first}.tar", st, st.rel(common), names,
                                [st.rel(self.layout.satellite(n)) for n in st.nodes])
            self._start_taktuk(first, taktuk.stage_and_start(st.base, common,
                                                              self._satellite_argv(first)))
        fifo = prestage / "common.fifo"
        self.fifo = (fifo, taktuk.stream_fifo(fifo, names, sat))
        self.session.send(taktuk.input_file(taktuk.ranks_set(ranks), str(fifo)))
        for first in self.stages:
            self.session.send(taktuk.input_file(str(self.session.peers[first].rank),
                                                str(prestage / f"{first}.tar")))
        self.to_start = sorted({n for st in self.stages.values() for n in st.nodes[1:]},
                               reverse=True)

    def _start_taktuk(self, node: str, line: str) -> None:
        assert self.session is not None and self.source is not None
        log = self._satellite_log(node)
        link = taktuk.TaktukLink(self.session, self.session.start_command(node, line, log), log)
        self.source.links[node] = link
        self.links[node] = link
        self._feed(NodeStarting(node))

    def _close_session(self) -> None:
        if self.session is not None:
            self.session.close()
        if self.fifo is not None:
            taktuk.release_fifo(*self.fifo)
        if self.propagation == "taktuk":
            shutil.rmtree(self._prestage(), ignore_errors=True)

    def _satellite_argv(self, node: str) -> list[str]:
        n = self.layout.node(node)
        return ["env", f"ADAGE_DEPLOYMENT={self.dep_id}", n.prop("python") or "python3",
                "-S", self.layout.satellite(node), node]  # -S: stdlib only, fast start

    def _satellite_log(self, node: str) -> Path:
        return self.dep.dir / f"satellite-{node}.log"

    def _link(self, node: str, popen: Popen[bytes]) -> None:
        """Follow a satellite started through a process of ours: its callbacks, its start
        deadline."""
        assert popen.stdout is not None
        os.set_blocking(popen.stdout.fileno(), False)
        link = PipeLink(node, popen, self._satellite_log(node))
        self.links[node] = link
        self.sel.register(link, selectors.EVENT_READ, link)
        self._feed(NodeStarting(node))

    def _start_satellites(self) -> None:
        """Start the satellites of staged nodes, at most ``fanout`` of them not yet up at a
        time (the others as the first ones say hello)."""
        ready = [n for n in self.to_start if n in self.staged]
        while ready and sum(1 for k in self.links.values()
                            if k.pid is None and not k.closed) < self.fanout:
            node = ready.pop()
            self.to_start.remove(node)
            if self.session is not None:
                self._start_taktuk(node, shlex.join(self._satellite_argv(node)))
                continue
            self._link(node, self.transports[node].start(
                self.layout.node(node), self._satellite_argv(node), self._satellite_log(node)))

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
            if self.to_start:
                self._start_satellites()
            self._poll_plugins()
            self._feed(Tick())

    # ---------------------------------------------------------------- callbacks
    def _callback(self, link: Link, msg: dict[str, Any]) -> None:
        if self.options.trace is not None:
            self.options.trace(link.node, "<-", msg)
        ev = msg.get("ev")
        if ev == "hello":
            link.pid = int(msg["pid"])
            self.dep.satellites[link.node] = link.pid
            if self.session is not None and link.node in self.stages:
                self.staged.update(self.stages[link.node].nodes)  # its tree is extracted
            self._feed(NodeUp(link.node))
            return
        if ev == "killed":
            link.killed = True
            return
        cover = self.covers.get(msg.get("key", ""))
        if cover is None:
            return
        now = time.time()
        if ev == "started":
            pids = {str(k): int(v) for k, v in msg["pids"].items()}
            for i in cover.indexes:
                rec = self.machine.instances[(cover.group, i)]
                mapped = ({p.process: next(iter(pids.values())) for p in rec.processes}
                          if cover.whole else pids)
                self.times.setdefault((cover.group, i), {})["acked"] = now
                for p in rec.processes:
                    self.ptimes.setdefault((cover.group, i, p.process), {})["started"] = now
                self._feed(Acked(cover.group, i, mapped))
        elif ev == "error":
            self._feed(LaunchError(cover.group, cover.indexes[0], msg["proc"], msg["message"]))
        elif ev == "value":
            for i in cover.indexes:
                self._feed(Value(cover.group, i, msg["proc"], msg["name"], msg["value"]))
        elif ev == "exit":
            for i in cover.indexes:
                rec = self.machine.instances[(cover.group, i)]
                names = [p.process for p in rec.processes] if cover.whole else [msg["proc"]]
                for name in names:
                    self.ptimes.setdefault((cover.group, i, name), {})["ended"] = now
                    self._feed(Exited(cover.group, i, name, int(msg["code"]),
                                      str(msg.get("stderr", ""))))

    def _satellite_gone(self, link: Link) -> None:
        link.closed = True
        reason = link.gone_reason()
        if self.done or self.machine.failure is not None:
            return
        tail = link.log_tail()
        waiting = [f"{r.group}[{r.index}] {p.process}" for r in self.machine.instances.values()
                   if r.node == link.node for p in r.processes if p.state not in
                   (PState.EXITED, PState.FAILED, PState.KILLED)]
        if waiting:
            raise DeployError(f"node {link.node}: {reason} (processes {', '.join(waiting)})"
                              + (f": {tail}" if tail else ""))

    def _poll_plugins(self) -> None:
        for g in self.appl.groups:
            if (g.id in self.machine.launched and g.id not in self.machine.plugin_ready
                    and not self.machine.asynchronous[g.id]
                    and self.machine.all_acked(g.id)
                    and self.group_plugin[g.id].is_ready(g, self.ctx)):
                self._feed(PluginReady(g.id))

    # ---------------------------------------------------------------- actions
    def _feed(self, event: Event) -> None:
        actions = self.machine.feed(event, time.time())
        for action in actions:
            match action:
                case Launch(group):
                    self._launch_group(group)
                case Fail(message):
                    raise DeployError(message)
                case Deployed():
                    self.acked_after = time.time() - self.started
                    for p in self.plugins.values():
                        p.post_configure(self.ctx)
                    self._write_state()
                    if not self.options.wait:
                        self._detach()
                case Finished():
                    self._write_state()
                    if self.options.wait:
                        self._detach()
        if actions or not isinstance(event, Tick):
            self._notify()

    def _launch_group(self, group_id: str) -> None:
        group = self.appl.group(group_id)
        insts = self.ctx.instances(group_id)
        now = time.time()
        for inst in insts:
            self.times.setdefault((group_id, inst.index), {})["launched"] = now
        if self.group_plugin[group_id].launch_group(group, insts, self.ctx):
            return
        for inst in insts:
            self._launch(inst.node, group_id, [inst.index],
                         self.ctx.instance_specs(group_id, inst.index))

    def _launch(self, node: str, group: str, indexes: list[int], specs: list[ProcSpec]) -> None:
        key = f"{group}/{indexes[0]}" if len(indexes) == 1 else f"{group}/*"
        whole = len(indexes) > 1 or len(specs) != len(
            self.machine.instances[(group, indexes[0])].processes)
        self.covers[key] = Cover(group, indexes, whole)
        self.launched_specs[(group, indexes[0])] = (node, indexes, specs, whole)
        op = {"op": "launch", "key": key, "procs": [s.to_json() for s in specs]}
        if self.options.trace is not None:
            self.options.trace(node, "->", op)
        self.links[node].send(op)

    def _detach(self) -> None:
        self.done = True
        for link in self.links.values():
            link.send({"op": "detach"})
            link.close_input()
        if self.session is not None:  # the satellites read "detach" before taktuk ends
            self.session.barrier([p.rank for p in self.session.peers.values()],
                                 self.options.timeout)

    def _abort(self, message: str) -> None:
        """Kill every launched process through its satellite (a satellite that never said
        hello launched nothing: it is killed at once), then directly on its node whatever a
        satellite did not confirm; record the failure. A second Ctrl-C cannot cut it short."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
        self.done = True
        for link in self.links.values():
            link.send({"op": "kill"})
        deadline = time.time() + KILL_WAIT
        for link in self.links.values():
            while link.pid is not None and link.running() and time.time() < deadline:
                time.sleep(0.05)
            link.force_kill()
        self.machine.kill_all()
        self._collect_watch()

        def kill_on(node: str) -> None:
            n = self.layout.node(node)
            with suppress(TransportError):
                self.transports[node].run(n, self.transports[node].shell(n), KILL_WAIT,
                                          stdin=statedir.node_cleanup_script(
                                              replace(self.dep, roots={}), node))

        nodes = [n.name for n in self.dep.nodes]  # a satellite that never called back too
        with ThreadPoolExecutor(min(self.fanout, len(nodes) or 1)) as pool:
            list(pool.map(kill_on, nodes))
        self._write_state(message)

    # ---------------------------------------------------------------- state
    def _collect_watch(self) -> None:
        """The processes started on each node with their pids, for scripts and status (an
        mpirun standing for several instances is watched once per rank it covers)."""
        watched: dict[str, list[statedir.Watched]] = {}
        for (group, first), (node, indexes, specs, whole) in self.launched_specs.items():
            for s in specs:
                rec = self.machine.instances[(group, first)]
                name = rec.processes[0].process if whole else s.name
                pid = next((p.pid for p in rec.processes if p.process == name), None)
                if pid is None:
                    continue
                covered = ([(i, p.process) for i in indexes
                            for p in self.machine.instances[(group, i)].processes]
                           if whole else [(first, s.name)])
                watched.setdefault(node, []).extend(
                    statedir.Watched(group, i, proc, pid, s.cwd) for i, proc in covered)
        self.dep.watched = watched

    def status(self, message: str = "") -> Status:
        insts = []
        for (g, i), r in self.machine.instances.items():
            procs = []
            for p in r.processes:
                pid_name, _, pi = p.process.rpartition("/")
                t = self.ptimes.get((g, i, p.process), {})
                rundir = self.layout.rundir(r.node, g, i, pid_name, int(pi))
                procs.append(ProcessStatus(
                    pid_name, int(pi), p.state.value, p.pid, p.code, rundir,
                    f"{rundir}/stdout", f"{rundir}/stderr", t.get("started"), t.get("ended"),
                    values=tuple(sorted(r.values.items()))))
            states = {p.state for p in r.processes}
            state = min(states, key=list(PState).index).value if states else "planned"
            t = self.times.get((g, i), {})
            insts.append(InstanceStatus(g, i, r.node, state, tuple(procs), t.get("launched"),
                                        t.get("acked"), message=message if
                                        self.machine.failure else ""))
        return Status(tuple(insts), f"adage-{self.pid}", self.plan.planner, self.started,
                      time.time())

    def _write_state(self, message: str = "") -> None:
        self._collect_watch()
        statedir.write_scripts(self.dep, self.options.link_dir)
        self.dep.save()
        statedir.write_status(self.dep, self.status(message))

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

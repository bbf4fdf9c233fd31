"""The state directory of a deployment (``$ADAGE_HOME/deployments/<id>/``, ``ADAGE_HOME``
defaulting to ``~/.adage``): ``deployment.json`` (nodes, run roots, who runs where),
``status.xml`` (the status document), the generated ``get_status.sh`` and ``cleanup.sh`` (also
symlinked where adage was started) and the satellites' logs. ``adage status`` and ``adage
clean`` run the very same per-node shell snippets as the scripts, the way the deployment
reached the nodes: through one taktuk tree if it went through TakTuk, else through the
transport, a session per node.

A process is recognised on its node by ``ADAGE_DEPLOYMENT=<id>`` in ``/proc/<pid>/environ``,
so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from adage import documents
from adage.deploy import taktuk_session
from adage.deploy.choice import get_transport
from adage.deploy.events import ProcKey, proc_name
from adage.deploy.ssh import SshOptions
from adage.deploy.transport import TransportError
from adage.errors import AdageError
from adage.model import Node
from adage.status import FINAL, PState, Status, instance_state

FANOUT = 32  # nodes asked or cleaned at the same time


class StateError(AdageError, RuntimeError):
    """No such deployment, or its state directory is unreadable."""


def home() -> Path:
    return Path(os.environ.get("ADAGE_HOME") or Path.home() / ".adage") / "deployments"


@dataclass
class Watched:
    """Process instance ``pi`` of ``process`` in instance ``index`` of ``proc_group``, started
    on its node (``pid`` there), its exit code file in ``cwd``."""

    proc_group: str
    index: int
    process: str
    pi: int
    pid: int
    cwd: str

    @property
    def key(self) -> tuple[str, int, ProcKey]:
        return self.proc_group, self.index, (self.process, self.pi)


@dataclass
class Deployment:
    id: str
    pid: int
    user: str
    cwd: str
    nodes: list[Node]
    roots: dict[str, str]  # node -> <base>/<user>/adage-<pid> (removed by clean)
    satellites: dict[str, int] = field(default_factory=dict)  # node -> satellite pid
    watched: dict[str, list[Watched]] = field(default_factory=dict)  # node -> processes
    links: list[str] = field(default_factory=list)
    propagation: str = "ssh"  # status and clean go the way the deployment went
    fanout: int = SshOptions.fanout

    @property
    def dir(self) -> Path:
        return home() / self.id

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        tmp = self.dir / "deployment.json.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.dir / "deployment.json")


def free_root_name(pid: int) -> str:
    """``adage-<pid>``, the name of a deployment's root on its nodes, unless a deployment of
    this home not cleaned yet, started by an earlier process of the same pid, holds it: then
    ``adage-<pid>.<k>``, the first free (else the new deployment would write into the old
    one's directories, and the old one's clean remove the new one's)."""
    taken: set[str] = set()
    for path in home().glob(f"*-{pid}/deployment.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
            taken |= {Path(r).name for r in json.loads(path.read_text())["roots"].values()}
    name, k = f"adage-{pid}", 1
    while name in taken:
        k += 1
        name = f"adage-{pid}.{k}"
    return name


def load(dep_id: str | None) -> Deployment:
    """The deployment ``dep_id`` (None: the most recent one)."""
    if dep_id is None:
        found = sorted(p.parent.name for p in home().glob("*/deployment.json"))
        if not found:
            raise StateError(f"no deployment in {home()}")
        dep_id = found[-1]
    path = home() / dep_id / "deployment.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StateError(f"no deployment {dep_id!r} ({path}: {e})") from None
    nodes = [Node(**{k: tuple(map(tuple, v)) if k == "properties" else
                     tuple(v) if isinstance(v, list) else v for k, v in n.items()})
             for n in data.pop("nodes")]
    watched = {k: [Watched(**w) for w in v] for k, v in data.pop("watched").items()}
    return Deployment(nodes=nodes, watched=watched, **data)


def write_status(dep: Deployment, status: Status) -> None:
    tmp = dep.dir / "status.xml.tmp"
    tmp.write_text(documents.dump("status", status))
    tmp.replace(dep.dir / "status.xml")


def read_status(dep: Deployment) -> Status | None:
    path = dep.dir / "status.xml"
    return documents.read_status(path) if path.exists() else None


# ------------------------------------------------------------------ per-node snippets
def _owned(dep_id: str) -> str:
    """A sh function: is pid $1 a process of this deployment?"""
    return ("owned() { [ -n \"$1\" ] && tr '\\0' '\\n' 2>/dev/null < /proc/$1/environ "
            f"| grep -qx {shlex.quote('ADAGE_DEPLOYMENT=' + dep_id)}; }}\n")


def node_status_script(dep: Deployment, node: str) -> str:
    """sh printing ``GROUP INDEX PROCESS running|exited|gone PID CODE`` per watched process."""
    lines = [_owned(dep.id),
             'st() { if owned "$1"; then echo "$3 $4 $5 running $1 -"; '
             'elif [ -f "$2/adage.exit" ]; then echo "$3 $4 $5 exited $1 $(cat "$2/adage.exit")"; '
             'else echo "$3 $4 $5 gone $1 -"; fi; }\n']
    for w in dep.watched.get(node, []):
        lines.append(f"st {w.pid} {shlex.quote(w.cwd)} {shlex.quote(w.proc_group)} {w.index} "
                     f"{shlex.quote(proc_name((w.process, w.pi)))}\n")
    return "".join(lines)


def node_cleanup_script(dep: Deployment, node: str) -> str:
    """sh killing the satellite and the process groups of this deployment on ``node`` (TERM,
    then KILL), then any other process of the deployment (a satellite that never called back
    and its launcher: found by their environment), then removing its run directories."""
    pids = [str(dep.satellites[node])] if node in dep.satellites else []
    pids += [str(w.pid) for w in dep.watched.get(node, [])]
    body = _owned(dep.id)
    if pids:
        body += (f"for p in {' '.join(pids)}; do owned $p && {{ kill -TERM -$p 2>/dev/null || "
                 "kill -TERM $p 2>/dev/null; }; done\n"
                 "n=0; while [ $n -lt 20 ]; do alive=; "
                 f"for p in {' '.join(pids)}; do owned $p && alive=1; done; "
                 "[ -z \"$alive\" ] && break; sleep 0.1; n=$((n+1)); done\n"
                 f"for p in {' '.join(pids)}; do owned $p && {{ kill -KILL -$p 2>/dev/null || "
                 "kill -KILL $p 2>/dev/null; }; done\n")
    mark = shlex.quote(f"ADAGE_DEPLOYMENT={dep.id}")
    body += (f"for f in $(grep -lsxz {mark} /proc/[0-9]*/environ); do p=${{f#/proc/}}; "
             'p=${p%/environ}; [ "$p" != $$ ] && kill -KILL "$p" 2>/dev/null; done\n')
    if node in dep.roots:
        body += f"rm -rf {shlex.quote(dep.roots[node])}\n"
    return body


def _node_call(dep: Deployment, node: str, script: str) -> str:
    """A sh command running ``script`` on ``node`` through its transport (heredoc)."""
    n = dep.node(node)
    prefix = " ".join(shlex.quote(a) for a in get_transport(n.submission[0], n.transfer[0])
                      .shell(n))
    return f"{prefix} <<'ADAGE_EOF'\n{script}ADAGE_EOF\n"


def write_scripts(dep: Deployment, link_dir: Path | None) -> None:
    """(Re)write get_status.sh and cleanup.sh, and symlink them in ``link_dir``."""
    nodes = [n.name for n in dep.nodes]
    header = f"#!/bin/sh\n# Generated by adage for deployment {dep.id}.\n"
    status = header + "".join(_node_call(dep, n, node_status_script(dep, n)) for n in nodes)
    cleanup = header + "".join(_node_call(dep, n, node_cleanup_script(dep, n)) for n in nodes)
    for link in dep.links:
        cleanup += (f"[ \"$(readlink {shlex.quote(link)})\" = "
                    f"{shlex.quote(str(dep.dir / Path(link).name))} ] && rm -f "
                    f"{shlex.quote(link)}\n")
    cleanup += f"rm -rf {shlex.quote(str(dep.dir))}\necho 'deployment {dep.id} cleaned'\n"
    for name, text in (("get_status.sh", status), ("cleanup.sh", cleanup)):
        path = dep.dir / name
        path.write_text(text)
        path.chmod(0o755)
        if link_dir is not None:
            link = link_dir / name
            if link.is_symlink() or not link.exists():
                link.unlink(missing_ok=True)
                link.symlink_to(path)
                if str(link) not in dep.links:
                    dep.links.append(str(link))


# ------------------------------------------------------------------ status and clean
Live = dict[tuple[str, int, ProcKey], tuple[str, str]]


def ask(dep: Deployment, scripts: dict[str, str], timeout: float,
        options: SshOptions | None = None) -> dict[str, str | TransportError]:
    """Run ``scripts[node]`` on each node the way the deployment reached them; node -> its
    stdout, or the error that kept it from running. Through one taktuk tree if the deployment
    went through TakTuk, then over the transport for the nodes the tree did not reach (on a
    loaded front end TakTuk's connectors may time out: ssh, FANOUT at a time, is the
    fallback, and a node both fail is named with both reasons); else over the transport."""
    answers: dict[str, str | TransportError] = {}
    if dep.propagation == "taktuk":
        answers = _ask_taktuk(dep, scripts, timeout, options or SshOptions())
    missed = {n: s for n, s in scripts.items() if not isinstance(answers.get(n), str)}

    def one(node: str) -> tuple[str, str | TransportError]:
        n = dep.node(node)
        transport = get_transport(n.submission[0], n.transfer[0], options)
        try:
            return node, transport.run(n, transport.shell(n), timeout, stdin=missed[node])
        except TransportError as e:
            before = answers.get(node)
            return node, TransportError(f"{before}; then over {transport.name}: {e}"
                                        if before is not None else str(e))

    with ThreadPoolExecutor(FANOUT) as pool:
        answers.update(pool.map(one, list(missed)))
    return answers


def _ask_taktuk(dep: Deployment, scripts: dict[str, str], timeout: float,
                options: SshOptions) -> dict[str, str | TransportError]:
    work = Path(tempfile.mkdtemp(prefix="taktuk-", dir=dep.dir))
    try:
        done = taktuk_session.run_scripts(
            {n: dep.node(n).address or n for n in scripts}, scripts,
            replace(options, multiplex=False, fanout=dep.fanout), timeout, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {n: ("\n".join(r[1]) if r[0] == 0 else TransportError(
                f"node {n}: exited with code {r[0]}: {' | '.join(r[1])[-300:]}"))
            if isinstance(r, tuple) else TransportError(f"node {n}: {r}")
            for n, r in done.items()}


def live(dep: Deployment, timeout: float = 30.0, options: SshOptions | None = None) -> Live:
    """(proc_group, index, (process, pi)) -> (running|exited|gone|unreachable, exit code or
    "-"), asking each node once (``ask``; ``options``: the ssh connect timeout)."""
    out: Live = {}
    answers = ask(dep, {n: node_status_script(dep, n) for n in dep.watched}, timeout, options)
    for node, text in answers.items():
        if isinstance(text, TransportError):
            out.update({w.key: ("unreachable", "-") for w in dep.watched[node]})
            continue
        for line in text.splitlines():
            g, i, p, state, _pid, code = line.split()
            proc, _, pi = p.rpartition("/")
            out[(g, int(i), (proc, int(pi)))] = (state, code)
    return out


def clean(dep: Deployment, timeout: float = 30.0, options: SshOptions | None = None,
          force: bool = False) -> dict[str, str]:
    """Kill what is left of the deployment, remove its run directories, its symlinks and its
    state directory; node -> error for the nodes that could not be cleaned (empty: all
    clean). The state directory stays while a node is left, unless ``force`` forgets them."""
    answers = ask(dep, {n.name: node_cleanup_script(dep, n.name) for n in dep.nodes}, timeout,
                  options)
    errors = {node: str(e) for node, e in answers.items() if isinstance(e, TransportError)}
    for link in dep.links:
        p = Path(link)
        if p.is_symlink() and Path(os.readlink(p)).parent == dep.dir:
            p.unlink()
    if force or not errors:
        shutil.rmtree(dep.dir, ignore_errors=True)
    return errors


def refresh_status(dep: Deployment, timeout: float = 30.0,
                   options: SshOptions | None = None) -> tuple[Status, list[str]]:
    """The recorded status updated with what each node says now (written back), and the nodes
    that could not be asked (their processes keep their last known state)."""
    status = read_status(dep)
    if status is None:
        raise StateError(f"deployment {dep.id} has no status.xml yet")
    now = live(dep, timeout, options)
    insts = []
    unreachable: set[str] = set()
    for inst in status.instances:
        procs = []
        for p in inst.processes:
            state, code = now.get((inst.proc_group, inst.index, (p.id, p.index)), ("", "-"))
            if state == "unreachable":
                unreachable.add(inst.node)
            elif state == "exited" and p.state not in (PState.FAILED, PState.KILLED):
                c = int(code)
                p = replace(p, state=(PState.EXITED if c == 0 else PState.FAILED).value,
                              exit_code=c)
            elif state == "gone" and p.state not in FINAL:
                p = replace(p, state=PState.KILLED.value, message="gone without an exit code")
            procs.append(p)
        insts.append(replace(inst, processes=tuple(procs), state=instance_state(
            (q.state for q in procs), default=inst.state)))
    status = replace(status, instances=tuple(insts), updated=time.time())
    write_status(dep, status)
    return status, sorted(unreachable)

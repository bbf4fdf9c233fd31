"""Where everything goes on the nodes, and what each process is started with (pure).

Run directory of a process: ``<base>/<user>/adage-<pid>/<proc_group>/<instance>/<process>/<process
instance>``; ``<base>`` is the node's scratch directory (``destdir=scratch``) or the shared
directory of its node group (``destdir=shared``). Beside the groups, ``_common/{bin,lib}`` holds
executables and libraries with ``binlib_in_commondir`` and ``_adage/`` the satellite and the
plugins' files (MPI machinefiles).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field, replace
from functools import cached_property

from adage.deploy.program import BOOT
from adage.errors import AdageError
from adage.model import (
    RESERVED,
    CtrlParams,
    FileSpec,
    GenericAppl,
    Node,
    PgInstance,
    Plan,
    Process,
    ProcGroup,
    Resources,
    stays_below,
)

REPORT_FILE = "adage.report"
EXIT_FILE = "adage.exit"


def find_python(candidates: str, options: str = "") -> str:
    """``sh``: exec the first of ``candidates`` found, with ``options`` then the arguments."""
    return (f'for p in {candidates}; do command -v "$p" >/dev/null && exec "$p" {options}"$@"; '
            'done; echo "adage: no python3 on $(hostname)" >&2; exit 127')


# A node's Python when it names none: the system's, else the first python3 on the PATH. The
# satellite and the chain's relay need only the standard library, and a python3 found on the
# PATH may be a shim (pyenv's costs a bash start-up of ~60 forks: 65 ms of CPU per node).
PYTHON = ("sh", "-c", find_python("/usr/bin/python3 python3"), "python3")


class LayoutError(AdageError, ValueError):
    """The plan cannot be laid out on the nodes (e.g. no shared directory)."""


@dataclass(frozen=True)
class Layout:
    """Paths of one deployment (``deployment`` is its id, ``pid`` the front end's pid,
    ``name`` its root's, ``adage-<pid>`` unless given: see ``statedir.free_root_name``)."""

    resources: Resources
    ctrl: CtrlParams
    user: str
    pid: int
    deployment: str
    name: str = ""

    @property
    def root_name(self) -> str:
        return self.name or f"adage-{self.pid}"

    def base(self, node: str) -> str:
        if self.ctrl.transfer.destdir == "shared":
            for g in self.resources.groups:
                if node in g.nodes:
                    return g.shared_dir
            raise LayoutError(f"destdir=shared but node {node} is in no node group with a "
                              "shared directory")
        return self.node(node).scratch

    @cached_property
    def _nodes(self) -> dict[str, Node]:
        return {n.name: n for n in self.resources.nodes}

    def node(self, name: str) -> Node:
        if name not in self._nodes:
            raise LayoutError(f"node {name} is in the plan but not in the resources")
        return self._nodes[name]

    def address(self, node: str) -> str:
        n = self.node(node)
        return n.address or n.name

    def root(self, node: str) -> str:
        """``<base>/<user>/adage-<pid>``: everything this deployment puts on ``node``."""
        return f"{self.base(node)}/{self.user}/{self.root_name}"

    def rundir(self, node: str, group: str, index: int, process: str, pi: int) -> str:
        return f"{self.root(node)}/{group}/{index}/{process}/{pi}"

    def common(self, node: str) -> str:
        return f"{self.root(node)}/_common"

    def adage_dir(self, node: str) -> str:
        return f"{self.root(node)}/_adage"

    def python(self, node: str) -> tuple[str, ...]:
        """The command running a Python on ``node``: its ``python`` property, else ``PYTHON``."""
        python = self.node(node).prop("python")
        return (python,) if python else PYTHON

    def satellite(self, node: str) -> str:
        """One satellite file per node, so that nodes sharing a file system (destdir=shared,
        or the loopback test bed) never rewrite one another's while it starts."""
        return f"{self.adage_dir(node)}/satellite-{node}.py"

    def satellite_argv(self, node: str, from_stdin: bool = False) -> list[str]:
        """The command starting the satellite of ``node``: one ``sh`` marking it with
        ``ADAGE_DEPLOYMENT`` (how ``clean`` finds it) and running the node's Python (its
        ``python`` property, else ``/usr/bin/python3`` or the first ``python3`` on the PATH)
        with ``-S`` (the standard library only: a fast start) on the satellite's file, or
        ``from_stdin`` on the program that ``program.BOOT`` reads there."""
        python = self.node(node).prop("python")
        candidates = shlex.quote(python) if python else "/usr/bin/python3 python3"
        script = (f"ADAGE_DEPLOYMENT={shlex.quote(self.deployment)}; export ADAGE_DEPLOYMENT; "
                  + find_python(candidates, "-S "))
        program = ["-c", BOOT] if from_stdin else [self.satellite(node)]
        return ["sh", "-c", script, "sh", *program, node]


def is_binlib(f: FileSpec) -> bool:
    return f.type in ("exe", "lib", "so")


def file_dest(layout: Layout, node: str, rundir: str, f: FileSpec) -> str:
    """Absolute destination on ``node`` of a transferred file of a process."""
    name = f.name
    if not stays_below(name):
        raise LayoutError(f"file {f.src}: destination {name!r} must be a relative path "
                          "without '..'")
    if layout.ctrl.transfer.binlib_in_commondir and is_binlib(f):
        sub = "bin" if f.type == "exe" else "lib"
        return f"{layout.common(node)}/{sub}/{name}"
    return f"{rundir}/{name}"


def transferred(layout: Layout, proc: Process) -> list[FileSpec]:
    return [f for f in proc.files if f.type in layout.ctrl.transfer.types]


# ------------------------------------------------------------------ staging
@dataclass
class Stage:
    """One transfer: the tree rooted at ``base`` shared by ``nodes`` (one node unless
    destdir=shared); paths are relative to ``base``."""

    base: str
    nodes: list[str]
    dirs: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # dest -> source on the front end
    texts: dict[str, str] = field(default_factory=dict)  # dest -> content

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.base)

    @property
    def bare(self) -> bool:
        """Directories only, on one node: the satellite can make them, no tree need go."""
        return len(self.nodes) == 1 and not self.files and not self.texts


def stages(appl: GenericAppl, plan: Plan, layout: Layout) -> dict[str, Stage]:
    """One Stage per distinct base directory (keyed by its first node): run directories and
    transferred files of every process placed on its nodes, and the directory of the
    satellite (the deployer adds the satellite itself and plugin files)."""
    for g in appl.groups:
        if g.id in RESERVED:
            raise LayoutError(f"proc_group id {g.id!r} is reserved by the run directory layout")
    by_base: dict[str, Stage] = {}
    by_node: dict[str, Stage] = {}
    nodes = list(dict.fromkeys(i.node for i in plan.instances))
    for node in nodes:
        base = layout.base(node)
        st = by_base.get(base)
        if st is None:
            st = by_base[base] = Stage(base, [node])
            st.dirs.append(st.rel(layout.adage_dir(node)))
        elif node not in st.nodes:
            st.nodes.append(node)
        by_node[node] = st
    for inst in plan.instances:
        st = by_node[inst.node]
        group = appl.group(inst.proc_group)
        for proc in group.processes:
            for pi in range(proc.cardinality):
                rundir = layout.rundir(inst.node, group.id, inst.index, proc.id, pi)
                st.dirs.append(st.rel(rundir))
                for f in transferred(layout, proc):
                    dest = st.rel(file_dest(layout, inst.node, rundir, f))
                    if st.files.setdefault(dest, f.src) != f.src:
                        raise LayoutError(f"{st.files[dest]} and {f.src} would both be copied "
                                          f"to {st.base}/{dest} (give them different dest)")
    return {s.nodes[0]: s for s in by_base.values()}


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


# ------------------------------------------------------------------ launch specs
@dataclass(frozen=True)
class ProcSpec:
    """How the satellite starts one process (arguments and env values not yet resolved).
    ``env`` is applied in order on the node: action set, add (append with ':') or prepend."""

    proc_group: str
    index: int
    process: str
    pi: int
    node: str
    cwd: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str, str], ...]

    @property
    def name(self) -> str:
        return f"{self.process}/{self.pi}"

    def to_json(self) -> dict[str, object]:
        return {"id": self.name, "cwd": self.cwd, "argv": list(self.argv),
                "env": [list(e) for e in self.env]}


def proc_spec(layout: Layout, group: ProcGroup, index: int, node: str, proc: Process,
              pi: int) -> ProcSpec:
    """The launch spec of process instance ``pi`` of ``proc`` in instance ``index``."""
    rundir = layout.rundir(node, group.id, index, proc.id, pi)
    exe = proc.executable
    for f in transferred(layout, proc):
        if f.type == "exe" and f.name == exe:
            exe = file_dest(layout, node, rundir, f)
    env: list[tuple[str, str, str]] = [(e.name, e.value, e.action) for e in layout.ctrl.envs]
    env += [(k, v, "set") for k, v in proc.env]
    if layout.ctrl.transfer.binlib_in_commondir:
        env += [("PATH", f"{layout.common(node)}/bin", "prepend"),
                ("LD_LIBRARY_PATH", f"{layout.common(node)}/lib", "prepend")]
    env += [
        ("ADAGE_DEPLOYMENT", layout.deployment, "set"),
        ("ADAGE_GROUP", group.id, "set"),
        ("ADAGE_INDEX", str(index), "set"),
        ("ADAGE_PROCESS", proc.id, "set"),
        ("ADAGE_PROCESS_INDEX", str(pi), "set"),
        ("ADAGE_NODE", node, "set"),
        ("ADAGE_RUNDIR", rundir, "set"),
        ("ADAGE_REPORT", f"{rundir}/{REPORT_FILE}", "set"),
    ]
    return ProcSpec(group.id, index, proc.id, pi, node, rundir, (exe, *proc.args), tuple(env))


def instance_specs(layout: Layout, group: ProcGroup, index: int, node: str) -> list[ProcSpec]:
    return [proc_spec(layout, group, index, node, p, pi)
            for p in group.processes for pi in range(p.cardinality)]

"""What the deployer shows the plugins' runtime hooks (``ctx`` in ``adage.plugin``), and the
resolution of placeholders against the plan and the values processes reported; what it shows
the propagations (``Setup``)."""

from __future__ import annotations

import shlex
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from adage.deploy.layout import Layout, ProcSpec, Stage, proc_spec
from adage.deploy.links import Source
from adage.deploy.program import satellite_program
from adage.deploy.ssh import SshOptions
from adage.deploy.state import Machine
from adage.model import CtrlParams, GenericAppl, Node, PgInstance, Plan, Resources, url_host
from adage.placeholders import PlaceholderError, Ref, refs, substitute

Launcher = Callable[[str, str, list[int], list[ProcSpec]], None]


def needs(appl: GenericAppl) -> dict[str, set[tuple[str, int, str]]]:
    """For each group, the values (group, index, key) its placeholders use; raises
    PlaceholderError (naming group and process) for a malformed placeholder."""
    out: dict[str, set[tuple[str, int, str]]] = {}
    for g in appl.groups:
        for p in g.processes:
            for text in (*p.args, *(v for _, v in p.env)):
                try:
                    found = list(refs(text))
                except PlaceholderError as e:
                    raise PlaceholderError(f"group {g.id} process {p.id}: {e}") from None
                for r in found:
                    if r.group != "self" and not any(x.id == r.group for x in appl.groups):
                        raise PlaceholderError(f"group {g.id} process {p.id}: {r.text} names "
                                               f"no proc_group")
                    if r.what == "value":
                        out.setdefault(g.id, set()).add((r.group, r.index, r.key))
    return out


def shown(node: str, spec: ProcSpec) -> str:
    """A process as the dry run prints it, ``NODE: CWD$ ARGV``: the directory and the arguments
    shell-quoted (``shlex``), so that an empty argument, spaces, newlines or shell characters
    read as they are and the command can be copied into a shell (pure)."""
    return f"{node}: {shlex.quote(spec.cwd)}$ {shlex.join(spec.argv)}"


@dataclass
class DeployContext:
    """The deployment as plugins see it. ``stage_text`` works until the transfer (in
    ``pre_configure``); ``launch`` from ``launch_group`` on."""

    appl: GenericAppl
    plan: Plan
    resources: Resources
    ctrl: CtrlParams
    layout: Layout
    machine: Machine
    stages: dict[str, Stage]
    dry_run: bool = False
    launcher: Launcher | None = None
    extra_launches: list[str] = field(default_factory=list)  # dry run: what plugins would run

    def __post_init__(self) -> None:
        self._instances = self.plan.by_group()  # the plan indexed once: no scan per instance
        self._nodes = {(i.proc_group, i.index): i.node for i in self.plan.instances}

    def node(self, name: str) -> Node:
        return self.layout.node(name)

    def address(self, node: str) -> str:
        return self.layout.address(node)

    def instances(self, group: str) -> list[PgInstance]:
        return list(self._instances.get(group, ()))

    def group_dir(self, group: str) -> str:
        """A directory for the plugin's files of ``group``, on the node of its instance 0."""
        return f"{self.layout.adage_dir(self.instances(group)[0].node)}/{group}"

    def stage_text(self, node: str, path: str, content: str) -> None:
        """Put a file with ``content`` at the absolute ``path`` on ``node`` with the transfer."""
        for st in self.stages.values():
            if node in st.nodes:
                st.texts[st.rel(path)] = content
                return
        raise KeyError(f"node {node} receives nothing in this deployment")

    def values(self, group: str, index: int = 0) -> dict[str, str]:
        return dict(self.machine.instances[(group, index)].values)

    def resolve(self, text: str, group: str, index: int, node: str) -> str:
        """``text`` with its placeholders replaced for instance ``index`` of ``group``."""

        def one(ref: Ref) -> str:
            if ref.group == "self":
                return {"index": str(index), "host": self.address(node),
                        "urlhost": url_host(self.address(node)), "group": group}[ref.what]
            insts = self._instances.get(ref.group, [])
            if ref.what == "hosts":
                return ",".join(self.address(i.node) for i in insts)
            if ref.what == "count":
                return str(len(insts))
            at = self._nodes.get((ref.group, ref.index))
            if at is None:
                raise PlaceholderError(f"{ref.text}: group {ref.group} has {len(insts)} "
                                       "instance(s) in the plan")
            if ref.what == "host":
                return self.address(at)
            if ref.what == "urlhost":
                return url_host(self.address(at))
            if self.dry_run:
                return f"<{ref.group}[{ref.index}].value.{ref.key}>"
            value = self.values(ref.group, ref.index).get(ref.key)
            if value is None:
                raise PlaceholderError(f"{ref.text}: {ref.group}[{ref.index}] has not reported "
                                       f"{ref.key}")
            return value

        return substitute(text, one)

    def spec(self, group: str, index: int, process: str, pi: int = 0) -> ProcSpec:
        """The launch spec of one process instance, placeholders resolved."""
        g = self.appl.group(group)
        node = self._nodes[(group, index)]
        proc = next(p for p in g.processes if p.id == process)
        s = proc_spec(self.layout, g, index, node, proc, pi)
        return replace(s, argv=tuple(self.resolve(a, group, index, node) for a in s.argv),
                       env=tuple((n, self.resolve(v, group, index, node), a)
                                 for n, v, a in s.env))

    def instance_specs(self, group: str, index: int) -> list[ProcSpec]:
        g = self.appl.group(group)
        return [self.spec(group, index, p.id, pi)
                for p in g.processes for pi in range(p.cardinality)]

    def launch(self, node: str, group: str, indexes: list[int], specs: list[ProcSpec]) -> None:
        """Have the satellite of ``node`` start ``specs`` in one go, on behalf of the
        instances ``indexes`` of ``group``: their acknowledgement, values and exits are those
        of these processes (one spec covering several instances: all of them share it)."""
        if self.dry_run:
            for s in specs:
                self.extra_launches.append(shown(node, s))
            return
        assert self.launcher is not None
        self.launcher(node, group, indexes, specs)

    @staticmethod
    def tcp_open(host: str, port: int, timeout: float = 0.2) -> bool:
        """Whether something accepts TCP connections at host:port (seen from the front end)."""
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return True
        except OSError:
            return False


@dataclass
class Setup:
    """What a propagation needs of the deployment (``starting``: a node's hello is now due)."""

    layout: Layout
    stages: dict[str, Stage]
    nodes: list[str]  # every planned node, sorted
    satellite: str  # the satellite's source (``program``: as a file, or framed on stdin)
    argv: Callable[[str], list[str]]  # a node's satellite command
    state_dir: Path  # the deployment's state directory (logs)
    prestage: Path  # /tmp/<user>/prestage-tree-adage-<pid>
    timeout: float
    ssh: SshOptions
    watch: Callable[[Source], None]  # registers a selector source
    starting: Callable[[str], None]

    @property
    def program(self) -> str:  # the file each node runs as its satellite
        return satellite_program(self.satellite)

    def log(self, node: str) -> Path:
        """What the satellite of ``node`` writes on stderr (with ssh's own messages)."""
        return self.state_dir / f"satellite-{node}.log"

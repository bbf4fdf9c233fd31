"""The generic description, resources, control parameters and plan, as plain dataclasses.

Every XML document ADAGE reads or writes maps onto these types (``adage.documents`` does the
conversion); planners and the deployer only ever see these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

FILE_TYPES = ("cfg", "lib", "data", "exe", "so")
SUBMISSION_METHODS = ("local", "ssh", "oarsh")
TRANSFER_METHODS = ("tar", "local", "scp", "rsync", "oarcp")  # local: an alias of tar
RESERVED = ("_common", "_adage")  # not group ids: directories of the run directory layout


# ------------------------------------------------------------------ generic description
def stays_below(name: str) -> bool:
    """Whether the relative path ``name``, joined to a directory, stays below it (not absolute,
    no ``..``, not empty)."""
    path = PurePosixPath(name)
    return bool(path.parts) and not path.is_absolute() and ".." not in path.parts


@dataclass(frozen=True)
class FileSpec:
    """A file a process needs: copied from ``src`` (on the front end) to ``dest`` in its run
    directory (or in the common directory for ``exe``/``lib``/``so`` with binlib_in_commondir)."""

    type: str  # one of FILE_TYPES
    src: str
    dest: str = ""  # file name in the run directory; default: basename of src

    @property
    def name(self) -> str:
        """Where it goes, relative to the run (or common) directory."""
        return self.dest or PurePosixPath(self.src).name


@dataclass(frozen=True)
class Process:
    """One kind of process of a process group, started ``cardinality`` times per instance."""

    id: str
    executable: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    files: tuple[FileSpec, ...] = ()
    cardinality: int = 1


@dataclass(frozen=True)
class ProcGroup:
    """A process group: ``cardinality`` instances, each placed on one node by the planner."""

    id: str
    type: str  # the plugin that launches it: "generic", "mpi", "dask", ...
    cardinality: int
    processes: tuple[Process, ...]
    params: tuple[tuple[str, str], ...] = ()  # plugin-specific settings (e.g. mpi flavour)


@dataclass(frozen=True)
class Dependency:
    """``group`` is launched only once every instance of ``on`` has reached ``condition``."""

    group: str
    on: str
    condition: str = "ack"  # "ack" (processes started), "ready" (plugin says so), "exit"


@dataclass(frozen=True)
class GenericAppl:
    groups: tuple[ProcGroup, ...]
    dependencies: tuple[Dependency, ...] = ()

    def group(self, group_id: str) -> ProcGroup:
        for g in self.groups:
            if g.id == group_id:
                return g
        raise KeyError(group_id)


# ------------------------------------------------------------------ resources
def url_host(address: str) -> str:
    """``address`` as it goes before ``:PORT`` or ``:PATH`` (URLs, scp/rsync targets): an IPv6
    literal (any address with a ``:``, zone ``%eth0`` included) in brackets, anything else as
    is (pure)."""
    if ":" in address and not address.startswith("["):
        return f"[{address}]"
    return address


@dataclass(frozen=True)
class Node:
    name: str
    cores: int = 1
    speed: float = 1.0
    memory: int = 0  # MiB, 0 = unknown
    properties: tuple[tuple[str, str], ...] = ()
    submission: tuple[str, ...] = ("local",)  # accepted submission methods, preferred first
    transfer: tuple[str, ...] = ("local",)  # accepted transfer methods, preferred first
    scratch: str = "/tmp"
    address: str = ""  # host to contact when it differs from name ("" = name)

    def prop(self, key: str) -> str | None:
        return dict(self.properties).get(key)


@dataclass(frozen=True)
class NodeGroup:
    """Nodes that share a directory (NFS): files put there once are seen by all."""

    id: str
    shared_dir: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Resources:
    nodes: tuple[Node, ...]
    groups: tuple[NodeGroup, ...] = ()


# ------------------------------------------------------------------ control parameters
@dataclass(frozen=True)
class Transfer:
    method: str = "local"
    types: tuple[str, ...] = ("cfg", "data", "exe")
    binlib_in_commondir: bool = False
    destdir: str = "scratch"  # "scratch" | "shared"


@dataclass(frozen=True)
class EnvSetting:
    name: str
    value: str
    action: str = "set"  # "set" | "add" (append to an existing value with ':')


@dataclass(frozen=True)
class PropertyPredicate:
    """``node.prop(name) <op> value``; op in eq, ne, lt, le, gt, ge, in (value: comma list)."""

    name: str
    op: str
    value: str


@dataclass(frozen=True)
class Constraint:
    """Placement constraints of one process group."""

    proc_group: str
    predicates: tuple[PropertyPredicate, ...] = ()
    max_per_node: int = 0  # 0 = unlimited
    collocate_with: str = ""  # every instance on a node that hosts an instance of this group
    separate_from: str = ""  # never on a node that hosts an instance of this group


@dataclass(frozen=True)
class PluginRef:
    name: str
    file: str = ""


@dataclass(frozen=True)
class CtrlParams:
    submission_method: str = "local"
    transfer: Transfer = field(default_factory=Transfer)
    envs: tuple[EnvSetting, ...] = ()
    planner: str = "round-robin"
    constraints: tuple[Constraint, ...] = ()
    plugins: tuple[PluginRef, ...] = ()
    oversubscribe: bool = False  # capacity planner: allow more instances than cores
    propagation: str = "ssh"  # ssh | taktuk | chain | auto: how the front end reaches many nodes

    def constraint(self, group_id: str) -> Constraint:
        for c in self.constraints:
            if c.proc_group == group_id:
                return c
        return Constraint(group_id)


# ------------------------------------------------------------------ plan
@dataclass(frozen=True)
class PgInstance:
    """Instance ``index`` (0-based) of process group ``proc_group``, placed on ``node``."""

    proc_group: str
    index: int
    node: str


@dataclass(frozen=True)
class Plan:
    planner: str
    instances: tuple[PgInstance, ...]

    def of(self, group_id: str) -> list[PgInstance]:
        return [i for i in self.instances if i.proc_group == group_id]

    def by_group(self) -> dict[str, list[PgInstance]]:
        """The instances of each group, by index (one pass over the plan)."""
        out: dict[str, list[PgInstance]] = {}
        for i in self.instances:
            out.setdefault(i.proc_group, []).append(i)
        return {g: sorted(insts, key=lambda i: i.index) for g, insts in out.items()}

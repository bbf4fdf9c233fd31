"""The plugin contract, after ADAGE's: convert a specific description to a generic fragment,
configure after planning, launch a process group (synchronously or not), say when a
non-asynchronous group is ready, configure after launch.

The built-in plugins are known by name; others are found through the ``adage.plugins`` entry
point group, read only when a name or root element is not a built-in one (reading the
installed distributions' metadata costs more than the rest of a small deployment's start).
A plugin is chosen by the root element of a specific document (``Plugin.root``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from adage.model import GenericAppl, PgInstance, ProcGroup

if TYPE_CHECKING:
    from lxml import etree

    from adage.deploy.context import DeployContext


class Plugin:
    """Base class: every hook but ``convert`` has a default that suits plain processes."""

    name: ClassVar[str]
    root: ClassVar[str]  # root element of the specific documents this plugin reads
    schema: ClassVar[str]  # XSD file name in adage/schemas/

    # ---- conversion (no I/O but reading the document)
    def convert(self, doc: etree._ElementTree, source: Path) -> GenericAppl:
        """The generic fragment of one validated specific document."""
        raise NotImplementedError

    # ---- deployment hooks (``ctx``: the deployment as plugins see it)
    def pre_configure(self, ctx: DeployContext) -> None:
        """After planning, before any launch (e.g. write an MPI machinefile)."""

    def launches_group(self, group: ProcGroup) -> bool:
        """True if ``launch_group`` starts ``group`` as a whole (once every node of the group
        is staged); False (the default): each node's satellite starts the processes of its
        instances as soon as the node is up."""
        return False

    def launch_group(self, group: ProcGroup, instances: list[PgInstance],
                     ctx: DeployContext) -> None:
        """Start ``group`` (its ``instances``), if ``launches_group`` says so."""
        raise NotImplementedError

    def is_asynchronous(self, group: ProcGroup) -> bool:
        """True if the group is acknowledged as soon as its processes are started; False if
        the deployer must also wait for ``is_ready``."""
        return True

    def is_ready(self, group: ProcGroup, ctx: DeployContext) -> bool:
        """For non-asynchronous groups: whether dependants may be launched now."""
        return True

    def post_configure(self, ctx: DeployContext) -> None:
        """After every group is launched."""


BUILTIN = {"generic": "adage.plugins.generic:GenericPlugin",
           "mpi": "adage.plugins.mpi:MpiPlugin",
           "dask": "adage.plugins.dask:DaskPlugin"}


def _builtin(name: str) -> type[Plugin]:
    module, _, attr = BUILTIN[name].partition(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def available() -> dict[str, type[Plugin]]:
    """Plugins by name: the built-in ones, then the installed entry points (``adage.plugins``)
    under other names."""
    from importlib.metadata import entry_points

    found = {name: _builtin(name) for name in BUILTIN}
    for ep in entry_points(group="adage.plugins"):
        found.setdefault(ep.name, ep.load())
    return found


def named(name: str) -> type[Plugin] | None:
    """The plugin called ``name`` (a proc_group's type), if any is installed."""
    return _builtin(name) if name in BUILTIN else available().get(name)


def for_root(root: str) -> Plugin:
    """The plugin whose specific documents have this root element."""
    for cls in map(_builtin, BUILTIN):
        if cls.root == root:
            return cls()
    plugins = available().values()
    for cls in plugins:
        if cls.root == root:
            return cls()
    known = ", ".join(sorted(c.root for c in plugins))
    raise LookupError(f"no plugin reads documents with root <{root}> (known: {known})")

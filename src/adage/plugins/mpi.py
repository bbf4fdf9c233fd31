"""The MPI plugin: an ``mpi_application`` becomes one process group of type "mpi" with one
instance per rank; the deployer runs ``mpirun`` once over a machinefile of the planned nodes.

Group parameters: ``flavour`` (openmpi|mpich), ``mpirun`` (path of the command) and one
``mpirun_option`` per extra option, in order.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from lxml import etree

from adage.model import GenericAppl, PgInstance, Process, ProcGroup
from adage.plugin import Plugin
from adage.plugins import args_of, env_of, files_of, integer, trimmed

if TYPE_CHECKING:
    from adage.deploy.context import DeployContext


class MpiPlugin(Plugin):
    name: ClassVar[str] = "mpi"
    root: ClassVar[str] = "mpi_application"
    schema: ClassVar[str] = "mpi_appl.xsd"

    def convert(self, doc: etree._ElementTree, source: Path) -> GenericAppl:
        """One group ``<id>`` of ``processes`` instances, each running one ``rank``."""
        root = doc.getroot()
        mpirun = root.find("mpirun")
        params = [("flavour", root.get("flavour"))]
        if mpirun is not None:
            params.append(("mpirun", mpirun.get("path")))
            params += [("mpirun_option", trimmed(o)) for o in mpirun.iterfind("option")]
        else:
            params.append(("mpirun", "mpirun"))
        rank = Process(
            id="rank",
            executable=trimmed(root.find("executable")),
            args=args_of(root),
            env=env_of(root),
            files=files_of(root, source),
        )
        group = ProcGroup(
            id=root.get("id"),
            type=self.name,
            cardinality=integer(root.get("processes")),
            processes=(rank,),
            params=tuple(params),
        )
        return GenericAppl((group,))

    # ---- deployment hooks (deployment engineer)
    def pre_configure(self, ctx: DeployContext) -> None:
        """Stage one machinefile per MPI group on the node of its instance 0."""
        for group in ctx.appl.groups:
            if group.type == self.name:
                node = ctx.instances(group.id)[0].node
                ctx.stage_text(node, f"{ctx.group_dir(group.id)}/machinefile",
                               machinefile(group, ctx))

    def launches_group(self, group: ProcGroup) -> bool:
        return True

    def launch_group(self, group: ProcGroup, instances: list[PgInstance],
                     ctx: DeployContext) -> None:
        """Run ``mpirun`` once, on the node of instance 0, in that instance's run directory;
        its start acknowledges every rank and its exit is every rank's exit."""
        params = dict(group.params)
        flavour = params.get("flavour", "openmpi")
        spec = ctx.spec(group.id, instances[0].index, group.processes[0].id, 0)
        ranks = len(instances) * sum(p.cardinality for p in group.processes)
        mf = f"{ctx.group_dir(group.id)}/machinefile"
        argv = [params.get("mpirun", "mpirun"), "-np", str(ranks)]
        env = list(spec.env)
        if flavour == "openmpi":
            argv += ["--hostfile", mf]
            if any("local" in ctx.node(i.node).submission for i in instances):
                argv.append("--oversubscribe")  # virtual nodes share this machine's cores
            env += [("OMPI_ALLOW_RUN_AS_ROOT", "1", "set"),
                    ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", "set")]
        else:
            argv += ["-f", mf]
        argv += [v for k, v in group.params if k == "mpirun_option"]
        spec = replace(spec, argv=(*argv, *spec.argv), env=tuple(env))
        ctx.launch(instances[0].node, group.id, [i.index for i in instances], [spec])


def machinefile(group: ProcGroup, ctx: DeployContext) -> str:
    """One line per host of the group's ranks, in plan order: ``host slots=n`` (Open MPI) or
    ``host:n`` (MPICH); virtual nodes sharing an address are counted together."""
    per_rank = sum(p.cardinality for p in group.processes)
    slots: dict[str, int] = {}
    for inst in ctx.instances(group.id):
        host = ctx.address(inst.node)
        slots[host] = slots.get(host, 0) + per_rank
    fmt = "{} slots={}" if dict(group.params).get("flavour", "openmpi") == "openmpi" else "{}:{}"
    return "".join(fmt.format(h, n) + "\n" for h, n in slots.items())

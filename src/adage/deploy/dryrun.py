"""The dry run: what a deployment would stage and run on each node, with nothing run."""

from __future__ import annotations

from collections.abc import Mapping
from shlex import quote as q

from adage.deploy.context import DeployContext, shown
from adage.deploy.propagation import Propagation
from adage.plugin import Plugin


def dry_run(ctx: DeployContext, plugins: Mapping[str, Plugin], propagation: Propagation,
            deployment: str) -> str:
    """The text of the dry run (``plugins``: by group id); the plugins' ``pre_configure`` and
    ``launch_group`` run against ``ctx`` in dry-run mode. Commands are shell-quoted
    (``context.shown``), and so are the paths staged."""
    ctx.dry_run = True
    for p in dict.fromkeys(plugins.values()):
        p.pre_configure(ctx)
    out = [f"deployment {deployment} (dry run): {len(ctx.plan.instances)} instances on "
           f"{len(ctx.stages)} transfer(s)", *propagation.header()]
    for first, st in ctx.stages.items():
        out.append(f"transfer to {', '.join(st.nodes)}: {st.base}/ ({propagation.origin(first)})")
        if propagation.treeless(first):  # the satellite makes its processes' directories
            sat = {st.rel(ctx.layout.adage_dir(n)) for n in st.nodes}
            out += [f"  mkdir {q(d)} (by the satellite)" for d in st.dirs if d not in sat]
            continue
        out += [f"  mkdir {q(d)}" for d in st.dirs]
        out += [f"  copy {q(src)} -> {q(dest)}" for dest, src in sorted(st.files.items())]
        out += [f"  write {q(dest)}" for dest in sorted(st.texts)]
        out += [f"  write {q(st.rel(ctx.layout.satellite(n)))} (satellite)" for n in st.nodes]
    for g in ctx.appl.groups:
        deps = [f"{d.on}:{d.condition}" for d in ctx.appl.dependencies if d.group == g.id]
        out.append(f"group {g.id} ({g.type}) after {', '.join(deps) or 'nothing'}:")
        insts = ctx.instances(g.id)
        ctx.extra_launches.clear()
        if plugins[g.id].launches_group(g):
            plugins[g.id].launch_group(g, insts, ctx)
            out += [f"  {line}" for line in ctx.extra_launches]
            continue
        for inst in insts:
            for s in ctx.instance_specs(g.id, inst.index):
                out.append(f"  {shown(inst.node, s)}")
    return "\n".join(out)

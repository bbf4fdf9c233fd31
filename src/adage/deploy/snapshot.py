"""The status document of a deployment under way, built from the state machine's records
(states, pids, exit codes, times, values, the failure): the one place a ``Status`` is made
from a ``Machine``."""

from __future__ import annotations

from adage.deploy.layout import Layout
from adage.deploy.state import InstanceRecord, Machine
from adage.status import Failure, InstanceStatus, ProcessStatus, Status, instance_state


def _processes(r: InstanceRecord, layout: Layout, failure: Failure | None
               ) -> tuple[ProcessStatus, ...]:
    out = []
    for p in r.processes:
        rundir = layout.rundir(r.node, r.proc_group, r.index, *p.process)
        failed = failure is not None and (failure.proc_group, failure.index, failure.process,
                                          failure.process_index) == (r.proc_group, r.index,
                                                                     *p.process)
        out.append(ProcessStatus(
            p.process[0], p.process[1], p.state.value, p.pid, p.code, rundir,
            f"{rundir}/stdout", f"{rundir}/stderr", p.started, p.ended,
            message=failure.message if failed and failure is not None else "",
            values=tuple(sorted(r.values.items()))))
    return tuple(out)


def snapshot(machine: Machine, layout: Layout, deployment: str, planner: str,
             started: float, now: float) -> Status:
    """Every planned instance and process as the machine knows them at ``now``."""
    failure = machine.failure
    insts = []
    for r in machine.instances.values():
        procs = _processes(r, layout, failure)
        insts.append(InstanceStatus(
            r.proc_group, r.index, r.node, instance_state(p.state for p in procs), procs,
            r.launched_at, r.acked_at, message=failure.message if failure else ""))
    return Status(tuple(insts), deployment, planner, started, now, failure)

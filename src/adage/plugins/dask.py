"""The Dask plugin: a ``dask_application`` becomes three process groups of type "dask":

- ``<id>-scheduler``: 1 instance of ``python -m distributed.cli.dask_scheduler``;
- ``<id>-workers``: ``count`` instances of ``python -m distributed.cli.dask_worker`` pointed at
  ``tcp://@{<id>-scheduler.urlhost}:PORT`` (``urlhost``: an IPv6 address in brackets),
  launched once the scheduler is ready;
- ``<id>-client`` (only with a ``client`` element): the client script, run by the same
  interpreter once every worker is acknowledged, with ``DASK_SCHEDULER_ADDRESS`` and
  ``DASK_WORKERS`` (the worker count) in its environment.

The interpreter is the ``python`` attribute, by default the one running ADAGE
(``sys.executable``); it must have ``distributed`` installed on every node. Each group has the
parameters ``role`` (scheduler|workers|client), ``python`` and ``port`` (the scheduler's).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from lxml import etree

from adage.model import Dependency, FileSpec, GenericAppl, Process, ProcGroup
from adage.plugin import Plugin
from adage.plugins import args_of, boolean, decimal, env_of, files_of, integer, resolve_src

if TYPE_CHECKING:
    from adage.deploy.context import DeployContext

DEFAULT_PORT = 8786  # also the schema default of scheduler/@port


class DaskPlugin(Plugin):
    name: ClassVar[str] = "dask"
    root: ClassVar[str] = "dask_application"
    schema: ClassVar[str] = "dask_appl.xsd"

    def convert(self, doc: etree._ElementTree, source: Path) -> GenericAppl:
        """The scheduler, workers and client groups and their dependencies."""
        root = doc.getroot()
        app = root.get("id")
        python = root.get("python", sys.executable)
        sched = root.find("scheduler")
        port = integer(sched.get("port")) if sched is not None else DEFAULT_PORT
        dashboard = sched is not None and boolean(sched.get("dashboard"))
        scheduler_id, workers_id, client_id = f"{app}-scheduler", f"{app}-workers", f"{app}-client"
        address = f"tcp://@{{{scheduler_id}.urlhost}}:{port}"  # tcp://[::1]:8786 for IPv6

        def group(gid: str, role: str, count: int, process: Process) -> ProcGroup:
            params = (("role", role), ("python", python), ("port", str(port)))
            return ProcGroup(gid, self.name, count, (process,), params)

        sched_args = ["-m", "distributed.cli.dask_scheduler", "--port", str(port)]
        if dashboard:
            dashboard_port = integer(sched.get("dashboard_port"))
            sched_args += ["--dashboard", "--dashboard-address", f":{dashboard_port}"]
        else:
            sched_args.append("--no-dashboard")
        groups = [group(scheduler_id, "scheduler", 1, Process("scheduler", python,
                                                               tuple(sched_args)))]

        workers = root.find("workers")
        count = integer(workers.get("count"))
        worker_args = (
            "-m", "distributed.cli.dask_worker", address,
            "--nthreads", decimal(workers.get("threads")),
            "--memory-limit", workers.get("memory"),
            "--name", f"{workers_id}-@{{self.index}}",
            "--no-dashboard",
        )  # fmt: skip
        groups.append(group(workers_id, "workers", count, Process("worker", python, worker_args)))
        deps = [Dependency(workers_id, scheduler_id, "ready")]

        client = root.find("client")
        if client is not None:
            script = client.get("script")
            staged = FileSpec("cfg", resolve_src(script, source), os.path.basename(script))
            env = (("DASK_SCHEDULER_ADDRESS", address),
                   ("DASK_WORKERS", f"@{{{workers_id}.count}}"), *env_of(client))
            process = Process("client", python, (staged.dest, *args_of(client)), env,
                              (staged, *files_of(client, source)))
            groups.append(group(client_id, "client", 1, process))
            deps += [Dependency(client_id, scheduler_id, "ready"),
                     Dependency(client_id, workers_id, "ack")]
        return GenericAppl(tuple(groups), tuple(deps))

    # ---- deployment hooks (deployment engineer)
    def is_asynchronous(self, group: ProcGroup) -> bool:
        """The scheduler must be ready (serving) before anything uses it."""
        return dict(group.params).get("role") != "scheduler"

    def is_ready(self, group: ProcGroup, ctx: DeployContext) -> bool:
        """The scheduler is ready once its port accepts connections (or once it reported
        its ``address``)."""
        params = dict(group.params)
        if params.get("role") != "scheduler":
            return True
        inst = ctx.instances(group.id)[0]
        if "address" in ctx.values(group.id, inst.index):
            return True
        return ctx.tcp_open(ctx.address(inst.node), int(params.get("port", DEFAULT_PORT)))

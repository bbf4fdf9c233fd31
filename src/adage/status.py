"""The deployment status: the state of every placed instance and of every process instance.

The deployer fills it; ``adage.documents.dump("status", ...)`` writes it and
``adage.documents.read_status`` reads it back (schema ``status.xsd``).
"""

from __future__ import annotations

from dataclasses import dataclass

STATES = ("planned", "staged", "launched", "acked", "ready", "exited", "failed", "killed")


@dataclass(frozen=True)
class ProcessStatus:
    """Process instance ``index`` of process ``id`` (times: seconds since the epoch)."""

    id: str
    index: int
    state: str  # one of STATES
    pid: int | None = None
    exit_code: int | None = None
    rundir: str = ""
    stdout: str = ""
    stderr: str = ""
    started: float | None = None
    ended: float | None = None
    message: str = ""  # why it failed, in plain words
    values: tuple[tuple[str, str], ...] = ()  # KEY=VALUE lines it appended to $ADAGE_REPORT


@dataclass(frozen=True)
class InstanceStatus:
    """Instance ``index`` of process group ``proc_group`` on ``node``."""

    proc_group: str
    index: int
    node: str
    state: str  # one of STATES
    processes: tuple[ProcessStatus, ...] = ()
    launched: float | None = None
    acked: float | None = None
    ended: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Status:
    instances: tuple[InstanceStatus, ...] = ()
    deployment: str = ""  # e.g. the base run directory or "adage-<pid>"
    planner: str = ""
    started: float | None = None
    updated: float | None = None

    def of(self, group_id: str) -> list[InstanceStatus]:
        return [i for i in self.instances if i.proc_group == group_id]

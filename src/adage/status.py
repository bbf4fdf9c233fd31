"""The deployment status: the state of every placed instance and of every process instance,
and the vocabulary of states (``PState``, one enum for the state machine, the status document
and ``adage status``).

The deployer fills it; ``adage.documents.dump("status", ...)`` writes it and
``adage.documents.read_status`` reads it back (schema ``status.xsd``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class PState(StrEnum):
    """A process instance's state, in the order a deployment goes through them."""

    PLANNED = "planned"
    STAGED = "staged"
    LAUNCHED = "launched"
    ACKED = "acked"
    READY = "ready"
    EXITED = "exited"
    FAILED = "failed"
    KILLED = "killed"


STATES = tuple(s.value for s in PState)
FINAL = (PState.EXITED, PState.FAILED, PState.KILLED)


def instance_state(states: Iterable[str], default: str = "planned") -> str:
    """An instance's state: the least advanced of its processes' (``default`` without any)."""
    return min((PState(s) for s in states), key=list(PState).index, default=PState(default)).value


@dataclass(frozen=True)
class Failure:
    """Why a deployment failed, as data (``message``: the same in one line). ``exit_code``:
    negative when killed by that signal; ``stderr``: the process's last stderr lines."""

    message: str
    node: str = ""
    proc_group: str = ""
    index: int | None = None
    process: str = ""  # process id
    process_index: int | None = None
    exit_code: int | None = None
    stderr: str = ""


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
    failure: Failure | None = None

    def of(self, group_id: str) -> list[InstanceStatus]:
        return [i for i in self.instances if i.proc_group == group_id]

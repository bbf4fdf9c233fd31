"""The state machine's vocabulary: the events it is fed and the actions it returns (typed,
frozen), and how a process instance is named: ``(process id, index)``."""

from __future__ import annotations

from dataclasses import dataclass, field

from adage.status import Failure

Key = tuple[str, int]  # (proc_group, instance index)
ProcKey = tuple[str, int]  # (process id, process instance index)


def proc_name(process: ProcKey) -> str:
    """A process instance as messages and files name it: ``<process id>/<index>``."""
    return f"{process[0]}/{process[1]}"


# ------------------------------------------------------------------ events
@dataclass(frozen=True)
class NodeStarting:
    """The satellite of ``node`` was started: its callback is due within the timeout."""

    node: str


@dataclass(frozen=True)
class NodeUp:
    """The satellite of ``node`` called back: the node is staged and can launch."""

    node: str


@dataclass(frozen=True)
class Acked:
    """Every process of an instance started; ``pids`` by process (id, index)."""

    proc_group: str
    index: int
    pids: dict[ProcKey, int]


@dataclass(frozen=True)
class LaunchError:
    proc_group: str
    index: int
    process: ProcKey
    message: str


@dataclass(frozen=True)
class Value:
    proc_group: str
    index: int
    process: ProcKey
    key: str
    value: str


@dataclass(frozen=True)
class PluginReady:
    """The plugin of a non-asynchronous group says it is ready."""

    proc_group: str


@dataclass(frozen=True)
class Exited:
    proc_group: str
    index: int
    process: ProcKey
    code: int  # negative: killed by that signal
    stderr: str = ""  # the last lines the process wrote on stderr


@dataclass(frozen=True)
class Tick:
    """Time passes (deadlines are checked against ``now``)."""


Event = NodeStarting | NodeUp | Acked | LaunchError | Value | PluginReady | Exited | Tick


# ------------------------------------------------------------------ actions
@dataclass(frozen=True)
class Launch:
    """Start these instances of ``proc_group`` (all of them at once if the group's plugin
    launches it as a whole)."""

    proc_group: str
    indexes: tuple[int, ...]


@dataclass(frozen=True)
class Fail:
    message: str
    failure: Failure | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Deployed:
    """Every group launched, every instance acknowledged (and ready where it must be)."""


@dataclass(frozen=True)
class Finished:
    """Every process has exited."""


Action = Launch | Fail | Deployed | Finished

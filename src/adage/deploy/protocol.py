"""The satellite protocol, front-end side (pure): operations out, typed messages in, and the
state machine's events a message means.

On the wire a process instance is ``"<process id>/<index>"`` (see ``satellite.py``); here it
is ``(id, index)``, converted once, by ``parse``. A launch covers instances of one group
(``Cover``): one spec per process of one instance, or one process (mpirun) standing for every
process of several instances (``whole``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from adage.deploy.events import (
    Acked,
    Event,
    Exited,
    LaunchError,
    ProcKey,
    Value,
)
from adage.deploy.layout import ProcSpec

KILL: dict[str, Any] = {"op": "kill"}
DETACH: dict[str, Any] = {"op": "detach"}


# ------------------------------------------------------------------ messages
@dataclass(frozen=True)
class Hello:
    """The satellite is up (its node is staged)."""

    pid: int


@dataclass(frozen=True)
class Started:
    """Every process of launch ``key`` started."""

    key: str
    pids: dict[ProcKey, int]


@dataclass(frozen=True)
class StartFailed:
    key: str
    process: ProcKey
    message: str


@dataclass(frozen=True)
class Reported:
    """A ``KEY=VALUE`` line the process appended to ``$ADAGE_REPORT``."""

    key: str
    process: ProcKey
    name: str
    value: str


@dataclass(frozen=True)
class Ended:
    key: str
    process: ProcKey
    code: int  # negative: killed by that signal
    stderr: str


@dataclass(frozen=True)
class Killed:
    """The satellite killed its processes and exits."""


@dataclass(frozen=True)
class Detached:
    """The satellite read "detach": it goes on alone and says nothing more."""


Message = Hello | Started | StartFailed | Reported | Ended | Killed | Detached


def proc_key(name: str) -> ProcKey:
    """``"<id>/<index>"`` as ``(id, index)``."""
    process, _, index = str(name).rpartition("/")
    return process, int(index)


def parse(obj: Mapping[str, Any]) -> Message | None:
    """One satellite line's object as a message; None for anything else (noise, a field
    missing or of the wrong type)."""
    try:
        match obj.get("ev"):
            case "hello":
                return Hello(int(obj["pid"]))
            case "killed":
                return Killed()
            case "detached":
                return Detached()
            case "started":
                return Started(str(obj["key"]),
                               {proc_key(k): int(v) for k, v in obj["pids"].items()})
            case "error":
                return StartFailed(str(obj["key"]), proc_key(obj["proc"]), str(obj["message"]))
            case "value":
                return Reported(str(obj["key"]), proc_key(obj["proc"]), str(obj["name"]),
                                str(obj["value"]))
            case "exit":
                return Ended(str(obj["key"]), proc_key(obj["proc"]), int(obj["code"]),
                             str(obj.get("stderr", "")))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return None


def decode(lines: Iterable[bytes | str]) -> list[dict[str, Any]]:
    """The JSON objects among satellite output lines (other lines are the node's noise)."""
    out = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


# ------------------------------------------------------------------ launches
@dataclass(frozen=True)
class Cover:
    """The instances ``indexes`` of ``proc_group`` one launch on ``node`` stands for;
    ``whole``: one process (of ``specs``) stands for every process of all of them."""

    proc_group: str
    indexes: tuple[int, ...]
    whole: bool
    node: str = ""
    specs: tuple[ProcSpec, ...] = ()


def launch_key(proc_group: str, indexes: list[int]) -> str:
    return f"{proc_group}/{indexes[0]}" if len(indexes) == 1 else f"{proc_group}/*"


def launch_op(key: str, specs: Iterable[ProcSpec], watch: bool = False) -> dict[str, Any]:
    """The launch operation; ``watch``: other groups wait for these processes' values (the
    satellite then reads their report files at its fastest)."""
    op = {"op": "launch", "key": key, "procs": [s.to_json() for s in specs]}
    return {**op, "watch": True} if watch else op


def events(msg: Message, cover: Cover,
           processes: Mapping[int, list[ProcKey]]) -> list[Event]:
    """What ``msg`` about ``cover``'s launch means to the state machine (``processes``: the
    processes of each covered instance)."""
    g = cover.proc_group
    match msg:
        case Started(pids=pids):
            first = next(iter(pids.values()), None)
            return [Acked(g, i, {p: first for p in processes[i]} if cover.whole and first
                          is not None else dict(pids)) for i in cover.indexes]
        case StartFailed(process=process, message=message):
            return [LaunchError(g, cover.indexes[0], process, message)]
        case Reported(process=process, name=name, value=value):
            return [Value(g, i, process, name, value) for i in cover.indexes]
        case Ended(process=process, code=code, stderr=stderr):
            return [Exited(g, i, p, code, stderr) for i in cover.indexes
                    for p in (processes[i] if cover.whole else [process])]
    return []

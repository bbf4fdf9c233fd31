"""Propagation through TakTuk: one ``taktuk`` on the front end reaches every node through its
self-propagating, work-stealing tree; staging and the satellites' JSON lines go through it.

- Command line (``command``): ``taktuk -s -c '<ssh as SshTransport>' -d <fanout> -w <window>
  -t <connect timeout> -o <stream>=<template>... -m <node>...``, used interactively: one
  TakTuk command per line on its stdin, every stream multiplexed on its stdout as tagged lines
  (``TEMPLATES``, parsed by ``parse_line``).
- Staging: the files common to every node (the satellite, every distinct source file) go as
  ONE tar stream, ``<ranks> input file [ <fifo> ]``: TakTuk's root reads it once and forwards
  one copy per child of the tree (``send_to`` in /usr/bin/taktuk routes a set-addressed
  message to each child whose rank interval meets the set; each node forwards to its own
  children). What differs per node is a small tar of directories, texts and hard links into
  the common files (``node_archive``), ``<rank> input file [ <node>.tar ]``. Both streams go
  to the node's one command, ``sh`` extracting them then ``exec``-ing the satellite, which
  reads its operations (``<rank> input line [ <escaped JSON> ]``) from the rest.
- TakTuk parses command arguments itself: words are split on whitespace and ``,;``, and a
  word equal to the closing delimiter ends the argument. ``escape_json`` writes JSON with no
  whitespace and every string character outside ``SAFE`` as ``\\uXXXX``, so no word of it can
  be ``]`` and it reaches the satellite unchanged (a hand-written encoder: no library escapes
  for TakTuk's parser).
Every failure raises ``TransportError`` naming the node.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import string
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adage.deploy import archive
from adage.deploy.layout import Stage
from adage.deploy.ssh import SshOptions
from adage.deploy.transport import TransportError
from oarlib.sshopts import base_options

SAFE = frozenset(string.ascii_letters + string.digits + "_-./:=@+%")
# The command whose output line confirms that a node handled the messages sent before it: its
# exit status would come only when TakTuk reaps it, up to a second later (its engines reap
# after a select, which times out every --time-granularity, 1 s).
BARRIER_LINE = "adage-barrier"
BARRIER = f"echo {BARRIER_LINE}"
WINDOW = 10  # TakTuk's default window: connections under way per instance

# TakTuk state codes (man taktuk, stream "state")
READY, NUMBERED, CONNECTION_FAILED, CONNECTION_LOST, COMMAND_FAILED = 0, 1, 3, 5, 7

TEMPLATES = {
    "output": '"O $rank $pid ".length($eol)." $line\\n"',
    "error": '"E $rank $pid $line\\n"',
    "status": '"S $rank $pid $line $command\\n"',
    "state": '"T $line $rank $host $peer\\n"',
    "connector": '"C $peer $line\\n"',
    "info": '"I $line\\n"',
    "taktuk": '"K $host $line\\n"',
}


# ------------------------------------------------------------------ pure: escaping
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _escape_string(literal: str) -> str:
    out = []
    i = 1
    while i < len(literal) - 1:
        c = literal[i]
        if c == "\\":
            nxt = literal[i + 1]
            out.append("\\u0022" if nxt == '"' else "\\" + nxt)
            i += 2
            continue
        out.append(c if c in SAFE else f"\\u{ord(c):04x}")
        i += 1
    return '"' + "".join(out) + '"'


def escape_json(obj: Any) -> str:
    """``obj`` as one JSON text TakTuk passes through unchanged: no whitespace, and inside
    strings only characters of ``SAFE`` (others as ``\\uXXXX``)."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return _STRING.sub(lambda m: _escape_string(m.group(0)), text)


def check_argument(text: str, what: str) -> str:
    """``text`` if TakTuk can take it between ``[`` and ``]``; TransportError otherwise."""
    if "\n" in text or "]" in re.split(r"[\s,;]+", text):
        raise TransportError(f"{what} cannot be passed through TakTuk (a newline or a lone "
                             f"']'): {text[:120]!r}")
    return text


# ------------------------------------------------------------------ pure: command lines
def connector(options: SshOptions) -> str:
    """The ssh command line TakTuk runs to reach a node: SshTransport's options (batch mode,
    connect timeout, keep-alives, the user's ssh config) without multiplexing (the connector
    also runs on the nodes of the tree, where the front end's control sockets do not exist)."""
    return shlex.join(["ssh", *base_options(options.connect_timeout, options.extra)])


def command(hosts: Sequence[str], options: SshOptions) -> list[str]:
    """The front-end ``taktuk`` argv for ``hosts``: self-propagating, at most ``fanout``
    children per instance (``-d``), ``min(fanout, WINDOW)`` connections under way per instance
    (``-w``), every stream through ``TEMPLATES``."""
    for h in hosts:
        if not h or re.search(r"[\s\[\],/]", h):
            raise TransportError(f"node address {h!r} cannot be given to TakTuk (spaces, "
                                 "brackets, commas and slashes are host-list syntax)")
    argv = ["taktuk", "-s", "-c", connector(options), "-d", str(max(1, options.fanout)),
            "-w", str(max(1, min(options.fanout, WINDOW))),
            "-t", str(max(1, math.ceil(options.connect_timeout)) + 10)]
    for stream, template in TEMPLATES.items():
        argv += ["-o", f"{stream}={template}"]
    argv += ["-o", "message"]
    for h in hosts:
        argv += ["-m", h]
    return argv


def ranks_set(ranks: Iterable[int]) -> str:
    """A TakTuk set specification (``1-4/7``) for ``ranks``."""
    rs = sorted(set(ranks))
    parts: list[str] = []
    i = 0
    while i < len(rs):
        j = i
        while j + 1 < len(rs) and rs[j + 1] == rs[j] + 1:
            j += 1
        parts.append(str(rs[i]) if i == j else f"{rs[i]}-{rs[j]}")
        i = j + 1
    return "/".join(parts)


def exec_line(rank: int | str, line: str) -> str:
    return f"{rank} exec [ {check_argument(line, 'command')} ]"


def input_line(rank: int, obj: Any) -> str:
    return f"{rank} input line [ {escape_json(obj)} ]"


def input_file(ranks: str, path: str) -> str:
    return f"{ranks} input file [ {check_argument(path, 'file name')} ]"


# ------------------------------------------------------------------ pure: output lines
@dataclass(frozen=True)
class Output:
    rank: int
    pid: int
    eol: bool
    text: str


@dataclass(frozen=True)
class ErrorLine:
    rank: int
    text: str


@dataclass(frozen=True)
class Status:
    rank: int
    pid: int
    code: int
    command: str


@dataclass(frozen=True)
class State:
    code: int
    rank: int
    host: str
    peer: str


@dataclass(frozen=True)
class ConnectorLine:
    peer: str
    text: str


@dataclass(frozen=True)
class Info:
    text: str


@dataclass(frozen=True)
class Diagnostic:
    text: str


Event = Output | ErrorLine | Status | State | ConnectorLine | Info | Diagnostic


def _fields(text: str, n: int) -> list[str]:
    """``text`` split on its first ``n - 1`` spaces, padded with empty fields to ``n``."""
    parts = text.split(" ", n - 1)
    return [*parts, *[""] * (n - len(parts))]


def parse_line(line: str) -> Event:
    """One line of the front-end taktuk's stdout (made by ``TEMPLATES``)."""
    tag, _, rest = line.partition(" ")
    try:
        if tag == "O":
            rank, pid, eol, text = _fields(rest, 4)
            return Output(int(rank), int(pid), eol == "1", text)
        if tag == "E":
            rank, _pid, text = _fields(rest, 3)
            return ErrorLine(int(rank), text)
        if tag == "S":
            rank, pid, code, cmd = _fields(rest, 4)
            return Status(int(rank), int(pid), int(code), cmd)
        if tag == "T":
            code, rank, host, peer = _fields(rest, 4)
            return State(int(code), int(rank), host, peer.strip())
        if tag == "C":
            peer, _, text = rest.partition(" ")
            return ConnectorLine(peer, text)
        if tag == "I":
            return Info(rest)
    except ValueError:
        pass
    return Diagnostic(rest if tag == "K" else line)


# ------------------------------------------------------------------ archives
def node_archive(path: Path, st: Stage, common_rel: str, names: dict[str, str],
                 satellites: Sequence[str]) -> None:
    """The per-node tar of ``st`` in the file ``path`` (``archive.write_node_tree``)."""
    with tarfile.open(path, "w") as tf:
        archive.write_node_tree(tf, st, common_rel, names, satellites)


STAGE_SCRIPT = ('mkdir -p "$1" "$2" && tar -C "$2" -xf - && '
                'tar -C "$1" --no-overwrite-dir -xf - && rm -rf "$2" && shift 2 && exec "$@"')


def stage_and_start(base: str, common_dir: str, argv: Sequence[str]) -> str:
    """The node's command: extract the common tar into ``common_dir``, the node's own tar into
    ``base`` (its hard links point into ``common_dir``), drop ``common_dir`` and exec
    ``argv`` (the satellite) on the rest of stdin."""
    return shlex.join(["sh", "-c", STAGE_SCRIPT, "sh", base, common_dir, *argv])

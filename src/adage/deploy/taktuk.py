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

import contextlib
import io
import json
import math
import os
import queue
import re
import select
import shlex
import signal
import string
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adage.deploy import archive
from adage.deploy.layout import Stage
from adage.deploy.ssh import SshOptions, one_line
from adage.deploy.transport import TransportError

SAFE = frozenset(string.ascii_letters + string.digits + "_-./:=@+%")
BARRIER = "true"  # the command whose exit statuses confirm earlier messages were handled
WINDOW = 10  # TakTuk's default window: connections under way per instance
COMMON = "satellite.py"  # name of the satellite in the common tree

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
    return shlex.join(["ssh", "-o", "BatchMode=yes",
                       "-o", f"ConnectTimeout={max(1, math.ceil(options.connect_timeout))}",
                       "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"])


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


# ------------------------------------------------------------------ pure-ish: archives
def common_names(stages: Iterable[Stage]) -> dict[str, str]:
    """Source file on the front end -> its path in the common tree (``<n>/<basename>``), one
    entry per distinct source."""
    sources = sorted({src for st in stages for src in st.files.values()})
    return {src: f"{i}/{Path(src).name}" for i, src in enumerate(sources)}


def write_common(out: Any, names: dict[str, str], satellite: str) -> None:
    """The common tree as a tar stream on ``out``: the satellite and every source file."""
    with tarfile.open(fileobj=out, mode="w|") as tf:
        data = satellite.encode()
        info = tarfile.TarInfo(COMMON)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tf.addfile(info, io.BytesIO(data))
        for src, name in names.items():
            tf.add(src, arcname=name, recursive=False)


def node_archive(path: Path, st: Stage, common_rel: str, names: dict[str, str],
                 satellites: Sequence[str]) -> None:
    """The per-node tar of ``st`` (relative to its base): directories, texts, and hard links
    into the common tree (``common_rel``, relative to the base) for the files and the
    satellites (``satellites``: their paths relative to the base)."""
    links = {dest: f"{common_rel}/{names[src]}" for dest, src in st.files.items()}
    links.update({sat: f"{common_rel}/{COMMON}" for sat in satellites})
    with tarfile.open(path, "w") as tf:
        archive.write_tree(tf, st.dirs, links=links, texts=st.texts)


STAGE_SCRIPT = ('mkdir -p "$1" "$2" && tar -C "$2" -xf - && '
                'tar -C "$1" --no-overwrite-dir -xf - && rm -rf "$2" && shift 2 && exec "$@"')


def stage_and_start(base: str, common_dir: str, argv: Sequence[str]) -> str:
    """The node's command: extract the common tar into ``common_dir``, the node's own tar into
    ``base`` (its hard links point into ``common_dir``), drop ``common_dir`` and exec
    ``argv`` (the satellite) on the rest of stdin."""
    return shlex.join(["sh", "-c", STAGE_SCRIPT, "sh", base, common_dir, *argv])


# ------------------------------------------------------------------ the session (shell)
@dataclass
class Peer:
    """What the session knows of one node: its rank, its satellite command, its fate."""

    node: str
    host: str
    rank: int = -1
    started: bool = False
    code: int | None = None  # exit code of its command
    lost: str = ""  # why it is gone without an exit code
    partial: str = ""
    lines: list[str] = field(default_factory=list)
    log: Path | None = None


class TaktukSession:
    """One interactive front-end ``taktuk`` for ``nodes`` (node name -> address)."""

    def __init__(self, nodes: dict[str, str], options: SshOptions) -> None:
        self.options = options
        self.peers = {n: Peer(n, h) for n, h in nodes.items()}
        self.by_host = {p.host: p for p in self.peers.values()}
        self.by_rank: dict[int, Peer] = {}
        self.argv = command(list(nodes.values()), options)
        self.popen: subprocess.Popen[bytes] | None = None
        self.buf = b""
        self.ended = False
        self.info: list[str] = []
        self.connector: dict[str, list[str]] = {}
        self.failed: list[tuple[str, str]] = []  # (node, why) in order
        self.barriers: set[int] = set()
        self.outq: queue.Queue[str | None] = queue.Queue()
        self.writer: threading.Thread | None = None

    # ---------------------------------------------------------------- process
    def start(self, log: Path) -> None:
        with open(log, "ab") as err:
            try:
                self.popen = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, stderr=err,
                                              start_new_session=True)
            except OSError as e:
                raise TransportError(f"cannot run taktuk: {e}") from e
        assert self.popen.stdout is not None
        os.set_blocking(self.popen.stdout.fileno(), False)
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.writer.start()

    def fileno(self) -> int:
        assert self.popen is not None and self.popen.stdout is not None
        return self.popen.stdout.fileno()

    def _write(self) -> None:
        assert self.popen is not None and self.popen.stdin is not None
        while (line := self.outq.get()) is not None:
            try:
                self.popen.stdin.write(line.encode() + b"\n")
                self.popen.stdin.flush()
            except OSError:
                return

    def send(self, line: str) -> None:
        """Queue one TakTuk command (written in order by a thread: never blocks)."""
        self.outq.put(line)

    def close(self) -> None:
        """Stop taktuk and its connectors (killing its process group): the node engines
        lose their parent and exit; a detached satellite goes on (it ignores SIGHUP)."""
        self.outq.put(None)
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        if self.writer is not None:
            self.writer.join(timeout=5)

    # ---------------------------------------------------------------- reading
    def pump(self, timeout: float = 0.0) -> list[Event]:
        """The events readable within ``timeout`` seconds, applied to the peers."""
        if self.ended or self.popen is None:
            return []
        ready, _, _ = select.select([self.fileno()], [], [], timeout)
        if not ready:
            return []
        try:
            data = os.read(self.fileno(), 1 << 16)
        except BlockingIOError:
            return []
        if not data:
            self.ended = True
            for p in self.peers.values():
                if p.started and p.code is None and not p.lost:
                    p.lost = "taktuk exited"
            return []
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        events = [parse_line(raw.decode(errors="replace")) for raw in lines]
        for ev in events:
            self._apply(ev)
        return events

    def _apply(self, ev: Event) -> None:
        match ev:
            case State(code=c, rank=r, host=h) if c == NUMBERED and h in self.by_host:
                self.by_host[h].rank = r
                self.by_rank[r] = self.by_host[h]
            case State(code=c, peer=peer) if c in (CONNECTION_FAILED, CONNECTION_LOST):
                p = self.by_host.get(peer)
                if p is not None:
                    why = ("TakTuk could not connect" if c == CONNECTION_FAILED
                           else "TakTuk lost its connection to the node")
                    said = "; ".join(self.connector.get(peer, []))[-400:]
                    p.lost = p.lost or (why + (f": {said}" if said else ""))
                    self.failed.append((p.node, p.lost))
            case State(code=c, rank=r) if c == COMMAND_FAILED and r in self.by_rank:
                self.by_rank[r].lost = self.by_rank[r].lost or "TakTuk could not run the satellite"
            case ConnectorLine(peer=peer, text=text):
                self.connector.setdefault(peer, []).append(text)
            case Info(text=text):
                self.info.append(text)
            case Output(rank=r, eol=eol, text=text) if r in self.by_rank:
                p = self.by_rank[r]
                if eol:
                    p.lines.append(p.partial + text)
                    p.partial = ""
                else:
                    p.partial += text
            case ErrorLine(rank=r, text=text) if r in self.by_rank:
                log = self.by_rank[r].log
                if log is not None:
                    with open(log, "a") as f:
                        f.write(text + "\n")
            case Status(rank=r, code=code, command=cmd) if r in self.by_rank:
                if cmd.strip() == BARRIER:
                    self.barriers.discard(r)
                elif self.by_rank[r].started:
                    self.by_rank[r].code = code

    # ---------------------------------------------------------------- steps
    def wait_numbered(self, timeout: float) -> None:
        """Until TakTuk reached and numbered every node; TransportError naming the first node
        it could not reach (or every node not numbered after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while any(p.rank < 0 for p in self.peers.values()):
            if self.failed:
                node, why = self.failed[0]
                raise TransportError(f"node {node}: {why}")
            if self.ended:
                raise TransportError("taktuk exited before every node was reached")
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(p.node for p in self.peers.values() if p.rank < 0)
                raise TransportError(f"node {missing[0]}: TakTuk did not reach "
                                     f"{', '.join(missing[:10])} within {timeout:g} s")
            self.pump(min(left, 0.2))
        if self.failed:
            node, why = self.failed[0]
            raise TransportError(f"node {node}: {why}")

    def start_command(self, node: str, line: str, log: Path) -> Peer:
        p = self.peers[node]
        p.log, p.started = log, True
        self.send(exec_line(p.rank, line))
        return p

    def barrier(self, ranks: Iterable[int], timeout: float) -> bool:
        """Run ``true`` on ``ranks`` and wait for its exit statuses: every message sent to
        them earlier has then been handled. Whether all answered in time."""
        self.barriers = set(ranks) - {p.rank for p in self.peers.values() if p.lost}
        if not self.barriers:
            return True
        self.send(exec_line(ranks_set(self.barriers), BARRIER))
        deadline = time.monotonic() + timeout
        while self.barriers and not self.ended and time.monotonic() < deadline:
            self.pump(0.1)
        return not self.barriers

    def network_state(self, timeout: float = 10.0) -> str:
        """TakTuk's deployment tree (``network state``) as printed by the root."""
        self.info.clear()
        self.send("network state")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.ended:
            self.pump(0.1)
            if self.info and not self.pump(0.3):
                break
        return "\n".join(self.info)


def stream_fifo(path: Path, names: dict[str, str], satellite: str) -> threading.Thread:
    """Make the FIFO ``path`` and a thread writing the common tar stream into it once taktuk
    opens it (no copy of the common files on the front end's disk)."""
    os.mkfifo(path, 0o600)

    def write() -> None:
        with contextlib.suppress(OSError), open(path, "wb") as f:
            write_common(f, names, satellite)

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


def release_fifo(path: Path, writer: threading.Thread) -> None:
    """Unblock a writer that no reader ever opened, then remove the FIFO."""
    if writer.is_alive():
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            os.close(fd)
        writer.join(timeout=2)
    with contextlib.suppress(OSError):
        path.unlink()


# ------------------------------------------------------------------ links
class TaktukLink:
    """The front end's end of a satellite reached through TakTuk (see deployer.Link)."""

    def __init__(self, session: TaktukSession, peer: Peer, log: Path) -> None:
        self.session = session
        self.peer = peer
        self.node = peer.node
        self.log = log
        self.pid: int | None = None
        self.closed = False
        self.killed = False

    def send(self, obj: dict[str, Any]) -> None:
        if not self.closed and self.running():
            self.session.send(input_line(self.peer.rank, obj))

    def close_input(self) -> None:
        if not self.closed and self.running():
            self.session.send(f"{self.peer.rank} input close")
        self.closed = True

    def running(self) -> bool:
        self.session.pump()
        return self.peer.code is None and not self.peer.lost

    def force_kill(self) -> None:
        if self.running():
            self.session.send(f"{self.peer.rank} kill 9")

    def gone_reason(self) -> str:
        if self.peer.lost:
            return self.peer.lost
        return f"satellite exited with code {self.peer.code}"

    def log_tail(self) -> str:
        try:
            return one_line(self.log.read_text(errors="replace"))[-400:]
        except OSError:
            return ""

    def take(self) -> list[dict[str, Any]] | None:
        """Callbacks received since last time; None once the satellite is gone (after its
        last lines)."""
        lines, self.peer.lines = self.peer.lines, []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        if not out and (self.peer.code is not None or self.peer.lost):
            return None
        return out


class TaktukSource:
    """The deployer's selector source for every TakTuk link: one stdout for all nodes."""

    def __init__(self, session: TaktukSession) -> None:
        self.session = session
        self.links: dict[str, TaktukLink] = {}
        self.reported: set[str] = set()

    @property
    def ended(self) -> bool:
        return self.session.ended and all(n in self.reported for n in self.links)

    def fileno(self) -> int:
        return self.session.fileno()

    def poll(self) -> list[tuple[TaktukLink, list[dict[str, Any]] | None]]:
        self.session.pump()
        out: list[tuple[TaktukLink, list[dict[str, Any]] | None]] = []
        for node, link in self.links.items():
            if node in self.reported:
                continue
            msgs = link.take()
            if msgs is None:
                self.reported.add(node)
            if msgs is None or msgs:
                out.append((link, msgs))
        return out

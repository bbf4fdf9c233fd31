"""The interactive front-end ``taktuk`` (``TaktukSession``): one process reaching every node
through its tree, fed TakTuk commands on its stdin (by a writer thread: sending never blocks)
and read as tagged lines (``adage.deploy.taktuk.parse_line``) applied to one ``Peer`` per
node; and the FIFO through which the common tar stream goes to it without a copy on disk.
Every failure raises ``TransportError`` naming the node.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from adage.deploy.archive import write_common
from adage.deploy.ssh import SshOptions
from adage.deploy.taktuk import (
    BARRIER,
    BARRIER_LINE,
    COMMAND_FAILED,
    CONNECTION_FAILED,
    CONNECTION_LOST,
    NUMBERED,
    ConnectorLine,
    ErrorLine,
    Event,
    Info,
    Output,
    State,
    Status,
    command,
    exec_line,
    input_file,
    parse_line,
    ranks_set,
)
from adage.deploy.transport import TransportError


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
            case Output(rank=r, eol=True, text=text) if text == BARRIER_LINE:
                self.barriers.discard(r)  # not the satellite's: it writes JSON
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
                if cmd.strip() != BARRIER and self.by_rank[r].started:
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

    def input_file(self, nodes: Iterable[str], path: Path) -> None:
        """Send the file ``path`` to the commands of ``nodes``: one message, whose data
        TakTuk carries once down each branch of its tree."""
        ranks = [self.peers[n].rank for n in nodes]
        if ranks:
            self.send(input_file(ranks_set(ranks), str(path)))

    def barrier(self, ranks: Iterable[int], timeout: float) -> bool:
        """Run ``BARRIER`` on ``ranks`` and wait for its output lines: every message sent to
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


    def wait_reached(self, timeout: float) -> None:
        """Until every node is numbered or known lost (a node never reached within
        ``timeout`` is marked lost): nothing is raised, each peer says its fate."""
        deadline = time.monotonic() + timeout
        while not self.ended and time.monotonic() < deadline and \
                any(p.rank < 0 and not p.lost for p in self.peers.values()):
            self.pump(min(max(0.0, deadline - time.monotonic()), 0.2))
        for p in self.peers.values():
            if p.rank < 0 and not p.lost:
                p.lost = f"TakTuk did not reach it within {timeout:g} s"


def run_scripts(nodes: dict[str, str], scripts: dict[str, str], options: SshOptions,
                timeout: float, workdir: Path) -> dict[str, tuple[int, list[str]] | str]:
    """Run ``scripts[node]`` with ``sh`` on each node (node name -> address in ``nodes``)
    through one taktuk tree; node -> (exit code, stdout lines), or why it could not be run.
    The scripts go as files on the commands' stdin (``input file``): TakTuk's own argument
    syntax never sees them. Logs in ``workdir``."""
    session = TaktukSession(nodes, options)
    session.start(workdir / "taktuk.log")
    try:
        session.wait_reached(timeout)
        running = []
        for node, script in scripts.items():
            peer = session.peers[node]
            if peer.lost:
                continue
            path = workdir / f"script-{node}.sh"
            path.write_text(script)
            session.start_command(node, "sh -s", workdir / f"{node}.log")
            session.input_file([node], path)
            session.send(f"{peer.rank} input close")
            running.append(peer)
        deadline = time.monotonic() + timeout
        while not session.ended and time.monotonic() < deadline and \
                any(p.code is None and not p.lost for p in running):
            session.pump(0.2)
    finally:
        session.close()
    return {node: (p.code, p.lines) if p.code is not None else
            p.lost or f"no answer within {timeout:g} s"
            for node in scripts for p in [session.peers[node]]}

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



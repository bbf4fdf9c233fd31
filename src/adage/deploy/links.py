"""The front end's end of each satellite (``Link``) and what the deployer's selector watches
(``Source``): a satellite behind a process of ours (``PipeLink``: a local process or an ssh
session, its stdin and stdout) or behind the TakTuk session (``TaktukLink``, every link's
lines on taktuk's one stdout: ``TaktukSource``). Lines become objects through
``protocol.decode``; a lost satellite is explained by ``log_tail`` of its log.
"""

from __future__ import annotations

import json
import os
import signal
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any, Protocol

from adage.deploy.protocol import decode
from adage.deploy.ssh import one_line
from adage.deploy.taktuk import input_line
from adage.deploy.taktuk_session import Peer, TaktukSession

Callbacks = list[dict[str, Any]]


def log_tail(log: Path, size: int = 400) -> str:
    """The end of a satellite's log as one line ("" if unreadable)."""
    try:
        return one_line(log.read_text(errors="replace"))[-size:]
    except OSError:
        return ""


class Link(Protocol):
    """The front end's end of one satellite, whatever carries its lines."""

    node: str
    log: Path
    pid: int | None  # the satellite's pid on its node (from "hello")
    closed: bool
    killed: bool
    detached: bool  # the satellite said "detached": nothing more will come

    def send(self, *objs: dict[str, Any]) -> None:
        """Operations (JSON lines on the satellite's stdin), in one write where it can."""
        ...

    def close_input(self) -> None:
        """No more operations (the satellite's stdin is closed)."""
        ...

    def running(self) -> bool:
        """Whether the satellite (or what carries it) still runs."""
        ...

    def force_kill(self, wait: bool = True) -> None:
        """Kill the satellite without asking it (and wait until it is gone)."""
        ...

    def hang_up(self) -> None:
        """End what carries the satellite's lines (its ssh session), not the satellite; no
        wait."""
        ...

    def gone_reason(self) -> str:
        """Why it is gone (once ``running()`` is false)."""
        ...


class Source(Protocol):
    """What the deployer's selector watches: the callbacks of one or several links."""

    ended: bool

    def fileno(self) -> int:
        ...

    def poll(self) -> list[tuple[Link, Callbacks | None]]:
        """(link, callbacks) readable now; (link, None) once that satellite is gone."""
        ...


@dataclass
class PipeLink:
    """A satellite on the other end of a process of ours: its stdin (operations) and stdout
    (callbacks, read without blocking). Also its own selector ``Source``."""

    node: str
    popen: Popen[bytes]
    log: Path
    buf: bytes = b""
    pid: int | None = None
    closed: bool = False
    killed: bool = False
    detached: bool = False
    ended: bool = False

    def __post_init__(self) -> None:
        assert self.popen.stdout is not None
        os.set_blocking(self.popen.stdout.fileno(), False)

    def send(self, *objs: dict[str, Any]) -> None:
        if self.closed or self.popen.stdin is None:
            return
        try:
            self.popen.stdin.write("".join(json.dumps(o) + "\n" for o in objs).encode())
            self.popen.stdin.flush()
        except OSError:
            self.closed = True

    def close_input(self) -> None:
        if self.popen.stdin is not None:
            with suppress(OSError):
                self.popen.stdin.close()
        self.closed = True

    def running(self) -> bool:
        return self.popen.poll() is None

    def force_kill(self, wait: bool = True) -> None:
        if self.popen.poll() is None:
            with suppress(OSError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            if wait:
                self.popen.wait()

    def hang_up(self) -> None:
        """SIGTERM, on which ssh closes its connection as when the command ends: after a
        SIGKILL the node's sshd spends ~4 ms more on it (32 sessions: 0.95 s against 0.80)."""
        if self.popen.poll() is None:
            with suppress(OSError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def gone_reason(self) -> str:
        return f"satellite exited with code {self.popen.wait()}"

    def fileno(self) -> int:
        assert self.popen.stdout is not None
        return self.popen.stdout.fileno()

    def poll(self) -> list[tuple[Link, Callbacks | None]]:
        try:
            data = os.read(self.fileno(), 65536)
        except BlockingIOError:
            return [(self, [])]
        if not data:
            self.ended = True
            return [(self, None)]
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        return [(self, decode(lines))]


class TaktukLink:
    """A satellite reached through TakTuk: operations as ``input line`` commands to its rank,
    callbacks from the lines the session gathered for its peer."""

    def __init__(self, session: TaktukSession, peer: Peer, log: Path) -> None:
        self.session = session
        self.peer = peer
        self.node = peer.node
        self.log = log
        self.pid: int | None = None
        self.closed = False
        self.killed = False
        self.detached = False

    def send(self, *objs: dict[str, Any]) -> None:
        if not self.closed and self.running():
            for obj in objs:
                self.session.send(input_line(self.peer.rank, obj))

    def close_input(self) -> None:
        if not self.closed and self.running():
            self.session.send(f"{self.peer.rank} input close")
        self.closed = True

    def running(self) -> bool:
        self.session.pump()
        return self.peer.code is None and not self.peer.lost

    def force_kill(self, wait: bool = True) -> None:
        if self.running():  # the session tells when it is gone
            self.session.send(f"{self.peer.rank} kill 9")

    def hang_up(self) -> None:
        """Nothing: the tree carries every satellite, until the session is closed."""

    def gone_reason(self) -> str:
        return self.peer.lost or f"satellite exited with code {self.peer.code}"

    def take(self) -> Callbacks | None:
        """Callbacks received since last time; None once the satellite is gone (after its
        last lines)."""
        lines, self.peer.lines = self.peer.lines, []
        out = decode(lines)
        if not out and (self.peer.code is not None or self.peer.lost):
            return None
        return out


class TaktukSource:
    """The selector source of every TakTuk link: one stdout for all nodes."""

    def __init__(self, session: TaktukSession) -> None:
        self.session = session
        self.links: dict[str, TaktukLink] = {}
        self.reported: set[str] = set()

    @property
    def ended(self) -> bool:
        return self.session.ended and all(n in self.reported for n in self.links)

    def fileno(self) -> int:
        return self.session.fileno()

    def poll(self) -> list[tuple[Link, Callbacks | None]]:
        self.session.pump()
        out: list[tuple[Link, Callbacks | None]] = []
        for node, link in self.links.items():
            if node in self.reported:
                continue
            msgs = link.take()
            if msgs is None:
                self.reported.add(node)
            if msgs is None or msgs:
                out.append((link, msgs))
        return out

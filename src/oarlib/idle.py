"""Whether OAR's server is idle: waiting for a command with nothing under way.

OAR has no such query, so the answer is read from the kernel (``/proc``, and sock_diag for
the server port's accept queue), which is why it is written here by hand. Almighty at rest
is a fixed tree: the main automaton waits in ``select`` on its command pipe; its children are
the log redirector, ``appendice`` (waiting in ``accept`` on the server port, with the bipbip
launcher as its only child) and, with energy saving, Hulot. Any other process under them
(meta-scheduler, sarko, Leon, finaud, NodeChangeState, a bipbip) means work; so does a
process the kernel has woken (state ``R``: a command written to the automaton's pipe wakes it
before it runs), a client queued on the port, or a process that used CPU between two looks
in a row (a change between the files of one look).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

# x86_64 system call numbers of the calls an idle Almighty sits in
WAITING_CALLS = {"select": {23, 270}, "accept": {43, 288}}  # select, pselect6; accept, accept4
RESTING = ("Almighty: appendice", "Almighty: bipbip", "Almighty: hulot")


@dataclass(frozen=True)
class Proc:
    """What idleness needs of one process."""

    pid: int
    argv0: str  # the first word of its command line, or its renamed title
    syscall: int | None  # the call it is blocked in (None: running)
    cpu_ns: int
    children: tuple[Proc, ...]
    state: str = "S"  # the kernel's: S asleep, R running or woken, D in uninterruptible wait


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def read_tree(pid: int) -> Proc | None:
    """The process ``pid`` and its descendants, as /proc shows them now (None if it is gone)."""
    stat = _read(f"/proc/{pid}/schedstat").split()
    if not stat:
        return None
    cmdline = _read(f"/proc/{pid}/cmdline").split("\0")
    argv0 = " ".join(cmdline[:2]) if cmdline[0] == "/usr/bin/perl" else cmdline[0]
    call = _read(f"/proc/{pid}/syscall").split()
    syscall = int(call[0]) if call and call[0].lstrip("-").isdigit() else None
    kids = [int(k) for k in _read(f"/proc/{pid}/task/{pid}/children").split()]
    children = tuple(c for c in map(read_tree, kids) if c is not None)
    state = _read(f"/proc/{pid}/stat").rpartition(")")[2].split()[:1] or ["?"]
    return Proc(pid, argv0, syscall, int(stat[0]), children, state[0])


def busy_reason(main: Proc | None) -> str | None:
    """Why Almighty's tree ``main`` is not at rest (None: it is)."""
    if main is None:
        return "Almighty is not running"
    if woken := next((p for p in _walk(main) if p.state != "S"), None):
        return f"{woken.argv0} is running (state {woken.state})"
    if main.syscall not in WAITING_CALLS["select"]:
        return "Almighty's automaton is working"
    for child in main.children:
        if child.argv0 == "Almighty: appendice":
            if child.syscall not in WAITING_CALLS["accept"]:
                return "appendice is reading a command"
            for launcher in child.children:
                if launcher.argv0 != "Almighty: bipbip":
                    return f"appendice runs {launcher.argv0}"
                if launcher.children:
                    return "a bipbip is launching a job"
        elif child.argv0 in RESTING or child.argv0.endswith("/Almighty"):  # hulot, redirector
            if child.children:
                return f"{child.argv0} runs a command"
        else:
            return f"Almighty runs {child.argv0}"
    return None


def _walk(main: Proc) -> Iterator[Proc]:
    todo = [main]
    while todo:
        p = todo.pop()
        yield p
        todo.extend(p.children)


def runs(main: Proc | None, program: str) -> bool:
    """Whether a process of ``program`` (a word of its command line) is in the tree."""
    return main is not None and any(program in p.argv0 for p in _walk(main))


def cpu_times(main: Proc) -> list[int]:
    return [p.cpu_ns for p in _walk(main)]


# sock_diag (linux/sock_diag.h, linux/inet_diag.h): what `ss -lt` asks the kernel
_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY, _NLMSG_DONE, _NLMSG_ERROR = 4, 20, 3, 2
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_TCP_LISTEN = 10
_NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_DIAG_REQ = struct.Struct("=BBBxI48x")  # family, protocol, extensions, states, socket id
_DIAG_MSG = struct.Struct("=BBBB2sxx44xIIIII")  # ..., id (sport first), expires, rqueue, ...


def listen_backlog(port: int) -> int:
    """Connections queued on a listening TCP port (IPv4 or IPv6), not yet accepted: the
    listening sockets' accept queues, asked of the kernel's sock_diag as ``ss -lt`` does
    (``/proc/net/tcp`` lists every socket of the machine: ~2 ms a read with 2,000 of them,
    twice a look)."""
    queued = 0
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
        for family in (socket.AF_INET, socket.AF_INET6):
            req = _DIAG_REQ.pack(family, socket.IPPROTO_TCP, 0, 1 << _TCP_LISTEN)
            nl.send(_NLMSG.pack(_NLMSG.size + len(req), _SOCK_DIAG_BY_FAMILY,
                                _NLM_F_REQUEST_DUMP, 1, 0) + req)
            queued += sum(rq for sport, rq in _diag_replies(nl) if sport == port)
    return queued


def _diag_replies(nl: socket.socket) -> Iterator[tuple[int, int]]:
    """(source port, receive queue) of each socket in a sock_diag dump, until its end."""
    while True:
        data, at = nl.recv(65536), 0
        while at + _NLMSG.size <= len(data):
            length, kind = _NLMSG.unpack_from(data, at)[:2]
            if kind in (_NLMSG_DONE, _NLMSG_ERROR):
                return
            _, state, _, _, sport, _, rqueue, *_ = _DIAG_MSG.unpack_from(data, at + _NLMSG.size)
            if state == _TCP_LISTEN:
                yield int.from_bytes(sport, "big"), rqueue
            at += (length + 3) & ~3


def wait_idle(pid: Callable[[], int | None], port: int, timeout: float, step: float = 0.01,
              observe: Callable[[Proc | None], None] = lambda _: None) -> str | None:
    """Wait until Almighty is idle; None when it is, else why not when ``timeout`` ran out.
    ``observe`` is given each tree read."""
    deadline = time.monotonic() + timeout
    why: str | None = "not looked at"
    while time.monotonic() < deadline:
        tree = read_tree(p) if (p := pid()) else None
        observe(tree)
        why = busy_reason(tree) or ("a client waits on the port" if listen_backlog(port)
                                    else None)
        if why is None and tree is not None:
            again = read_tree(tree.pid)
            if again is not None and busy_reason(again) is None \
                    and cpu_times(again) == cpu_times(tree) and not listen_backlog(port):
                return None
            why = "Almighty used CPU"
        time.sleep(step)
    return why

"""File broadcast along a chain of nodes (pipelined, as Kascade and ChainPut do): the front end
sends the common tar stream once, to the first node; every node writes it to its own ``tar``
while forwarding it to the next node over ssh, so each link of the network carries the data
once and the front end's uplink is used once, whatever the number of nodes.

- The relay is a small Python program (``RELAY``) run on each node as ``python3 -c BOOT RELAY
  HOPS SSH``: ``BOOT`` executes ``RELAY``, which starts the next hop with the same three
  arguments minus its own hop (``shlex.join`` quotes them: the nodes' shell is never given a
  word to parse by hand). ``HOPS`` is JSON: ``[[name, address, directory, [python...], control],
  ...]``;
  ``SSH`` the ssh command line node-to-node (SshTransport's base options, no multiplexing).
- Setting the chain up hop by hop would cost one ssh handshake per node, in series: before
  the chain, every node opens its master connection to the next at once (``preconnect_argv``,
  ``fanout`` at a time from the front end, whose own masters then serve the satellites), and
  each relay's ssh to the next rides on it, then closes it (``-O exit``).
- Each relay reports on stderr, which ssh carries back up the chain: ``adage-chain ok NAME``
  once its copy is extracted, ``adage-chain failed NAME: why`` if not, ``adage-chain broken
  NAME NEXT: why`` when the next hop went away (ssh could not connect, or died): every node
  after it is then named as not reached (``report``).
- Written by hand: no library of the field pipes a stream along ssh hops (Kascade and
  ChainPut are their own daemons; TakTuk's tree is ``TaktukPropagation``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

from adage.deploy.transport import TransportError

PREFIX = "adage-chain "
BOOT = "import sys; exec(sys.argv[1])"
RELAY = r'''
import errno, fcntl, json, os, shlex, subprocess, sys
hops, ssh = json.loads(sys.argv[2]), json.loads(sys.argv[3])
name, _, dest, _, control = hops[0]
rest = hops[1:]
to_next = [*ssh, "-o", "ControlPath=" + control]  # the master connection preconnect made


def say(text):
    sys.stderr.write("adage-chain " + text + "\n")
    sys.stderr.flush()


tar = subprocess.Popen(["sh", "-c", 'mkdir -p "$1" && exec tar -C "$1" -xf -', "sh", dest],
                       stdin=subprocess.PIPE)
nxt = None
if rest:
    remote = shlex.join([*rest[0][3], "-c", "import sys; exec(sys.argv[1])",
                         sys.argv[1], json.dumps(rest), sys.argv[3]])
    nxt = subprocess.Popen([*to_next, rest[0][1], "--", remote], stdin=subprocess.PIPE)
CHUNK = 1 << 20
outs = [p.stdin.fileno() for p in (tar, nxt) if p is not None]  # tar's first
for fd in [0, *outs]:
    try:
        fcntl.fcntl(fd, 1031, CHUNK)  # F_SETPIPE_SZ: 1 MiB pipes decouple the hops
    except OSError:
        pass


def drop(n):
    while n:
        n -= len(os.read(0, n)) or n


def zero_copy(outs):
    """tee(2) to tar, splice(2) to the next hop: no byte through this process (stdin and
    both outputs are pipes). False if the kernel refuses it before anything moved."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.tee.restype = libc.splice.restype = ctypes.c_ssize_t
    except (ImportError, OSError, AttributeError):
        return False

    def call(f, *args):
        n = f(*args)
        if n < 0:
            raise OSError(ctypes.get_errno(), "tee/splice")
        return n

    tee = lambda o, n: call(libc.tee, 0, o, ctypes.c_size_t(n), 0)
    splice = lambda o, n: call(libc.splice, 0, None, o, None, ctypes.c_size_t(n), 0)
    moved = False
    while outs:
        try:
            n = (tee if len(outs) == 2 else splice)(outs[0], CHUNK)
        except OSError as e:
            if not moved and e.errno in (errno.EINVAL, errno.ENOSYS):
                return False
            outs.pop(0)  # that reader is gone
            continue
        if n == 0:
            return True
        moved = True
        left = n if len(outs) == 2 else 0
        while left:
            try:
                left -= splice(outs[1], left)
            except OSError:
                outs.pop(1)
                drop(left)  # tar has these bytes already
                left = 0
    return True


def copy(outs):
    """read(2) and write(2): whatever stdin is."""
    while outs:
        data = os.read(0, CHUNK)
        if not data:
            return
        for fd in list(outs):
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            except OSError:
                outs.remove(fd)


if not zero_copy(outs):
    copy(outs)
for p in (tar, nxt):
    if p is not None:
        try:
            p.stdin.close()
        except OSError:
            pass
code = tar.wait()
if nxt is not None:
    if nxt.wait() != 0:
        say(f"broken {name} {rest[0][0]}: ssh exited with code {nxt.returncode}")
    subprocess.run([*to_next, "-O", "exit", rest[0][1]], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
say(f"ok {name}" if code == 0 else f"failed {name}: tar exited with code {code}")
'''


@dataclass(frozen=True)
class Hop:
    name: str  # the node's name in the deployment
    address: str  # what ssh connects to
    directory: str  # where the node extracts the stream
    python: tuple[str, ...] = ("python3",)  # the command running the node's Python
    control: str = "none"  # ssh's ControlPath for the node's connection to the next hop

    def row(self) -> list[object]:
        return [self.name, self.address, self.directory, list(self.python), self.control]


def relay_argv(hops: Sequence[Hop], ssh: Sequence[str]) -> list[str]:
    """What runs on the first hop (and, from it, on every other): the relay (pure)."""
    rows = [h.row() for h in hops]
    return [*hops[0].python, "-c", BOOT, RELAY, json.dumps(rows), json.dumps(list(ssh))]


PERSIST = 120  # seconds a preconnected master outlives its last session (if the relay's
# "-O exit" never comes)


def preconnect_argv(hop: Hop, nxt: Hop, ssh: Sequence[str]) -> list[str]:
    """What runs on ``hop`` before the chain: its master connection to ``nxt`` (at
    ``hop.control``), so that the chain's hops start without an ssh handshake each (pure)."""
    return ["sh", "-c", 'mkdir -p "$1" && shift && exec "$@"', "sh",
            str(PurePosixPath(hop.control).parent), *ssh, "-o", "ControlMaster=yes",
            "-o", f"ControlPersist={PERSIST}", "-o", f"ControlPath={hop.control}",
            nxt.address, "true"]


def report(lines: Sequence[str], hops: Sequence[Hop]) -> list[str]:
    """One sentence per problem, from the chain's stderr (pure): a node neither ok nor failed
    is named as not reached, with ssh's own messages; none when every copy is in place."""
    ok: set[str] = set()
    problems: list[str] = []
    other: list[str] = []
    for line in lines:
        if not line.startswith(PREFIX):
            if line.strip():
                other.append(line.strip())
            continue
        kind, _, rest = line[len(PREFIX):].partition(" ")
        if kind == "ok":
            ok.add(rest.strip())
        elif kind == "failed":
            problems.append(f"node {rest.strip()}")
        elif kind == "broken":
            src, _, why = rest.partition(" ")
            nxt, _, why = why.partition(": ")
            problems.append(f"node {nxt} not reached from {src}: {why}")
    named = {p.split()[1].rstrip(":") for p in problems}
    lost = [h.name for h in hops if h.name not in ok and h.name not in named]
    if lost:
        why = f" ({' | '.join(other)[-300:]})" if other else ""
        problems.append(f"not reached: {', '.join(lost)}{why}")
    return problems


def broadcast(argv: Sequence[str], write: Callable[[IO[bytes]], None], hops: Sequence[Hop],
              timeout: float) -> None:
    """Run the chain (``argv``: the front end's command to the first hop, running
    ``relay_argv``), ``write`` the stream into it, and wait at most ``timeout`` seconds;
    TransportError naming every node whose copy is not in place."""
    p = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, start_new_session=True)
    assert p.stdin is not None and p.stderr is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(
        line.decode(errors="replace").rstrip("\n") for line in p.stderr), daemon=True)
    reader.start()

    def feed() -> None:
        with contextlib.suppress(OSError), p.stdin:
            write(p.stdin)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        reader.join(timeout=2)
        problems = report(lines, hops)
        raise TransportError(f"chain copy did not finish within {timeout:g} s: "
                             + "; ".join(problems)) from None
    writer.join(timeout=2)
    reader.join(timeout=2)
    problems = report(lines, hops)
    if problems or p.returncode != 0:
        raise TransportError("chain copy: " + ("; ".join(problems) or
                                               f"ssh exited with code {p.returncode}"))

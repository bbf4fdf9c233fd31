"""The ssh and oarsh transports: every command through the OpenSSH client (or OAR's ``oarsh``).

- Options: ``BatchMode=yes`` (never a prompt), ``ConnectTimeout``, keep-alives (a node that
  stops answering is noticed), the user's own ssh configuration otherwise; ``--ssh-option``s
  (``SshOptions.extra``) before them, on every ssh ADAGE runs (TakTuk's and the chain's too).
- Multiplexing: with a control directory (one per deployment), the first connection to a node
  becomes its master (``ControlMaster=auto``, ``ControlPersist=yes``, ``ControlPath=<dir>/%C``)
  and every later command, transfer and satellite rides on it; ``close()`` ends the masters.
- Remote commands are always one string built with ``shlex.join``.
- Transfers of a tree: ``tar`` (default: one tar stream over the connection per node), ``scp``
  (``scp -r``), ``rsync`` (``rsync -a -e <this ssh>``), ``oarcp`` (OAR's scp wrapper).
- An IPv6 address is given bare to ssh (``ssh ::1``) but bracketed in the ``HOST:PATH``
  targets of scp, rsync and oarcp (``[::1]:/dir/``), where a bare one would split at its
  first ``:``.
- oarsh: OAR 2.5's ``oarsh`` runs ``ssh -p 6667`` as user oar to the node's ``oarsh_shell``,
  authenticated by the job key; the job is named by ``OAR_JOB_ID`` in oarsh's environment (the
  node property ``oar_job_id``). oarsh refuses ssh's ``-T``/``-x`` (never passed) and, since it
  runs as user oar, cannot share the user's control sockets: no multiplexing with oarsh.
Every failure raises ``TransportError`` naming the node; in-flight commands are tracked so a
failing deployment can kill them at once (``cancel``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from adage.deploy import archive
from adage.deploy.transport import TransportError
from adage.model import Node, url_host
from oarlib.sshopts import base_options

SSH_TRANSFERS = ("tar", "scp", "rsync")
OARSH_TRANSFERS = ("tar", "oarcp")


TREE_FIRST = ('[ -d "$1" ] || mkdir -p "$1" || exit; '
              'tar -C "$1" --no-overwrite-dir -xf - || exit; shift; ')


def after_tree(dest: str, argv: Sequence[str]) -> list[str]:
    """``sh -c`` extracting the tar on its stdin under ``dest``, then running ``argv``; an
    ``sh -c SCRIPT NAME ARGS`` argv runs in the same shell (every process started on a node
    costs it a millisecond or two: hundreds of nodes on one machine add them up)."""
    if len(argv) >= 4 and list(argv[:2]) == ["sh", "-c"]:
        return ["sh", "-c", TREE_FIRST + argv[2], argv[3], dest, *argv[4:]]
    return ["sh", "-c", TREE_FIRST + 'exec "$@"', "sh", dest, *argv]


@dataclass(frozen=True)
class SshOptions:
    connect_timeout: float = 10.0  # seconds to connect and authenticate
    multiplex: bool = True  # one master connection per node (ssh only)
    fanout: int = 64  # nodes contacted at the same time (used by the deployer and close)
    extra: tuple[str, ...] = ()  # the user's ``-o`` options (--ssh-option), before ours


class SshTransport:
    """Nodes reached with ``ssh`` (``oarsh=False``) or ``oarsh``; ``transfer`` in
    SSH_TRANSFERS or OARSH_TRANSFERS."""

    def __init__(self, transfer: str = "tar", options: SshOptions | None = None,
                 oarsh: bool = False) -> None:
        allowed = OARSH_TRANSFERS if oarsh else SSH_TRANSFERS
        if transfer not in allowed:
            raise TransportError(f"transfer method {transfer!r} does not go with submission "
                                 f"method {'oarsh' if oarsh else 'ssh'} (use one of "
                                 f"{', '.join(allowed)})")
        self.name = "oarsh" if oarsh else "ssh"
        self.transfer = transfer
        self.options = options or SshOptions()
        self.oarsh = oarsh
        self.control_dir = ""  # made on first use: a dry run writes nothing
        self.used: set[str] = set()
        self.inflight: set[subprocess.Popen[bytes]] = set()
        self.lock = threading.Lock()

    # ---------------------------------------------------------------- command lines
    def ssh_options(self) -> list[str]:
        """The ``-o`` options of every connection."""
        opts = base_options(self.options.connect_timeout, self.options.extra)
        if self.options.multiplex and not self.oarsh:
            with self.lock:
                self.control_dir = self.control_dir or tempfile.mkdtemp(prefix="adage-ssh-")
            opts += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_dir}/%C",
                     "-o", "ControlPersist=yes"]
        return opts

    def program(self) -> list[str]:
        return ["oarsh"] if self.oarsh else ["ssh"]

    def env(self, node: Node) -> dict[str, str] | None:
        """oarsh/oarcp name the OAR job in their environment (``OAR_JOB_ID``)."""
        job = node.prop("oar_job_id")
        if self.oarsh and job:
            return {**os.environ, "OAR_JOB_ID": job}
        return None

    @staticmethod
    def host(node: Node) -> str:
        return node.address or node.name

    def command(self, node: Node, argv: Sequence[str]) -> list[str]:
        """The front-end argv running ``argv`` on ``node`` (one quoted remote string)."""
        self.used.add(self.host(node))
        return [*self.program(), *self.ssh_options(), self.host(node), "--", shlex.join(argv)]

    def shell(self, node: Node) -> list[str]:
        return self.command(node, ["sh", "-s"])

    def tree_commands(self, node: Node, src: Path, dest: str) -> list[list[str]]:
        """The front-end command lines putting the tree ``src`` under ``dest`` on ``node``
        (a pipeline ``tar | ssh`` is two commands)."""
        target = f"{url_host(self.host(node))}:{dest}/"  # [::1]:/dir/ for an IPv6 address
        mkdir = self.command(node, ["mkdir", "-p", dest])
        entries = sorted(str(p) for p in src.iterdir())
        if self.transfer == "tar":
            return [["tar", "-C", str(src), "-cf", "-", "--", *(p.name for p in src.iterdir())],
                    self.command(node, ["sh", "-c", 'mkdir -p "$1" && exec tar -C "$1" '
                                        '--no-overwrite-dir -xf -', "sh", dest])]
        if self.transfer == "rsync":
            rsh = shlex.join([*self.program(), *self.ssh_options()])
            # the entries, not "src/": -a would give dest itself src's mode, group and times
            return [mkdir, ["rsync", "-a", "-e", rsh, *entries, target]]
        if self.transfer == "scp":
            return [mkdir, ["scp", "-q", "-r", "-p", *self.ssh_options(), *entries, target]]
        return [mkdir, ["oarcp", "-q", "-r", "-p", *entries, target]]

    # ---------------------------------------------------------------- running
    def _spawn(self, node: Node, argv: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        try:
            p = subprocess.Popen(list(argv), env=self.env(node), start_new_session=True,
                                 **kw)  # type: ignore[call-overload]
        except OSError as e:
            raise TransportError(f"node {node.name}: cannot run {argv[0]}: {e}") from e
        with self.lock:
            self.inflight.add(p)
        return p

    def _finish(self, p: subprocess.Popen[bytes]) -> None:
        with self.lock:
            self.inflight.discard(p)

    def _wait(self, node: Node, procs: list[subprocess.Popen[bytes]], timeout: float,
              what: str, stdin: bytes = b"") -> bytes:
        """Feed the last process ``stdin``, wait for all; its stdout. Kill all on timeout."""
        try:
            out, err = procs[-1].communicate(stdin or None, timeout=timeout)
            for p in procs[:-1]:
                p.wait(timeout=1)
        except subprocess.TimeoutExpired:
            for p in procs:
                _kill(p)
            raise TransportError(f"node {node.name}: {what} did not finish within "
                                 f"{timeout:g} s") from None
        finally:
            for p in procs:
                self._finish(p)
        bad = next((p for p in procs if p.returncode != 0), None)
        if bad is not None:
            msg = one_line((err or b"").decode(errors="replace"))[-500:]
            code = bad.returncode
            why = "ssh could not connect" if code == 255 else f"exited with code {code}"
            raise TransportError(f"node {node.name}: {what}: {why}" + (f": {msg}" if msg else ""))
        return out or b""

    def run(self, node: Node, argv: Sequence[str], timeout: float, stdin: str = "") -> str:
        """Run the front-end ``argv`` (from ``command``/``shell``) with ``stdin``."""
        p = self._spawn(node, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
        return self._wait(node, [p], timeout, shlex.join(argv[-1:])[:120],
                          stdin.encode()).decode(errors="replace")

    def start(self, node: Node, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as err:
            p = self._spawn(node, self.command(node, argv), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=err)
        self._finish(p)  # long-running: killed by the deployer, not by cancel()
        return p

    def put_tree(self, node: Node, src: Path, dest: str, timeout: float) -> None:
        cmds = self.tree_commands(node, src, dest)
        what = f"{self.transfer} transfer to {dest}"
        if self.transfer == "tar":
            tar = self._spawn(node, cmds[0], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert tar.stdout is not None
            ssh = self._spawn(node, cmds[1], stdin=tar.stdout, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
            tar.stdout.close()
            self._wait(node, [tar, ssh], timeout, what)
            return
        for argv in cmds:
            p = self._spawn(node, argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
            self._wait(node, [p], timeout, what)

    def start_with_tree(self, node: Node, write: Callable[[archive.Stream], None], dest: str,
                        argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """Put a tree under ``dest`` and start ``argv`` (the satellite) in one ssh session:
        ``write`` puts the tree's members in a tar stream that goes first on the session's
        stdin (GNU tar stops reading at the end of the archive, padded to a whole record),
        then ``argv`` reads the rest."""

        def tree(stdin: IO[bytes]) -> None:
            with archive.Stream(stdin) as tf:
                write(tf)

        return self._fed(node, after_tree(dest, argv), tree, f"transfer to {dest}", log)

    def start_with_input(self, node: Node, argv: Sequence[str], data: bytes,
                         log: Path) -> subprocess.Popen[bytes]:
        """Start ``argv`` in an ssh session whose stdin begins with ``data`` (the satellite's
        program, for ``program.BOOT``)."""
        return self._fed(node, argv, lambda stdin: stdin.write(data), "satellite's start", log)

    def _fed(self, node: Node, argv: Sequence[str], feed: Callable[[IO[bytes]], object],
             what: str, log: Path) -> subprocess.Popen[bytes]:
        """``argv`` over ssh, ``feed`` writing the start of its stdin, left open."""
        with open(log, "ab") as err:
            p = self._spawn(node, self.command(node, argv), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=err)
        assert p.stdin is not None
        try:
            feed(p.stdin)
            p.stdin.flush()
        except OSError:
            _kill(p)
            tail = one_line(log.read_text(errors="replace"))[-400:] if log.exists() else ""
            raise TransportError(f"node {node.name}: {what}: "
                                 + ("ssh could not connect" if p.returncode == 255 else
                                    f"exited with code {p.returncode}")
                                 + (f": {tail}" if tail else "")) from None
        finally:
            self._finish(p)
        return p

    def cancel(self) -> None:
        """Kill every command still running (a deployment is failing)."""
        with self.lock:
            procs = list(self.inflight)
        for p in procs:
            _kill(p)

    def close(self) -> None:
        """End the master connections (``ssh -O exit``) and remove the control directory."""
        if not self.control_dir:
            return

        def end(host: str) -> None:
            subprocess.run(["ssh", "-o", f"ControlPath={self.control_dir}/%C", "-O", "exit",
                            host], capture_output=True, timeout=10, check=False)

        with ThreadPoolExecutor(max(1, self.options.fanout)) as pool:
            list(pool.map(end, sorted(self.used)))
        shutil.rmtree(self.control_dir, ignore_errors=True)


def one_line(text: str) -> str:
    """A command's stderr as one line of an error message: its lines joined by " | "."""
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def _kill(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()

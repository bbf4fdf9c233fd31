"""How the front end reaches a node: run a command, start the satellite, put a tree.

``Transport`` is the whole interface a deployment needs; ``LocalTransport`` serves the virtual
nodes of this machine, ``adage.deploy.ssh.SshTransport`` real nodes through ``ssh`` or
``oarsh``: it wraps the same argv in ``ssh -o BatchMode=yes <address> -- <quoted argv>``
(``shell``: ``ssh ... -- 'sh -s'``) and streams trees with ``tar``; the satellite talks over
its stdin/stdout, which ssh carries unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from adage.deploy.layout import Stage
from adage.errors import AdageError
from adage.model import Node
from oarlib.run import run_checked


class TransportError(AdageError, RuntimeError):
    """A node could not be reached or a transfer failed (the message names the node)."""


class Transport(Protocol):
    name: str

    def run(self, node: Node, argv: Sequence[str], timeout: float, stdin: str = "") -> str:
        """Run the front-end ``argv`` that reaches ``node`` (from ``shell``) with ``stdin``; its
        stdout. TransportError on failure or timeout."""
        ...

    def start(self, node: Node, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """Start a long-running ``argv`` on ``node`` with stdin/stdout piped to us, stderr to
        ``log`` (a front-end file), in its own session."""
        ...

    def put_tree(self, node: Node, src: Path, dest: str, timeout: float) -> None:
        """Make the tree ``src`` (front end) appear under ``dest`` on ``node``, in one go."""
        ...

    def shell(self, node: Node) -> list[str]:
        """The front-end argv that runs, on ``node``, the ``sh`` script given on its stdin."""
        ...

    def cancel(self) -> None:
        """Kill every command still under way (a deployment is failing)."""
        ...

    def close(self) -> None:
        """Release what the transport kept open (connections, directories)."""
        ...


class LocalTransport:
    """Virtual nodes on this machine: commands run here, trees are hard-linked (or copied
    across file systems) into the node's own directory tree."""

    name = "local"

    def run(self, node: Node, argv: Sequence[str], timeout: float, stdin: str = "") -> str:
        return run_checked(argv, TransportError, what=f"node {node.name}: {' '.join(argv)[:200]}",
                           input=stdin, timeout=timeout).stdout

    def start(self, node: Node, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as err:
            try:
                return subprocess.Popen(list(argv), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=err,
                                        start_new_session=True)
            except OSError as e:
                raise TransportError(f"node {node.name}: cannot start {argv[0]}: {e}") from e

    def put_tree(self, node: Node, src: Path, dest: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        try:
            for dirpath, _dirs, files in os.walk(src):
                target = Path(dest) / Path(dirpath).relative_to(src)
                target.mkdir(parents=True, exist_ok=True)
                for name in files:
                    link_or_copy(Path(dirpath) / name, target / name)
                if time.monotonic() > deadline:
                    raise TransportError(f"node {node.name}: transfer to {dest} took more "
                                         f"than {timeout:g} s")
        except OSError as e:
            raise TransportError(f"node {node.name}: transfer to {dest}: {e}") from e

    def shell(self, node: Node) -> list[str]:
        return ["sh", "-s"]

    def cancel(self) -> None:
        """Nothing to kill: transfers are hard links, made in this process."""

    def close(self) -> None:
        """Nothing is kept open."""


def link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build_tree(root: Path, st: Stage, texts: Mapping[str, str]) -> None:
    """The tree of ``st`` under ``root`` with ``texts`` (relative path -> content): hard links
    to the files (no copy of big files)."""
    for d in st.dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for dest, src in st.files.items():
        (root / dest).parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(Path(src), root / dest)
    for dest, text in texts.items():
        (root / dest).parent.mkdir(parents=True, exist_ok=True)
        (root / dest).write_text(text)


def canonical_transfer(method: str) -> str:
    """A transfer method's name: ``local`` (the documents' historical name) is ``tar``."""
    return "tar" if method == "local" else method

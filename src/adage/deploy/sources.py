"""Resources the CLI builds without a resource document: the local virtual nodes (the default)
and an OAR node file (``$OAR_NODEFILE``: one line per core, so a host's lines count its
cores). OAR job ids come with a later issue."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from adage.model import Node, Resources


class SourceError(ValueError):
    """An unreadable or empty node file (the message names it)."""


def local_nodes(count: int, root: Path | None = None) -> Resources:
    """``count`` virtual nodes ``local1..localN`` on this machine, each with its own scratch
    directory under ``root`` (default ``/tmp/<user>/adage-nodes``), reached at 127.0.0.1; their
    Python (property ``python``, for the satellites) is the one running ADAGE."""
    if count < 1:
        raise SourceError(f"--local-nodes must be at least 1, not {count}")
    base = root or Path(f"/tmp/{getpass.getuser()}/adage-nodes")
    return Resources(tuple(
        Node(name=f"local{i}", cores=1, scratch=str(base / f"local{i}"), address="127.0.0.1",
             properties=(("python", sys.executable),))
        for i in range(1, count + 1)))


def oar_nodefile(path: str | Path) -> Resources:
    """The hosts of an OAR node file, in order of first appearance, cores = their line count;
    reached with oarsh/oarcp (or ssh/scp)."""
    try:
        lines = Path(path).read_text().split()
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror}") from None
    cores: dict[str, int] = {}
    for host in lines:
        cores[host] = cores.get(host, 0) + 1
    if not cores:
        raise SourceError(f"{path}: no host in this OAR node file")
    return Resources(tuple(Node(name=h, cores=n, submission=("oarsh", "ssh"),
                                transfer=("oarcp", "scp")) for h, n in cores.items()))

"""Resources the CLI builds without a resource document: the local virtual nodes (the default).
OAR jobs and node files are read by ``adage.resources.oar``."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from adage.errors import AdageError
from adage.model import Node, Resources


class SourceError(AdageError, ValueError):
    """An unreadable or empty node file (the message names it)."""


def local_nodes(count: int, root: Path | None = None) -> Resources:
    """``count`` virtual nodes ``local1..localN`` on this machine, each with its own scratch
    directory under ``root`` (made absolute; default ``/tmp/<user>/adage-nodes``), reached at
    127.0.0.1; their Python (property ``python``, for the satellites) is the one running
    ADAGE."""
    if count < 1:
        raise SourceError(f"--local-nodes must be at least 1, not {count}")
    base = (root or Path(f"/tmp/{getpass.getuser()}/adage-nodes")).absolute()
    return Resources(tuple(
        Node(name=f"local{i}", cores=1, scratch=str(base / f"local{i}"), address="127.0.0.1",
             properties=(("python", sys.executable),))
        for i in range(1, count + 1)))

"""The base of every error Orpheus reports as one line (``orpheus CMD: error: ...``)."""

from __future__ import annotations


class OrpheusError(Exception):
    """A failure the user can act on: a bad job argument, workload or reference, a report or
    energy window with nothing in it, a node that cannot be failed."""

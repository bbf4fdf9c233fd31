"""Orpheus: a job-execution simulator for a real, unmodified OAR server."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

PIPED_WIDTH = 160
"""Width of tables written to a pipe or a file (rich would fold them to 80 columns)."""


def console() -> Console:
    """A rich console on stdout: the terminal's width, or PIPED_WIDTH when piped."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)

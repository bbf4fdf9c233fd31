"""The base of every error ADAGE reports as one line (``adage: error: ...``)."""

from __future__ import annotations


class AdageError(Exception):
    """A failure the user can act on: bad input, an unreachable node, a failed deployment."""

"""The OpenSSH client options every non-interactive connection of both tools uses."""

from __future__ import annotations

import math


def base_options(connect_timeout: float) -> list[str]:
    """Never a prompt (``BatchMode``), a bounded connection time, and keep-alives so that a
    node that stops answering is noticed; the user's own ssh configuration otherwise."""
    return ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, math.ceil(connect_timeout))}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]

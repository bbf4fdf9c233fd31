"""The OpenSSH client options every non-interactive connection of both tools uses."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

# what ssh's -o takes: ``Keyword=value`` or ``Keyword value``, on one line
OPTION = re.compile(r"[A-Za-z][A-Za-z0-9]*[ \t]*[= \t][ \t]*\S.*")


def base_options(connect_timeout: float, extra: Sequence[str] = ()) -> list[str]:
    """Never a prompt (``BatchMode``), a bounded connection time, and keep-alives so that a
    node that stops answering is noticed; the user's own ssh configuration otherwise. The
    ``extra`` options (``Keyword=value``) come first: ssh keeps an option's first value, so
    they win over these and over the configuration files."""
    return [*(a for o in extra for a in ("-o", o)), "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, math.ceil(connect_timeout))}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]

"""Notifications to Almighty's TCP socket, or to an interactive oarsub's (what
``OAR::Tools::notify_tcp_socket`` sends).

Almighty's appendice reads exactly one line per connection, so each message gets its own.
"""

from __future__ import annotations

import socket

from oarlib.conf import ServerAddress


def notify(address: ServerAddress, *messages: str, timeout: float = 5.0) -> None:
    """Send each message (``Scheduling``, ``ChState``, ``OAREXEC_...``) on its own connection."""
    for message in messages:
        with socket.create_connection((address.host, address.port), timeout=timeout) as sock:
            sock.sendall(message.encode() + b"\n")

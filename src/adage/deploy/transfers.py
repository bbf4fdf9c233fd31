"""The trees of a deployment being put on their nodes in the background, ``fanout`` at a time,
while the deployer's loop runs (``SshPropagation``, ``ChainPropagation``).

A transfer that starts the node's satellite too (one ssh session carrying the tree, then the
satellite's lines) keeps its place until the satellite speaks: no more than ``fanout``
sessions are being opened at a time, and the satellites that are up get their work meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from select import select
from subprocess import Popen

Put = Callable[[str], Popen[bytes] | None]  # a stage's transfer: the session it leaves open


class Transfers:
    """``put(first)`` for every stage's first node, ``fanout`` at a time."""

    def __init__(self, put: Put, firsts: list[str], fanout: int, timeout: float,
                 cancel: Callable[[], None]) -> None:
        self.put = put
        self.timeout = timeout
        self.cancel = cancel  # kills the transfers under way
        self.wake_r, self.wake_w = os.pipe()  # closed by stop(): every wait ends
        self.pool = ThreadPoolExecutor(min(fanout, len(firsts) or 1))
        self.pending: dict[Future[Popen[bytes] | None], str] = {
            self.pool.submit(self._one, first): first for first in firsts}

    def _one(self, first: str) -> Popen[bytes] | None:
        popen = self.put(first)
        if popen is not None:
            select([popen.stdout, self.wake_r], [], [], self.timeout)
        return popen

    def collect(self) -> list[tuple[str, Popen[bytes] | None]]:
        """The transfers done since last time (the first node, the session left open); raises
        the first failure, leaving every transfer to ``stop``."""
        done = [f for f in self.pending if f.done()]
        for fut in done:
            failed = fut.exception()
            if failed is not None:
                raise failed
        out = [(self.pending.pop(fut), fut.result()) for fut in done]
        if not self.pending:
            self.close()
        return out

    def stop(self) -> list[tuple[str, Popen[bytes]]]:
        """Drop the transfers not started and kill those under way; the sessions that were
        started meanwhile (to be killed with the others)."""
        self.pool.shutdown(wait=False, cancel_futures=True)  # first: no new one starts
        if self.wake_w >= 0:
            os.close(self.wake_w)
            self.wake_w = -1
        self.cancel()
        self.close()
        started = [(first, fut.result()) for fut, first in self.pending.items()
                   if not fut.cancelled() and fut.exception() is None]
        self.pending.clear()
        return [(first, popen) for first, popen in started if popen is not None]

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for fd in (self.wake_r, self.wake_w):
            if fd >= 0:
                os.close(fd)
        self.wake_r = self.wake_w = -1


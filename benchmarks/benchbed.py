"""The shared test bed, as every benchmark takes it and gives it back.

A benchmark starts its own Orpheus daemon: one already serving the bed is refused with a
message, or stopped when the user asks (``--stop-daemon``). The bed's size, scheduler settings
and clock, and whether OAR's web tools run, are read before the benchmark changes them and
restored after.
"""

from __future__ import annotations

import argparse
import os
import signal
import time

from oarlib import testbed, web
from orpheus.daemon import running_daemon
from orpheus.testbed_cli import bring_up

Found = tuple[testbed.Config, bool]  # the bed's configuration, and whether its web tools ran


def add_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--stop-daemon", action="store_true",
                    help="stop an Orpheus daemon serving the test bed (default: refuse to run)")


def stop_daemon() -> None:
    if (pid := running_daemon()) is not None:
        os.kill(pid, signal.SIGTERM)
        while running_daemon() is not None:
            time.sleep(0.2)


def claim(args: argparse.Namespace) -> Found:
    """Refuse (exit 1) or stop a running daemon; the bed as it is now, to give back."""
    if (pid := running_daemon()) is not None:
        if not args.stop_daemon:
            raise SystemExit(f"an Orpheus daemon (pid {pid}) serves the test bed: stop it "
                             "(kill it, or orpheus testbed down), or pass --stop-daemon")
        stop_daemon()
    return testbed.current(), web.apache_pid() is not None


def give_back(found: Found) -> None:
    """Stop this benchmark's daemon, if still running, and bring the bed back to ``found``."""
    stop_daemon()
    bring_up(found[0], with_web=found[1])

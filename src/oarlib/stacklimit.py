"""OAR's Perl programs with a raised stack limit, so that large test beds work.

OAR 2.5.9's Perl code builds and frees deep structures over the resource list. At about
32,000 resources, with the usual 8 MiB soft stack limit, the default scheduler dies with
SIGSEGV on every pass (the meta-scheduler then disables its queue: "returned a bad value:
139"), and ``oarsub`` dies with SIGSEGV about one time in three (the depth follows Perl's
randomised hash order). Neither can be given a higher limit from outside: Almighty and the
user commands start through setuid binaries (``/usr/sbin/Almighty``, ``/usr/bin/oarsub``), and
the kernel caps a setuid program's stack at 8 MiB; raising a running process's limit
(prlimit) needs CAP_SYS_RESOURCE, which these machines do not give root. So each program below
is diverted (``dpkg-divert``, as ``orpheus install`` does for bipbip) to ``<name>.real`` and
replaced by a wrapper that raises its own soft limit to the hard one (``unlimited`` by default)
and execs the real program. Queues keep their scheduler names; ``restore`` gives back the
package's files.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from oarlib import preload

log = logging.getLogger("oarlib.stacklimit")

SCHEDULERS_DIR = Path("/usr/lib/oar/schedulers")
CLIENTS = (Path("/usr/lib/oar/oarsub"),)  # what /usr/bin/oarsub (setuid) runs
MARK = "# orpheus testbed: OAR program with a raised stack limit"


def wrapper_text(real: Path, limit: str = '"$(ulimit -H -s)"') -> str:
    """The wrapper put in place of a program: set the stack limit (by default the hard one),
    exec the real one (a user command: its preload client while the preload server runs)."""
    text = f"#!/bin/sh\n{MARK} (docs/testbed.md)\nulimit -s {limit}\n"
    if real.with_suffix("") in CLIENTS:
        client = preload.OARDIR / real.name
        text += (f"# on the virtual clock, from OAR's preloaded Perl (docs/virtual-clock.md)\n"
                 f'[ -S {preload.SOCKET} ] && [ -x {client} ] && exec {client} "$@"\n')
    return text + f'exec {real} "$@"\n'


def schedulers() -> list[Path]:
    """The schedulers the oar-server package installed (their own paths, diverted or not)."""
    proc = subprocess.run(["dpkg-query", "-L", "oar-server"], capture_output=True, text=True,
                          check=False)
    return sorted(Path(line) for line in proc.stdout.splitlines()
                  if Path(line).parent == SCHEDULERS_DIR)


def programs() -> list[Path]:
    """Every program to wrap: the schedulers, then the user commands."""
    return schedulers() + [p for p in CLIENTS if p.exists() or _real(p).exists()]


def wrapped(path: Path) -> bool:
    """Whether ``path`` is our wrapper to the hard limit (its real program diverted beside it)."""
    try:
        return path.read_text(errors="replace") == wrapper_text(_real(path))
    except OSError:
        return False


def _real(path: Path) -> Path:
    return path.with_name(path.name + ".real")


def _divert(*args: str) -> str:
    proc = subprocess.run(["dpkg-divert", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"dpkg-divert {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def _diverted(path: Path) -> bool:
    return _divert("--truename", str(path)) == str(_real(path))


def wrap(paths: Iterable[Path] | None = None, limit: str | None = None) -> list[str]:
    """Divert every program (or ``paths``) and put the wrapper in its place (idempotent);
    ``limit`` (KiB) replaces the hard limit, e.g. to show what a too small stack does."""
    done = []
    for path in programs() if paths is None else paths:
        if not _diverted(path):
            log.info("diverting %s to %s (raised stack limit)", path, _real(path))
            _divert("--local", "--rename", "--divert", str(_real(path)), "--add", str(path))
        text = wrapper_text(_real(path)) if limit is None else wrapper_text(_real(path), limit)
        if not path.exists() or path.read_text(errors="replace") != text:
            tmp = path.with_name(f".{path.name}.tmp")
            real = _real(path).stat()  # the wrapper gets the real program's owner and mode
            tmp.write_text(text)
            os.chown(tmp, real.st_uid, real.st_gid)
            os.chmod(tmp, real.st_mode & 0o7777)
            tmp.replace(path)
        done.append(path.name)
    return done


def restore(paths: Iterable[Path] | None = None) -> list[str]:
    """Remove the wrappers and give back the package's programs (idempotent)."""
    done = []
    for path in programs() if paths is None else paths:
        if _diverted(path):
            log.info("restoring %s", path)
            path.unlink(missing_ok=True)
            _divert("--rename", "--remove", str(path))
            done.append(path.name)
    return done


def state() -> dict[str, bool]:
    """Each program's name -> whether it runs with the raised stack limit."""
    return {p.name: wrapped(p) for p in programs()}

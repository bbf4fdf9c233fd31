"""OAR's user commands (oarsub, oardel), run as a given ordinary user."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence

from oarlib.run import run_checked


class OarCommandError(RuntimeError):
    pass


def _as(user: str | None, argv: Sequence[str]) -> list[str]:
    if user is None or (os.geteuid() != 0 and os.environ.get("USER") == user):
        return list(argv)
    return ["runuser", "-u", user, "--", *argv]


def oarsub(args: Sequence[str], user: str | None = None, timeout: float = 120) -> list[int]:
    """Run ``oarsub ARGS`` as ``user``; the job ids it printed (several for an array)."""
    what = f"oarsub {' '.join(args)}"
    out = run_checked(_as(user, ["oarsub", *args]), OarCommandError, what=what, cwd="/tmp",
                      timeout=timeout)
    ids = [int(m) for m in re.findall(r"^OAR_JOB_ID=(\d+)", out.stdout, re.M)]
    if not ids:
        raise OarCommandError(f"{what}: no job id in {out.stdout.strip()!r}")
    return ids


def oarsub_array(params: Sequence[str], command: str = "sim", resources: str = "core=1",
                 extra: Sequence[str] = (), user: str | None = None) -> list[int]:
    """One oarsub for many jobs: ``COMMAND <line>`` for each line of ``params``."""
    with tempfile.NamedTemporaryFile("w", suffix=".params", dir="/tmp", delete=False) as f:
        f.write("".join(p + "\n" for p in params))
    os.chmod(f.name, 0o644)
    try:
        return oarsub(["-l", resources, *extra, "--array-param-file", f.name, command], user)
    finally:
        os.unlink(f.name)


def oardel(job_ids: Sequence[int], user: str | None = None, *flags: str) -> None:
    run_checked(_as(user, ["oardel", *flags, *map(str, job_ids)]), OarCommandError,
                what=f"oardel {job_ids}", cwd="/tmp", timeout=60)

"""Running a command and turning its failure into one line naming it (shared by both tools)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence


def run_checked(argv: Sequence[str], error: type[Exception], *, what: str = "",
                input: str | None = None, timeout: float | None = None, cwd: str | None = None,
                env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (text, output captured); raise ``error`` naming ``what`` (default: the
    command line) with the tail of its stderr and stdout if it cannot start, times out or
    exits with a code other than 0."""
    what = what or " ".join(argv)[:200]
    try:
        done = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                              timeout=timeout, cwd=cwd, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise error(f"{what}: {e}") from None
    if done.returncode != 0:
        said = " | ".join(line.strip() for line in f"{done.stderr}\n{done.stdout}".splitlines()
                          if line.strip())[-500:]
        raise error(f"{what}: exited with code {done.returncode}" + (f": {said}" if said
                                                                        else ""))
    return done

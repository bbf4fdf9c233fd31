"""The test bed's virtual clock: one offset file that OAR's server, its database and Orpheus
read as "now = real time + offset".

Almighty (and every module it forks) and PostgreSQL run with Debian's libfaketime preloaded,
pointed at ``OFFSET_FILE`` and told to read it at every call: when Orpheus writes a larger
offset, their clocks jump at once and then run on at the real rate. Orpheus itself does not
preload anything: ``Clock.now`` adds the same offset. Nothing here ever writes a smaller
offset (the clock never goes backwards) and the file is replaced atomically, never emptied: a
missing or empty file would make libfaketime fall back to real time.

Replays put *holds* here too: a hold is an instant the clock must not pass until its owner
(a live process) has done what is due then (``hold``, ``holds``).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

CLOCK_DIR = Path("/var/lib/orpheus-clock")
OFFSET_FILE = CLOCK_DIR / "offset"
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
MODES = ("real", "virtual")
_OFFSET = re.compile(r"\A\+(\d+(?:\.\d+)?)\n?\Z")


def faketime_env(offset_file: Path = OFFSET_FILE) -> dict[str, str]:
    """The environment that puts a process on the virtual clock.

    ``FAKETIME_NO_CACHE``: read the file at every call (a jump is seen at once);
    ``FAKETIME_DONT_FAKE_MONOTONIC``: sleeps and timeouts keep their real length.
    """
    return {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(offset_file),
            "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def parse_offset(text: str) -> float:
    """The offset of a file's text (``+SECONDS``); ValueError for anything else."""
    m = _OFFSET.match(text)
    if not m:
        raise ValueError(f"not a clock offset (+SECONDS): {text[:40]!r}")
    return float(m[1])


def format_offset(offset: float) -> str:
    return f"+{offset:.6f}\n"


class RealClock:
    """The real clock, with the virtual one's interface."""

    def now(self) -> float:
        return time.time()


class Clock:
    """Real time plus the offset of ``path`` (0 when the file does not exist)."""

    def __init__(self, path: Path = OFFSET_FILE) -> None:
        self.path = path
        self.offset = self.read()

    def read(self) -> float:
        try:
            return parse_offset(self.path.read_text())
        except FileNotFoundError:
            return 0.0

    def now(self) -> float:
        """The virtual time (the offset is read again: another process may have moved it)."""
        self.offset = max(self.offset, self.read())
        return time.time() + self.offset

    def advance_to(self, when: float) -> float:
        """Jump to ``when`` if it is ahead; return by how many seconds the clock moved."""
        step = when - self.now()
        if step <= 0:
            return 0.0
        self.offset += step
        write_offset(self.path, self.offset)
        return step


def write_offset(path: Path, offset: float) -> None:
    """Replace the offset file atomically, readable by OAR and PostgreSQL."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(format_offset(offset))
    tmp.chmod(0o644)
    os.replace(tmp, path)


def ensure(path: Path = OFFSET_FILE, owner: str = "oar") -> None:
    """Create the clock's directory (owned by ``owner``, who runs the daemon) and an offset
    file of +0 if there is none; an existing offset is kept (the clock never goes back)."""
    import shutil

    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    shutil.chown(path.parent, owner, owner)
    if not path.exists():
        write_offset(path, 0.0)
    shutil.chown(path, owner, owner)


def clean_shm(shm: Path = Path("/dev/shm")) -> int:
    """Remove the shared memory and semaphore libfaketime leaves behind a process that was
    killed (``faketime_shm_<pid>``, ``sem.faketime_sem_<pid>``); return how many."""
    removed = 0
    for path in [*shm.glob("faketime_shm_*"), *shm.glob("sem.faketime_sem_*")]:
        pid = path.name.rsplit("_", 1)[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    return removed


# ----------------------------------------------------------------------------- holds

def hold(name: str, when: float | None, directory: Path = CLOCK_DIR) -> None:
    """Hold the clock at ``when`` for this process (None: release the hold)."""
    path = directory / f"hold.{os.getpid()}.{name}"
    if when is None:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{path.name}")
    tmp.write_text(f"{when:.6f}\n")
    os.replace(tmp, path)


def holds(directory: Path = CLOCK_DIR) -> list[float]:
    """The holds of live processes (those of dead ones are removed)."""
    out = []
    for path in directory.glob("hold.*"):
        pid = path.name.split(".")[1]
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        with contextlib.suppress(OSError, ValueError):
            out.append(float(path.read_text()))
    return out


# ----------------------------------------------------------------------------- PostgreSQL

_BEGIN, _END = "# --- orpheus virtual clock: begin", "# --- orpheus virtual clock: end"


def pg_environment(text: str, virtual: bool, offset_file: Path = OFFSET_FILE) -> str:
    """A cluster's ``environment`` file with (or without) the virtual clock's variables, the
    rest of the file kept as it was."""
    lines = text.splitlines()
    if not virtual and _BEGIN not in lines:
        return text
    if _BEGIN in lines and _END in lines[lines.index(_BEGIN):]:
        begin = lines.index(_BEGIN)
        end = lines.index(_END, begin)
        lines = lines[:begin] + lines[end + 1:]
    if virtual:
        lines += [_BEGIN, *(f"{k} = '{v}'" for k, v in faketime_env(offset_file).items()),
                  _END]
    return "\n".join(lines) + "\n"


def pg_is_virtual(text: str) -> bool:
    return _BEGIN in text.splitlines()

"""OAR's modules started from a preloaded Perl, on the virtual clock.

Almighty runs its work as one Perl module after another (NodeChangeState, the meta-scheduler
and its Gantt scheduler, sarko, finaud, Leon, bipbip), each a new ``perl`` that compiles OAR's
libraries (OAR::IO, DBI, DBD::Pg, Judas, ...) before doing anything: about 0.1 CPU s of a
module's 0.15 on this machine, and a virtual-clock replay starts ~9 modules a job. This is the
cost mod_perl and Starman remove by preloading: ``oar-preload`` (perl/) compiles the libraries
once, as user oar in Almighty's environment, and forks each module from there; the module's own
script, unmodified, runs in the child with the caller's arguments, environment, directory,
umask, ignored signals and standard streams. ``oarsub`` is started the same way.

Almighty finds its modules in ``$OARDIR``: the virtual-clock Almighty gets ``OARDIR`` (this
directory) where each module is a small client (``oar-preload-client``) that hands its
request to the server, forwards signals, and exits as the module did; every other file is a
link to ``/usr/lib/oar``; ``oarsub``'s stack-limit wrapper (``oarlib.stacklimit``) execs its
client there while the server's socket exists. A client passes its standard streams on the
socket (SCM_RIGHTS): the server may not open them by name (a replay's oarsub writes to root's
pipes). Without the server, or when oar.conf has changed since it started (the libraries read
it when loaded), a client runs its script itself. No library of the field does this for an
unmodified program, hence the hand-written server.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

from oarlib import vclock

OAR_DIR = Path("/usr/lib/oar")
OARDIR = vclock.CLOCK_DIR / "oardir"  # the virtual-clock Almighty's OARDIR
RUN_DIR = vclock.CLOCK_DIR / "preload"  # owned by oar: the server's socket and pid
SOCKET = RUN_DIR / "socket"
PIDFILE = RUN_DIR / "pid"
LOG = RUN_DIR / "log"  # the server's own messages (a library it could not preload)
SERVER = vclock.CLOCK_DIR / "oar-preload"
MODULES = ("NodeChangeState", "sarko", "finaud", "Leon", "oar_meta_sched", "bipbip.real",
           "oarsub.real")  # and the Gantt schedulers
DRIVERS = {"Pg": "DBD::Pg", "mysql": "DBD::mysql"}
_USE = re.compile(r"^use\s+([A-Z][\w:]*)", re.M)


def _perl_file(name: str) -> str:
    return resources.files("oarlib").joinpath("perl", name).read_text()


def scripts(oar_dir: Path = OAR_DIR) -> dict[str, Path]:
    """Each module the server runs: its name under ``$OARDIR`` -> the Perl script it runs.
    A scheduler behind a stack-limit wrapper (``X`` running ``X.real``) runs ``X.real``: the
    server has the raised limit."""
    out = {name: oar_dir / name for name in MODULES if (oar_dir / name).is_file()}
    for real in sorted((oar_dir / "schedulers").glob("*.real")):
        stem = real.name.removesuffix(".real")
        out[f"schedulers/{stem}"] = out[f"schedulers/{real.name}"] = real
    for path in sorted((oar_dir / "schedulers").iterdir()):
        if path.name.startswith("oar_sched_") and f"schedulers/{path.name}" not in out \
                and _is_perl(path):
            out[f"schedulers/{path.name}"] = path
    return out


def _is_perl(path: Path) -> bool:
    with path.open("rb") as f:
        return f.readline().startswith(b"#!/usr/bin/perl")


def libraries(texts: Iterable[str], db_type: str) -> list[str]:
    """The modules the scripts ``use`` (pragmas left out), and the database driver DBI loads."""
    found = {m for text in texts for m in _USE.findall(text)}
    return sorted(found | {"DBI", DRIVERS.get(db_type, "DBD::Pg")})


def client_text(script: Path, socket_path: Path = SOCKET) -> str:
    return (_perl_file("oar-preload-client").replace("@SCRIPT@", str(script))
            .replace("@SOCKET@", str(socket_path)))


def write_oardir(oardir: Path = OARDIR, oar_dir: Path = OAR_DIR) -> dict[str, Path]:
    """``oardir``: a client for each module of ``scripts``, links to the rest of ``oar_dir``."""
    mods = scripts(oar_dir)
    fresh = oardir.with_name(oardir.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    for sub in ("", "schedulers"):
        (fresh / sub).mkdir(mode=0o755, parents=True)
        for path in sorted((oar_dir / sub).iterdir()):
            rel = f"{sub}/{path.name}".lstrip("/")
            if rel == "schedulers":
                continue
            if rel in mods:
                (fresh / rel).write_text(client_text(mods[rel]))
                (fresh / rel).chmod(0o755)
            else:
                (fresh / rel).symlink_to(path)
    old = oardir.with_name(oardir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if oardir.exists():
        oardir.rename(old)
    fresh.rename(oardir)
    shutil.rmtree(old, ignore_errors=True)
    return mods


def server_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if str(SERVER).encode() in cmd[:2] else None


def start(env: Mapping[str, str], db_type: str, conf: Path) -> int:
    """Write ``OARDIR`` and start the server (after stopping one that runs); its pid."""
    stop()
    mods = write_oardir()
    SERVER.write_text(_perl_file("oar-preload"))
    SERVER.chmod(0o755)
    RUN_DIR.mkdir(exist_ok=True)
    RUN_DIR.chmod(0o700)  # only oar (Almighty's modules) may ask: they run as oar
    shutil.chown(RUN_DIR, "oar", "oar")
    libs = libraries((p.read_text(errors="replace") for p in set(mods.values())), db_type)
    hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
    with LOG.open("w") as log:
        shutil.chown(LOG, "oar", "oar")
        child = subprocess.Popen(
            [str(SERVER), str(SOCKET), str(conf), *libs], cwd="/", env=dict(env),
            user="oar", group="oar", extra_groups=[], umask=0, start_new_session=True,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_STACK, (hard, hard)),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    PIDFILE.write_text(f"{child.pid}\n")
    deadline = time.monotonic() + 30
    while not SOCKET.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"oar-preload did not start (exit {child.poll()}): "
                               + (LOG.read_text()[-500:].strip() or "no message"))
        time.sleep(0.02)
    return child.pid


def stop() -> None:
    """Stop the server if it runs (its modules under way finish)."""
    pid = server_pid()
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while server_pid() == pid and time.monotonic() < deadline:
            time.sleep(0.02)
    PIDFILE.unlink(missing_ok=True)
    SOCKET.unlink(missing_ok=True)

"""``orpheus install`` / ``orpheus uninstall``: put Orpheus between OAR and its (fake) nodes.

Install (root, idempotent):
- spool ``/var/lib/oar/orpheus`` (oar:oar 0775): the daemon's pid file and the shims' messages;
- ``/usr/lib/oar/bipbip`` diverted to ``bipbip.real`` (dpkg-divert) and replaced by the runner
  shim: a launch (``bipbip <jobid>``) becomes ``$SPOOL/launch.<jobid>`` + SIGUSR1 to the daemon;
- fake ssh, halt, wake-up and boot commands in ``/usr/local/lib/orpheus``;
- oar.conf: OPENSSH_CMD = the fake ssh, FINAUD_FREQUENCY=0 (no node checking),
  DETACH_JOB_FROM_SERVER=1 (job ends come back as OAREXEC_ messages, whatever the default),
  JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD commented out (no cpuset manager ssh to the nodes).
Uninstall restores every touched file byte for byte (mode and owner too) from the copies and
the record kept in ``/var/lib/orpheus-install``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pwd
import re
import shutil
import signal
import stat
from importlib import resources
from pathlib import Path
from typing import Any

from oarlib import conf as oarconf
from oarlib import stacklimit, testbed
from oarlib.testbed import TestbedError, run

log = logging.getLogger("orpheus.install")

SPOOL = Path("/var/lib/oar/orpheus")
PIDFILE = SPOOL / "orpheus.pid"
LIBDIR = testbed.FAKE_COMMANDS_DIR
FAKE_SSH = LIBDIR / "fake-ssh"
BIPBIP = Path("/usr/lib/oar/bipbip")
BIPBIP_REAL = Path("/usr/lib/oar/bipbip.real")
STATE = Path("/var/lib/orpheus-install")
MANIFEST = STATE / "manifest.json"
CONF_BACKUP = STATE / "oar.conf"
FAKE_COMMANDS = ("fake-ssh", "fake-halt", "fake-wakeup", "fake-boot")
SPOOL_STATE = ("launch.*", "kill.*", "fake-ssh.log", "energy.log")
CONF_KEYS: dict[str, str | None] = {
    "OPENSSH_CMD": str(FAKE_SSH),
    "FINAUD_FREQUENCY": "0",
    "DETACH_JOB_FROM_SERVER": "1",
    "JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD": None,
}


# ----------------------------------------------------------------------------- pure core

def _key_line(key: str) -> re.Pattern[str]:
    return re.compile(rf"^[#\s]*{re.escape(key)}\s*=")


def original_lines(text: str, keys: list[str]) -> dict[str, str | None]:
    """The line ``conf.set_values`` will replace for each key (None: it will append one)."""
    lines = text.splitlines()
    return {k: next((ln for ln in lines if _key_line(k).match(ln)), None) for k in keys}


def revert_conf(text: str, originals: dict[str, str | None]) -> str:
    """Undo ``set_values(text0, {k: ...})`` key by key: put back each original line, drop each
    appended one; every other line of ``text`` is kept as it is."""
    out: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines(keepends=True):
        key = next((k for k in originals if k not in seen and _key_line(k).match(line)), None)
        if key is None:
            out.append(line)
            continue
        seen.add(key)
        if originals[key] is not None:
            out.append(f"{originals[key]}\n" if line.endswith("\n") else str(originals[key]))
    return "".join(out)


def shim_text(name: str, spool: Path = SPOOL, libdir: Path = LIBDIR) -> str:
    """A shim from the package data, with its spool and library directories filled in."""
    template = (resources.files("orpheus") / "shims" / name).read_text()
    return template.replace("@SPOOL@", str(spool)).replace("@LIBDIR@", str(libdir))


# ----------------------------------------------------------------------------- shell

def _stat_record(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}


def _write(path: Path, data: bytes, mode: int, uid: int = 0, gid: int = 0) -> None:
    """Replace ``path`` atomically with exactly these bytes, mode and owner."""
    tmp = path.with_name(path.name + ".orpheus-tmp")
    tmp.write_bytes(data)
    os.chown(tmp, uid, gid)
    tmp.chmod(mode)
    tmp.replace(path)


def diverted() -> bool:
    proc = run(["dpkg-divert", "--truename", str(BIPBIP)], quiet=True)
    return proc.stdout.strip() == str(BIPBIP_REAL)


def load_manifest() -> dict[str, Any] | None:
    try:
        return json.loads(MANIFEST.read_text())
    except (OSError, ValueError):
        return None


def _save_manifest(manifest: dict[str, Any]) -> None:
    STATE.mkdir(mode=0o700, exist_ok=True)
    MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")


def _conf_bytes() -> bytes:
    return testbed.CONF_PATH.read_bytes()


def daemon_pid() -> int | None:
    """The Orpheus daemon's pid from its pid file, if that process runs Orpheus."""
    pid = testbed.read_pid(PIDFILE)
    if pid and testbed.pid_alive(pid) and any("orpheus" in a for a in testbed.cmdline(pid)):
        return pid
    return None


def clear_spool_state() -> None:
    """Remove the shims' messages and logs (launch.*, kill.*, fake-ssh.log, energy.log)."""
    for pattern in SPOOL_STATE:
        for path in SPOOL.glob(pattern):
            path.unlink(missing_ok=True)


def stop_daemon(timeout: float = 30) -> bool:
    """SIGTERM the Orpheus daemon if it runs, wait, SIGKILL it after ``timeout``; return
    whether it ran."""
    pid = daemon_pid()
    if pid is None:
        return False
    log.info("stopping the Orpheus daemon (pid %d)", pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        testbed.wait_until(lambda: not testbed.pid_alive(pid), timeout, "the Orpheus daemon")
    except TestbedError:
        log.warning("the Orpheus daemon (pid %d) ignored SIGTERM for %.0f s: SIGKILL", pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


def install(restart: bool = True) -> None:
    """Install the shims and oar.conf settings (idempotent); restart a running Almighty."""
    testbed.require_root()
    manifest = load_manifest()
    conf_now = _conf_bytes()
    if manifest is None:
        manifest = {
            "conf_stat": _stat_record(testbed.CONF_PATH),
            "conf_lines": original_lines(conf_now.decode(), list(CONF_KEYS)),
            "created": [str(p) for p in (SPOOL, LIBDIR) if not p.exists()],
        }
        STATE.mkdir(mode=0o700, exist_ok=True)
        CONF_BACKUP.write_bytes(conf_now)
    elif testbed.sha256(conf_now) != manifest.get("conf_installed_sha256"):
        # oar.conf changed since install (e.g. testbed switched DB): what uninstall must give
        # back is today's file without our keys
        CONF_BACKUP.write_bytes(revert_conf(conf_now.decode(), manifest["conf_lines"]).encode())
    _save_manifest(manifest)

    oar = pwd.getpwnam("oar")
    SPOOL.mkdir(exist_ok=True)
    os.chown(SPOOL, oar.pw_uid, oar.pw_gid)
    SPOOL.chmod(0o775)
    LIBDIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    for name in FAKE_COMMANDS:
        _write(LIBDIR / name, shim_text(name).encode(), 0o755)
    if not diverted():
        log.info("diverting %s to %s", BIPBIP, BIPBIP_REAL)
        run(["dpkg-divert", "--local", "--rename", "--divert", str(BIPBIP_REAL), "--add",
             str(BIPBIP)])
    _write(BIPBIP, shim_text("bipbip").encode(), 0o755)

    new_conf = oarconf.set_values(testbed.CONF_PATH.read_text(), CONF_KEYS).encode()
    if new_conf != _conf_bytes():
        st = manifest["conf_stat"]
        _write(testbed.CONF_PATH, new_conf, 0o600, pwd.getpwnam("oar").pw_uid, st["gid"])
    manifest["conf_installed_sha256"] = testbed.sha256(_conf_bytes())
    _save_manifest(manifest)
    if restart:
        testbed.restart_almighty_if_running()
    log.info("Orpheus installed (spool %s)", SPOOL)


def uninstall(restart: bool = True) -> None:
    """Undo ``install`` exactly; stop the daemon first (it cannot work without the shims)."""
    testbed.require_root()
    manifest = load_manifest()
    if manifest is None and not diverted():
        log.info("Orpheus is not installed")
        return
    stop_daemon()
    stacklimit.restore()
    if diverted():
        BIPBIP.unlink(missing_ok=True)
        run(["dpkg-divert", "--rename", "--remove", str(BIPBIP)])
    for name in FAKE_COMMANDS:
        (LIBDIR / name).unlink(missing_ok=True)
    created = set(manifest["created"]) if manifest else set()
    if str(LIBDIR) in created:
        with contextlib.suppress(OSError):
            LIBDIR.rmdir()
    clear_spool_state()
    (SPOOL / "orpheus.pid").unlink(missing_ok=True)
    if str(SPOOL) in created:
        try:
            SPOOL.rmdir()
        except OSError:
            log.warning("%s kept: it holds files Orpheus did not put there", SPOOL)
    if manifest:
        conf_now = _conf_bytes()
        if testbed.sha256(conf_now) == manifest.get("conf_installed_sha256"):
            data = CONF_BACKUP.read_bytes()
        else:
            log.warning("oar.conf changed since install: reverting only Orpheus' settings")
            data = revert_conf(conf_now.decode(), manifest["conf_lines"]).encode()
        st = manifest["conf_stat"]
        _write(testbed.CONF_PATH, data, st["mode"], st["uid"], st["gid"])
    shutil.rmtree(STATE, ignore_errors=True)
    if restart:
        testbed.restart_almighty_if_running()
    log.info("Orpheus uninstalled")


def status() -> dict[str, Any]:
    pid = daemon_pid()
    return {"installed": load_manifest() is not None and BIPBIP_REAL.exists(),
            "spool": str(SPOOL), "daemon_pid": pid, "daemon_running": pid is not None}


# ----------------------------------------------------------------------------- CLI

def _run(args: argparse.Namespace) -> int:
    try:
        (install if args.command == "install" else uninstall)(restart=not args.no_restart)
    except TestbedError as exc:
        log.error("%s", exc)
        return 1
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``install`` and ``uninstall``."""
    for name, text in (("install", "install the Orpheus shims and oar.conf settings (root)"),
                       ("uninstall", "restore exactly what `orpheus install` changed (root)")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--no-restart", action="store_true",
                       help="do not restart a running Almighty (it reads oar.conf at start)")
        p.set_defaults(func=_run)

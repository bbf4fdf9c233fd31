"""`orpheus install` / `orpheus uninstall` on the real OAR of this machine: what install puts in
place, and that uninstall gives back every touched file byte for byte (mode and owner too)."""

from __future__ import annotations

import hashlib
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from oarlib import conf as oarconf
from oarlib import testbed
from oarlib.testbed import Config
from orpheus import install
from orpheus.testbed_cli import bring_up

pytestmark = pytest.mark.oar
SRC = str(Path(__file__).resolve().parents[2] / "src")
TOUCHED = [testbed.CONF_PATH, install.BIPBIP, install.BIPBIP_REAL, install.LIBDIR,
           *(install.LIBDIR / n for n in install.FAKE_COMMANDS), install.SPOOL,
           Path("/var/lib/dpkg/diversions"), install.STATE]


def snapshot() -> dict[str, tuple[object, ...] | None]:
    """Content checksum, mode and owner of every path install may touch (None: absent)."""
    out: dict[str, tuple[object, ...] | None] = {}
    for path in TOUCHED:
        if not path.exists():
            out[str(path)] = None
            continue
        st = path.stat()
        digest = (hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file()
                  else sorted(p.name for p in path.iterdir()))
        out[str(path)] = (digest, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


def orpheus_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "orpheus.cli", *args], check=True, cwd="/tmp",
                   env=os.environ | {"PYTHONPATH": SRC}, capture_output=True, timeout=120)


@pytest.fixture(scope="module", autouse=True)
def default_testbed() -> Iterator[None]:
    found = testbed.current()
    bring_up(Config())
    install.stop_daemon()
    yield
    bring_up(found)  # installs again, restarts Almighty on the restored oar.conf, as it was


@pytest.fixture
def uninstalled() -> Iterator[dict[str, tuple[object, ...] | None]]:
    """Start from a machine without Orpheus; give its snapshot."""
    install.uninstall(restart=False)
    assert not install.diverted() and not install.STATE.exists()
    yield snapshot()
    install.install(restart=False)


def test_install_twice_then_uninstall_once_restores_byte_for_byte(
        uninstalled: dict[str, tuple[object, ...] | None]) -> None:
    before = uninstalled
    real_bipbip = before[str(install.BIPBIP)]
    orpheus_cli("install", "--no-restart")
    install.install(restart=False)
    # what install put in place
    assert install.diverted()
    assert install.BIPBIP.read_text() == install.shim_text("bipbip")
    assert snapshot()[str(install.BIPBIP_REAL)] == real_bipbip
    for name in install.FAKE_COMMANDS:
        path = install.LIBDIR / name
        assert path.read_text() == install.shim_text(name)
        assert stat.S_IMODE(path.stat().st_mode) == 0o755
    spool = install.SPOOL.stat()
    oar = pwd.getpwnam("oar")
    assert (stat.S_IMODE(spool.st_mode), spool.st_uid, spool.st_gid) == \
        (0o775, oar.pw_uid, oar.pw_gid)
    conf = oarconf.read()
    assert conf["OPENSSH_CMD"] == str(install.FAKE_SSH)
    assert (conf["FINAUD_FREQUENCY"], conf["DETACH_JOB_FROM_SERVER"]) == ("0", "1")
    assert "JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD" not in conf
    assert "#JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD=" in testbed.CONF_PATH.read_text()
    assert install.status()["installed"]
    (install.SPOOL / "launch.1").touch()  # shims' state is removed by uninstall
    (install.SPOOL / "kill.1").write_text("TERM node1\n")

    orpheus_cli("uninstall", "--no-restart")
    assert snapshot() == before
    assert not install.status()["installed"]


def test_uninstall_keeps_conf_changes_made_after_install(
        uninstalled: dict[str, tuple[object, ...] | None]) -> None:
    original = testbed.CONF_PATH.read_text()
    install.install(restart=False)
    testbed.write_conf_text(oarconf.set_values(testbed.CONF_PATH.read_text(), {"LOG_LEVEL": "3"}))
    install.install(restart=False)  # a second install after the change, too
    install.uninstall(restart=False)
    try:
        assert testbed.CONF_PATH.read_text() == oarconf.set_values(original, {"LOG_LEVEL": "3"})
    finally:
        testbed.write_conf_text(original)
    assert snapshot() == uninstalled


def test_install_restarts_a_running_almighty() -> None:
    bring_up(Config())
    pid = testbed.almighty_pid()
    assert pid is not None
    install.install()
    assert testbed.almighty_pid() not in (None, pid)
    assert testbed.almighty_is_current()
    install.install(restart=False)
    assert testbed.almighty_is_current()

"""The shell shims `orpheus install` ships (runner bipbip, fake ssh), run for real on a scratch
spool: what they write, whom they signal, and that they never evaluate their arguments."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orpheus.install import shim_text

# exactly what OAR::Tools::signal_oarexec builds (Tools.pm), with and without a user signal
PIDFILE = "/tmp/oar_runtime/pid_of_oarexec_for_jobId_{job}"
SIGNAL_CMD = ("bash -c 'test -e {f} && PROC=$(cat {f}) && kill -s CONT $PROC && "
              "kill -s {sig} $PROC'")
USER_SIGNAL_CMD = ("bash -c 'echo 12 > /tmp/oar_runtime/oarexec_user_signal_file_{job} && "
                   "test -e {f} && PROC=$(cat {f}) && kill -s CONT $PROC && kill -s {sig} $PROC'")


def signal_cmd(job: int, sig: str, template: str = SIGNAL_CMD) -> str:
    return template.format(f=PIDFILE.format(job=job), job=job, sig=sig)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    (tmp_path / "spool").mkdir()
    for name in ("bipbip", "fake-ssh"):
        path = tmp_path / name
        path.write_text(shim_text(name, spool=tmp_path / "spool", libdir=tmp_path))
        path.chmod(0o755)
    return tmp_path / "spool"


@pytest.fixture
def daemon(spool: Path) -> Iterator[subprocess.Popen[str]]:
    """A stand-in process that prints a line per SIGUSR1, registered in the pid file."""
    code = ("import signal, sys\n"
            "signal.signal(signal.SIGUSR1, lambda *a: print('USR1', flush=True))\n"
            "print('ready', flush=True)\n"
            "while True: signal.pause()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    (spool / "orpheus.pid").write_text(f"{proc.pid}\n")
    yield proc
    proc.kill()
    proc.wait()


def got_usr1(proc: subprocess.Popen[str]) -> bool:
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if proc.stdout.readline() == "USR1\n":
            return True
        time.sleep(0.02)
    return False


def shim(spool: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(spool.parent / name), *args], capture_output=True, text=True,
                          timeout=10)


def test_bipbip_launch_writes_the_launch_file_and_wakes_the_daemon(
        spool: Path, daemon: subprocess.Popen[str]) -> None:
    assert shim(spool, "bipbip", "42").returncode == 0
    assert (spool / "launch.42").read_text() == ""
    assert got_usr1(daemon)


def test_bipbip_launch_without_daemon_still_succeeds(spool: Path) -> None:
    (spool / "orpheus.pid").write_text("999999999\n")  # stale pid
    assert shim(spool, "bipbip", "7").returncode == 0
    assert (spool / "launch.7").exists()


@pytest.mark.parametrize("sig", ["TERM", "SIGUSR2", "URG"])
@pytest.mark.parametrize("template", [SIGNAL_CMD, USER_SIGNAL_CMD])
def test_fake_ssh_records_oarexec_signals(spool: Path, daemon: subprocess.Popen[str], sig: str,
                                          template: str) -> None:
    cmd = signal_cmd(12, sig, template)
    assert shim(spool, "fake-ssh", "-x", "-T", "node3", cmd).returncode == 0
    assert shim(spool, "fake-ssh", "-x", "-T", "node3", cmd).returncode == 0
    assert (spool / "kill.12").read_text() == f"{sig} node3\n{sig} node3\n"
    assert got_usr1(daemon)
    log = (spool / "fake-ssh.log").read_text().splitlines()
    assert len(log) == 2 and log[0].endswith(f"-x -T node3 {cmd}")


@pytest.mark.parametrize("args", [
    ["-x", "-T", "node1", "cat /proc/cpuinfo"],  # oar_resources_init
    ["node1", "true"],
    ["-x", "-T", "node1", "perl - 12 OAREXEC"],  # bipbip piping oarexec in
    ["-x", "-T", "node1", signal_cmd(5, "TERM") + "; touch /tmp/x"],
    [],
])
def test_fake_ssh_refuses_everything_else_like_an_unreachable_host(spool: Path,
                                                                   args: list[str]) -> None:
    assert shim(spool, "fake-ssh", *args).returncode == 255
    assert not list(spool.glob("kill.*"))


def test_fake_ssh_never_evaluates_its_arguments(spool: Path, tmp_path: Path) -> None:
    witness = tmp_path / "pwned"
    evil = signal_cmd(9, "TERM").replace("test -e", f"$(touch {witness}) `touch {witness}` test -e")
    shim(spool, "fake-ssh", "-x", "-T", f"$(touch {witness})", evil)
    shim(spool, "fake-ssh", "-x", "-T", "node1", f"bash -c '$(touch {witness})'")
    assert not witness.exists()


def test_bipbip_end_of_job_form_execs_the_real_bipbip(spool: Path, tmp_path: Path) -> None:
    text = (spool.parent / "bipbip").read_text()
    assert 'exec "${OARDIR:-/usr/lib/oar}/bipbip.real" "$@"' in text
    assert text.startswith("#!/bin/sh\n") and "@SPOOL@" not in text
    oardir = tmp_path / "oardir"  # Almighty's OARDIR: the real bipbip is found there
    oardir.mkdir()
    (oardir / "bipbip.real").write_text('#!/bin/sh\necho "real $*"\nexit 3\n')
    (oardir / "bipbip.real").chmod(0o755)
    res = subprocess.run([str(spool.parent / "bipbip"), "42", "0", "0", "a b"],
                         env={"OARDIR": str(oardir), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=10)
    assert (res.returncode, res.stdout) == (3, "real 42 0 0 a b\n")
    assert not (spool / "launch.42").exists()

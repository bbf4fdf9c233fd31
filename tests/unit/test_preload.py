"""The preload server (``oar-preload``) and its client, with a private server and Perl scripts
of the test's: a script run through the client behaves as if run alone (arguments,
environment, directory, streams, exit status, signals), and runs alone when the server is not
there or oar.conf changed. ``oarlib.preload``'s pure parts: which scripts, which libraries."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oarlib import preload

SERVER = Path(preload.__file__).parent / "perl" / "oar-preload"
# prints what the tests look at; exits with its first argument
PROBE = r"""#!/usr/bin/perl
use strict;
my $line = <STDIN>;
print "args=@ARGV\n";
print "env=", ($ENV{PROBE} // "-"), "\n";
print "cwd=", readlink("/proc/self/cwd"), "\n";
print "stdin=", ($line // "-\n");
print "preloaded=", ($INC{"Text/Wrap.pm"} ? 1 : 0), "\n";
print "usr1=", ($SIG{USR1} // ""), "\n";
print "zero=$0\n";
print STDERR "to stderr\n";
exit($ARGV[0] // 0);
"""


@pytest.fixture()
def bed(tmp_path: Path) -> Iterator[tuple[Path, Path, Path]]:
    """A server preloading Text::Wrap; the client of ``probe.pl``; the conf file it watches."""
    sock, conf, script = tmp_path / "sock", tmp_path / "oar.conf", tmp_path / "probe.pl"
    conf.write_text("LOG_LEVEL=1\n")
    script.write_text(PROBE)
    script.chmod(0o755)  # run alone, it is executed
    client = tmp_path / "probe"
    client.write_text(preload.client_text(script, sock))
    client.chmod(0o755)
    server = subprocess.Popen(["perl", str(SERVER), str(sock), str(conf), "Text::Wrap"],
                              stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert server.poll() is None and time.monotonic() < deadline, server.stderr
        time.sleep(0.01)
    yield client, conf, sock
    server.terminate()
    server.wait(5)


def probe(client: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(client), *args], capture_output=True, text=True, timeout=20,
                          **kw)  # type: ignore[call-overload]


def fields(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines())


def test_a_script_run_through_the_server_sees_what_it_would_alone(
        bed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    client, _, _ = bed
    res = probe(client, "3", "two words", "", input="hello\n", cwd=tmp_path,
                env={"PROBE": "é x", "PATH": os.environ["PATH"]})
    assert res.returncode == 3, res.stderr
    got = fields(res.stdout)
    assert got["args"] == "3 two words "  # the empty argument too
    assert got["env"] == "é x" and got["cwd"] == str(tmp_path) and got["stdin"] == "hello"
    assert got["preloaded"] == "1"  # forked from the server, which loaded Text::Wrap
    assert got["zero"] == str(tmp_path / "probe.pl")
    assert res.stderr == "to stderr\n"


def test_a_file_given_as_stdout_is_appended_to(bed: tuple[Path, Path, Path],
                                               tmp_path: Path) -> None:
    client, _, _ = bed
    out = tmp_path / "out"
    out.write_text("before\n")
    with out.open("a") as f:
        assert subprocess.run([str(client)], stdin=subprocess.DEVNULL, stdout=f,
                              timeout=20).returncode == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "before" and lines[1] == "args=" and "preloaded=1" in lines


def test_ignored_signals_stay_ignored_and_others_are_forwarded(
        bed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    client, _, _ = bed
    res = probe(client, input="", preexec_fn=lambda: signal.signal(signal.SIGUSR1,
                                                                   signal.SIG_IGN))
    assert fields(res.stdout)["usr1"] == "IGNORE"
    # a script that waits: TERM to the client ends the script and the client as by TERM
    script = tmp_path / "probe.pl"
    script.write_text("#!/usr/bin/perl\nprint \"up\\n\"; $| = 1; sleep 30; exit 0;\n")
    p = subprocess.Popen([str(client)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"up\n"
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    assert p.wait(10) == -signal.SIGTERM and time.monotonic() - t0 < 5


def test_streams_the_server_could_not_open_are_handed_over(tmp_path: Path) -> None:
    """As oarsub run by root through runuser: the server and its client run as another user
    (oar; here nobody), the client's streams are root's pipes, which that user may not open
    by their name (/proc/PID/fd/N): they are passed on the socket, not reopened."""
    shared = Path(tempfile.mkdtemp(prefix="preload-"))
    try:
        shared.chmod(0o755)
        sock, conf, script = shared / "sock", shared / "oar.conf", shared / "probe.pl"
        conf.write_text("LOG_LEVEL=1\n")
        script.write_text(PROBE)
        client = shared / "probe"
        client.write_text(preload.client_text(script, sock))
        for path in (conf, script, client):
            path.chmod(0o755)
        shutil.chown(shared, "nobody", "nogroup")
        as_nobody = {"user": "nobody", "group": "nogroup", "extra_groups": []}
        server = subprocess.Popen(["perl", str(SERVER), str(sock), str(conf), "Text::Wrap"],
                                  cwd="/", **as_nobody)  # type: ignore[call-overload]
        try:
            deadline = time.monotonic() + 10
            while not sock.exists():
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.01)
            res = probe(client, "4", input="through root's pipe\n", cwd="/", **as_nobody)
            assert res.returncode == 4, res.stderr
            got = fields(res.stdout)
            assert got["preloaded"] == "1" and got["stdin"] == "through root's pipe"
            assert res.stderr == "to stderr\n"
        finally:
            server.terminate()
            server.wait(5)
    finally:
        shutil.rmtree(shared)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_client_killed_takes_its_script_with_it(bed: tuple[Path, Path, Path],
                                                 tmp_path: Path) -> None:
    client, _, _ = bed
    pidfile = tmp_path / "runner"
    (tmp_path / "probe.pl").write_text(
        f"#!/usr/bin/perl\nopen(my $f, '>', '{pidfile}'); print $f $$; close $f; sleep 30;\n")
    p = subprocess.Popen([str(client)], stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    runner = int(pidfile.read_text())
    p.kill()  # as a scheduler's timeout kills it: nothing forwards SIGKILL
    p.wait()
    while alive(runner):
        assert time.monotonic() < deadline, "the script outlived its client"
        time.sleep(0.01)


def test_a_script_that_dies_exits_255_with_its_message(bed: tuple[Path, Path, Path],
                                                       tmp_path: Path) -> None:
    client, _, _ = bed
    (tmp_path / "probe.pl").write_text("#!/usr/bin/perl\ndie \"broken here\\n\";\n")
    res = probe(client, input="")
    assert res.returncode == 255 and res.stderr == "broken here\n"
    (tmp_path / "probe.pl").write_text("#!/usr/bin/perl\nkill 'KILL', $$;\n")
    assert probe(client, input="").returncode == -signal.SIGKILL


def test_without_the_server_or_after_a_conf_change_the_script_runs_alone(
        bed: tuple[Path, Path, Path]) -> None:
    client, conf, sock = bed
    conf.write_text("LOG_LEVEL=3\n")  # the libraries read oar.conf when they were loaded
    res = probe(client, "1", input="")
    assert res.returncode == 1 and fields(res.stdout)["preloaded"] == "0"
    sock.unlink()
    res = probe(client, "2", input="")
    assert res.returncode == 2 and fields(res.stdout)["preloaded"] == "0"


def test_scripts_and_libraries_come_from_the_oar_directory(tmp_path: Path) -> None:
    oar = tmp_path / "oar"
    (oar / "schedulers").mkdir(parents=True)
    perl = "#!/usr/bin/perl\nuse strict;\nuse OAR::IO;\nuse Data::Dumper();\n"
    for name in ("NodeChangeState", "sarko", "oarsub", "oarsub.real", "bipbip.real"):
        (oar / name).write_text(perl)
    (oar / "bipbip").write_text("#!/bin/sh\nexec bipbip.real\n")
    (oar / "schedulers" / "gantt").write_text("#!/bin/sh\nulimit -s 1\nexec gantt.real\n")
    (oar / "schedulers" / "gantt.real").write_text(perl + "use OAR::Schedulers::Tree;\n")
    (oar / "schedulers" / "oar_sched_plain").write_text(perl)
    mods = preload.scripts(oar)
    assert mods == {"NodeChangeState": oar / "NodeChangeState", "sarko": oar / "sarko",
                    "bipbip.real": oar / "bipbip.real", "oarsub.real": oar / "oarsub.real",
                    "schedulers/gantt": oar / "schedulers" / "gantt.real",
                    "schedulers/gantt.real": oar / "schedulers" / "gantt.real",
                    "schedulers/oar_sched_plain": oar / "schedulers" / "oar_sched_plain"}
    texts = [p.read_text() for p in set(mods.values())]
    assert preload.libraries(texts, "Pg") == [
        "DBD::Pg", "DBI", "Data::Dumper", "OAR::IO", "OAR::Schedulers::Tree"]
    assert "DBD::mysql" in preload.libraries(texts, "mysql")
    oardir = tmp_path / "oardir"
    preload.write_oardir(oardir, oar)
    assert (oardir / "oarsub").resolve() == oar / "oarsub"  # the wrapper: a link
    assert (oardir / "bipbip").resolve() == oar / "bipbip"
    client = (oardir / "schedulers" / "gantt").read_text()
    assert f"'{oar}/schedulers/gantt.real'" in client and "@SCRIPT@" not in client
    assert os.access(oardir / "sarko", os.X_OK)
    preload.write_oardir(oardir, oar)  # again: replaced whole
    assert sorted(p.name for p in oardir.iterdir()) == sorted(p.name for p in oar.iterdir())

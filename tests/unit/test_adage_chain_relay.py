"""The chain broadcast: the relay's command line, its report, and real relays run on this
machine with ``sh`` standing in for ssh (the hops' commands are what ssh would carry)."""

from __future__ import annotations

import io
import json
import shlex
import sys
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adage.deploy import chain
from adage.deploy.layout import PYTHON
from adage.deploy.transport import TransportError


def fake_ssh(hang: str = "") -> list[str]:
    """ssh as the relay calls it, run here: ``[opts] HOST -- CMD`` runs CMD with sh; a host
    named ``bad*`` refuses the connection (code 255, as ssh); ``hang`` never answers;
    ``-O exit`` (closing a master) succeeds."""
    code = ("import os, sys, time\n"
            "a = sys.argv[1:]\n"
            "if '-O' in a: sys.exit(0)\n"
            "host, cmd = a[-3], a[-1]\n"
            "if host.startswith('bad'):\n"
            "    print(f'ssh: connect to host {host} port 22: Connection refused',"
            " file=sys.stderr)\n"
            "    sys.exit(255)\n"
            f"if host == {hang!r}: time.sleep(60)\n"
            "os.execvp('sh', ['sh', '-c', cmd])\n")
    return [sys.executable, "-c", code]


def hops(root: Path, n: int, bad: int | None = None) -> list[chain.Hop]:
    """Every other hop runs the default Python command (a shell choosing the interpreter)."""
    return [chain.Hop(f"n{i}", f"bad{i}" if i == bad else f"a{i}", str(root / f"n{i}" / "c"),
                      PYTHON if i % 2 else (sys.executable,)) for i in range(n)]


def run(hs: list[chain.Hop], ssh: list[str], payload: bytes, timeout: float = 30) -> None:
    argv = [*ssh, hs[0].address, "--", shlex.join(chain.relay_argv(hs, ssh))]

    def write(out: io.BufferedWriter) -> None:
        with tarfile.open(fileobj=out, mode="w|") as tf:
            info = tarfile.TarInfo("d/f.bin")
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))

    chain.broadcast(argv, write, hs, timeout)


def test_the_relay_argv_carries_the_relay_the_hops_and_ssh_as_words() -> None:
    hs = [chain.Hop("n1", "10.0.0.1", "/tmp/u/adage-1/_adage/common-n1"),
          chain.Hop("n 2", "10.0.0.2", "/tmp/it's here", PYTHON)]
    argv = chain.relay_argv(hs, ["ssh", "-o", "BatchMode=yes"])
    assert argv[:4] == ["python3", "-c", chain.BOOT, chain.RELAY]
    assert json.loads(argv[4]) == [["n1", "10.0.0.1", "/tmp/u/adage-1/_adage/common-n1",
                                    ["python3"], "none"],
                                   ["n 2", "10.0.0.2", "/tmp/it's here", list(PYTHON),
                                    "none"]]
    assert json.loads(argv[5]) == ["ssh", "-o", "BatchMode=yes"]
    assert shlex.split(shlex.join(argv)) == argv  # one quoted string through ssh, unchanged
    assert chain.BOOT in chain.RELAY  # each relay boots the next one the same way
    compile(chain.RELAY, "relay", "exec")


@given(names=st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), min_size=1,
                      max_size=8, unique=True), ok_upto=st.integers(0, 8))
def test_the_report_names_every_node_without_its_copy(names: list[str], ok_upto: int) -> None:
    hs = [chain.Hop(n, n, f"/d/{n}") for n in names]
    lines = [f"adage-chain ok {n}" for n in names[:ok_upto]]
    problems = chain.report(lines, hs)
    missing = names[ok_upto:]
    assert bool(problems) == bool(missing)
    if missing:
        assert problems == [f"not reached: {', '.join(missing)}"]


def test_the_report_tells_a_broken_hop_and_a_failed_extraction() -> None:
    hs = [chain.Hop(n, n, f"/d/{n}") for n in ("a", "b", "c", "d")]
    lines = ["ssh: connect to host c port 22: Connection refused",
             "adage-chain broken b c: ssh exited with code 255", "adage-chain ok b",
             "adage-chain failed a: tar exited with code 2"]
    assert chain.report(lines, hs) == [
        "node c not reached from b: ssh exited with code 255",
        "node a: tar exited with code 2",
        "not reached: d (ssh: connect to host c port 22: Connection refused)"]


def test_real_relays_put_the_stream_on_every_hop(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 40_000  # 10 MB: many reads and writes per hop
    hs = hops(tmp_path, 5)
    run(hs, fake_ssh(), payload)
    for h in hs:
        assert (Path(h.directory) / "d" / "f.bin").read_bytes() == payload


def test_a_hop_that_cannot_be_reached_is_named_with_every_node_after_it(
        tmp_path: Path) -> None:
    hs = hops(tmp_path, 5, bad=2)
    with pytest.raises(TransportError) as e:
        run(hs, fake_ssh(), b"data" * 1000)
    assert str(e.value) == ("chain copy: node n2 not reached from n1: ssh exited with code 255; "
                            "not reached: n3, n4 (ssh: connect to host bad2 port 22: "
                            "Connection refused)")
    assert (Path(hs[1].directory) / "d" / "f.bin").exists()  # the nodes before it have theirs


def test_a_chain_that_hangs_is_killed_at_the_timeout_and_names_the_nodes(
        tmp_path: Path) -> None:
    hs = hops(tmp_path, 3)
    with pytest.raises(TransportError, match=r"did not finish within 2 s: not reached: n0, "
                                             r"n1, n2"):
        run(hs, fake_ssh(hang="a1"), b"x" * 1000, timeout=2)


def test_preconnect_opens_a_persistent_master_to_the_next_hop_in_the_control_directory(
) -> None:
    a = chain.Hop("n1", "10.0.0.1", "/d", control="/tmp/u/adage-1/_adage/chain-%C")
    b = chain.Hop("n2", "10.0.0.2", "/d")
    argv = chain.preconnect_argv(a, b, ["ssh", "-o", "BatchMode=yes"])
    assert argv[:5] == ["sh", "-c", 'mkdir -p "$1" && shift && exec "$@"', "sh",
                        "/tmp/u/adage-1/_adage"]
    assert argv[5:] == ["ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=yes", "-o",
                        f"ControlPersist={chain.PERSIST}", "-o",
                        "ControlPath=/tmp/u/adage-1/_adage/chain-%C", "10.0.0.2", "true"]

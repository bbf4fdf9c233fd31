"""The ssh transport's command lines and bookkeeping (no connection is made)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from adage.deploy import archive
from adage.deploy.ssh import SshOptions, SshTransport, after_tree, one_line
from adage.model import Node


def test_the_control_directory_is_made_on_first_use_only() -> None:
    t = SshTransport("tar")
    assert t.control_dir == ""  # a dry run builds transports and must write nothing
    opts = t.ssh_options()
    assert Path(t.control_dir).is_dir() and f"ControlPath={t.control_dir}/%C" in opts
    assert t.ssh_options() == opts  # one directory for every connection
    t.close()
    assert not Path(t.control_dir).exists()


def test_the_users_ssh_options_come_first_as_ssh_keeps_an_options_first_value() -> None:
    t = SshTransport("tar", SshOptions(3, False, extra=("ConnectTimeout=30", "Port 2222")))
    argv = t.command(Node("n1", address="10.0.0.1"), ["true"])
    assert argv[:9] == ["ssh", "-o", "ConnectTimeout=30", "-o", "Port 2222", "-o", "BatchMode=yes",
                        "-o", "ConnectTimeout=3"]
    assert argv[-3:] == ["10.0.0.1", "--", "true"]
    assert SshTransport("tar", SshOptions(3, False)).command(Node("n1"), ["true"])[1:3] == [
        "-o", "BatchMode=yes"]


def test_rsync_copies_the_entries_not_the_directory(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").write_text("")
    t = SshTransport("rsync")
    try:
        rsync = t.tree_commands(Node(name="n1"), tmp_path, "/tmp")[1]
    finally:
        t.close()  # its control directory
    assert rsync[:2] == ["rsync", "-a"]
    assert rsync[-3:] == [str(tmp_path / "a"), str(tmp_path / "b"), "n1:/tmp/"]


@pytest.mark.parametrize(("address", "target"), [
    ("::1", "[::1]:/d/"), ("fe80::1%eth0", "[fe80::1%eth0]:/d/"), ("10.0.0.1", "10.0.0.1:/d/"),
    ("", "n1:/d/")])
@pytest.mark.parametrize("transfer", ["scp", "rsync"])
def test_copy_targets_bracket_ipv6_addresses_and_ssh_takes_them_bare(
        tmp_path: Path, transfer: str, address: str, target: str) -> None:
    (tmp_path / "f").write_text("")
    node = Node(name="n1", address=address)
    t = SshTransport(transfer, oarsh=False)
    try:
        mkdir, copy = t.tree_commands(node, tmp_path, "/d")
        assert copy[-2:] == [str(tmp_path / "f"), target]
        assert mkdir[-3:] == [address or "n1", "--", "mkdir -p /d"]
    finally:
        t.close()
    oarcp = SshTransport("oarcp", oarsh=True).tree_commands(node, tmp_path, "/d")[1]
    assert oarcp[-1] == target


def test_stderr_becomes_one_line() -> None:
    assert one_line("ssh: connect timed out\n\n  Connection to x closed \n") == (
        "ssh: connect timed out | Connection to x closed")
    assert one_line("") == ""


def tar_of(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with archive.Stream(out) as tf:
        archive.write_tree(tf, [], texts={name: data.decode() for name, data in files.items()})
    return out.getvalue()


def test_after_tree_extracts_then_runs_an_sh_script_in_the_same_shell(tmp_path: Path) -> None:
    """The tar is extracted under a destination made if missing, then the script of an
    ``sh -c SCRIPT NAME ARGS`` argv sees its own name and arguments and the rest of stdin."""
    dest = tmp_path / "a b" / "c"
    argv = ["sh", "-c", 'printf "%s|" "$0" "$@"; cat', "name", "x y", "$1"]
    cmd = after_tree(str(dest), argv)
    assert cmd[:2] == ["sh", "-c"] and cmd[2].endswith(argv[2]) and cmd[3] == "name"
    out = subprocess.run(cmd, input=tar_of({"d/f": b"data"}) + b"rest", capture_output=True,
                         check=True).stdout
    assert out == b"name|x y|$1|rest"
    assert (dest / "d" / "f").read_text() == "data"


def test_after_tree_execs_any_other_argv_and_stops_on_a_bad_tar(tmp_path: Path) -> None:
    out = subprocess.run(after_tree(str(tmp_path), ["printf", "%s|", "x y"]),
                         input=tar_of({"f": b""}), capture_output=True, check=True).stdout
    assert out == b"x y|"
    bad = subprocess.run(after_tree(str(tmp_path), ["sh", "-c", "echo ran", "sh"]),
                         input=b"not a tar" * 100, capture_output=True)
    assert bad.returncode != 0 and b"ran" not in bad.stdout

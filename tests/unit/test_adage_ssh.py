"""The ssh transport's command lines and bookkeeping (no connection is made)."""

from __future__ import annotations

from pathlib import Path

from adage.deploy.ssh import SshTransport, one_line
from adage.model import Node


def test_the_control_directory_is_made_on_first_use_only() -> None:
    t = SshTransport("tar")
    assert t.control_dir == ""  # a dry run builds transports and must write nothing
    opts = t.ssh_options()
    assert Path(t.control_dir).is_dir() and f"ControlPath={t.control_dir}/%C" in opts
    assert t.ssh_options() == opts  # one directory for every connection
    t.close()
    assert not Path(t.control_dir).exists()


def test_rsync_copies_the_entries_not_the_directory(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").write_text("")
    rsync = SshTransport("rsync").tree_commands(Node(name="n1"), tmp_path, "/tmp")[1]
    assert rsync[:2] == ["rsync", "-a"]
    assert rsync[-3:] == [str(tmp_path / "a"), str(tmp_path / "b"), "n1:/tmp/"]


def test_stderr_becomes_one_line() -> None:
    assert one_line("ssh: connect timed out\n\n  Connection to x closed \n") == (
        "ssh: connect timed out | Connection to x closed")
    assert one_line("") == ""

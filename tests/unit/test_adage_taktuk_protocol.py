"""The pure parts of the TakTuk propagation: escaping of operations for TakTuk's argument
parser, the command line, output-line parsing, rank sets and the per-node archive."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adage.deploy import archive, taktuk
from adage.deploy.layout import Stage
from adage.deploy.ssh import SshOptions
from adage.deploy.taktuk_session import TaktukSession
from adage.deploy.transport import TransportError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4),
    max_leaves=20)


@given(JSON)
def test_escaped_json_round_trips_and_has_no_word_taktuk_would_stop_at(obj: object) -> None:
    text = taktuk.escape_json(obj)
    assert json.loads(text) == obj
    assert not re.search(r"[\s;]", text)  # TakTuk splits words on whitespace and ,;
    assert "]" not in re.split(r"[\s,;]+", text)  # a lone ] would end the argument
    assert taktuk.check_argument(text, "payload") == text


@given(st.integers(1, 10_000), JSON)
def test_input_line_addresses_one_rank(rank: int, obj: object) -> None:
    line = taktuk.input_line(rank, obj)
    assert line.startswith(f"{rank} input line [ ") and line.endswith(" ]")
    assert json.loads(line[len(f"{rank} input line [ "):-2]) == obj


def test_an_argument_taktuk_would_cut_is_refused() -> None:
    for bad in ("a ] b", "x\ny", "a,],b"):
        with pytest.raises(TransportError, match="through TakTuk"):
            taktuk.exec_line(3, bad)
    assert taktuk.exec_line(3, "sh -c 'a;b' x]") == "3 exec [ sh -c 'a;b' x] ]"


def test_the_command_line() -> None:
    argv = taktuk.command(["node1", "127.0.0.3"], SshOptions(connect_timeout=7, fanout=4))
    assert argv[:11] == ["taktuk", "-s", "-c", "ssh -o BatchMode=yes -o ConnectTimeout=7 -o "
                         "ServerAliveInterval=5 -o ServerAliveCountMax=3", "-d", "4", "-w", "4",
                         "-t", "17", "-o"]
    assert argv[-4:] == ["-m", "node1", "-m", "127.0.0.3"]
    streams = [argv[i + 1].split("=", 1)[0] for i, a in enumerate(argv) if a == "-o"]
    assert streams == [*taktuk.TEMPLATES, "message"]
    assert taktuk.command(["n"], SshOptions(fanout=64))[5:8] == ["64", "-w", "10"]
    extra = taktuk.command(["n"], SshOptions(connect_timeout=7, extra=("Port=2222", "User a b")))
    assert extra[3] == ("ssh -o Port=2222 -o 'User a b' -o BatchMode=yes -o ConnectTimeout=7 "
                        "-o ServerAliveInterval=5 -o ServerAliveCountMax=3")
    for bad in ("node[1-3]", "a b", "x/y", "a,b"):
        with pytest.raises(TransportError, match="host-list syntax"):
            taktuk.command([bad], SshOptions())


@pytest.mark.parametrize(("line", "event"), [
    ("O 3 123 1 {\"ev\": \"hello\"}", taktuk.Output(3, 123, True, '{"ev": "hello"}')),
    ("O 3 123 0 part with spaces ", taktuk.Output(3, 123, False, "part with spaces ")),
    ("O 3 123 1 ", taktuk.Output(3, 123, True, "")),
    ("E 2 9 tar: x: Cannot open", taktuk.ErrorLine(2, "tar: x: Cannot open")),
    ("S 4 77 255 sh -c 'x' sh /tmp", taktuk.Status(4, 77, 255, "sh -c 'x' sh /tmp")),
    ("T 1 5 node3 ", taktuk.State(1, 5, "node3", "")),
    ("T 3 -1 node2 node9", taktuk.State(3, -1, "node2", "node9")),
    ("C node9 ssh: connect to host node9 port 22: Connection refused",
     taktuk.ConnectorLine("node9", "ssh: connect to host node9 port 22: Connection refused")),
    ("I     node1 (1, ready)", taktuk.Info("    node1 (1, ready)")),
    ("K vm something odd", taktuk.Diagnostic("vm something odd")),
    ("O x y z", taktuk.Diagnostic("O x y z")),
    ("stray line", taktuk.Diagnostic("stray line")),
])
def test_output_lines_are_parsed(line: str, event: taktuk.Event) -> None:
    assert taktuk.parse_line(line) == event


@given(st.integers(0, 10**6), st.integers(-1, 10**6), st.booleans(),
       st.text(alphabet=st.characters(blacklist_characters="\n"), max_size=50))
def test_any_output_line_parses_back(rank: int, pid: int, eol: bool, text: str) -> None:
    line = f"O {rank} {pid} {int(eol)} {text}"
    assert taktuk.parse_line(line) == taktuk.Output(rank, pid, eol, text)


@given(st.sets(st.integers(1, 200), min_size=1))
def test_rank_sets_cover_exactly_the_ranks(ranks: set[int]) -> None:
    spec = taktuk.ranks_set(ranks)
    got: set[int] = set()
    for part in spec.split("/"):
        lo, _, hi = part.partition("-")
        got |= set(range(int(lo), int(hi or lo) + 1))
    assert got == ranks
    assert taktuk.ranks_set([1, 2, 3, 7, 9, 10]) == "1-3/7/9-10"


def test_the_node_archive_links_into_the_common_tree(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 1000)
    st_ = Stage("/tmp", ["node1"], dirs=["u/adage-1/_adage", "u/adage-1/g/0/p/0"],
                files={"u/adage-1/g/0/p/0/big.bin": str(big)},
                texts={"u/adage-1/_adage/machines": "node1\nnode2\n"})
    names = archive.common_names([st_])
    assert names == {str(big): "0/big.bin"}
    taktuk.node_archive(tmp_path / "n.tar", st_, "u/adage-1/_adage/common-node1", names,
                        ["u/adage-1/_adage/satellite-node1.py"])
    with tarfile.open(tmp_path / "n.tar") as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert members["u/adage-1/g/0/p/0/big.bin"].linkname == \
            "u/adage-1/_adage/common-node1/0/big.bin"
        assert members["u/adage-1/_adage/satellite-node1.py"].linkname == \
            "u/adage-1/_adage/common-node1/satellite.py"
        assert tf.extractfile("u/adage-1/_adage/machines").read() == b"node1\nnode2\n"  # type: ignore[union-attr]
        assert all(members[d].isdir() for d in ("u", "u/adage-1", "u/adage-1/g/0/p"))
    assert (tmp_path / "n.tar").stat().st_size < 20_000  # no copy of the data in it
    with open(tmp_path / "c.tar", "wb") as f:
        archive.write_common(f, names, "print('sat')\n")
    with tarfile.open(tmp_path / "c.tar") as tf:
        assert sorted(tf.getnames()) == ["0/big.bin", "satellite.py"]


def test_the_node_command_extracts_both_trees_then_execs_the_satellite() -> None:
    line = taktuk.stage_and_start("/tmp", "/tmp/u/adage-1/_adage/common-n1",
                                  ["env", "A=1", "python3", "-S", "/tmp/s.py", "n1"])
    assert line.startswith("sh -c ") and line.endswith(
        " sh /tmp /tmp/u/adage-1/_adage/common-n1 env A=1 python3 -S /tmp/s.py n1")
    assert taktuk.exec_line(5, line).startswith("5 exec [ sh -c ")


def test_the_control_parameters_carry_the_propagation(tmp_path: Path) -> None:
    from adage import documents

    path = tmp_path / "ctrl.xml"
    path.write_text('<ctrl_params><submission_method name="ssh"/>'
                    '<propagation engine="taktuk"/></ctrl_params>')
    ctrl = documents.read_ctrl(path)
    assert ctrl.propagation == "taktuk"
    path.write_text(documents.dump("ctrl", ctrl))
    assert documents.read_ctrl(path) == ctrl
    assert "propagation" not in documents.dump("ctrl", documents.read_ctrl(None))
    path.write_text('<ctrl_params><propagation engine="tree"/></ctrl_params>')
    with pytest.raises(documents.DocumentError, match="propagation"):
        documents.read_ctrl(path)


def test_a_barrier_is_passed_on_its_output_line_not_the_later_exit_status() -> None:
    """TakTuk's engines reap a command only after a select, which times out every second: the
    barrier's output line comes at once, and is not the satellite's; the barrier's exit status
    is no exit code of the satellite."""
    session = TaktukSession({"n1": "10.0.0.1"}, SshOptions())
    session._apply(taktuk.parse_line(f"T {taktuk.NUMBERED} 1 10.0.0.1 10.0.0.1"))
    peer = session.peers["n1"]
    assert peer.rank == 1
    peer.started = True
    session.barriers = {1}
    session._apply(taktuk.parse_line('O 1 77 1 {"ev": "detached"}'))
    session._apply(taktuk.parse_line(f"O 1 78 1 {taktuk.BARRIER_LINE}"))
    assert session.barriers == set() and peer.lines == ['{"ev": "detached"}']
    session._apply(taktuk.parse_line(f"S 1 78 0 {taktuk.BARRIER}"))
    assert peer.code is None  # the satellite runs on
    session._apply(taktuk.parse_line("S 1 77 0 python3 -S satellite.py n1"))
    assert peer.code == 0

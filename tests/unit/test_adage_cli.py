"""The command line's own checks: dump files, options, local nodes and OAR node files."""

from __future__ import annotations

from pathlib import Path

import pytest

from adage.cli import main
from adage.deploy.sources import SourceError, local_nodes
from adage.resources.oar import oar_nodefile

CHAIN = str(Path(__file__).resolve().parents[2] / "examples" / "adage" / "chain.xml")


@pytest.mark.parametrize("target", ["missing/dir/out.xml", "."])
def test_an_unwritable_dump_file_is_an_error(tmp_path: Path, target: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / target
    assert main(["-a", CHAIN, "-D", "generic", "-F", str(path), "-l", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"adage: error: -F {path}: cannot write the generic document: ")
    assert "Traceback" not in err


def test_each_dump_file_needs_its_dump(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ex:
        main(["-a", CHAIN, "-F", "out.xml"])
    assert ex.value.code == 2
    assert "each -F FILE names where the -D KIND of the same rank goes" in \
        capsys.readouterr().err


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf"])
def test_timeouts_are_positive(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ex:
        main(["-a", CHAIN, "-p", "--timeout", value])
    assert ex.value.code == 2
    assert f"argument --timeout: {value} is not a number of seconds above 0" in \
        capsys.readouterr().err


def test_a_relative_local_root_is_made_absolute(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    res = local_nodes(2, Path("nodes"))
    assert [n.scratch for n in res.nodes] == [str(tmp_path / "nodes" / f"local{i}")
                                              for i in (1, 2)]


@pytest.mark.parametrize(("content", "rule"), [
    (b"n1\nn1\n\xff\xfe\n", r"nodes.txt:3: not UTF-8 text \(byte 0xff\)"),
    (b"n1\n\x01n2\n", r"nodes.txt:2: '\\x01n2' is not a host name"),
    (b"n1\nn 2\n", r"nodes.txt:2: 'n 2' is not a host name"),
    (b"# hosts\nn1\n", r"nodes.txt:1: '# hosts' is not a host name"),
])
def test_node_files_hold_one_host_name_per_line(tmp_path: Path, content: bytes,
                                                rule: str) -> None:
    path = tmp_path / "nodes.txt"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=rule):
        oar_nodefile(path)


def test_node_file_hosts_count_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "nodes.txt"
    path.write_text("h1\r\nh1\n\n h2 \n")
    assert [(n.name, n.cores) for n in oar_nodefile(path).nodes] == [("h1", 2), ("h2", 1)]

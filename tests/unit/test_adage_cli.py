"""The command line's own checks: dump files, options, local nodes and OAR node files."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adage.cli import main
from adage.deploy.sources import SourceError, local_nodes
from adage.resources.oar import nodefile_hosts, oar_nodefile

CHAIN = str(Path(__file__).resolve().parents[2] / "examples" / "adage" / "chain.xml")


def test_the_command_imports_with_the_collector_off_and_freezes_what_it_imported() -> None:
    probe = ("import gc, sys, adage; sys.argv[1:] = ['-a', sys.argv[1], '-p', '-l', '0']; "
             "enabled = gc.isenabled(); code = adage.command(); "
             "print(enabled, gc.isenabled(), gc.get_freeze_count() > 10000, code)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    r = subprocess.run([sys.executable, "-c", probe, CHAIN], capture_output=True, text=True,
                       check=True, env=env)
    assert r.stdout.split() == ["True", "True", "True", "0"], r.stderr
    r = subprocess.run([sys.executable, "-m", "adage", "-a", CHAIN, "-p"], capture_output=True,
                       text=True, check=False, env=env)
    assert r.returncode == 0 and "planned" in r.stderr + r.stdout, r.stderr


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


@pytest.mark.parametrize("value", ["Port", "Port=", "-oPort=2222", "=2222", " Port=1",
                                   "Port=1\nProxyCommand=sh -c x"])
@pytest.mark.parametrize("command", [[], ["status"], ["clean"]])
def test_ssh_options_are_keyword_value_pairs(value: str, command: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ex:
        main([*command, *([] if command else ["-a", CHAIN, "-p"]), f"--ssh-option={value}"])
    assert ex.value.code == 2
    assert f"argument --ssh-option: {value!r} is not an ssh option" in capsys.readouterr().err


def test_ssh_options_as_ssh_takes_them_are_accepted() -> None:
    assert main(["-a", CHAIN, "-p", "-l", "0", "--ssh-option", "Port=2222", "--ssh-option",
                 "KexAlgorithms curve25519-sha256", "--ssh-option", "ProxyJump=a@b:22"]) == 0


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
    (b"n1\nn1 slots=2\n", r"nodes.txt:2: 'n1 slots=2' is not a host name"),
    (b"n1\n::1\n", r"nodes.txt:2: '::1' is not a host name"),
    (b"-oProxyCommand\n", r"nodes.txt:1: '-oProxyCommand' is not a host name"),
    (b"n1 # the fast one\n", r"nodes.txt:1: 'n1 # the fast one' is not a host name"),
    (b"n" * 500 + b"!\n", r"nodes.txt:1: 'n{40}'… is not a host name"),
    (b"\xef\xbb\xbfn1\n\xff\n", r"nodes.txt:2: not UTF-8 text \(byte 0xff\)"),
    (b"", r"nodes.txt: no host in this OAR node file"),
    (b"\n \r\n# only comments\n", r"nodes.txt: no host in this OAR node file"),
])
def test_node_files_hold_one_host_name_per_line(tmp_path: Path, content: bytes,
                                                rule: str) -> None:
    path = tmp_path / "nodes.txt"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=rule):
        oar_nodefile(path)


def test_node_file_hosts_count_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "nodes.txt"
    path.write_bytes(b"\xef\xbb\xbf# written by hand\nh1\r\nh1\n\n h2 \t\n  # h3\nh1\n")
    assert [(n.name, n.cores) for n in oar_nodefile(path).nodes] == [("h1", 3), ("h2", 1)]


@given(st.lists(st.sampled_from(["n1", "n2", "node-3.example.org", "10.0.0.4"]), min_size=1),
       st.lists(st.sampled_from(["", " ", "\t", "\r"]), min_size=1))
def test_node_file_hosts_keep_their_first_appearance_and_core_count(
        hosts: list[str], blanks: list[str]) -> None:
    lines = [f"{blanks[i % len(blanks)]}{h}{blanks[-i % len(blanks)]}"
             for i, h in enumerate(hosts)]
    lines[1:1] = ["", "# comment", *blanks]
    assert nodefile_hosts(lines) == {h: hosts.count(h) for h in dict.fromkeys(hosts)}


@pytest.mark.parametrize(("path", "rule"), [
    ("missing.txt", r"missing.txt: cannot read this OAR node file: No such file or directory"),
    (".", r"\.: cannot read this OAR node file: Is a directory"),
    ("", r"OAR node file: empty file name \(is \$OAR_NODEFILE set\?"),
])
def test_node_files_that_cannot_be_read_are_named(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path, path: str,
                                                   rule: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError, match=rule):
        oar_nodefile(path)


def test_an_empty_node_file_name_is_an_error_not_local_nodes(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-a", CHAIN, "-p", "-o", "", "-l", "0"]) == 1  # -o "$OAR_NODEFILE", unset
    assert "adage: error: OAR node file: empty file name" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-3", "x", "1.5"])
def test_oar_job_ids_are_positive_integers(value: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ex:
        main(["-a", CHAIN, "-p", "-j", value])
    assert ex.value.code == 2
    assert f"argument -j/--jobid: '{value}' is not an OAR job id" in capsys.readouterr().err


APPL = """<generic_appl_descr><proc_groups>
  <proc_group id="S" type="generic" cardinality="1"><process id="srv">
    <executable>/bin/echo</executable></process></proc_group>
  <proc_group id="C" type="generic" cardinality="1"><process id="cli">
    <executable>/bin/echo</executable><arguments><arg>tcp://@{S.urlhost}:8786</arg>
    <arg>@{S.host}</arg><arg>a&lt;b &amp; c</arg><arg></arg><arg>x&#10;y</arg></arguments>
  </process></proc_group>
</proc_groups><dependencies><dependency group="C" on="S"/></dependencies>
</generic_appl_descr>"""


def test_the_dry_run_prints_quoted_commands_and_bracketed_ipv6(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.xml").write_text(APPL)
    (tmp_path / "r.xml").write_text(
        f'<resources><node name="v6" address="::1" scratch="{tmp_path}/s"/>'
        f'<node name="v4" address="127.0.0.1" scratch="{tmp_path}/s"/></resources>')
    assert main(["-a", str(tmp_path / "a.xml"), "-r", str(tmp_path / "r.xml"), "-n"]) == 0
    out = capsys.readouterr().out
    line = out[out.index("  v4: "):]
    assert line.endswith("$ /bin/echo 'tcp://[::1]:8786' ::1 'a<b & c' '' 'x\ny'\n")
    assert shlex.split(line.partition("$ ")[2]) == [
        "/bin/echo", "tcp://[::1]:8786", "::1", "a<b & c", "", "x\ny"]
    assert not (tmp_path / "s").exists()  # a dry run writes nothing

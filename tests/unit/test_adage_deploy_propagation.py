"""Propagations: which one, what each builds to reach the nodes (nothing is run)."""

from __future__ import annotations

import resource
import shlex
from pathlib import Path

import pytest

from adage.deploy import chain
from adage.deploy.choice import (
    FDS_PER_SATELLITE,
    PropagationError,
    check_methods,
    choose,
    descriptors,
    ensure_descriptors,
    get_transport,
)
from adage.deploy.context import Setup
from adage.deploy.layout import Layout, Stage
from adage.deploy.program import BOOT
from adage.deploy.propagation import (
    ChainPropagation,
    SshPropagation,
    TaktukPropagation,
    propagation,
)
from adage.deploy.ssh import SshOptions, SshTransport
from adage.deploy.transport import LocalTransport
from adage.model import CtrlParams, Node, Resources

NODES = Resources((Node("n1", scratch="/tmp", address="10.0.0.1", submission=("ssh",),
                        transfer=("tar",)),
                   Node("n2", scratch="/tmp", address="10.0.0.2", submission=("ssh",),
                        transfer=("local",))))
LAYOUT = Layout(NODES, CtrlParams(), "alice", 42, "dep-1")


def setup(tmp_path: Path, stages: dict[str, Stage]) -> Setup:
    return Setup(LAYOUT, stages, ["n1", "n2"], "# satellite", lambda n: ["python3", f"sat-{n}"],
                 tmp_path, tmp_path / "prestage", 5.0, SshOptions(4.5, False, 8),
                 lambda _s: None, lambda _n: None)


def test_choose_auto_takes_taktuk_beyond_the_fanout_over_ssh_only() -> None:
    assert choose("auto", 9, 8, "ssh", "tar") == "taktuk"
    assert choose("auto", 8, 8, "ssh", "tar") == "ssh"
    assert choose("auto", 9, 8, "oarsh", "tar") == "ssh"
    assert choose("taktuk", 1, 8, "ssh", "local") == "taktuk"  # local: an alias of tar
    with pytest.raises(PropagationError, match="needs submission ssh and the tar transfer"):
        choose("taktuk", 1, 8, "ssh", "scp")
    assert choose("chain", 2, 8, "ssh", "tar") == "chain"
    with pytest.raises(PropagationError, match="chain needs submission ssh and the tar"):
        choose("chain", 2, 8, "oarsh", "tar")
    with pytest.raises(PropagationError, match="unknown propagation 'pigeon'"):
        choose("pigeon", 1, 8, "ssh", "tar")


def test_node_methods_are_checked_with_local_as_tar() -> None:
    check_methods(LAYOUT, ["n1", "n2"], "ssh", "local")  # over ssh a tar stream needs a shell
    with pytest.raises(PropagationError, match=r"node n1 .* not ssh/scp"):
        check_methods(LAYOUT, ["n1"], "ssh", "scp")
    with pytest.raises(PropagationError, match="node n1 accepts submission ssh and transfer "
                                               "tar, not local/tar"):
        check_methods(LAYOUT, ["n1"], "local", "tar")


def test_ssh_streams_a_one_node_stage_and_prestages_otherwise(tmp_path: Path) -> None:
    stages = {"n1": Stage("/tmp", ["n1"], texts={"a/hosts": "n1\n"}),
              "n2": Stage("/tmp", ["n2", "n1"])}
    tar = SshPropagation(setup(tmp_path, stages), get_transport("ssh", "local", SshOptions()))
    assert isinstance(tar.transport, SshTransport) and tar.transport.transfer == "tar"
    assert tar.origin("n1") == "one tar stream, then the satellite"
    assert tar.origin("n2") == "from prestage/n2"
    assert not tar.treeless("n1") and not tar.treeless("n2")
    scp = SshPropagation(setup(tmp_path, stages), get_transport("ssh", "scp"))
    assert scp.origin("n1") == "from prestage/n1" and scp.header() == []


def test_a_streamed_stage_of_directories_only_sends_no_tree(tmp_path: Path) -> None:
    """The satellite's program comes on the session's stdin (``program.BOOT``) and makes
    the run directories: no ``tar`` on the node."""
    stages = {"n1": Stage("/tmp", ["n1"], dirs=["u/adage-1/A/0/p/0"]),
              "n2": Stage("/tmp", ["n2"], files={"u/adage-1/A/1/p/0/f": "/etc/hostname"})}
    tar = SshPropagation(setup(tmp_path, stages), get_transport("ssh", "tar", SshOptions()))
    assert tar.treeless("n1") and not tar.treeless("n2")
    assert tar.origin("n1").startswith("no tree: the satellite's program on the session's stdin")
    assert tar.origin("n2") == "one tar stream, then the satellite"
    argv = LAYOUT.satellite_argv("n1", from_stdin=True)
    assert argv[:2] == ["sh", "-c"] and argv[3:] == ["sh", "-c", BOOT, "n1"]
    assert "\n" not in BOOT  # one line through the node's login shell
    chain = ChainPropagation(setup(tmp_path, stages), get_transport("ssh", "tar", SshOptions()))
    assert not chain.treeless("n1")  # the satellite comes in the common tree


def test_ssh_starts_the_satellite_through_one_quoted_ssh_command(tmp_path: Path) -> None:
    prop = propagation("ssh", setup(tmp_path, {}), SshTransport("tar", SshOptions(4.5, False)))
    assert isinstance(prop, SshPropagation)
    argv = prop.transport.command(LAYOUT.node("n1"), prop.setup.argv("n1"))
    assert argv[:3] == ["ssh", "-o", "BatchMode=yes"] and "ConnectTimeout=5" in argv
    assert argv[-3:] == ["10.0.0.1", "--", "python3 sat-n1"]
    assert "ControlMaster=auto" not in argv


def test_local_nodes_get_a_prestaged_tree_and_a_plain_shell(tmp_path: Path) -> None:
    prop = propagation("ssh", setup(tmp_path, {"n1": Stage("/tmp", ["n1"])}), LocalTransport())
    assert prop.transport.shell(LAYOUT.node("n1")) == ["sh", "-s"]
    assert prop.origin("n1") == "from prestage/n1"


def test_taktuk_reaches_every_node_from_one_command(tmp_path: Path) -> None:
    stages = {"n1": Stage("/tmp", ["n1"], texts={"x": ""}), "n2": Stage("/tmp", ["n2"])}
    prop = propagation("taktuk", setup(tmp_path, stages), get_transport("ssh", "tar"))
    assert isinstance(prop, TaktukPropagation)
    [line] = prop.header()
    argv = shlex.split(line.removeprefix("through taktuk: "))
    assert argv[:2] == ["taktuk", "-s"] and argv[-4:] == ["-m", "10.0.0.1", "-m", "10.0.0.2"]
    connector = shlex.split(argv[argv.index("-c") + 1])
    assert connector[:3] == ["ssh", "-o", "BatchMode=yes"] and "ConnectTimeout=5" in connector
    assert argv[argv.index("-d") + 1] == "8"
    assert prop.origin("n1").startswith("the common tar through the tree")
    assert prop.origin("n2").startswith("no tree: the satellite's program through the tree")
    assert not prop.treeless("n1") and prop.treeless("n2")  # n2: directories only
    assert prop.to_start == [] and prop.links == {}  # nothing started before stage()


def test_descriptors_grow_with_the_nodes_over_ssh_and_only_with_the_fanout_through_taktuk(
) -> None:
    assert descriptors("ssh", 512, 64) - descriptors("ssh", 256, 64) == 256 * FDS_PER_SATELLITE
    assert descriptors("taktuk", 512, 64) == descriptors("taktuk", 10, 64)
    assert descriptors("taktuk", 10, 8) < descriptors("taktuk", 10, 64) < 256


def test_the_soft_limit_is_raised_to_what_the_deployment_needs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    limits = {"now": (256, 4096)}
    monkeypatch.setattr(resource, "getrlimit", lambda _: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda _, v: limits.update(now=v))
    ensure_descriptors("ssh", 512, 64)
    assert limits["now"] == (descriptors("ssh", 512, 64), 4096)
    ensure_descriptors("ssh", 8, 64)  # enough already: left alone
    assert limits["now"][0] == descriptors("ssh", 512, 64)


def test_a_hard_limit_too_low_for_ssh_names_taktuk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 1024))
    with pytest.raises(PropagationError, match=r"512 nodes over ssh need about 1344 open "
                       r"files, and the limit is 1024 .*--propagation taktuk"):
        ensure_descriptors("ssh", 512, 64)
    ensure_descriptors("taktuk", 4096, 64)  # bounded by the fan-out: fits


def test_chain_sends_the_common_tree_from_the_first_node_of_each_stage_to_the_next(
        tmp_path: Path) -> None:
    stages = {"n1": Stage("/tmp", ["n1"]), "n2": Stage("/tmp", ["n2"])}
    prop = propagation("chain", setup(tmp_path, stages), get_transport("ssh", "tar"))
    assert isinstance(prop, ChainPropagation) and prop.header() == ["chain: n1 -> n2"]
    hops = prop.hops()
    assert [(h.name, h.address, h.directory) for h in hops] == [
        ("n1", "10.0.0.1", "/tmp/alice/adage-42/_adage/common-n1"),
        ("n2", "10.0.0.2", "/tmp/alice/adage-42/_adage/common-n2")]
    assert hops[0].control == "/tmp/alice/adage-42/_adage/chain-%C"  # n1's master to n2
    argv = prop.chain_argv(hops)
    assert argv[:3] == ["ssh", "-o", "BatchMode=yes"] and argv[-3:-1] == ["10.0.0.1", "--"]
    remote = shlex.split(argv[-1])
    assert remote == chain.relay_argv(hops, ["ssh", "-o", "BatchMode=yes", "-o",
                                             "ConnectTimeout=5", "-o", "ServerAliveInterval=5",
                                             "-o", "ServerAliveCountMax=3"])
    assert prop.origin("n1").startswith("the common tar along the chain")
    s = setup(tmp_path, stages)
    s.ssh = SshOptions(5.0, False, 8, ("Port=2222",))
    relay = shlex.split(ChainPropagation(s, get_transport("ssh", "tar")).chain_argv(hops)[-1])
    assert relay == chain.relay_argv(hops, ["ssh", "-o", "Port=2222", "-o", "BatchMode=yes",
                                            "-o", "ConnectTimeout=5", "-o",
                                            "ServerAliveInterval=5", "-o",
                                            "ServerAliveCountMax=3"])

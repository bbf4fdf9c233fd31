"""Run directories, staging, launch specs and placeholder resolution (pure parts)."""

from __future__ import annotations

import ipaddress
import re
import shlex
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adage.deploy.context import DeployContext, needs, shown
from adage.deploy.layout import PYTHON, Layout, LayoutError, ProcSpec, instance_specs, stages
from adage.deploy.state import Acked, Machine, NodeUp, Value
from adage.model import (
    CtrlParams,
    Dependency,
    EnvSetting,
    FileSpec,
    GenericAppl,
    Node,
    NodeGroup,
    PgInstance,
    Plan,
    Process,
    ProcGroup,
    Resources,
    Transfer,
    url_host,
)
from adage.placeholders import PlaceholderError

NODES = Resources(
    (Node("n1", scratch="/scr/n1", address="10.0.0.1"), Node("n2", scratch="/scr/n2"),
     Node("n3", scratch="/scr/n3", address="10.0.0.3")),
    (NodeGroup("nfs", "/home/shared", ("n1", "n2")),))
SERVER = Process("srv", "server", ("--port", "9000"),
                 files=(FileSpec("exe", "/src/server"), FileSpec("cfg", "/src/srv.cfg"),
                        FileSpec("lib", "/src/libx.so"), FileSpec("data", "/src/big.dat")))
CLIENT = Process("cli", "client", ("@{S.host}:9000", "@{S.value.token}", "@@home",
                                   "@{W.hosts}", "@{W.count}", "@{W[1].host}"),
                 env=(("ME", "@{self.group}[@{self.index}]@@@{self.host}"),), cardinality=2)
APPL = GenericAppl(
    (ProcGroup("S", "generic", 1, (SERVER,)),
     ProcGroup("W", "generic", 2, (Process("wrk", "worker"),)),
     ProcGroup("C", "generic", 1, (CLIENT,))),
    (Dependency("W", "S"), Dependency("C", "S", "ready"), Dependency("C", "W")))
PLAN = Plan("test", (PgInstance("S", 0, "n1"), PgInstance("W", 0, "n2"),
                     PgInstance("W", 1, "n3"), PgInstance("C", 0, "n2")))


def layout(**transfer: object) -> Layout:
    return Layout(NODES, CtrlParams(transfer=Transfer(**transfer)), "alice", 42, "dep-1")


def test_run_directories_follow_the_seed_layout() -> None:
    lay = layout()
    assert lay.rundir("n2", "C", 0, "cli", 1) == "/scr/n2/alice/adage-42/C/0/cli/1"
    assert layout(destdir="shared").rundir("n2", "C", 0, "cli", 1) == \
        "/home/shared/alice/adage-42/C/0/cli/1"
    with pytest.raises(LayoutError, match="node n3 is in no node group"):
        layout(destdir="shared").rundir("n3", "W", 1, "wrk", 0)


def test_stages_hold_every_run_directory_and_only_the_transferred_file_types() -> None:
    st_ = stages(APPL, PLAN, layout())
    assert sorted(st_) == ["n1", "n2", "n3"]
    n2 = st_["n2"]
    assert n2.base == "/scr/n2"
    assert "alice/adage-42/C/0/cli/0" in n2.dirs and "alice/adage-42/C/0/cli/1" in n2.dirs
    assert "alice/adage-42/W/0/wrk/0" in n2.dirs and "alice/adage-42/_adage" in n2.dirs
    # default types cfg,data,exe: the lib stays behind
    assert st_["n1"].files == {"alice/adage-42/S/0/srv/0/server": "/src/server",
                               "alice/adage-42/S/0/srv/0/srv.cfg": "/src/srv.cfg",
                               "alice/adage-42/S/0/srv/0/big.dat": "/src/big.dat"}


def test_binlib_in_commondir_puts_exe_and_libraries_once_per_node_on_the_paths() -> None:
    lay = layout(types=("exe", "lib", "cfg"), binlib_in_commondir=True)
    files = stages(APPL, PLAN, lay)["n1"].files
    assert files == {"alice/adage-42/_common/bin/server": "/src/server",
                     "alice/adage-42/_common/lib/libx.so": "/src/libx.so",
                     "alice/adage-42/S/0/srv/0/srv.cfg": "/src/srv.cfg"}
    [spec] = instance_specs(lay, APPL.group("S"), 0, "n1")
    assert spec.argv == ("/scr/n1/alice/adage-42/_common/bin/server", "--port", "9000")
    assert ("PATH", "/scr/n1/alice/adage-42/_common/bin", "prepend") in spec.env
    assert ("LD_LIBRARY_PATH", "/scr/n1/alice/adage-42/_common/lib", "prepend") in spec.env


def test_a_shared_directory_gets_one_transfer_for_all_its_nodes() -> None:
    st_ = stages(APPL, Plan("t", (PgInstance("S", 0, "n1"), PgInstance("W", 0, "n2"),
                                  PgInstance("W", 1, "n1"), PgInstance("C", 0, "n2"))),
                 layout(destdir="shared"))
    assert list(st_) == ["n1"] and st_["n1"].nodes == ["n1", "n2"]


def test_environment_is_ctrl_envs_then_process_env_then_adage_variables() -> None:
    ctrl = CtrlParams(envs=(EnvSetting("LD_LIBRARY_PATH", "/opt/lib", "add"),
                            EnvSetting("ME", "ctrl")))
    lay = Layout(NODES, ctrl, "alice", 42, "dep-1")
    spec = instance_specs(lay, APPL.group("C"), 0, "n2")[1]
    names = [e[0] for e in spec.env]
    assert spec.env[0] == ("LD_LIBRARY_PATH", "/opt/lib", "add")
    assert names.index("ME") < names.index("ADAGE_REPORT")
    env = {n: v for n, v, _ in spec.env}
    assert env["ADAGE_REPORT"] == "/scr/n2/alice/adage-42/C/0/cli/1/adage.report"
    assert (env["ADAGE_GROUP"], env["ADAGE_INDEX"], env["ADAGE_NODE"]) == ("C", "0", "n2")
    assert env["ADAGE_RUNDIR"] == spec.cwd and env["ADAGE_DEPLOYMENT"] == "dep-1"


def test_reserved_group_names_are_refused() -> None:
    appl = GenericAppl((ProcGroup("_common", "generic", 1, (Process("p", "x"),)),))
    with pytest.raises(LayoutError, match="_common"):
        stages(appl, Plan("t", (PgInstance("_common", 0, "n1"),)), layout())


# ------------------------------------------------------------------ placeholders
def context(dry_run: bool = False) -> DeployContext:
    lay = layout()
    m = Machine(APPL, PLAN, {}, needs(APPL), 10.0)
    return DeployContext(APPL, PLAN, NODES, lay.ctrl, lay, m, stages(APPL, PLAN, lay),
                         dry_run=dry_run)


def test_needs_lists_the_values_placeholders_use() -> None:
    assert needs(APPL) == {"C": {("S", 0, "token")}}
    bad = GenericAppl((ProcGroup("A", "generic", 1, (Process("p", "x", ("@{Z.host}",)),)),))
    with pytest.raises(PlaceholderError, match=re.escape("group A process p: @{Z.host} names no")):
        needs(bad)


def test_placeholders_resolve_to_addresses_counts_values_and_self() -> None:
    ctx = context()
    for n in ("n1", "n2", "n3"):
        ctx.machine.feed(NodeUp(n), 0.0)
    ctx.machine.feed(Acked("S", 0, {("srv", 0): 7}), 0.0)
    ctx.machine.feed(Value("S", 0, ("srv", 0), "token", "s3cr=t"), 0.0)
    spec = ctx.spec("C", 0, "cli", 1)
    assert spec.argv[1:] == ("10.0.0.1:9000", "s3cr=t", "@home", "n2,10.0.0.3", "2",
                             "10.0.0.3")
    assert dict((n, v) for n, v, _ in spec.env)["ME"] == "C[0]@n2"


def test_an_unreported_value_is_an_error_and_a_dry_run_shows_it() -> None:
    with pytest.raises(PlaceholderError, match=r"S\[0\] has not reported token"):
        context().spec("C", 0, "cli", 0)
    assert context(dry_run=True).spec("C", 0, "cli", 0).argv[2] == "<S[0].value.token>"


def test_urlhost_brackets_ipv6_addresses_and_host_keeps_them_bare() -> None:
    nodes = Resources((Node("n1", address="::1"), Node("n2", address="fe80::1%eth0"),
                       Node("n3", address="10.0.0.3")))
    lay = Layout(nodes, CtrlParams(), "alice", 42, "dep-1")
    machine = Machine(APPL, PLAN, {}, needs(APPL), 10.0)
    resolve = DeployContext(APPL, PLAN, nodes, lay.ctrl, lay, machine,
                            stages(APPL, PLAN, lay)).resolve
    assert resolve("tcp://@{S.urlhost}:8786 @{S.host}", "C", 0, "n2") == "tcp://[::1]:8786 ::1"
    assert resolve("@{W[0].urlhost}:1 @{W[1].urlhost}:2", "C", 0, "n2") == \
        "[fe80::1%eth0]:1 10.0.0.3:2"
    assert resolve("@{self.urlhost} @{self.host} @{W.hosts}", "C", 0, "n2") == \
        "[fe80::1%eth0] fe80::1%eth0 fe80::1%eth0,10.0.0.3"


@given(st.ip_addresses(), st.integers(1, 65535))
def test_url_host_gives_urls_whose_host_is_the_address(addr: ipaddress.IPv4Address
                                                       | ipaddress.IPv6Address,
                                                       port: int) -> None:
    parts = urllib.parse.urlsplit(f"tcp://{url_host(str(addr))}:{port}/")
    assert ipaddress.ip_address(parts.hostname or "") == addr and parts.port == port


@given(st.from_regex(r"[A-Za-z0-9_.\-]+", fullmatch=True))
def test_url_host_keeps_host_names(name: str) -> None:
    assert url_host(name) == name


def test_dry_run_lines_are_shell_quoted() -> None:
    spec = ProcSpec("C", 0, "p", 0, "n1", "/scr/a b",
                    ("/bin/echo", "a<b & c", "", "x\ny", "plain"), ())
    line = shown("n1", spec)
    assert line == "n1: '/scr/a b'$ /bin/echo 'a<b & c' '' 'x\ny' plain"


@given(st.lists(st.text(), min_size=1, max_size=5))
def test_dry_run_commands_split_back_to_their_arguments(argv: list[str]) -> None:
    line = shown("n1", ProcSpec("C", 0, "p", 0, "n1", "/scr/run", tuple(argv), ()))
    assert shlex.split(line.removeprefix("n1: /scr/run$ ")) == argv


@given(st.text(alphabet="ab@{}.", max_size=12))
def test_text_without_placeholders_only_loses_doubled_ats(text: str) -> None:
    if "@{" in text.replace("@@", ""):
        return
    assert context().resolve(text, "C", 0, "n2") == text.replace("@@", "@")


# ------------------------------------------------------------------ guards and scale
@pytest.mark.parametrize("dest", ["../../x", "/etc/x", "a/../../x"])
def test_a_file_never_lands_outside_its_directory(dest: str) -> None:
    appl = GenericAppl((ProcGroup("A", "generic", 1, (
        Process("p", "x", files=(FileSpec("cfg", "/src/x.cfg", dest),)),)),))
    with pytest.raises(LayoutError, match=r"destination .* must be a relative path"):
        stages(appl, Plan("t", (PgInstance("A", 0, "n1"),)), layout())


def test_two_sources_for_one_destination_are_refused() -> None:
    def group(gid: str, src: str) -> ProcGroup:
        return ProcGroup(gid, "generic", 1, (Process("p", "tool",
                                                     files=(FileSpec("exe", src),)),))

    plan = Plan("t", (PgInstance("A", 0, "n1"), PgInstance("B", 0, "n1")))
    same = GenericAppl((group("A", "/v1/tool"), group("B", "/v1/tool")))
    assert stages(same, plan, layout(binlib_in_commondir=True))["n1"].files == {
        "alice/adage-42/_common/bin/tool": "/v1/tool"}
    other = GenericAppl((group("A", "/v1/tool"), group("B", "/v2/tool")))
    assert len(stages(other, plan, layout())["n1"].files) == 2  # each in its run directory
    with pytest.raises(LayoutError, match=r"/v1/tool and /v2/tool would both be copied to "
                                          r"/scr/n1/alice/adage-42/_common/bin/tool"):
        stages(other, plan, layout(binlib_in_commondir=True))


def test_each_node_has_its_own_satellite_file() -> None:
    assert layout().satellite("n2") == "/scr/n2/alice/adage-42/_adage/satellite-n2.py"


def test_launch_specs_of_many_instances_take_linear_time() -> None:
    count = 40_000
    appl = GenericAppl((ProcGroup("S", "generic", 1, (SERVER,)),
                        ProcGroup("W", "generic", count, (Process("w", "w", ("@{S.host}",)),))),
                       (Dependency("W", "S"),))
    plan = Plan("t", (PgInstance("S", 0, "n1"),
                      *(PgInstance("W", i, f"n{i % 3 + 1}") for i in range(count))))
    lay = layout()
    ctx = DeployContext(appl, plan, NODES, lay.ctrl, lay, Machine(appl, plan, {}, {}, 10.0),
                        {})
    started = time.perf_counter()
    specs = [s for i in ctx.instances("W") for s in ctx.instance_specs("W", i.index)]
    assert len(specs) == count and specs[-1].argv == ("w", "10.0.0.1")
    assert time.perf_counter() - started < 10  # a scan of the plan per instance: minutes


def test_a_node_runs_its_own_python_or_the_systems_before_a_shim_on_the_path(
        tmp_path: Path) -> None:
    own = Resources((Node("n1", properties=(("python", "/opt/py/bin/python3"),)),))
    assert Layout(own, CtrlParams(), "alice", 42, "d").python("n1") == ("/opt/py/bin/python3",)
    shim = tmp_path / "python3"  # a PATH's python3 that is not the system's (pyenv's shim)
    shim.write_text("#!/bin/sh\necho shim\n")
    shim.chmod(0o755)
    python = layout().python("n1")
    assert python == PYTHON
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    out = subprocess.run([*python, "-c", "import sys; print(sys.executable)"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out == "/usr/bin/python3\n"  # the one the satellite needs: no shim's start-up
    assert Path("/usr/bin/python3").exists()


def test_the_satellite_starts_through_one_sh_marked_with_its_deployment(
        tmp_path: Path) -> None:
    """``satellite_argv`` runs the satellite file with ``-S`` and the node's name, in an
    environment carrying ``ADAGE_DEPLOYMENT`` (how ``clean`` finds it), through one ``sh``
    (quoted: any deployment id and path), with the system's Python before a PATH shim."""
    scratch = tmp_path / "scr dir"
    shim = tmp_path / "bin" / "python3"
    shim.parent.mkdir()
    shim.write_text("#!/bin/sh\necho shim\n")
    shim.chmod(0o755)
    probe = ("import os, sys; print(os.environ['ADAGE_DEPLOYMENT'], sys.argv[1:], "
             "sys.flags.no_site, sys.executable)\n")
    for node, want in ((Node("n1", scratch=str(scratch)), "/usr/bin/python3"),
                       (Node("n2", scratch=str(scratch),
                             properties=(("python", sys.executable),)), sys.executable)):
        lay = Layout(Resources((node,)), CtrlParams(), "alice", 42, "dep 'x' $1")
        sat = Path(lay.satellite(node.name))
        sat.parent.mkdir(parents=True, exist_ok=True)
        sat.write_text(probe)
        argv = lay.satellite_argv(node.name)
        assert argv[:2] == ["sh", "-c"]
        out = subprocess.run(argv, env={"PATH": f"{shim.parent}:/usr/bin:/bin"},
                             capture_output=True, text=True, check=True).stdout
        assert out == f"dep 'x' $1 ['{node.name}'] 1 {want}\n"

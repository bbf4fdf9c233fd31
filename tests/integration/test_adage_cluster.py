"""ADAGE on the nodes of a real OAR job, over real ssh: OAR 2.5.9 schedules the job, the
Orpheus daemon keeps it Running, each fake node is a real sshd on 127.0.0.(N+1) (``oarlib.
sshnodes``), and ADAGE runs as the job's owner, alice. Also the exact oarsh/oarcp/scp/rsync
command lines, and node failures (refused, stopped during a deployment)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from adage.deploy.ssh import SshOptions, SshTransport
from adage.deploy.transport import TransportError
from adage.model import Node
from adage.resources.oar import job_resources
from oarlib import oarcli, sshnodes

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "adage"
USER = "alice"
T = TypeVar("T")


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[str]]:
    """The test bed's 16 fake nodes, each a real sshd."""
    sshnodes.up(sshnodes.Config(nodes=16))
    yield sshnodes.names(16)
    for n in sshnodes.names(16):
        sshnodes.start(n)  # a test may have stopped one


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory alice can use (pytest's tmp_path is root's only)."""
    d = Path(tempfile.mkdtemp(prefix="adage-cluster-", dir="/tmp"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def adage(work: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(adage_argv(work, *args), cwd=work, text=True, capture_output=True,
                          timeout=timeout, check=False)


def adage_argv(work: Path, *args: str) -> list[str]:
    return ["runuser", "-u", USER, "--", "env", f"PYTHONPATH={ROOT / 'src'}",
            f"ADAGE_HOME={work / 'home'}", f"PATH={os.environ['PATH']}", sys.executable, "-m",
            "adage", *args]


def deployment(work: Path) -> str:
    deps = sorted(p.name for p in (work / "home" / "deployments").iterdir())
    return deps[-1]


def processes_of(dep: str) -> dict[int, str]:
    """Live processes carrying ADAGE_DEPLOYMENT=dep -> their ADAGE_NODE (satellites: '')."""
    mark = f"ADAGE_DEPLOYMENT={dep}".encode()
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            if mark in env and ") Z " not in (proc / "stat").read_text():
                node = next((e[11:].decode() for e in env if e.startswith(b"ADAGE_NODE=")), "")
                found[int(proc.name)] = node
        except OSError:
            continue
    return found


def under_sshd(node: str) -> set[int]:
    """Pids running under the node's own sshd (its sessions and what they started)."""
    pid = sshnodes.pid_of(node)
    return set(sshnodes._children(pid)) if pid else set()


@pytest.fixture
def job(daemon_factory: object, nodes: list[str]) -> Iterator[int]:
    """A Running OAR job of alice on 4 nodes (Orpheus keeps it Running for an hour)."""
    daemon_factory()  # type: ignore[operator]
    [job_id] = retried(lambda: oarcli.oarsub(["-l", "nodes=4", "sim {exec_time=3600}"],
                                             user=USER))
    deadline = time.time() + 300  # other test suites may fill the test bed
    while True:
        out = subprocess.run(["oarstat", "-fJ", "-j", str(job_id)], capture_output=True,
                             text=True, cwd="/tmp", check=False).stdout
        state = json.loads(out or "{}").get(str(job_id), {}).get("state")
        if state == "Running":
            break
        assert time.time() < deadline, f"job {job_id} not Running after 300 s ({state})"
        time.sleep(0.5)
    yield job_id
    retried(lambda: oarcli.oardel([job_id], user=USER))


def retried(call: Callable[[], T]) -> T:
    """``call()``, again for 60 s while Almighty is unreachable (another test run may be
    restarting the shared test bed)."""
    deadline = time.time() + 60
    while True:
        try:
            return call()
        except oarcli.OarCommandError as e:
            if "connect" not in str(e) or time.time() > deadline:
                raise
            time.sleep(2)


def write_nodefile(job_id: int, path: Path) -> list[str]:
    """The job's node file as OAR writes it: one line per resource (core), by resource_id."""
    info = json.loads(subprocess.run(["oarstat", "-fJ", "-j", str(job_id)], capture_output=True,
                                     text=True, cwd="/tmp", check=True).stdout)[str(job_id)]
    res = json.loads(subprocess.run(["oarnodes", "-J"], capture_output=True, text=True,
                                    cwd="/tmp", check=True).stdout)
    lines = [res[str(r)]["network_address"] for r in sorted(info["assigned_resources"])]
    path.write_text("".join(f"{h}\n" for h in lines))
    path.chmod(0o644)
    return lines


# ------------------------------------------------------------------ OAR jobs, end to end
def test_job_resources_match_oar_and_the_node_file_gives_the_same_plan(job: int,
                                                                      work: Path) -> None:
    res = job_resources([job])
    lines = write_nodefile(job, work / "nodefile")
    assert [n.name for n in res.nodes] == list(dict.fromkeys(lines))
    assert [n.cores for n in res.nodes] == [lines.count(n.name) for n in res.nodes]
    assert all(n.prop("oar_job_id") == str(job) and n.prop("host") == n.name
               and len(n.prop("core").split(",")) == n.cores  # type: ignore[union-attr]
               and "state" not in dict(n.properties) for n in res.nodes)
    chain = str(EXAMPLES / "chain.xml")
    by_job = adage(work, "-a", chain, "-j", str(job), "-p", "-D", "plan")
    by_file = adage(work, "-a", chain, "-o", str(work / "nodefile"), "-p", "-D", "plan")
    assert by_job.returncode == 0 and by_file.returncode == 0, by_job.stderr + by_file.stderr
    assert by_job.stdout == by_file.stdout and 'node="' in by_job.stdout
    dumped = adage(work, "-a", chain, "-j", str(job), "-D", "res")
    assert dumped.returncode == 0, dumped.stderr
    assert dumped.stdout.count("<node ") == 4 and 'method="ssh"' in dumped.stdout


def wait_launched(work: Path, proc: subprocess.Popen[str], count: int) -> None:
    """Wait (60 s at most) until the running deployment ``proc`` has processes launched on
    ``count`` nodes (each instance starts as soon as its node is up); fail with its output if
    it ends first."""
    deadline = time.time() + 60
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        home = work / "home" / "deployments"
        if home.exists() and any(home.iterdir()) and \
                len({n for n in processes_of(deployment(work)).values() if n}) >= count:
            return
        time.sleep(0.1)


def mpi_ring(work: Path) -> None:
    """Compile the Open MPI ring example into ``work`` and write its document ``mpi.xml``
    (4 processes over ssh)."""
    shutil.copy(EXAMPLES / "ring.c", work)
    subprocess.run(["mpicc", "-O2", "-o", "ring", "ring.c"], cwd=work, check=True)
    (work / "mpi.xml").write_text(
        '<mpi_application id="ring" flavour="openmpi" processes="4">'
        "<executable>ring</executable><arguments><arg>3</arg></arguments>"
        '<environment><env name="OMPI_MCA_btl" value="self,tcp"/>'
        # several orted on one (gVisor) machine: hwloc's shared topology may crash orted
        '<env name="OMPI_MCA_rtc" value="^hwloc"/></environment>'
        '<files><file type="exe" src="ring"/></files>'
        '<mpirun path="mpirun"><option>--mca</option><option>plm_rsh_agent</option>'
        "<option>ssh</option></mpirun></mpi_application>")


def test_open_mpi_ring_over_ssh_on_the_nodes_of_an_oar_job(job: int, work: Path) -> None:
    mpi_ring(work)
    hosts = [n.name for n in job_resources([job]).nodes]
    before = {h: sshnodes.connections(h) for h in hosts}
    r = adage(work, "-a", "mpi.xml", "-j", str(job), "-x", "--wait", "-l", "1",
              "--timeout", "60")
    assert r.returncode == 0, r.stderr
    pid = deployment(work).rsplit("-", 1)[1]
    [out] = Path(f"/tmp/{USER}").glob(f"adage-{pid}/ring/0/rank/0/stdout")
    assert "ring: token=18 expected=18 laps=3 ranks=4" in out.read_text()
    ranks = re.findall(r"rank \d of 4", out.read_text())
    assert len(ranks) == 4
    # ADAGE: one (multiplexed) connection per node; mpirun: one more per node (its orted)
    assert all(sshnodes.connections(h) - before[h] == 2 for h in hosts), \
        {h: sshnodes.connections(h) - before[h] for h in hosts}
    assert adage(work, "clean").returncode == 0


def test_dask_cluster_over_ssh_computes_for_its_client(job: int, work: Path) -> None:
    shutil.copy(EXAMPLES / "dask_client.py", work)
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (work / "dask.xml").write_text(
        f'<dask_application id="dk"><scheduler port="{port}" dashboard="false"/>'
        '<workers count="4" threads="1"/><client script="dask_client.py">'
        "<arguments><arg>--n</arg><arg>1000</arg></arguments></client></dask_application>")
    r = adage(work, "-a", "dask.xml", "-j", str(job), "-x", "-l", "1", "--timeout", "90")
    assert r.returncode == 0, r.stderr
    try:
        check_dask(work)
    finally:
        dep = deployment(work)
        r = adage(work, "clean")
    assert r.returncode == 0, r.stderr
    assert processes_of(dep) == {}


def check_dask(work: Path) -> None:
    dep = deployment(work)
    [client] = Path(f"/tmp/{USER}").glob(f"adage-{dep.rsplit('-', 1)[1]}/dk-client/0/client/0")
    deadline = time.time() + 120
    while not (client / "adage.exit").exists() and time.time() < deadline:
        time.sleep(0.5)
    assert (client / "adage.exit").read_text().strip() == "0", (client / "stderr").read_text()
    assert "sum of squares below 1000 = 332833500" in (client / "stdout").read_text()
    running = processes_of(dep)
    assert len({n for n in running.values() if n}) == 4  # spread over the job's 4 nodes


# ------------------------------------------------------------------ failures
def failing_appl(work: Path) -> Path:
    """A on 3 nodes (reports K after 3 s, then sleeps), B on the 4th waits for A's K."""
    path = work / "fail.xml"
    path.write_text(
        "<generic_appl_descr><proc_groups>"
        '<proc_group id="A" type="generic" cardinality="3"><process id="p">'
        "<executable>sh</executable>"
        '<arguments><arg>-c</arg><arg>sleep 3; echo K=1 &gt;&gt; "$ADAGE_REPORT"; '
        "exec sleep 600</arg></arguments></process></proc_group>"
        '<proc_group id="B" type="generic" cardinality="1"><process id="p">'
        "<executable>sleep</executable>"
        "<arguments><arg>600</arg><arg>@{A.value.K}</arg></arguments></process></proc_group>"
        '</proc_groups><dependencies><dependency group="B" on="A" condition="ready"/>'
        "</dependencies></generic_appl_descr>")
    path.chmod(0o644)
    return path


def test_a_node_stopped_during_the_deployment_is_named_and_all_is_killed(
        nodes: list[str], work: Path) -> None:
    hosts = nodes[12:16]
    (work / "nf").write_text("".join(f"{h}\n" for h in hosts))
    proc = subprocess.Popen(adage_argv(work, "-a", str(failing_appl(work)), "-o",
                                       str(work / "nf"), "-x", "-l", "1", "--timeout", "20"),
                            cwd=work, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_launched(work, proc, 3)
    dep = deployment(work)
    launched = processes_of(dep)
    assert sorted({n for n in launched.values() if n}) == hosts[:3]
    for node in hosts[:3]:  # each runs under that node's own sshd (through its satellite)
        assert {p for p, n in launched.items() if n == node} <= under_sshd(node)
    stopped = time.time()
    sshnodes.stop(hosts[3])
    try:
        _, err = proc.communicate(timeout=40)
        took = time.time() - stopped
    finally:
        sshnodes.start(hosts[3])
    assert proc.returncode == 1
    assert f"node {hosts[3]}" in err and "adage: error:" in err, err
    assert took < 20
    assert processes_of(dep) == {}  # A's processes on the 3 other nodes were killed


def test_a_node_refusing_connections_is_named_within_the_timeout(nodes: list[str],
                                                                  work: Path) -> None:
    hosts = nodes[8:12]
    (work / "nf").write_text("".join(f"{h}\n" for h in hosts))
    sshnodes.stop(hosts[2])
    try:
        t0 = time.time()
        r = adage(work, "-a", str(failing_appl(work)), "-o", str(work / "nf"), "-x", "-l", "1",
                  "--timeout", "20", "--connect-timeout", "5")
        took = time.time() - t0
    finally:
        sshnodes.start(hosts[2])
    assert r.returncode == 1 and took < 25
    assert f"node {hosts[2]}" in r.stderr and "Connection refused" in r.stderr, r.stderr
    assert processes_of(deployment(work)) == {}


def test_a_satellite_that_never_calls_back_is_named_and_killed_with_its_launcher(
        nodes: list[str], work: Path) -> None:
    """node6's Python takes 60 s to start: the error names it after --timeout, and its
    launcher (found by ADAGE_DEPLOYMENT in its environment: no pid was ever reported) is
    killed with everything else."""
    slow = work / "slowpy"
    slow.write_text('#!/bin/sh\nsleep 60\nexec python3 "$@"\n')
    slow.chmod(0o755)
    res = work / "res.xml"
    res.write_text("<resources>" + "".join(
        f'<node name="{n}"><property name="python" value="{slow if n == nodes[5] else "python3"}"/>'
        '<submission method="ssh"/><transfer method="scp"/></node>' for n in nodes[4:6])
        + "</resources>")
    appl = work / "a.xml"
    appl.write_text('<generic_appl_descr><proc_groups><proc_group id="A" type="generic" '
                    'cardinality="2"><process id="p"><executable>sleep</executable><arguments>'
                    "<arg>600</arg></arguments></process></proc_group></proc_groups>"
                    "</generic_appl_descr>")
    for f in (slow, res, appl):
        f.chmod(0o755)
    t0 = time.time()
    r = adage(work, "-a", str(appl), "-r", str(res), "-x", "-l", "1", "--timeout", "4")
    assert r.returncode == 1, r.stderr
    assert f"node {nodes[5]}: no callback from its satellite within 4 s" in r.stderr, r.stderr
    assert time.time() - t0 < 20
    assert processes_of(deployment(work)) == {}


def test_a_process_failing_while_nodes_are_still_being_staged_is_named(nodes: list[str],
                                                                        work: Path) -> None:
    """``--fanout 2`` on 16 nodes: the first process fails while most transfers are still
    under way. The failure is named (no traceback: closing once followed the satellites of the
    stopped transfers on a closed selector) and nothing is left on any node."""
    (work / "nf").write_text("".join(f"{h}\n" for h in nodes))
    appl = sleep_appl(work, 16, "not-a-number")
    r = adage(work, "-a", str(appl), "-o", str(work / "nf"), "-x", "-l", "1", "--fanout", "2")
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert re.search(r"adage: error: node node\d+: group A instance \d+ process p/0 exited "
                     "with code 1 .*invalid time interval", r.stderr), r.stderr
    dep = deployment(work)
    deadline = time.time() + 15  # cut sessions: their satellites read the end of stdin
    while processes_of(dep) and time.time() < deadline:
        time.sleep(0.2)
    assert processes_of(dep) == {}


def sleep_appl(work: Path, count: int, arg: str) -> Path:
    """Group A: ``count`` instances of ``sleep ARG``."""
    appl = work / "a.xml"
    appl.write_text('<generic_appl_descr><proc_groups><proc_group id="A" type="generic" '
                    f'cardinality="{count}"><process id="p"><executable>sleep</executable>'
                    f"<arguments><arg>{arg}</arg></arguments></process></proc_group>"
                    "</proc_groups></generic_appl_descr>")
    appl.chmod(0o644)
    return appl


def deploy_sleepers(work: Path, hosts: list[str]) -> str:
    """Deploy a long ``sleep`` on each of ``hosts``; the deployment's id."""
    (work / "nf").write_text("".join(f"{h}\n" for h in hosts))
    appl = sleep_appl(work, 2, "600")
    assert adage(work, "-a", str(appl), "-o", str(work / "nf"), "-x", "-l", "1").returncode == 0
    dep = deployment(work)
    return dep


def test_status_names_a_node_it_cannot_reach(nodes: list[str], work: Path) -> None:
    hosts = nodes[6:8]
    dep = deploy_sleepers(work, hosts)
    sshnodes.stop(hosts[1])
    try:
        t0 = time.time()
        r = adage(work, "status", dep, "--connect-timeout", "3")
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"node {hosts[1]} is unreachable" in r.stderr, r.stderr
        r = adage(work, "clean", dep, "--connect-timeout", "3")  # the deployment is kept
        assert r.returncode == 1 and "not cleaned" in r.stderr, r.stdout + r.stderr
        assert time.time() - t0 < 20  # named within the timeouts, never an endless wait
    finally:
        sshnodes.start(hosts[1])
    assert adage(work, "status", dep).returncode == 0
    assert adage(work, "clean", dep).returncode == 0
    assert processes_of(dep) == {}


def test_clean_force_forgets_a_node_that_is_gone(nodes: list[str], work: Path) -> None:
    hosts = nodes[8:10]
    dep = deploy_sleepers(work, hosts)
    sshnodes.stop(hosts[1])
    try:
        r = adage(work, "clean", dep, "--force", "--connect-timeout", "3")
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"not cleaned on the unreachable nodes {hosts[1]}" in r.stderr, r.stderr
        assert adage(work, "status", dep).returncode == 1  # forgotten: no such deployment
    finally:
        sshnodes.start(hosts[1])
    left = processes_of(dep)  # the reachable node was cleaned (the stop took the other's)
    assert hosts[0] not in left.values(), left
    for pid in left:
        os.kill(pid, 9)


@pytest.mark.parametrize("prop", ["ssh", "taktuk"])
def test_ssh_options_reach_every_ssh_of_a_deployment_and_of_its_status(
        nodes: list[str], work: Path, prop: str) -> None:
    """``--ssh-option`` goes to each ssh ADAGE runs: the deployment's (from here, or TakTuk's
    connectors), then status's and clean's. Port=1 is refused everywhere."""
    hosts = nodes[10:12]
    (work / "nf").write_text("".join(f"{h}\n" for h in hosts))
    appl = str(sleep_appl(work, 2, "600"))
    base = ["-a", appl, "-o", str(work / "nf"), "-x", "-l", "1", "--propagation", prop,
            "--timeout", "20", "--connect-timeout", "3"]
    r = adage(work, *base, "--ssh-option", "Port=1")
    assert r.returncode == 1 and "Connection refused" in r.stderr, r.stderr
    assert any(f"node {h}" in r.stderr for h in hosts), r.stderr
    r = adage(work, *base, "--ssh-option", "KexAlgorithms=curve25519-sha256")
    assert r.returncode == 0, r.stderr
    dep = r.stderr.split("deployment ")[1].split(":")[0]  # not the refused one's
    assert sorted({n for n in processes_of(dep).values() if n}) == hosts
    r = adage(work, "status", dep, "--connect-timeout", "3", "--ssh-option", "Port=1")
    assert r.returncode == 1 and f"node {hosts[0]} is unreachable" in r.stderr, r.stderr
    r = adage(work, "clean", dep, "--connect-timeout", "3", "--ssh-option", "Port 1")
    assert r.returncode == 1 and "not cleaned" in r.stderr, r.stdout + r.stderr
    assert sorted({n for n in processes_of(dep).values() if n}) == hosts  # untouched
    assert adage(work, "clean", dep, "--ssh-option", "ConnectTimeout=20").returncode == 0
    assert processes_of(dep) == {}


# ------------------------------------------------------------------ transfers and oarsh
@pytest.mark.parametrize("method", ["tar", "scp", "rsync"])
def test_each_transfer_method_puts_a_tree_on_a_node(nodes: list[str], tmp_path: Path,
                                                    method: str) -> None:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "f").write_text("payload\n")
    (src / "top").write_text("top\n")
    dest = tmp_path / f"dest-{method}"
    dest.mkdir()
    dest.chmod(0o1777)  # like /tmp, the default scratch directory: it must stay so
    t = SshTransport(method, SshOptions(connect_timeout=5))
    node = Node(name=nodes[0])
    try:
        t.put_tree(node, src, str(dest), timeout=30)
        assert dest.stat().st_mode & 0o7777 == 0o1777
        assert (dest / "a" / "b" / "f").read_text() == "payload\n"
        assert (dest / "top").read_text() == "top\n"
        said = t.run(node, t.shell(node), 10, stdin="echo $SSH_CONNECTION $TMPDIR\n").split()
        assert said[2] == sshnodes.address(nodes[0])
        assert said[4] == f"/tmp/orpheus-sshnodes/{nodes[0]}"  # each node its own TMPDIR
    finally:
        t.close()
    assert not Path(t.control_dir).exists()


def test_oarsh_and_oarcp_command_lines() -> None:
    """oarsh cannot run for real on fake nodes (it needs the job's oarsh_shell on port 6667):
    the exact command lines it would run are checked."""
    t = SshTransport("oarcp", SshOptions(connect_timeout=7), oarsh=True)
    node = Node(name="node3", properties=(("oar_job_id", "42"),))
    common = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=7", "-o", "ServerAliveInterval=5",
              "-o", "ServerAliveCountMax=3"]
    assert t.control_dir == ""  # oarsh runs as user oar: no shared control socket
    assert t.command(node, ["echo", "a b", "$HOME"]) == ["oarsh", *common, "node3", "--",
                                                         "echo 'a b' '$HOME'"]
    assert t.shell(node) == ["oarsh", *common, "node3", "--", "sh -s"]
    assert t.env(node) is not None and t.env(node)["OAR_JOB_ID"] == "42"  # type: ignore[index]
    src = Path(tempfile.mkdtemp())
    (src / "x").write_text("")
    try:
        assert t.tree_commands(node, src, "/tmp/d e") == [
            ["oarsh", *common, "node3", "--", "mkdir -p '/tmp/d e'"],
            ["oarcp", "-q", "-r", "-p", f"{src}/x", "node3:/tmp/d e/"]]
        tar = SshTransport("tar", oarsh=True).tree_commands(node, src, "/s")
        assert tar[0] == ["tar", "-C", str(src), "-cf", "-", "--", "x"]
        assert tar[1][0] == "oarsh" and tar[1][-1] == \
            "sh -c 'mkdir -p \"$1\" && exec tar -C \"$1\" --no-overwrite-dir -xf -' sh /s"
    finally:
        shutil.rmtree(src)
    with pytest.raises(TransportError, match=r"oarcp.*ssh"):
        SshTransport("oarcp")

"""ADAGE through TakTuk (``--propagation taktuk``) on the loopback sshd nodes, as alice: one
front-end taktuk stages the nodes through its tree and carries the satellites' lines. No OAR:
the nodes come from node files. Also the escaping of operations through a real taktuk."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_adage_cluster import (
    adage,
    adage_argv,
    deployment,
    failing_appl,
    mpi_ring,
    processes_of,
    wait_launched,
)

from adage.deploy import taktuk
from adage.deploy.ssh import SshOptions
from adage.deploy.taktuk_session import TaktukSession
from oarlib import sshnodes

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "adage"
USER = "alice"


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[str]]:
    sshnodes.up(sshnodes.Config(nodes=16))
    yield sshnodes.names(16)
    for n in sshnodes.names(16):
        sshnodes.start(n)


@pytest.fixture
def work() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="adage-taktuk-", dir="/tmp"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def nodefile(work: Path, hosts: list[str]) -> str:
    path = work / "nf"
    path.write_text("".join(f"{h}\n" for h in hosts))
    path.chmod(0o644)
    return str(path)


def run_dir(work: Path) -> Path:
    return Path(f"/tmp/{USER}/adage-{deployment(work).rsplit('-', 1)[1]}")


# ------------------------------------------------------------------ escaping, for real
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                              max_size=4),
    max_leaves=12)


@pytest.fixture(scope="module")
def echo() -> Iterator[subprocess.Popen[str]]:
    """A taktuk with no remote node, running ``cat`` on the root: what ``input line`` sends
    comes back on the output stream."""
    p = subprocess.Popen(["taktuk", "-o", "output=" + taktuk.TEMPLATES["output"], "-o",
                          "status", "-o", "state"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert p.stdin is not None
    p.stdin.write("exec [ cat ]\n")
    yield p
    p.kill()
    p.wait()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(obj=JSON)
def test_any_json_payload_crosses_a_real_taktuk_unchanged(echo: subprocess.Popen[str],
                                                          obj: object) -> None:
    assert echo.stdin is not None and echo.stdout is not None
    echo.stdin.write(taktuk.input_line(0, obj).replace("0 input", "input", 1) + "\n")
    echo.stdin.flush()
    ev = taktuk.parse_line(echo.stdout.readline().rstrip("\n"))
    assert isinstance(ev, taktuk.Output) and ev.eol
    assert json.loads(ev.text) == obj


# ------------------------------------------------------------------ deployments
def generic_chain_then_status_and_clean(nodes: list[str], work: Path,
                                        propagation: str) -> None:
    """examples/adage/chain.xml on 3 nodes: C hears from B, the common trees are gone, status
    shows 3 exited, clean leaves nothing."""
    r = adage(work, "-a", str(EXAMPLES / "chain.xml"), "-o", nodefile(work, nodes[:3]), "-x",
              "-l", "1", "--propagation", propagation, "--timeout", "60")
    assert r.returncode == 0, r.stderr
    assert "did not confirm the detach" not in r.stderr  # every satellite said "detached"
    base = run_dir(work)
    deadline = time.time() + 30
    out = base / "C" / "0" / "stage" / "0" / "stdout"
    while "chain complete" not in (out.read_text() if out.exists() else "") \
            and time.time() < deadline:
        time.sleep(0.2)
    assert "C: predecessor says: B up" in out.read_text()
    assert sorted(p.name for p in (base / "_adage").iterdir()) == [
        f"satellite-{n}.py" for n in sorted(nodes[:3])]  # the common trees were removed
    status = adage(work, "status")
    assert status.returncode == 0 and status.stdout.count("exited") == 3, status.stdout
    assert adage(work, "clean").returncode == 0
    assert not base.exists()


def test_a_generic_chain_deploys_through_taktuk_and_status_clean_work(
        nodes: list[str], work: Path) -> None:
    generic_chain_then_status_and_clean(nodes, work, "taktuk")
    assert not [line for line in subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                                 text=True).stdout.splitlines()
                if line.startswith("/usr/bin/perl") and "taktuk" in line and USER in line]


def test_nodes_of_directories_only_get_the_satellite_through_the_tree_and_no_tar(
        nodes: list[str], work: Path) -> None:
    """A deployment without files: each satellite runs on its program, sent once through the
    tree to every node, and makes its run directories; no tar, no satellite file, no common
    tree is left on the nodes."""
    hosts = nodes[8:11]
    appl = work / "a.xml"
    appl.write_text('<generic_appl_descr><proc_groups><proc_group id="A" type="generic" '
                    'cardinality="6"><process id="p"><executable>sleep</executable>'
                    "<arguments><arg>600</arg></arguments></process></proc_group>"
                    "</proc_groups></generic_appl_descr>")
    appl.chmod(0o644)
    r = adage(work, "-a", str(appl), "-o", nodefile(work, hosts), "-x", "-l", "1",
              "--propagation", "taktuk", "--timeout", "60")
    assert r.returncode == 0, r.stderr
    dep, base = deployment(work), run_dir(work)
    assert sorted(set(processes_of(dep).values()) - {""}) == sorted(hosts)
    assert sorted(p.name for p in (base / "A").iterdir()) == [str(i) for i in range(6)]
    assert not list(base.glob("_adage/*")), list(base.glob("_adage/*"))
    dry = adage(work, "-a", str(appl), "-o", nodefile(work, hosts), "-n", "--propagation",
                "taktuk")
    assert "no tree: the satellite's program through the tree" in dry.stdout, dry.stdout
    assert adage(work, "clean").returncode == 0
    assert processes_of(dep) == {} and not base.exists()


def test_the_open_mpi_ring_deploys_through_taktuk(nodes: list[str], work: Path) -> None:
    mpi_ring(work)
    r = adage(work, "-a", "mpi.xml", "-o", nodefile(work, nodes[4:8]), "-x", "--wait", "-l",
              "1", "--timeout", "60", "--propagation", "taktuk")
    assert r.returncode == 0, r.stderr
    out = (run_dir(work) / "ring" / "0" / "rank" / "0" / "stdout").read_text()
    assert "ring: token=18 expected=18 laps=3 ranks=4" in out
    assert len(re.findall(r"rank \d of 4", out)) == 4
    assert adage(work, "clean").returncode == 0


def _descendants(root: int) -> dict[int, str]:
    """Live descendants of ``root``: pid -> command name."""
    parent, comm = {}, {}
    for q in Path("/proc").iterdir():
        if q.name.isdigit():
            try:
                stat = (q / "stat").read_text()
            except OSError:
                continue
            comm[int(q.name)] = stat[stat.index("(") + 1:stat.rindex(")")]
            parent[int(q.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    out = {}
    for pid in parent:
        p = pid
        while p in parent and p != root and p > 1:
            p = parent[p]
        if p == root and pid != root:
            out[pid] = comm[pid]
    return out


def test_a_50_mb_file_reaches_every_node_intact_and_leaves_the_front_end_once_per_child(
        nodes: list[str], work: Path) -> None:
    data = work / "data.bin"
    data.write_bytes(os.urandom(1 << 20) * 50)
    data.chmod(0o644)
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    (work / "d.xml").write_text(
        '<generic_appl_descr><proc_groups><proc_group id="g" type="generic" cardinality="16">'
        '<process id="p"><executable>sha256sum</executable><arguments><arg>data.bin</arg>'
        f'</arguments><files><file type="data" src="{data}"/></files></process></proc_group>'
        "</proc_groups></generic_appl_descr>")
    proc = subprocess.Popen(adage_argv(work, "-a", "d.xml", "-o", nodefile(work, nodes), "-x",
                                       "--wait", "-l", "1", "--timeout", "120", "--fanout",
                                       "4", "--propagation", "taktuk"),
                            cwd=work, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sent: dict[int, int] = {}  # front-end ssh connector -> bytes it wrote (to its socket)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for pid, name in _descendants(proc.pid).items():
                if name == "ssh":
                    try:
                        io = dict(line.split(": ") for line in
                                  Path(f"/proc/{pid}/io").read_text().splitlines())
                        sent[pid] = max(sent.get(pid, 0), int(io["wchar"]))
                    except OSError:
                        pass
            time.sleep(0.1)

    t = threading.Thread(target=sample)
    t.start()
    try:
        _, err = proc.communicate(timeout=300)
    finally:
        stop.set()
        t.join()
    assert proc.returncode == 0, err
    base = run_dir(work)
    outs = sorted(base.glob("g/*/p/0/stdout"))
    assert len(outs) == 16 and all(o.read_text().split()[0] == digest for o in outs)
    inodes = {(base / f"g/{i}/p/0/data.bin").stat().st_ino for i in range(16)}
    assert len(inodes) == 16  # one copy per node, not one file shared by all
    # the front end reached 4 nodes (--fanout 4: TakTuk's -d 4); the 12 others through them
    assert len(sent) == 4, sent
    total = sum(sent.values())
    assert 4 * 50 * 2**20 <= total < 4.2 * 50 * 2**20, total  # once per child, not per node
    assert adage(work, "clean").returncode == 0


def test_the_tree_seen_by_taktuk_network_state(nodes: list[str]) -> None:
    """What --fanout 4 means: the front end is connected to 4 nodes, each to at most 4."""
    s = TaktukSession({n: n for n in nodes}, SshOptions(fanout=4))
    s.start(Path(tempfile.mktemp(prefix="taktuk-", suffix=".log")))
    try:
        s.wait_numbered(60)
        tree = s.network_state().splitlines()
    finally:
        s.close()
    depth = {line.strip().split()[0]: (len(line) - len(line.lstrip())) // 4 for line in tree}
    assert sorted(n for n, d in depth.items() if d >= 1) == sorted(nodes)
    assert sum(1 for d in depth.values() if d == 1) == 4


# ------------------------------------------------------------------ failures
def test_a_node_refusing_connections_is_named_and_nothing_runs(nodes: list[str],
                                                              work: Path) -> None:
    hosts = nodes[8:12]
    sshnodes.stop(hosts[2])
    try:
        t0 = time.time()
        r = adage(work, "-a", str(failing_appl(work)), "-o", nodefile(work, hosts), "-x",
                  "-l", "1", "--timeout", "20", "--connect-timeout", "5", "--propagation",
                  "taktuk")
        took = time.time() - t0
    finally:
        sshnodes.start(hosts[2])
    assert r.returncode == 1 and took < 25, r.stderr
    assert f"node {hosts[2]}: TakTuk could not connect" in r.stderr, r.stderr
    assert "Connection refused" in r.stderr
    assert processes_of(deployment(work)) == {}


def test_a_node_stopped_during_the_deployment_is_named_and_all_is_killed(
        nodes: list[str], work: Path) -> None:
    hosts = nodes[12:16]
    proc = subprocess.Popen(adage_argv(work, "-a", str(failing_appl(work)), "-o",
                                       nodefile(work, hosts), "-x", "-l", "1", "--timeout",
                                       "20", "--propagation", "taktuk"),
                            cwd=work, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_launched(work, proc, 3)
    dep = deployment(work)
    assert sorted({n for n in processes_of(dep).values() if n}) == hosts[:3]
    stopped = time.time()
    sshnodes.stop(hosts[3])
    try:
        _, err = proc.communicate(timeout=40)
        took = time.time() - stopped
    finally:
        sshnodes.start(hosts[3])
    assert proc.returncode == 1
    assert f"node {hosts[3]}: TakTuk lost its connection" in err, err
    assert took < 20
    time.sleep(1)
    assert processes_of(dep) == {}


def test_status_and_clean_go_through_the_tree_and_name_a_node_gone(nodes: list[str],
                                                                   work: Path) -> None:
    hosts = nodes[4:8]
    r = adage(work, "-a", str(failing_appl(work)), "-o", nodefile(work, hosts), "-x", "-l",
              "1", "--timeout", "60", "--propagation", "taktuk", "--fanout", "2")
    assert r.returncode == 0, r.stderr
    dep = deployment(work)
    assert sorted(set(processes_of(dep).values()) - {""}) == hosts
    sshnodes.stop(hosts[3])
    try:
        st = adage(work, "status", "--json", "--connect-timeout", "3", "--timeout", "20")
        assert st.returncode == 1, st.stderr
        assert json.loads(st.stdout)["unreachable"] == [hosts[3]]
        c = adage(work, "clean", "--connect-timeout", "3", "--timeout", "20")
        assert c.returncode == 1
        # TakTuk's own words first: the clean went through the tree; then ssh's, tried for
        # the node the tree did not reach
        assert f"adage clean: node {hosts[3]}: TakTuk could not connect" in c.stderr, c.stderr
        assert "then over ssh: node" in c.stderr and "Connection refused" in c.stderr
        # (node8's processes are gone too: on this bed every node is this machine, and a
        # node's cleanup kills every process of the deployment it finds there)
        assert (work / "home" / "deployments" / dep).is_dir()  # kept for a later clean
    finally:
        sshnodes.start(hosts[3])
    assert adage(work, "clean").returncode == 0
    assert processes_of(dep) == {}

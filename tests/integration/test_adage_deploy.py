"""ADAGE end to end on local virtual nodes: real satellites, real processes, real Dask and
Open MPI; failures, timeouts, Ctrl-C, status and clean."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from lxml import etree

from adage import documents

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "adage"


class Adage:
    """Runs the ``adage`` CLI from this checkout, with its own ADAGE_HOME and node trees."""

    def __init__(self, tmp: Path) -> None:
        self.cwd = tmp
        self.home = tmp / "home"
        self.nodes = tmp / "nodes"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ADAGE_HOME": str(self.home)}

    def argv(self, *args: str) -> list[str]:
        extra = [] if args[0] in ("status", "clean") else ["--local-root", str(self.nodes)]
        return [sys.executable, "-m", "adage", *args, *extra]

    def __call__(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), cwd=self.cwd, env=self.env, text=True,
                              capture_output=True, timeout=timeout, check=False)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), cwd=self.cwd, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def deployment(self) -> str:
        [dep] = [p.name for p in (self.home / "deployments").iterdir()]
        return dep

    def rundir(self, node: str, group: str, index: int = 0, proc: str = "p") -> Path:
        [d] = (self.nodes / node).glob(f"*/adage-*/{group}/{index}/{proc}/0")
        return d


def processes_of(dep: str) -> list[int]:
    """Pids of live processes carrying ADAGE_DEPLOYMENT=dep (zombies excluded)."""
    mark = f"ADAGE_DEPLOYMENT={dep}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if mark in (proc / "environ").read_bytes().split(b"\0") and \
                    ") Z " not in (proc / "stat").read_text():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generic(path: Path, groups: str, deps: str = "") -> Path:
    path.write_text(f"<generic_appl_descr><proc_groups>{groups}</proc_groups>"
                    f"<dependencies>{deps}</dependencies></generic_appl_descr>")
    return path


def sh_group(gid: str, script: str, card: int = 1) -> str:
    return (f'<proc_group id="{gid}" type="generic" cardinality="{card}"><process id="p">'
            f"<executable>sh</executable><arguments><arg>-c</arg><arg>{script}</arg>"
            "</arguments></process></proc_group>")


@pytest.fixture
def adage(tmp_path: Path) -> Iterator[Adage]:
    a = Adage(tmp_path)
    yield a
    for dep in (a.home / "deployments").glob("*"):  # a failed test leaves nothing behind
        for pid in processes_of(dep.name):
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ applications
def test_chain_a_b_c_each_stage_sees_its_predecessor(adage: Adage) -> None:
    r = adage("-a", str(EXAMPLES / "chain.xml"), "-x", "--wait", "-l", "1")
    assert r.returncode == 0, r.stderr
    out = {g: (adage.rundir(n, g, proc="stage") / "stdout").read_text()
           for g, n in (("A", "local1"), ("B", "local2"), ("C", "local3"))}
    assert out["B"].startswith("B: predecessor says: A up")
    assert "C: predecessor says: B up" in out["C"] and "chain complete" in out["C"]
    assert "exited" in r.stderr and processes_of(adage.deployment()) == []


def test_dask_cluster_of_4_workers_computes_for_a_real_client(adage: Adage) -> None:
    (adage.cwd / "client.py").write_text(
        "import os\nfrom distributed import Client\n"
        "c = Client(os.environ['DASK_SCHEDULER_ADDRESS'], timeout=30)\n"
        "c.wait_for_workers(int(os.environ['DASK_WORKERS']), timeout=60)\n"
        "print('workers', len(c.scheduler_info()['workers']))\n"
        "print('result', c.submit(sum, c.map(lambda x: x * x, range(100))).result())\n")
    (adage.cwd / "dask.xml").write_text(
        f'<dask_application id="sq"><scheduler port="{free_port()}"/><workers count="4"/>'
        '<client script="client.py"/></dask_application>')
    r = adage("-a", "dask.xml", "-x", "-l", "1", "--timeout", "60")
    assert r.returncode == 0, r.stderr
    dep = adage.deployment()
    client = adage.rundir("local2", "sq-client", proc="client")
    deadline = time.time() + 90
    while not (client / "adage.exit").exists() and time.time() < deadline:
        time.sleep(0.5)
    assert (client / "stdout").read_text() == "workers 4\nresult 328350\n"
    workers = {p.relative_to(adage.nodes).parts[0] for p in
               adage.nodes.glob("local*/*/adage-*/sq-workers/*/worker/0/stdout")}
    assert workers == {"local1", "local2", "local3", "local4"}
    status = adage("status", "-D", "status")
    (adage.cwd / "status.xml").write_text(status.stdout)
    states = {(i.proc_group, i.index): (p.state, p.exit_code) for i in
              documents.read_status(adage.cwd / "status.xml").instances for p in i.processes}
    assert states[("sq-client", 0)] == ("exited", 0)
    assert states[("sq-scheduler", 0)] == ("ready", None)
    assert len(processes_of(dep)) >= 5  # scheduler, 4 workers (and their satellites)
    r = adage("clean")
    assert r.returncode == 0, r.stderr
    assert processes_of(dep) == []
    assert not list(adage.nodes.glob("local*/*/adage-*"))


def test_open_mpi_ring_over_4_virtual_nodes(adage: Adage) -> None:
    (adage.cwd / "ring.c").write_text(
        "#include <mpi.h>\n#include <stdio.h>\n"
        "int main(int argc, char **argv) {\n"
        "  int rank, size, token = 0;\n  MPI_Init(&argc, &argv);\n"
        "  MPI_Comm_rank(MPI_COMM_WORLD, &rank);\n  MPI_Comm_size(MPI_COMM_WORLD, &size);\n"
        "  if (rank == 0) MPI_Send(&token, 1, MPI_INT, 1 % size, 0, MPI_COMM_WORLD);\n"
        "  MPI_Recv(&token, 1, MPI_INT, (rank + size - 1) % size, 0, MPI_COMM_WORLD,"
        " MPI_STATUS_IGNORE);\n  token += 1 << rank;\n"
        "  if (rank != 0) MPI_Send(&token, 1, MPI_INT, (rank + 1) % size, 0, MPI_COMM_WORLD);\n"
        "  else printf(\"ring of %d ranks: token %d\\n\", size, token);\n"
        "  MPI_Finalize();\n  return 0;\n}\n")
    subprocess.run(["mpicc", "-o", "ring", "ring.c"], cwd=adage.cwd, check=True)
    (adage.cwd / "mpi.xml").write_text(
        '<mpi_application id="ring" processes="4" flavour="openmpi">'
        "<executable>ring</executable>"
        '<files><file type="exe" src="ring"/></files></mpi_application>')
    r = adage("-a", "mpi.xml", "-x", "--wait", "-l", "1", "--timeout", "60")
    assert r.returncode == 0, r.stderr
    run = adage.rundir("local1", "ring", proc="rank")
    assert (run / "stdout").read_text() == "ring of 4 ranks: token 15\n"
    [mf] = adage.nodes.glob("local1/*/adage-*/_adage/ring/machinefile")
    assert mf.read_text() == "127.0.0.1 slots=4\n"
    assert processes_of(adage.deployment()) == []


# ------------------------------------------------------------------ failures
def test_a_process_that_fails_to_start_is_named_and_everything_is_killed(adage: Adage) -> None:
    appl = generic(adage.cwd / "a.xml", sh_group("up", "sleep 300") +
                   '<proc_group id="bad" type="generic" cardinality="1"><process id="p">'
                   "<executable>/nonexistent/program</executable></process></proc_group>",
                   '<dependency group="bad" on="up" condition="ack"/>')
    r = adage("-a", str(appl), "-x", "-l", "1")
    assert r.returncode == 1
    assert "adage: error: node local2: group bad instance 0 process p/0 failed to start: " \
        "/nonexistent/program" in r.stderr
    assert processes_of(adage.deployment()) == []


def test_a_process_that_fails_is_named_with_the_last_lines_of_its_stderr(adage: Adage) -> None:
    script = "for i in 1 2 3 4 5; do echo line$i &gt;&amp;2; done; exit 7"
    appl = generic(adage.cwd / "a.xml", sh_group("bad", script))
    r = adage("-a", str(appl), "-x", "--wait", "-l", "1")
    assert r.returncode == 1
    assert "group bad instance 0 process p/0 exited with code 7 " \
        "(stderr: line3 | line4 | line5)" in r.stderr, r.stderr


def test_a_satellite_that_never_calls_back_times_out_naming_node_and_process(
        adage: Adage) -> None:
    hang = adage.cwd / "hang.sh"
    hang.write_text("#!/bin/sh\nexec sleep 300\n")
    hang.chmod(0o755)
    nodes = "".join(
        f'<node name="local{i}" cores="1" speed="1.0" memory="0" '
        f'scratch="{adage.nodes}/local{i}" address="127.0.0.1">'
        + (f'<property name="python" value="{hang}"/>' if i == 2 else "")
        + '<submission method="local"/><transfer method="local"/></node>' for i in (1, 2))
    (adage.cwd / "res.xml").write_text(f"<resources>{nodes}</resources>")
    appl = generic(adage.cwd / "a.xml", sh_group("A", "sleep 300") + sh_group("B", "true"),
                   '<dependency group="B" on="A" condition="ack"/>')
    t0 = time.monotonic()
    r = adage("-a", str(appl), "-r", "res.xml", "-x", "--timeout", "2", "-l", "1")
    elapsed = time.monotonic() - t0
    assert r.returncode == 1
    assert "adage: error: node local2: no callback from its satellite within 2 s " \
        "(processes waiting: B[0] p/0)" in r.stderr
    assert elapsed < 20
    assert processes_of(adage.deployment()) == []


def test_ctrl_c_kills_every_launched_process(adage: Adage) -> None:
    appl = generic(adage.cwd / "a.xml", sh_group("A", "sleep 300", card=3))
    proc = adage.start("-a", str(appl), "-x", "--wait", "-l", "1")
    deadline = time.time() + 30
    while time.time() < deadline:
        status = list(adage.home.glob("deployments/*/status.xml"))
        if status and 'state="ready"' in status[0].read_text():
            break
        time.sleep(0.1)
    dep = adage.deployment()
    assert len(processes_of(dep)) >= 3
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "interrupted (SIGINT): every launched process was killed" in err
    assert processes_of(dep) == []


# ------------------------------------------------------------------ state, scripts, CLI
def test_a_failure_keeps_its_fields_in_the_status_and_status_json(adage: Adage) -> None:
    appl = generic(adage.cwd / "a.xml", sh_group("bad", "echo oops &gt;&amp;2; exit 5"))
    r = adage("-a", str(appl), "-x", "--wait", "-l", "1")
    assert r.returncode == 1 and "process p/0 exited with code 5" in r.stderr, r.stderr
    shown = adage("status", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["id"] == adage.deployment() and data["unreachable"] == []
    f = data["failure"]
    assert (f["node"], f["proc_group"], f["index"], f["process"], f["process_index"],
            f["exit_code"], f["stderr"]) == ("local1", "bad", 0, "p", 0, 5, "oops")
    assert f["message"] in r.stderr
    [inst] = data["instances"]
    assert inst["processes"][0]["state"] == "failed" and inst["processes"][0]["exit_code"] == 5
    assert adage("status", "--json", "-D", "status").returncode == 2  # one or the other
    assert adage("clean").returncode == 0


def test_status_scripts_and_clean(adage: Adage) -> None:
    appl = generic(adage.cwd / "a.xml", sh_group("long", "sleep 300", card=2) +
                   sh_group("short", "sleep 1; exit 3"))
    r = adage("-a", str(appl), "-x", "-l", "1")
    assert r.returncode == 0, r.stderr
    dep = adage.deployment()
    assert (adage.cwd / "get_status.sh").resolve() == adage.home / "deployments" / dep / \
        "get_status.sh"
    time.sleep(2)
    lines = subprocess.run(["./get_status.sh"], cwd=adage.cwd, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert sorted(line.split()[:4] for line in lines) == [
        ["long", "0", "p/0", "running"], ["long", "1", "p/0", "running"],
        ["short", "0", "p/0", "exited"]]
    assert [line.split()[5] for line in lines if line.startswith("short")] == ["3"]
    status = adage("status")
    assert status.returncode == 0 and "failed" in status.stdout and "│ 3 " in status.stdout
    st = documents.read_status(adage.home / "deployments" / dep / "status.xml")
    assert {(i.proc_group, i.index): i.processes[0].state for i in st.instances} == {
        ("long", 0): "ready", ("long", 1): "ready", ("short", 0): "failed"}
    assert len(processes_of(dep)) >= 2
    out = subprocess.run(["./cleanup.sh"], cwd=adage.cwd, capture_output=True, text=True,
                         check=True)
    assert f"deployment {dep} cleaned" in out.stdout
    assert processes_of(dep) == []
    assert not (adage.cwd / "cleanup.sh").exists() and not (adage.home / "deployments" / dep
                                                             ).exists()
    assert not list(adage.nodes.glob("local*/*/adage-*"))
    assert adage("status", dep).returncode == 1


def test_plan_dump_and_dry_run(adage: Adage) -> None:
    r = adage("-a", str(EXAMPLES / "chain.xml"), "-p", "-D", "plan")
    assert r.returncode == 0, r.stderr
    (adage.cwd / "plan.xml").write_text(r.stdout)
    plan = documents.read_plan(adage.cwd / "plan.xml")
    assert [(i.proc_group, i.node) for i in plan.instances] == [
        ("A", "local1"), ("B", "local2"), ("C", "local3")]
    r = adage("-a", str(EXAMPLES / "chain.xml"), "-n")
    assert r.returncode == 0, r.stderr
    assert "transfer to local2:" in r.stdout and "group C (generic) after B:ack:" in r.stdout
    assert "--after 127.0.0.1:17102" in r.stdout
    assert not adage.nodes.exists() and not adage.home.exists()


def test_convert_only_and_bad_input(adage: Adage) -> None:
    r = adage("-a", str(EXAMPLES / "chain.xml"), "-D", "generic")
    assert r.returncode == 0 and etree.fromstring(r.stdout.encode()).tag == "generic_appl_descr"
    (adage.cwd / "nodes.txt").write_text("")
    r = adage("-a", str(EXAMPLES / "chain.xml"), "-p", "-o", "nodes.txt")
    assert r.returncode == 1 and "nodes.txt: no host in this OAR node file" in r.stderr
    (adage.cwd / "nodes.txt").write_text("h1\nh1\nh2\n")
    r = adage("-a", str(EXAMPLES / "chain.xml"), "-p", "-o", "nodes.txt", "-D", "res")
    assert r.returncode == 0 and 'name="h1" cores="2"' in r.stdout
    r = adage("-a", str(EXAMPLES / "chain.xml"), "-x", "-j", "42")
    assert r.returncode == 1 and "adage: error: OAR job 42 " in r.stderr
    r = adage("-a", str(EXAMPLES / "chain.xml"), "-x", "-o", "nodes.txt")
    assert r.returncode == 1
    assert re.search(r"adage: error: node (h\d): .*ssh: Could not resolve hostname \1",
                     r.stderr), r.stderr  # nodes of a node file are reached over ssh
    assert "Traceback" not in r.stderr


def test_a_reused_pid_does_not_put_a_deployment_in_an_uncleaned_ones_root(
        adage: Adage) -> None:
    """Two deployments from one process (one pid, as a reused pid gives), the first not
    cleaned: the second gets its own root, and cleaning the first leaves it alone."""
    appl = generic(adage.cwd / "a.xml", sh_group("long", "sleep 300"))
    twice = ("import sys, time; from adage.cli import main; a = sys.argv[1:]; "
             "print(main(a)); time.sleep(1.1); print(main(a))")
    r = subprocess.run([sys.executable, "-c", twice, *adage.argv("-a", str(appl), "-x")[3:]],
                       cwd=adage.cwd, env=adage.env, text=True, capture_output=True,
                       timeout=120, check=False)
    assert r.returncode == 0 and r.stdout.split() == ["0", "0"], r.stderr
    first, second = sorted(p.name for p in (adage.home / "deployments").iterdir())
    pid = first.rsplit("-", 1)[1]
    assert second.endswith(f"-{pid}")
    roots = {d: json.loads((adage.home / "deployments" / d / "deployment.json").read_text())[
        "roots"] for d in (first, second)}
    assert {Path(r).name for r in roots[first].values()} == {f"adage-{pid}"}
    assert {Path(r).name for r in roots[second].values()} == {f"adage-{pid}.2"}
    assert adage("clean", first).returncode == 0
    [root] = roots[second].values()
    assert (Path(root) / "long" / "0" / "p" / "0" / "stdout").exists()
    assert processes_of(second) and not processes_of(first)
    assert adage("clean", second).returncode == 0
    assert not Path(root).exists() and processes_of(second) == []

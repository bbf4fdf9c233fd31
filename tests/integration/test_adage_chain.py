"""ADAGE with ``--propagation chain`` on the loopback sshd nodes, as alice: the common files go
once along a chain of nodes (each forwards the stream to the next over ssh while writing it),
then a session per node starts its satellite. No OAR: the nodes come from node files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path

from test_adage_cluster import adage, adage_argv, deployment, failing_appl, processes_of
from test_adage_taktuk import (
    _descendants,
    generic_chain_then_status_and_clean,
    nodefile,
    nodes,
    run_dir,
    work,
)

from oarlib import sshnodes

__all__ = ["nodes", "work"]  # the taktuk module's fixtures: 16 sshd nodes, a work directory


def front_end_ssh_bytes(root: int, stop: threading.Event, sent: dict[int, int]) -> None:
    """What each ssh process under ``root`` has written so far (its socket and pipes)."""
    while not stop.is_set():
        for pid, name in _descendants(root).items():
            if name != "ssh":
                continue
            try:
                io = dict(line.split(": ") for line in
                          Path(f"/proc/{pid}/io").read_text().splitlines())
                sent[pid] = max(sent.get(pid, 0), int(io["wchar"]))
            except OSError:
                pass
        time.sleep(0.1)


def test_a_generic_chain_deploys_along_the_chain_and_status_clean_work(
        nodes: list[str], work: Path) -> None:
    generic_chain_then_status_and_clean(nodes, work, "chain")


def test_a_50_mb_file_reaches_every_node_intact_and_leaves_the_front_end_once(
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
                                       "--wait", "-l", "1", "--timeout", "120",
                                       "--propagation", "chain", "--no-multiplex"),
                            cwd=work, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sent: dict[int, int] = {}
    stop = threading.Event()
    t = threading.Thread(target=front_end_ssh_bytes, args=(proc.pid, stop, sent))
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
    # the front end's ssh processes (no master connections: all are its children) wrote the
    # 50 MB once (to the first node), plus small per-node trees and satellite lines
    total = sum(sent.values())
    assert 50 * 2**20 <= total < 1.2 * 50 * 2**20, (total, len(sent))
    assert adage(work, "clean").returncode == 0


def test_a_node_refusing_connections_is_named_with_the_nodes_after_it_and_nothing_runs(
        nodes: list[str], work: Path) -> None:
    hosts = nodes[8:12]
    sshnodes.stop(hosts[2])
    try:
        t0 = time.time()
        r = adage(work, "-a", str(failing_appl(work)), "-o", nodefile(work, hosts), "-x",
                  "-l", "1", "--timeout", "20", "--connect-timeout", "5", "--propagation",
                  "chain")
        took = time.time() - t0
    finally:
        sshnodes.start(hosts[2])
    assert r.returncode == 1 and took < 25, r.stderr
    assert f"node {hosts[2]} not reached from {hosts[1]}: ssh exited with code 255" in r.stderr
    assert f"not reached: {hosts[3]}" in r.stderr and "Connection refused" in r.stderr
    assert processes_of(deployment(work)) == {}

"""ADAGE on 256 real sshd nodes (``oarlib.sshnodes``) under a hard limit of open files: through
TakTuk the front end's file descriptors are bounded by the fan-out, not by the node count (one
process per node within 256 files, eight within 1024); over ssh, a limit too low is refused up
front with the way out, never hit mid-deployment, and 1024 is enough for 256 nodes. On two
cores hundreds of handshakes queue: the tests give ssh 30 s to connect."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from oarlib import sshnodes

ROOT = Path(__file__).resolve().parents[2]
NODES = 256
USER = "alice"


def appl(per_node: int) -> str:
    return ('<generic_appl_descr><proc_groups><proc_group id="A" type="generic" '
            f'cardinality="{NODES * per_node}"><process id="p"><executable>true</executable>'
            "</process></proc_group></proc_groups></generic_appl_descr>")


@pytest.fixture(scope="module")
def nodes() -> Iterator[list[str]]:
    sshnodes.up(sshnodes.Config(nodes=NODES))
    yield sshnodes.names(NODES)
    sshnodes.up(sshnodes.Config(nodes=16))  # the size the other ADAGE modules use


@pytest.fixture
def work(nodes: list[str]) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="adage-scale-", dir="/tmp"))
    d.chmod(0o777)
    (d / "nf").write_text("".join(f"{n}\n" for n in nodes))
    (d / "a.xml").write_text(appl(1))
    (d / "a8.xml").write_text(appl(8))
    for f in ("nf", "a.xml", "a8.xml"):
        (d / f).chmod(0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def adage(work: Path, *args: str, files: int = 0) -> subprocess.CompletedProcess[str]:
    """adage as alice, under ``ulimit -n FILES`` (soft and hard) if given."""
    argv = ["env", f"PYTHONPATH={ROOT / 'src'}", f"ADAGE_HOME={work / 'home'}",
            f"PATH={os.environ['PATH']}", sys.executable, "-m", "adage", *args]
    limit = f"ulimit -n {files} && " if files else ""
    return subprocess.run(["runuser", "-u", USER, "--", "sh", "-c", limit + 'exec "$@"', "sh",
                           *argv], cwd=work, text=True, capture_output=True, timeout=600,
                          check=False)


def deployed(work: Path, per_node: int) -> None:
    """Every process exited 0, ``per_node`` on each node, then the deployment is cleaned."""
    shown = adage(work, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["unreachable"] == [] and status["failure"] is None
    per: dict[str, list[str]] = {}
    for i in status["instances"]:
        per.setdefault(i["node"], []).extend(p["state"] for p in i["processes"])
    assert len(per) == NODES and {tuple(v) for v in per.values()} == {("exited",) * per_node}
    assert adage(work, "clean").returncode == 0


@pytest.mark.parametrize(("propagation", "per_node", "files"), [
    ("taktuk", 1, 256),  # TakTuk: files bounded by the fan-out, not by 256 nodes
    ("taktuk", 8, 1024),
    ("ssh", 8, 1024),  # ssh: 2 x 256 + 4 x 64 + 64 = 832 files
], ids=["taktuk-1-per-node-256-files", "taktuk-8-per-node-1024-files",
        "ssh-8-per-node-1024-files"])
def test_256_nodes_deploy_within_the_open_files_limit(work: Path, propagation: str,
                                                      per_node: int, files: int) -> None:
    r = adage(work, "-a", "a.xml" if per_node == 1 else "a8.xml", "-o", "nf", "-x", "--wait",
              "--propagation", propagation, "-l", "1", "--connect-timeout", "30",
              "--timeout", "120", files=files)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    deployed(work, per_node)


def test_ssh_refuses_256_nodes_within_256_open_files_and_names_taktuk(work: Path) -> None:
    r = adage(work, "-a", "a.xml", "-o", "nf", "-x", "--propagation", "ssh", files=256)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "256 nodes over ssh need about" in r.stderr and "--propagation taktuk" in r.stderr
    assert not (work / "home" / "deployments").exists() or not any(
        (work / "home" / "deployments").iterdir())  # refused before anything started

"""`orpheus testbed` against the real OAR 2.5.9, PostgreSQL and MariaDB of this machine.

Every test leaves the default test bed (PostgreSQL, 16 x 4, Orpheus installed) up.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oarlib import conf as oarconf
from oarlib import pgauth, testbed
from oarlib.db import Db
from oarlib.testbed import Config, Resource
from orpheus import install
from orpheus.testbed_cli import bring_up

pytestmark = pytest.mark.oar
SRC = str(Path(__file__).resolve().parents[2] / "src")
DAEMON_LOG = Path("/tmp/orpheus-testbed-tests.log")


def orpheus_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-m", "orpheus.cli", *args], capture_output=True,
                          text=True, env=env, cwd="/tmp", check=check, timeout=300)


def start_daemon() -> None:
    """`orpheus run --daemon` (its detached child keeps no pipe of ours open)."""
    subprocess.run([sys.executable, "-m", "orpheus.cli", "run", "--daemon", "--log-file",
                    str(DAEMON_LOG)], env=os.environ | {"PYTHONPATH": SRC}, cwd="/tmp",
                   check=True, timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    testbed.wait_until(lambda: install.daemon_pid() is not None, 20, "the Orpheus daemon")


@pytest.fixture(scope="module", autouse=True)
def default_testbed() -> Iterator[None]:
    found = testbed.current()
    bring_up(Config())
    yield
    install.stop_daemon()
    bring_up(found)  # the test bed as the other tests had it


@pytest.fixture
def daemon() -> Iterator[None]:
    """The real Orpheus daemon (`orpheus run --daemon`), on whatever DB oar.conf names."""
    install.stop_daemon()
    start_daemon()
    yield
    install.stop_daemon()


def documented_status_keys() -> set[str]:
    doc = (Path(SRC).parent / "docs" / "testbed.md").read_text()
    m = re.search(r"object with keys (.*?)\. The exit", doc, re.S)
    assert m, "docs/testbed.md no longer lists the status keys"
    return set(re.findall(r"`(\w+)`", m.group(1)))


def oarsub(*args: str, user: str = "alice") -> int:
    cmd = " ".join(["oarsub", *args])
    proc = subprocess.run(["su", "-", user, "-c", cmd], capture_output=True, text=True,
                          timeout=60, cwd="/tmp")
    m = re.search(r"OAR_JOB_ID=(\d+)", proc.stdout)
    assert m, f"oarsub refused: {proc.stdout}{proc.stderr}"
    return int(m.group(1))


def job_state(job_id: int) -> str:
    with testbed.connect() as db:
        return str(db.scalar("SELECT state FROM jobs WHERE job_id = %s", [job_id]))


def wait_state(job_id: int, states: set[str], timeout: float = 60) -> str:
    testbed.wait_until(lambda: job_state(job_id) in states, timeout,
                       f"job {job_id} to reach {states} (now {job_state(job_id)})", step=0.5)
    return job_state(job_id)


def registered_sorted(db: Db) -> list[Resource]:
    return sorted((r for _, r in testbed.registered(db)), key=lambda r: (r.cpu, r.core))


def compare_bulk_with_real_oarnodesetting(db: Db) -> None:
    """Register node `cmpreal` with the real oarnodesetting and `cmpbulk` in bulk, same
    properties; their resources and resource_logs rows must be equal but for ids and dates."""
    cols = [r[0] for r in db.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'resources' "
        "AND table_schema = " + ("current_schema()" if db.kind == "Pg" else "DATABASE()")
        + " ORDER BY ordinal_position")]
    try:
        for core, cpuset in ((9000, "0"), (9001, "1")):  # cpuset 0 = column default: no log row
            testbed.run(["oarnodesetting", "-a", "-h", "cmpreal", "-p", "host=cmpreal",
                         "-p", "cpu=900", "-p", f"core={core}", "-p", f"cpuset={cpuset}"])
        testbed.add_resources(db, [Resource("cmpbulk", "cmpbulk", 900, 9000, "0"),
                                          Resource("cmpbulk", "cmpbulk", 900, 9001, "1")])

        def rows(name: str) -> list[dict[str, Any]]:
            got = db.query(f"SELECT {','.join(cols)} FROM resources WHERE network_address = %s "
                           "ORDER BY resource_id", [name])
            return [{c: ("NAME" if v == name else v) for c, v in zip(cols, row, strict=True)
                     if c != "resource_id"} for row in got]

        def logs(name: str) -> list[tuple[Any, ...]]:
            got = db.query("SELECT l.attribute, l.value, l.date_stop, l.finaud_decision "
                           "FROM resource_logs l JOIN resources r ON r.resource_id = l.resource_id "
                           "WHERE r.network_address = %s ORDER BY l.resource_log_id", [name])
            return [tuple("NAME" if v == name else v for v in row) for row in got]

        assert len(rows("cmpreal")) == 2
        assert rows("cmpbulk") == rows("cmpreal")
        assert logs("cmpbulk") == logs("cmpreal")
        assert [a for a, *_ in logs("cmpreal")].count("cpuset") == 1
    finally:
        testbed.remove_resources(db, [i for i, r in testbed.registered(db)
                                      if r.network_address in ("cmpreal", "cmpbulk")])


def test_up_is_idempotent_and_registers_what_is_asked() -> None:
    pid = testbed.almighty_pid()
    started = time.monotonic()
    st = bring_up(Config())
    assert time.monotonic() - started < 10
    assert st["almighty"] == {"pid": pid, "port": 6666, "listening": True, "conf_current": True}
    assert st["db"]["type"] == "Pg" and st["db"]["reachable"]
    assert (st["nodes"], st["cores_per_node"], st["resources"]) == (16, [4], {"Alive": 64})
    assert st["orpheus"]["installed"]
    with testbed.connect() as db:
        assert registered_sorted(db) == testbed.layout(16, 4)
        assert {tuple(r) for r in db.query("SELECT available_upto FROM resources")} == \
            {(2147483647,)}
    conf = oarconf.read()
    assert (conf["DB_TYPE"], conf["SERVER_PORT"], conf["OPENSSH_CMD"]) == \
        ("Pg", "6666", "/usr/local/lib/orpheus/fake-ssh")
    st_conf = testbed.CONF_PATH.stat()
    assert (st_conf.st_mode & 0o777, st_conf.st_uid) == (0o600, testbed.pwd.getpwnam("oar").pw_uid)
    assert (testbed.STATE_DIR / "oar.conf.dist").exists()
    # OAR's roles: md5 passwords, let in by the block at the head of pg_hba.conf
    hba = testbed.pg_hba_path(testbed.pg_version())
    assert hba.read_text().startswith(pgauth.BEGIN + "\n")
    roles = {conf["DB_BASE_LOGIN"]: conf["DB_BASE_PASSWD"],
             conf["DB_BASE_LOGIN_RO"]: conf["DB_BASE_PASSWD_RO"]}
    assert not pgauth.ensure(hba, "oar", roles)  # up left nothing to do
    for role, password in roles.items():  # as OAR's Perl connects, through DBD::Pg
        probe = subprocess.run(
            ["perl", "-MDBI", "-e", 'DBI->connect("dbi:Pg:dbname=oar;host=localhost", @ARGV, '
             '{RaiseError => 1})->disconnect; print "ok\\n"', role, password],
            capture_output=True, text=True, timeout=30)
        assert probe.stdout == "ok\n", probe.stderr


def test_bulk_rows_equal_those_of_the_real_oarnodesetting() -> None:
    with testbed.connect() as db:
        compare_bulk_with_real_oarnodesetting(db)
        assert registered_sorted(db) == testbed.layout(16, 4)


def test_resize_up_and_down_and_conf_change_restarts_almighty() -> None:
    pid = testbed.almighty_pid()
    st = bring_up(Config(nodes=20, cores=3, sched_interval=1, max_jobs_per_user=100))
    assert (st["nodes"], st["cores_per_node"], st["resources"]) == (20, [3], {"Alive": 60})
    assert st["almighty"]["pid"] != pid and st["almighty"]["conf_current"]
    conf = oarconf.read()
    assert conf["SCHEDULER_MIN_TIME_BETWEEN_2_CALLS"] == "1"
    assert conf["SCHEDULER_FAIRSHARING_MAX_JOB_PER_USER"] == "100"
    with testbed.connect() as db:
        assert registered_sorted(db) == testbed.layout(20, 3)
        # a state row per resource; no open log row points at a removed resource
        assert db.scalar("SELECT COUNT(*) FROM resource_logs WHERE attribute = 'state' AND "
                         "date_stop = 0 AND resource_id NOT IN (SELECT resource_id FROM "
                         "resources)") == 0
    st = bring_up(Config())
    assert (st["nodes"], st["cores_per_node"], st["resources"]) == (16, [4], {"Alive": 64})


def test_alice_job_runs_to_the_end_with_the_daemon(daemon: None) -> None:
    job = oarsub("-l", "core=1", "'sleep 1'")
    assert wait_state(job, {"Terminated", "Error"}) == "Terminated"


def test_shrink_refused_while_a_job_runs_and_oardel_reaches_fake_ssh(daemon: None) -> None:
    job = oarsub("-l", "nodes=1", "-p", "\"network_address='node16'\"", "'sleep 600'")
    wait_state(job, {"Running"})
    with pytest.raises(testbed.TestbedError, match=rf"jobs {job} are running"):
        bring_up(Config(nodes=8))
    subprocess.run(["su", "-", "alice", "-c", f"oardel {job}"], check=True, capture_output=True,
                   cwd="/tmp")
    assert wait_state(job, {"Terminated", "Error"}) == "Error"
    log = (install.SPOOL / "fake-ssh.log").read_text()
    assert f"-x -T node16 bash -c 'test -e /var/lib/oar/pid_of_oarexec_for_jobId_{job} " in log
    assert "kill -s TERM $PROC'" in log
    st = bring_up(Config(nodes=8))  # nothing holds node16 now
    assert (st["nodes"], st["resources"]) == (8, {"Alive": 32})
    assert bring_up(Config())["resources"] == {"Alive": 64}


def test_down_stops_almighty_and_daemon_but_not_the_db(daemon: None) -> None:
    assert orpheus_cli("testbed", "down").returncode == 0
    assert testbed.almighty_pid() is None and not testbed.leftover_pids()
    assert install.daemon_pid() is None
    assert testbed.pg_ready()
    status = orpheus_cli("testbed", "status", "--json", check=False)
    assert status.returncode == 3
    st = json.loads(status.stdout)
    assert st["almighty"]["pid"] is None and st["db"]["reachable"]
    assert not st["orpheus"]["daemon_running"]
    assert [f["subject"] for f in st["faults"] if f["blocking"]] == ["Almighty"]
    # down gives back the package's schedulers and oarsub (no stack-limit wrapper left)
    assert st["stack_limit"] and not any(st["stack_limit"].values())
    diversions = subprocess.run(["dpkg-divert", "--list"], capture_output=True, text=True,
                                check=True).stdout
    assert "schedulers/" not in diversions and "/usr/lib/oar/oarsub" not in diversions
    assert not [p for p in Path("/usr/lib/oar").rglob("*") if p.is_file()
                and b"raised stack limit" in p.read_bytes()]
    assert orpheus_cli("testbed", "up").returncode == 0
    st = json.loads(orpheus_cli("testbed", "status", "--json").stdout)
    assert st["almighty"]["listening"] and st["resources"] == {"Alive": 64}
    assert all(st["stack_limit"].values()) and st["faults"] == []
    assert set(st) == documented_status_keys()


def test_energy_settings_and_hulot_halts_idle_fake_nodes() -> None:
    (install.SPOOL / "energy.log").unlink(missing_ok=True)
    st = bring_up(Config(energy=True, energy_idle=5, boot_time=2))
    conf = oarconf.read()
    assert conf["ENERGY_SAVING_INTERNAL"] == "yes"
    assert conf["ENERGY_SAVING_NODE_MANAGER_WAKE_UP_CMD"] == \
        "/usr/local/lib/orpheus/fake-wakeup 2"
    assert st["almighty"]["conf_current"]
    with testbed.connect() as db:
        assert db.query("SELECT DISTINCT available_upto FROM resources") == [(2147483646,)]
    energy_log = install.SPOOL / "energy.log"
    testbed.wait_until(lambda: energy_log.exists() and "HALT node" in energy_log.read_text(),
                       90, "Hulot to halt an idle node", step=1)
    st = bring_up(Config())  # back: Hulot off, halted (Absent) nodes Alive again
    assert oarconf.read()["ENERGY_SAVING_INTERNAL"] == "no"
    assert st["resources"] == {"Alive": 64}
    with testbed.connect() as db:
        assert db.query("SELECT DISTINCT available_upto FROM resources") == [(2147483647,)]


@pytest.mark.mysql
def test_mariadb_backend_then_back_to_postgresql(daemon: None) -> None:
    st = bring_up(Config(db="mysql"))
    assert st["db"]["type"] == "mysql" and st["db"]["reachable"]
    assert (st["nodes"], st["resources"]) == (16, {"Alive": 64})
    assert st["almighty"]["listening"] and not st["orpheus"]["daemon_running"]
    with testbed.connect() as db:
        assert db.kind == "mysql"
        assert registered_sorted(db) == testbed.layout(16, 4)
        compare_bulk_with_real_oarnodesetting(db)
    start_daemon()
    job = oarsub("-l", "core=1", "'sleep 1'")
    assert wait_state(job, {"Terminated", "Error"}) == "Terminated"
    st = bring_up(Config())
    assert st["db"]["type"] == "Pg" and st["resources"] == {"Alive": 64}
    assert testbed.mysql_ready()  # left running; only `down --all` stops DB servers

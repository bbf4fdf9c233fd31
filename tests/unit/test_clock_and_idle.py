"""The virtual clock's file, holds and PostgreSQL environment (oarlib.vclock), and how OAR's
idleness is read from a process tree (oarlib.idle)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oarlib import idle, vclock
from oarlib.idle import Proc


def test_a_missing_offset_file_is_real_time(tmp_path: Path) -> None:
    clock = vclock.Clock(tmp_path / "offset")
    assert abs(clock.now() - time.time()) < 0.5


def test_advance_jumps_forward_and_never_back(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    clock = vclock.Clock(path)
    target = time.time() + 86400
    step = clock.advance_to(target)
    assert 86399 < step <= 86400
    assert path.read_text().startswith("+8639") and path.stat().st_mode & 0o777 == 0o644
    assert clock.now() >= target
    assert clock.advance_to(target - 3600) == 0.0  # the past: nothing moves
    assert clock.now() >= target
    # another process's clock reads the same file
    assert vclock.Clock(path).now() >= target


def test_a_clock_never_follows_a_smaller_offset_written_by_someone_else(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    clock = vclock.Clock(path)
    clock.advance_to(time.time() + 1000)
    vclock.write_offset(path, 10.0)
    assert clock.now() > time.time() + 990


@given(st.floats(min_value=0, max_value=1e10, allow_nan=False))
def test_offsets_round_trip(offset: float) -> None:
    assert abs(vclock.parse_offset(vclock.format_offset(offset)) - offset) <= 1e-6


@pytest.mark.parametrize("text", ["", "-5\n", "5\n", "+5 days", "@2026-12-04 10:00:00",
                                  "+1e5", "+nan"])
def test_other_offset_texts_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="clock offset"):
        vclock.parse_offset(text)


def test_holds_of_live_processes_count_and_dead_ones_are_removed(tmp_path: Path) -> None:
    vclock.hold("replay", 1234.5, tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / f"hold.{dead}.replay").write_text("1.0\n")
    assert vclock.holds(tmp_path) == [1234.5]
    assert not (tmp_path / f"hold.{dead}.replay").exists()
    vclock.hold("replay", None, tmp_path)
    assert vclock.holds(tmp_path) == []


def test_pg_environment_adds_and_removes_only_its_own_block() -> None:
    base = "# environment variables for postgres processes\nTZ = 'UTC'\n"
    virtual = vclock.pg_environment(base, True)
    assert virtual.startswith(base) and vclock.pg_is_virtual(virtual)
    assert f"LD_PRELOAD = '{vclock.LIBFAKETIME}'" in virtual
    assert "FAKETIME_NO_CACHE = '1'" in virtual
    assert vclock.pg_environment(virtual, True) == virtual  # idempotent
    assert vclock.pg_environment(virtual, False) == base
    assert vclock.pg_environment(base, False) == base
    assert not vclock.pg_is_virtual(base)


def test_faketime_env_points_at_the_offset_file() -> None:
    env = vclock.faketime_env(Path("/x/offset"))
    assert env["FAKETIME_TIMESTAMP_FILE"] == "/x/offset"
    assert env["FAKETIME_DONT_FAKE_MONOTONIC"] == "1"  # sleeps keep their real length


def test_clean_shm_removes_what_dead_processes_left(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for name in (f"faketime_shm_{dead}", f"sem.faketime_sem_{dead}",
                 f"faketime_shm_{os.getpid()}", "PostgreSQL.1"):
        (tmp_path / name).write_text("")
    assert vclock.clean_shm(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["PostgreSQL.1",
                                                          f"faketime_shm_{os.getpid()}"]


# ----------------------------------------------------------------------------- idleness

SELECT, ACCEPT, READ, WAIT4 = 270, 288, 0, 61


def tree(main_call: int = SELECT, appendice_call: int = ACCEPT,
         extra: tuple[Proc, ...] = (), bipbips: tuple[Proc, ...] = ()) -> Proc:
    launcher = Proc(13, "Almighty: bipbip", READ, 1, bipbips)
    appendice = Proc(12, "Almighty: appendice", appendice_call, 1, (launcher,))
    redirector = Proc(11, "/usr/bin/perl /usr/lib/oar/Almighty", READ, 1, ())
    return Proc(10, "/usr/bin/perl /usr/lib/oar/Almighty", main_call, 1,
                (redirector, appendice, *extra))


def test_almighty_at_rest_is_idle() -> None:
    assert idle.busy_reason(tree()) is None
    hulot = Proc(14, "Almighty: hulot", READ, 1, ())
    assert idle.busy_reason(tree(extra=(hulot,))) is None


@pytest.mark.parametrize(("t", "why"), [
    (None, "not running"),
    (tree(main_call=WAIT4), "automaton is working"),
    (tree(appendice_call=READ), "reading a command"),
    (tree(extra=(Proc(20, "/usr/bin/perl /usr/lib/oar/oar_meta_sched", None, 1, ()),)),
     "runs /usr/bin/perl /usr/lib/oar/oar_meta_sched"),
    (tree(extra=(Proc(20, "Almighty: /usr/lib/oar/sarko", READ, 1, ()),)), "sarko"),
    (tree(bipbips=(Proc(21, "/usr/bin/perl /usr/lib/oar/bipbip", READ, 1, ()),)),
     "bipbip is launching"),
    (tree(extra=(Proc(14, "Almighty: hulot", READ, 1,
                      (Proc(22, "/bin/sh", READ, 1, ()),)),)), "hulot runs a command"),
])
def test_any_module_or_command_under_way_is_busy(t: Proc | None, why: str) -> None:
    reason = idle.busy_reason(t)
    assert reason is not None and why in reason


@pytest.mark.parametrize("state", ["R", "D", "Z"])
def test_a_process_woken_but_still_in_its_waiting_call_is_busy(state: str) -> None:
    """A command written to the automaton's pipe wakes it (R) before it leaves select."""
    t = tree()
    woken = Proc(t.pid, t.argv0, t.syscall, t.cpu_ns, t.children, state)
    assert "is running" in (idle.busy_reason(woken) or "")


def test_cpu_times_cover_the_whole_tree() -> None:
    assert len(idle.cpu_times(tree())) == 4


def test_listen_backlog_counts_the_connections_a_listening_port_has_not_accepted() -> None:
    """Real sockets, IPv4 and IPv6, asked of the kernel (sock_diag)."""
    with socket.socket() as server, socket.socket(socket.AF_INET6) as server6:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        assert idle.listen_backlog(port) == 0
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        assert idle.listen_backlog(port) == 3
        conn, _ = server.accept()
        assert idle.listen_backlog(port) == 2  # an accepted one leaves the queue
        server6.bind(("::1", 0))
        server6.listen(8)
        port6 = server6.getsockname()[1]
        clients.append(socket.create_connection(("::1", port6)))
        assert idle.listen_backlog(port6) == 1
        assert idle.listen_backlog(port) == 2  # the other port's queue is not counted
        for c in [*clients, conn]:
            c.close()


def test_read_tree_sees_this_process_and_its_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        time.sleep(0.2)
        me = idle.read_tree(os.getpid())
        assert me is not None and child.pid in [c.pid for c in me.children]
        [kid] = [c for c in me.children if c.pid == child.pid]
        assert kid.syscall is not None and kid.cpu_ns > 0 and kid.state == "S"
        assert me.state == "R"  # this process, reading /proc
    finally:
        child.kill()
        child.wait()
    assert idle.read_tree(child.pid) is None

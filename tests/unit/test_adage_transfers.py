"""Transfers in the background: a session left open holds its place until it speaks."""

from __future__ import annotations

import select
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from adage.deploy.transfers import Transfers


def collect_all(t: Transfers, timeout: float = 10) -> dict[str, subprocess.Popen[bytes] | None]:
    done: dict[str, subprocess.Popen[bytes] | None] = {}
    deadline = time.monotonic() + timeout
    while t.pending and time.monotonic() < deadline:
        done.update(t.collect())
        time.sleep(0.01)
    return done


def wait_for(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_no_more_than_fanout_sessions_are_opening_at_a_time() -> None:
    """A session handed back holds its place until it speaks (here: when the test writes to
    it), so with a fan-out of 2 a third put waits for one of the first two to speak."""
    peak, lock = [0], threading.Lock()
    popens: dict[str, subprocess.Popen[bytes]] = {}

    def silent() -> int:
        return sum(1 for first, p in popens.items() if first != "plain"
                   and not select.select([p.stdout], [], [], 0)[0])

    def put(first: str) -> subprocess.Popen[bytes] | None:
        with lock:
            peak[0] = max(peak[0], silent() + 1)
            popens[first] = subprocess.Popen(["sh", "-c", "read x; echo hello; sleep 5"],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return None if first == "plain" else popens[first]

    def speak(first: str) -> None:
        assert popens[first].stdin is not None
        popens[first].stdin.write(b"go\n")
        popens[first].stdin.flush()

    t = Transfers(put, ["a", "b", "c", "d", "plain"], 2, 10, lambda: None)
    wait_for(lambda: len(popens) == 2)
    time.sleep(0.3)
    assert sorted(popens) == ["a", "b"]  # both silent: nothing else is put
    speak("a")
    wait_for(lambda: len(popens) == 3)
    time.sleep(0.3)
    assert sorted(popens) == ["a", "b", "c"]  # b and c silent
    for first in ("b", "c"):
        speak(first)
    wait_for(lambda: "d" in popens)
    speak("d")
    done = collect_all(t)
    assert sorted(done) == ["a", "b", "c", "d", "plain"] and done["plain"] is None
    assert peak[0] == 2
    assert t.pending == {} and t.wake_r == -1  # closed once all were collected
    for p in popens.values():
        p.kill()
        p.wait()


def test_a_failure_is_raised_and_stop_gives_the_sessions_started_meanwhile() -> None:
    cancelled = []
    started: dict[str, subprocess.Popen[bytes]] = {}

    def put(first: str) -> subprocess.Popen[bytes] | None:
        if first == "bad":
            raise RuntimeError("node bad: ssh could not connect")
        started[first] = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE)
        return started[first]  # never speaks: held until stop()

    t = Transfers(put, ["bad", "x", "y", "z"], 2, 60, lambda: cancelled.append(True))
    with pytest.raises(RuntimeError, match="node bad"):
        collect_all(t)
    t0 = time.monotonic()
    left = t.stop()
    assert time.monotonic() - t0 < 2  # the waits end at once
    assert cancelled == [True]
    assert sorted(first for first, _ in left) == sorted(started)
    assert "x" in started and "z" not in started  # y, if it started before the stop
    assert t.pending == {}
    for p in started.values():
        p.kill()
        p.wait()


def test_a_session_that_never_speaks_holds_its_place_until_the_timeout() -> None:
    p = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE)
    t0 = time.monotonic()
    t = Transfers(lambda first: p, ["a"], 1, 0.3, lambda: None)
    assert collect_all(t) == {"a": p}
    assert 0.3 <= time.monotonic() - t0 < 2
    p.kill()
    p.wait()


def test_a_failure_leaves_the_sessions_done_beside_it_to_stop() -> None:
    """Both finished before the loop looked: the failure is raised, and the session that
    did start is still given by ``stop`` (to be killed), not lost."""
    p = subprocess.Popen(["echo", "hello"], stdout=subprocess.PIPE)

    def put(first: str) -> subprocess.Popen[bytes] | None:
        if first == "bad":
            raise RuntimeError("node bad: ssh could not connect")
        return p

    t = Transfers(put, ["a", "bad"], 2, 10, lambda: None)
    deadline = time.monotonic() + 10
    while not all(f.done() for f in t.pending) and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(RuntimeError):
        t.collect()
    assert t.stop() == [("a", p)]
    p.wait()

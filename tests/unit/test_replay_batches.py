"""How ``orpheus replay`` groups submissions into array oarsubs (``--batch-window``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orpheus.replay import batches
from orpheus.replayplan import Submission
from orpheus.workload import TraceJob


def sub(i: int, at: float, user: str = "u1", res: int = 1) -> Submission:
    return Submission(TraceJob(str(i), at, res, 1.0), at, user, None, res, f"core={res}", 10,
                      1.0, "{exec_time=1}")


def test_a_burst_becomes_one_batch_per_window_and_request() -> None:
    subs = [sub(0, 0.0), sub(1, 0.2), sub(2, 0.5), sub(3, 0.6), sub(4, 0.1, user="u2"),
            sub(5, 0.3, res=2)]
    got = [[s.job.id for s in b] for b in batches(subs, 0.5)]
    assert got == [["0", "1", "2"], ["4"], ["5"], ["3"]]
    assert [[s.job.id for s in b] for b in batches(subs, 0.0)] == [
        ["0"], ["4"], ["1"], ["5"], ["2"], ["3"]]
    assert all(len(b) == 1 for b in batches(subs, None))


@given(st.lists(st.tuples(st.floats(0, 100), st.sampled_from(["u1", "u2"]), st.integers(1, 3)),
                max_size=60),
       st.one_of(st.none(), st.floats(0, 5)))
def test_batches_partition_the_jobs_into_homogeneous_windows(
        jobs: list[tuple[float, str, int]], window: float | None) -> None:
    subs = [sub(i, at, user, res) for i, (at, user, res) in enumerate(jobs)]
    out = batches(subs, window)
    ids = sorted(s.job.id for b in out for s in b)
    assert ids == sorted(s.job.id for s in subs)  # each job exactly once
    assert [b[0].at for b in out] == sorted(b[0].at for b in out)  # in time order
    for b in out:
        assert len({s.request_key for s in b}) == 1
        assert [s.at for s in b] == sorted(s.at for s in b)
        assert b[-1].at - b[0].at <= (window or 0.0)
    if window is None:
        assert all(len(b) == 1 for b in out)

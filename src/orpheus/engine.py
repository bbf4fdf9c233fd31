"""Job timing: when each running job ends, under an I/O contention model. Pure, no clock.

Every method takes ``now`` (float seconds, any epoch); ``now`` never goes backwards between
calls (ValueError). A job without I/O runs at full speed and ends at ``start + exec_time``;
an I/O job progresses at the rate its model (orpheus.iomodels) gives it. A job whose
``fail_at`` (wall seconds since start) comes before its work is done fails then.

Ends are processed in time order, each at its own time, before anything else happens at a
later time: ``start``, ``stop`` and ``progress`` first process the ends due by their ``now``
(so replaying past starts in order, then one ``pop_ended``, equals step-by-step runs) and keep
them until ``pop_ended`` returns them. A job is in the engine from ``start`` until
``pop_ended`` returns it or ``stop`` removes it.

Tolerance: every call processes the ends due by ``now + EPS`` (EPS = 1e-9 s), so an end
computed a rounding error after ``now`` is not missed; each is still processed and reported at
its own time, and a start at ``now`` after such an end joins the model as if at that end
(rounding-level shifts, at most EPS). So a catch-up gives exactly the results of step-by-step
calls, and the order of simultaneous starts matters only at that level (for jobs lasting
less than EPS). ``pop_ended`` returns ends sorted by (time, job_id); a completion beats a
failure of the same job at the same time (an I/O job whose work is done to 1 - EPS at its
``fail_at`` is done).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orpheus.iomodels import IOModel, LinearModel, fraction_done

if TYPE_CHECKING:
    from orpheus.spec import JobSpec

EPS = 1e-9
DONE, FAILED = "done", "failed"


@dataclass(frozen=True, slots=True)
class Ended:
    """A job that ended: ``outcome`` is "done" (work complete) or "failed" (fail_at reached)."""

    job_id: int
    time: float
    outcome: str


def _end_order(ended: Ended) -> tuple[float, int]:
    return ended.time, ended.job_id


class _Running:
    __slots__ = ("io", "seq", "spec", "start")

    def __init__(self, spec: JobSpec, start: float, io: bool, seq: int) -> None:
        self.spec = spec
        self.start = start
        self.io = io
        self.seq = seq


class Engine:
    """Running jobs and their predicted ends."""

    def __init__(self, model: IOModel | None = None) -> None:
        self._model = model if model is not None else LinearModel()
        self._running: dict[int, _Running] = {}
        # (time, job_id, outcome, seq): ends of jobs without I/O, failures of I/O jobs; an
        # entry is stale once its job left (seq tells a restarted job_id apart)
        self._deadlines: list[tuple[float, int, str, int]] = []
        self._ended: dict[int, tuple[Ended, float]] = {}  # processed, not popped; progress
        self._now = -math.inf  # latest time given
        self._seq = 0

    @property
    def model(self) -> IOModel:
        """The I/O model (read-only use: rates, demands)."""
        return self._model

    def start(self, job_id: int, spec: JobSpec, now: float) -> None:
        """Start a job at ``now``; ValueError if ``job_id`` is already in the engine."""
        self._advance(now)
        if job_id in self:
            raise ValueError(f"job {job_id} is already running")
        io = bool(spec.io) and spec.io_workload > 0
        if io:
            self._model.add(job_id, spec, now)
        self._seq += 1
        self._running[job_id] = _Running(spec, now, io, self._seq)
        fail_at = spec.fail_at
        if fail_at is not None and (io or fail_at < spec.exec_time):
            heapq.heappush(self._deadlines, (now + fail_at, job_id, FAILED, self._seq))
        elif not io:
            heapq.heappush(self._deadlines, (now + spec.exec_time, job_id, DONE, self._seq))

    def stop(self, job_id: int, now: float) -> float | None:
        """Remove (kill) a job at ``now``, releasing its I/O share; return its fraction of work
        done (that at its end if it had already ended), None if the job is unknown."""
        self._advance(now)
        if job_id in self._ended:
            return self._ended.pop(job_id)[1]
        job = self._running.pop(job_id, None)
        if job is None:
            return None
        if job.io:
            return self._model.remove(job_id, now)
        return fraction_done(now - job.start, job.spec.exec_time)

    def next_end(self) -> float | None:
        """Earliest end among the jobs in the engine, None if none; it may be before the
        latest ``now`` (a job already ended, waiting for ``pop_ended``)."""
        candidates = []
        if self._ended:
            candidates.append(min(item[0].time for item in self._ended.values()))
        if (deadline := self._deadline()) is not None:
            candidates.append(deadline[0])
        if (end := self._model.next_end()) is not None:
            candidates.append(end[0])
        return min(candidates, default=None)

    def pop_ended(self, now: float) -> list[Ended]:
        """Remove and return the jobs ended by ``now`` (+EPS), in end order (ties by job_id)."""
        self._advance(now)
        ended = sorted((item[0] for item in self._ended.values()), key=_end_order)
        self._ended.clear()
        return ended

    def progress(self, job_id: int, now: float) -> float:
        """Fraction in [0, 1] of a job's work done at ``now``; KeyError if unknown."""
        self._advance(now)
        if job_id in self._ended:
            return self._ended[job_id][1]
        job = self._running[job_id]
        if job.io:
            return self._model.progress(job_id, now)
        return fraction_done(now - job.start, job.spec.exec_time)

    def __len__(self) -> int:
        return len(self._running) + len(self._ended)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._running or job_id in self._ended

    def _deadline(self) -> tuple[float, int, str, int] | None:
        heap, running = self._deadlines, self._running
        while heap:
            top = heap[0]
            job = running.get(top[1])
            if job is not None and job.seq == top[3]:
                return top
            heapq.heappop(heap)
        return None

    def _advance(self, now: float) -> None:
        """Process, each at its own time and in order, every end due by ``now``."""
        if not now >= self._now:  # also rejects NaN
            raise ValueError(f"time went backwards: {now!r} < {self._now!r}")
        self._now = now
        limit = now + EPS
        model, running = self._model, self._running
        while True:
            deadline = self._deadline()
            end = model.next_end()
            if end is not None and (deadline is None or (*end, DONE) <= deadline[:3]):
                (time, job_id), outcome, from_deadline = end, DONE, False
            elif deadline is not None:
                (time, job_id, outcome, _), from_deadline = deadline, True
            else:
                return
            if time > limit:
                return
            if from_deadline:
                heapq.heappop(self._deadlines)
            job = running.pop(job_id)
            if job.io:
                if outcome == FAILED and model.progress(job_id, time) >= 1.0 - EPS:
                    outcome = DONE  # its work completes at its fail_at, within rounding
                progress = model.remove(job_id, time, done=outcome == DONE)
            else:
                progress = 1.0 if outcome == DONE else fraction_done(
                    time - job.start, job.spec.exec_time
                )
            self._ended[job_id] = (Ended(job_id, time, outcome), progress)



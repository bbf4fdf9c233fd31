"""I/O contention models: the rate at which each running I/O job progresses.

A model owns the running I/O jobs (``io=1`` and ``io_workload > 0``) of every storage target
(``io_target``, default ``"default"``). Jobs on different targets never contend. On a target of
capacity C whose jobs demand W = sum of their ``io_workload``, nobody slows down while W <= C;
beyond, each model shares C its own way (docs/io-models.md has the formulas):

- ``linear``       every job progresses at C / W (the seed's proportional sharing);
- ``sensitivity``  f = W / C; a job with ``io_sensitivity`` s progresses at 1 / ((1 - s) + s f);
- ``fair``         max-min fair (water-filling) share of C; a job demanding w that is allocated
                   a gets a / w (a job whose demand fits runs at full speed).

All three are fluid models with piecewise-constant rates: rates change only when an I/O job
of the same target starts or ends. The jobs of a target that always share one rate form a
*class* (linear: all of them; sensitivity: one class per value of s; fair: one per value of w)
and a class keeps a virtual clock V (the integral of its rate, in seconds of full-speed work)
and a heap of goals (V at start + exec_time). A job ends when V reaches its goal, at
``since + (goal - V) / rate``; an event costs O(log n + K) for the K classes of the target
(linear: K = 1; fair also sorts its classes: O(K log K)) plus O(T) over the T targets.

Exactness: every target's demand W is kept as an exact integer multiple of 2**-1074 (every
finite float is one), so W does not drift over millions of starts and ends, does not depend on
the order of simultaneous events, and "W <= C" is decided exactly. When a job completes, its
class clock is snapped to its goal, so jobs with equal goals end at exactly the same time.
Rates and clocks are ordinary floats. Written by hand: no library offers fluid sharing with
virtual clocks, and this core is small.
"""

from __future__ import annotations

import heapq
import math
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Mapping
from typing import ClassVar

from orpheus.spec import JobSpec, decimal

DEFAULT_TARGET = "default"
_FIX_BITS = 1074  # 2**-1074 is the smallest positive float: every finite float is k * 2**-1074


def _fixed(x: float) -> int:
    """``x`` as the exact integer k with x = k * 2**-1074."""
    num, den = x.as_integer_ratio()  # den is a power of two
    return num << (_FIX_BITS + 1 - den.bit_length())


class _Class:
    """Jobs of one target that always progress at one shared rate."""

    __slots__ = ("goals", "heap", "key", "rate", "since", "work")

    def __init__(self, key: Hashable, now: float) -> None:
        self.key = key
        self.work = 0.0  # virtual clock: full-speed seconds of work done since the class began
        self.since = now  # time at which ``work`` is exact
        self.rate = 1.0
        self.goals: dict[int, float] = {}  # job_id -> goal (value of ``work`` at its end)
        self.heap: list[tuple[float, int]] = []  # (goal, job_id); stale entries skipped lazily

    def advance(self, now: float) -> None:
        if now > self.since:
            self.work += self.rate * (now - self.since)
            self.since = now

    def work_at(self, now: float) -> float:
        return self.work + self.rate * max(0.0, now - self.since)

    def next_end(self) -> tuple[float, int] | None:
        heap, goals = self.heap, self.goals
        while heap and goals.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        if not heap:
            return None
        goal, job_id = heap[0]
        if self.rate <= 0.0:  # a share that underflowed: the job makes no progress
            return math.inf, job_id
        return self.since + max(0.0, goal - self.work) / self.rate, job_id


class _Job:
    """One running I/O job: its target and class, its start and end on the class clock, its
    work and its exact demand."""

    __slots__ = ("cls", "demand", "goal", "origin", "target", "work")

    def __init__(
        self, target: _Target, cls: _Class, origin: float, work: float, demand: int
    ) -> None:
        self.target = target
        self.cls = cls
        self.origin = origin
        self.work = work
        self.goal = origin + work
        self.demand = demand


class _Target:
    """One storage target: its capacity, exact total demand, classes and jobs."""

    __slots__ = ("capacity", "capacity_fixed", "classes", "count", "demand", "name", "next")

    def __init__(self, name: str, capacity: float) -> None:
        self.name = name
        self.capacity = capacity
        self.capacity_fixed = _fixed(capacity) if math.isfinite(capacity) else None
        self.demand = 0  # exact sum of io_workload, in units of 2**-1074
        self.classes: dict[Hashable, _Class] = {}
        self.count = 0  # running jobs
        self.next: tuple[float, int] | None = None

    @property
    def contended(self) -> bool:
        return self.capacity_fixed is not None and self.demand > self.capacity_fixed

    def advance(self, now: float) -> None:
        for cls in self.classes.values():
            cls.advance(now)


def _check_capacity(name: str, capacity: float) -> float:
    capacity = float(capacity)
    if not capacity > 0:  # also rejects NaN
        raise ValueError(f"I/O capacity of target {name!r} must be > 0, got {capacity!r}")
    return capacity


class IOModel(ABC):
    """A contention model: running I/O jobs per target, their rates and predicted ends.

    Pure: times are given by the caller and must not go backwards (earlier times are treated
    as the latest one). Jobs are identified by an int ``job_id``.
    """

    name: ClassVar[str]

    def __init__(
        self, capacities: Mapping[str, float] | None = None, default_capacity: float = math.inf
    ) -> None:
        self._capacities = {n: _check_capacity(n, c) for n, c in (capacities or {}).items()}
        self._default_capacity = _check_capacity("(default)", default_capacity)
        self._targets: dict[str, _Target] = {}
        self._jobs: dict[int, _Job] = {}
        self._next: tuple[float, int] | None = None

    # -- what a model decides
    @abstractmethod
    def _class_key(self, spec: JobSpec) -> Hashable:
        """Key of the class of jobs always sharing this job's rate."""

    @abstractmethod
    def _set_rates(self, target: _Target) -> None:
        """Set the rate of every class of a contended target."""

    # -- public interface
    def capacity(self, target: str) -> float:
        """Capacity of a storage target."""
        return self._capacities.get(target, self._default_capacity)

    def add(self, job_id: int, spec: JobSpec, now: float) -> None:
        """Start an I/O job at ``now``: ``exec_time`` of work demanding ``io_workload``."""
        if job_id in self._jobs:
            raise ValueError(f"job {job_id} is already running")
        if spec.exec_time < 0 or spec.io_workload < 0:
            raise ValueError(f"job {job_id}: exec_time and io_workload must be >= 0")
        target = self._targets.get(spec.io_target)
        if target is None:
            target = _Target(spec.io_target, self.capacity(spec.io_target))
            self._targets[spec.io_target] = target
        key = self._class_key(spec)
        target.advance(now)
        cls = target.classes.get(key)
        if cls is None:
            cls = target.classes[key] = _Class(key, now)
        job = _Job(target, cls, cls.work, float(spec.exec_time), _fixed(float(spec.io_workload)))
        self._jobs[job_id] = job
        target.count += 1
        target.demand += job.demand
        cls.goals[job_id] = job.goal
        heapq.heappush(cls.heap, (job.goal, job_id))
        try:
            self._update(target)
        except ArithmeticError:  # leave the model as it was: the caller may go on without it
            self.remove(job_id, now)
            raise

    def remove(self, job_id: int, now: float, done: bool = False) -> float:
        """Remove a job at ``now`` (``done``: it completed then); return its progress."""
        job = self._jobs.pop(job_id)
        target, cls = job.target, job.cls
        target.advance(now)
        if done:
            cls.work = max(cls.work, job.goal)
        progress = 1.0 if done else fraction_done(cls.work - job.origin, job.work)
        target.count -= 1
        target.demand -= job.demand
        del cls.goals[job_id]
        if not cls.goals:
            del target.classes[cls.key]
        if target.count:
            self._update(target)
        else:
            del self._targets[target.name]
            self._next = _earliest(t.next for t in self._targets.values())
        return progress

    def next_end(self) -> tuple[float, int] | None:
        """(time, job_id) of the earliest predicted completion, ties by job_id."""
        return self._next

    def progress(self, job_id: int, now: float) -> float:
        """Fraction in [0, 1] of a running job's work done at ``now``."""
        job = self._jobs[job_id]
        return fraction_done(job.cls.work_at(now) - job.origin, job.work)

    def rate(self, job_id: int) -> float:
        """Current speed of a running job (1 = full speed)."""
        return self._jobs[job_id].cls.rate

    def demand(self, target: str) -> float:
        """Total ``io_workload`` W of the jobs running on a target (0 if none)."""
        found = self._targets.get(target)
        return found.demand / (1 << _FIX_BITS) if found else 0.0

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def _update(self, target: _Target) -> None:
        if target.contended:
            self._set_rates(target)
        else:
            for cls in target.classes.values():
                cls.rate = 1.0
        classes = target.classes
        if len(classes) == 1:
            target.next = next(iter(classes.values())).next_end()
        else:
            target.next = _earliest(cls.next_end() for cls in classes.values())
        self._next = (
            target.next if len(self._targets) == 1
            else _earliest(t.next for t in self._targets.values())
        )


def _earliest(ends: Iterable[tuple[float, int] | None]) -> tuple[float, int] | None:
    best = None
    for end in ends:
        if end is not None and (best is None or end < best):
            best = end
    return best


def fraction_done(done: float, total: float) -> float:
    """``done / total`` clamped to [0, 1]; 1 when there is nothing to do."""
    if total <= 0:
        return 1.0
    return min(1.0, max(0.0, done / total))


class LinearModel(IOModel):
    """Proportional sharing (the seed's model): every I/O job of a target runs at min(1, C/W)."""

    name = "linear"

    def _class_key(self, spec: JobSpec) -> Hashable:
        return None

    def _set_rates(self, target: _Target) -> None:
        assert target.capacity_fixed is not None
        rate = target.capacity_fixed / target.demand  # exact ints: correctly rounded C / W
        for cls in target.classes.values():
            cls.rate = rate


class SensitivityModel(IOModel):
    """Slowdown f = max(1, W/C) applied to the I/O fraction s: speed 1 / ((1 - s) + s f)."""

    name = "sensitivity"

    def _class_key(self, spec: JobSpec) -> Hashable:
        s = float(spec.io_sensitivity)
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"io_sensitivity must be in [0, 1], got {s!r}")
        return s

    def _set_rates(self, target: _Target) -> None:
        assert target.capacity_fixed is not None
        try:
            slowdown = target.demand / target.capacity_fixed
        except OverflowError:  # W / C beyond the largest float
            slowdown = math.inf
        for cls in target.classes.values():
            s = cls.key
            assert isinstance(s, float)
            if s == 0.0:
                cls.rate = 1.0
            elif s == 1.0:
                cls.rate = target.capacity_fixed / target.demand
            else:
                cls.rate = 1.0 / ((1.0 - s) + s * slowdown)


class FairModel(IOModel):
    """Max-min fair share (water-filling) of C; a job demanding w allocated a runs at a / w."""

    name = "fair"

    def _class_key(self, spec: JobSpec) -> Hashable:
        return float(spec.io_workload)

    def _set_rates(self, target: _Target) -> None:
        left, count = target.capacity, target.count
        level: float | None = None  # allocation of every job whose demand does not fit
        for cls in sorted(target.classes.values(), key=_demand_of):
            demand = _demand_of(cls)
            if level is None:
                if demand <= left / count:
                    cls.rate = 1.0
                    left -= demand * len(cls.goals)
                    count -= len(cls.goals)
                    continue
                level = left / count
            cls.rate = level / demand


def _demand_of(cls: _Class) -> float:
    assert isinstance(cls.key, float)
    return cls.key


MODELS: dict[str, type[IOModel]] = {
    model.name: model for model in (LinearModel, SensitivityModel, FairModel)
}


def make_model(
    name: str, capacities: Mapping[str, float] | None = None, default_capacity: float = math.inf
) -> IOModel:
    """The model called ``name`` with per-target capacities and a default for the others."""
    try:
        model = MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown I/O model {name!r} (choose from {', '.join(MODELS)})"
        ) from None
    return model(capacities, default_capacity)




def parse_capacities(text: str) -> tuple[dict[str, float], float]:
    """Parse ``--io-capacity``: ``10`` or ``scratch=10,home=4`` (``default=`` or a bare
    number sets the capacity of unnamed targets); empty means unlimited.

    Returns (capacities of named targets, default capacity); ValueError on bad input.
    """
    capacities: dict[str, float] = {}
    default: float | None = None
    if not text.strip():
        return capacities, math.inf
    for item in text.split(","):
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep:
            name, value = "", name
        if not value:
            raise ValueError(f"--io-capacity {text!r}: empty item (expected C or target=C)")
        if sep and not name:
            raise ValueError(f"--io-capacity {text!r}: missing target name in {item.strip()!r}")
        name = name or DEFAULT_TARGET
        capacity = math.inf if value.lower() in ("inf", "infinity") else decimal(value)
        if capacity is None or not capacity > 0:
            raise ValueError(
                f"--io-capacity {text!r}: capacity of {name!r} must be a number > 0, "
                f"got {value!r}"
            )
        if name in capacities or (name == DEFAULT_TARGET and default is not None):
            raise ValueError(f"--io-capacity {text!r}: target {name!r} given twice")
        if name == DEFAULT_TARGET:
            default = capacity
        else:
            capacities[name] = capacity
    return capacities, math.inf if default is None else default

"""I/O models on their own: option parsing, rates, exact demand accounting."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orpheus.iomodels import MODELS, FairModel, LinearModel, SensitivityModel, make_model
from orpheus.iomodels import parse_capacities as parse
from orpheus.spec import JobSpec

demands = st.lists(st.floats(0.01, 100), min_size=1, max_size=30)
capacities = st.floats(0.5, 500)


def io_job(w: float, exec_time: float = 30.0, **kw: object) -> JobSpec:
    return JobSpec(exec_time=exec_time, io=True, io_workload=w, **kw)  # type: ignore[arg-type]


def loaded(name: str, capacity: float, ws: list[float], **kw: object):
    model = make_model(name, {}, capacity)
    for job_id, w in enumerate(ws):
        model.add(job_id, io_job(w, **kw), 0.0)
    return model


# ---------------------------------------------------------------- --io-capacity
@pytest.mark.parametrize(("text", "expected"), [
    ("", ({}, math.inf)),
    ("10", ({}, 10.0)),
    ("2.5", ({}, 2.5)),
    ("default=7", ({}, 7.0)),
    ("scratch=10,home=4", ({"scratch": 10.0, "home": 4.0}, math.inf)),
    (" scratch = 10 , 3 ", ({"scratch": 10.0}, 3.0)),
    ("scratch=1e3,default=5", ({"scratch": 1000.0}, 5.0)),
])
def test_parse_capacities(text: str, expected: tuple[dict[str, float], float]) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("abc", "capacity of 'default' must be a number > 0, got 'abc'"),
    ("scratch=0", "capacity of 'scratch' must be a number > 0, got '0'"),
    ("scratch=-1", "must be a number > 0"),
    ("nan", "must be a number > 0"),
    ("=5", "missing target name"),
    ("scratch=", "empty item"),
    ("a=1,,b=2", "empty item"),
    ("a=1,a=2", "target 'a' given twice"),
    ("10,default=3", "target 'default' given twice"),
])
def test_parse_capacities_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="--io-capacity") as info:
        parse(text)
    assert message in str(info.value)


def test_make_model_by_name() -> None:
    assert set(MODELS) == {"linear", "sensitivity", "fair"}
    assert isinstance(make_model("fair", {"a": 1}, 2), FairModel)
    model = make_model("linear", {"scratch": 3.0}, 8.0)
    assert (model.capacity("scratch"), model.capacity("home")) == (3.0, 8.0)
    with pytest.raises(ValueError, match=r"unknown I/O model 'quadratic'.*linear"):
        make_model("quadratic", {}, 1.0)
    with pytest.raises(ValueError, match="'scratch' must be > 0"):
        make_model("linear", {"scratch": 0.0}, 1.0)


# ---------------------------------------------------------------- rates
@given(st.sampled_from(sorted(MODELS)), capacities, demands)
def test_no_slowdown_while_demand_fits(name: str, capacity: float, ws: list[float]) -> None:
    model = loaded(name, capacity, ws, io_sensitivity=0.7)
    fits = sum(map(Fraction, ws)) <= Fraction(capacity)  # exact, as the models decide it
    assert all(model.rate(j) == 1.0 for j in range(len(ws))) == fits


@given(st.sampled_from(["linear", "fair"]), capacities, demands)
def test_contended_allocation_is_capacity(name: str, capacity: float, ws: list[float]) -> None:
    model = loaded(name, capacity, ws)
    allocated = [model.rate(j) * w for j, w in enumerate(ws)]
    assert all(0 < model.rate(j) <= 1.0 for j in range(len(ws)))
    assert math.fsum(allocated) == pytest.approx(min(capacity, math.fsum(ws)), rel=1e-9)


@given(capacities, demands)
def test_linear_is_proportional(capacity: float, ws: list[float]) -> None:
    model = loaded("linear", capacity, ws)
    rates = {model.rate(j) for j in range(len(ws))}
    assert len(rates) == 1
    assert rates.pop() == pytest.approx(min(1.0, capacity / math.fsum(ws)), rel=1e-12)


@given(capacities, demands)
def test_fair_is_max_min(capacity: float, ws: list[float]) -> None:
    model = loaded("fair", capacity, ws)
    alloc = [model.rate(j) * w for j, w in enumerate(ws)]
    cut = [a for a, w in zip(alloc, ws, strict=True) if a < w * (1 - 1e-12)]
    if cut:  # everybody cut gets the same share, at least the demand of anybody served
        assert max(cut) == pytest.approx(min(cut), rel=1e-9)
        assert all(a <= max(cut) * (1 + 1e-9) for a in alloc)


def test_fair_unequal_demands() -> None:
    model = loaded("fair", 10.0, [2.0, 4.0, 8.0])
    assert [model.rate(j) for j in range(3)] == [1.0, 1.0, 0.5]


@given(capacities, demands, st.floats(0.0, 1.0))
def test_sensitivity_formula(capacity: float, ws: list[float], s: float) -> None:
    model = loaded("sensitivity", capacity, ws, io_sensitivity=s)
    slowdown = max(1.0, math.fsum(ws) / capacity)
    assert model.rate(0) == pytest.approx(1 / ((1 - s) + s * slowdown), rel=1e-12)


@given(capacities, demands)
def test_sensitivity_one_is_linear(capacity: float, ws: list[float]) -> None:
    sens = loaded("sensitivity", capacity, ws, io_sensitivity=1.0)
    lin = loaded("linear", capacity, ws)
    assert [sens.rate(j) for j in range(len(ws))] == [lin.rate(j) for j in range(len(ws))]


def test_sensitivity_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="io_sensitivity must be in"):
        SensitivityModel({}, 1.0).add(1, io_job(1.0, io_sensitivity=1.5), 0.0)


# ---------------------------------------------------------------- bookkeeping
def test_demand_is_exact_and_order_free() -> None:
    model = LinearModel({}, 0.6)
    for j in range(3):
        model.add(j, io_job((0.1, 0.2, 0.3)[j]), 0.0)
    assert model.demand("default") == 0.6  # 0.1 + 0.2 + 0.3 != 0.6 in floats
    assert model.rate(0) == 1.0
    for round_ in range(1000):
        model.add(100 + round_, io_job(0.1), 0.0)
        model.remove(100 + round_, 0.0)
    assert model.demand("default") == 0.6
    for j in range(3):
        model.remove(j, 1.0)
    assert model.demand("default") == 0.0
    assert len(model) == 0 and model.next_end() is None


def test_targets_do_not_contend() -> None:
    model = FairModel({"scratch": 10.0}, 4.0)
    model.add(1, io_job(5.0, io_target="scratch"), 0.0)
    model.add(2, io_job(5.0, io_target="scratch"), 0.0)
    model.add(3, io_job(4.0), 0.0)
    model.add(4, io_job(4.0), 0.0)
    assert [model.rate(j) for j in (1, 2, 3, 4)] == [1.0, 1.0, 0.5, 0.5]
    assert (model.demand("scratch"), model.demand("default"), model.demand("home")) == (
        10.0, 8.0, 0.0)
    assert 3 in model and 5 not in model


def test_remove_returns_progress_and_releases_share() -> None:
    model = LinearModel({}, 10.0)
    for j in range(3):
        model.add(j, io_job(5.0), 0.0)
    assert model.next_end() == (45.0, 0)
    assert model.progress(1, 15.0) == pytest.approx(1 / 3)
    assert model.remove(2, 15.0) == pytest.approx(1 / 3)
    assert model.rate(0) == 1.0
    assert model.next_end() == pytest.approx((35.0, 0))
    with pytest.raises(ValueError, match="job 1 is already running"):
        model.add(1, io_job(1.0), 20.0)


@pytest.mark.parametrize("text", ["1_0", "a=b=3", "١٠", "0x10", "10 5"])
def test_parse_capacities_wants_plain_decimals(text: str) -> None:
    with pytest.raises(ValueError, match="--io-capacity"):
        parse(text)


def test_parse_capacities_inf_is_unlimited() -> None:
    assert parse("scratch=inf,4") == ({"scratch": math.inf}, 4.0)


@pytest.mark.parametrize(("name", "capacity", "w"), [
    ("sensitivity", 1.0, 1e308),  # W / C beyond the largest float
    ("linear", 1e-300, 1e300),  # C / W below the smallest float
    ("fair", 1e-300, 1e300),
])
def test_extreme_demands_stall_instead_of_raising(name: str, capacity: float, w: float) -> None:
    model = loaded(name, capacity, [w, w], io_sensitivity=0.5)
    assert model.rate(0) == 0.0
    assert model.next_end() == (math.inf, 0)
    assert model.progress(0, 1e6) == 0.0
    model.remove(1, 10.0)  # back to one job: its share is whatever C / w gives
    assert model.next_end() is not None


def test_a_failed_update_leaves_the_model_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    model = loaded("linear", 10.0, [5.0, 5.0])
    before = (model.next_end(), model.demand("default"), len(model))
    monkeypatch.setattr(LinearModel, "_set_rates", lambda self, target: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        model.add(9, io_job(5.0), 1.0)
    monkeypatch.undo()
    assert 9 not in model
    assert (model.next_end(), model.demand("default"), len(model)) == before

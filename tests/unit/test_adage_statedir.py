"""The name of a deployment's root on its nodes: ``adage-<pid>``, unless an uncleaned
deployment of an earlier process of the same pid holds it (pids are reused)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adage.deploy import statedir
from adage.deploy.layout import Layout
from adage.model import CtrlParams, Node, Resources


def left(home: Path, dep_id: str, *roots: str) -> None:
    """A deployment's state as an uncleaned one leaves it."""
    d = home / "deployments" / dep_id
    d.mkdir(parents=True)
    (d / "deployment.json").write_text(json.dumps(
        {"id": dep_id, "roots": {f"n{i}": r for i, r in enumerate(roots)}}))


def test_a_pid_not_in_use_names_the_root_adage_pid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAGE_HOME", str(tmp_path))
    assert statedir.free_root_name(42) == "adage-42"
    left(tmp_path, "20261205-100000-142", "/tmp/alice/adage-142")
    left(tmp_path, "20261205-100001-4", "/tmp/alice/adage-4")
    assert statedir.free_root_name(42) == "adage-42"


def test_an_uncleaned_deployment_of_the_same_pid_keeps_its_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAGE_HOME", str(tmp_path))
    left(tmp_path, "20261205-100000-42", "/tmp/alice/adage-42", "/scratch/alice/adage-42")
    assert statedir.free_root_name(42) == "adage-42.2"
    left(tmp_path, "20261206-090000-42", "/tmp/alice/adage-42.2")
    assert statedir.free_root_name(42) == "adage-42.3"
    (tmp_path / "deployments" / "20261207-000000-42").mkdir()
    (tmp_path / "deployments" / "20261207-000000-42" / "deployment.json").write_text("{")
    assert statedir.free_root_name(42) == "adage-42.3"  # unreadable: ignored


def test_the_layout_puts_everything_under_the_name_it_is_given() -> None:
    nodes = Resources((Node(name="n1"),))
    assert Layout(nodes, CtrlParams(), "alice", 42, "d").root("n1") == "/tmp/alice/adage-42"
    named = Layout(nodes, CtrlParams(), "alice", 42, "d", "adage-42.2")
    assert named.root("n1") == "/tmp/alice/adage-42.2"
    assert named.rundir("n1", "g", 0, "p", 0) == "/tmp/alice/adage-42.2/g/0/p/0"

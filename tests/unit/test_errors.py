"""Every error a user can act on has its tool's base, and reaches the user as one line."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import adage
import orpheus
from adage.errors import AdageError
from orpheus import cli, compare
from orpheus.errors import OrpheusError
from orpheus.workload import WorkloadError


def error_classes(package: object) -> list[type[Exception]]:
    """The exception classes defined in the modules of ``package``."""
    found = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):  # type: ignore[attr-defined]
        module = importlib.import_module(info.name)
        found += [c for _, c in inspect.getmembers(module, inspect.isclass)
                  if issubclass(c, Exception) and c.__module__ == module.__name__]
    return found


@pytest.mark.parametrize(("package", "base"), [(orpheus, OrpheusError), (adage, AdageError)])
def test_every_error_class_of_a_tool_has_its_base(package: object, base: type) -> None:
    strays = [c.__qualname__ for c in error_classes(package)
              if not issubclass(c, base) and c.__name__ != "Interrupted"]
    assert strays == []


def test_an_error_that_escapes_a_command_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(path: Path) -> None:  # an error the command itself does not expect
        raise WorkloadError(f"{path}: line 3: not a workload")

    monkeypatch.setattr(compare, "read_schedule", unreadable)
    assert cli.main(["compare", "a.csv", "b.csv", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err == "orpheus compare: error: b.csv: line 3: not a workload\n"

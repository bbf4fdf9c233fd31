"""The deployer stays split along its seams (issue 16): no module of ``adage/deploy`` grows
past 400 lines, and each one is listed in docs/adage.md's table of the deployer's modules."""

from __future__ import annotations

from pathlib import Path

import adage.deploy

DEPLOY = Path(adage.deploy.__file__).parent
DOCS = Path(__file__).resolve().parents[2] / "docs" / "adage.md"


def test_no_module_of_adage_deploy_is_over_400_lines() -> None:
    sizes = {f.name: len(f.read_text().splitlines()) for f in DEPLOY.glob("*.py")}
    assert sizes and {name: n for name, n in sizes.items() if n > 400} == {}


def test_every_module_of_adage_deploy_is_in_the_docs_table() -> None:
    text = DOCS.read_text()
    missing = [f.name for f in DEPLOY.glob("*.py")
               if f.name != "__init__.py" and f"`{f.name}`" not in text]
    assert missing == []

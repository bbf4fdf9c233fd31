"""The clone is self-contained: every repository path the docs (README.md, docs/*.md,
data/README.md) name exists or is made by a command shown before it, and nothing in the project
refers to a path outside the clone.

What counts as a repository path: a Markdown link's target (relative to the page), and, in code
(fenced blocks and inline spans), a word whose first component is a top-level entry of the
clone (``data/...``, ``examples/...``, ``./scripts/test``) or a package under ``src/``
(``orpheus/energy.py``). Braces expand (``test_{a,b}.py``) and ``*`` globs must match
something. A word after ``-o``, ``--output``, ``--out`` or a ``>`` redirection is made by that
command: it and the paths under it are not checked. An absolute path under ``/work/`` or naming
a ``shared/`` folder is outside the clone, and always wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "data" / "README.md"]
OUTPUT_FLAGS = ("-o", "--output", "--out", ">", ">>")
PLACEHOLDER = re.compile(r"[<>$]|\.\.\.")
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"```[^\n]*\n(.*?)```|`((?:[^`\n]|\n(?!\s*\n))+)`", re.S)


def expand_braces(word: str) -> list[str]:
    """``a{b,c}d`` -> ``abd``, ``acd`` (nested and repeated groups too)."""
    m = re.search(r"\{([^{}]*,[^{}]*)\}", word)
    if not m:
        return [word]
    return [w for alt in m.group(1).split(",")
            for w in expand_braces(word[:m.start()] + alt + word[m.end():])]


def exists(root: Path, path: str) -> bool:
    return any(root.glob(path)) if "*" in path else (root / path).exists()


def words(code: str) -> list[str]:
    """The words of a code span or block, quotes and trailing punctuation removed."""
    out = []
    for raw in re.split(r"[\s'\"`()\[\]|;=]+", code):
        word = raw.rstrip(".,:")
        if word:
            out.append(word)
    return out


def problems(text: str, page: Path, root: Path = ROOT) -> list[str]:
    """Every path of ``text`` (a Markdown page at ``page``) that is missing or outside."""
    top = {p.name for p in root.iterdir() if p.name != ".git"}
    packages = {p.name for p in (root / "src").iterdir() if p.is_dir()}
    found: list[str] = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            found.append(f"link {target}: no such file")
        elif root.resolve() not in (path, *path.parents):
            found.append(f"link {target}: outside the clone")
    made: list[str] = []
    for block, inline in CODE.findall(text):
        ws = words(block or inline)
        for i, word in enumerate(ws):
            if i and ws[i - 1] in OUTPUT_FLAGS:
                made.append(word.removeprefix("./").rstrip("/"))
                continue
            if word.startswith("/"):
                if word.startswith("/work/") or "/shared/" in word:
                    found.append(f"{word}: outside the clone")
                continue
            if PLACEHOLDER.search(word):
                continue
            for path in expand_braces(word.removeprefix("./")):
                first = path.split("/")[0]
                if first in packages and "/" in path:
                    path = f"src/{path}"
                elif first not in top:
                    continue
                made_here = any(path == m or path.startswith(m + "/") for m in made)
                if not made_here and not exists(root, path):
                    found.append(f"{path}: no such file in the clone")
    return found


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_path_a_page_names_exists(page: Path) -> None:
    assert problems(page.read_text(), page) == []


def test_the_checker_finds_what_it_must(tmp_path: Path) -> None:
    page = ROOT / "docs" / "x.md"
    text = "\n".join([
        "[ok](replay-report.md) [gone](nothere.md) [web](https://x.org/a) [here](#anchor)",
        "```sh",
        "orpheus replay data/batsim/test_delays.json -o /tmp/delays",
        "./examples/adage/built 3",
        "mpicc -o examples/adage/built examples/adage/ring.c",
        "./examples/adage/built 3 > data/derived/log.txt",
        "cat data/derived/log.txt tests/unit/test_{energy,nope}.py",
        "orpheus replay 'data/batsim/test_delay.json' --output data/out.d",
        "python src/orpheus/nope.py; ls data/out.d/jobs.csv",
        "```",
        "`orpheus/energy.py` `adage/schemas/*.xsd` `adage/schemas/*.nope` `I/O` `jobs/s`",
        "`/work/elsewhere/gofree_sample.swf` `/etc/oar/oar.conf` `<base>/x` `examples/...`",
    ])
    assert problems(text, page) == [
        "link nothere.md: no such file",
        "examples/adage/built: no such file in the clone",
        "tests/unit/test_nope.py: no such file in the clone",
        "data/batsim/test_delay.json: no such file in the clone",
        "src/orpheus/nope.py: no such file in the clone",
        "src/adage/schemas/*.nope: no such file in the clone",
        "/work/elsewhere/gofree_sample.swf: outside the clone",
    ]


def test_expand_braces() -> None:
    assert expand_braces("t_{a,b}.py") == ["t_a.py", "t_b.py"]
    assert expand_braces("{x,y}/{1,2}") == ["x/1", "x/2", "y/1", "y/2"]
    assert expand_braces("plain{}") == ["plain{}"]


OUTSIDE = re.compile(r'/work/|parents\[3\]|"shared" / "data"')


def test_nothing_refers_to_a_path_outside_the_clone() -> None:
    files = [p for d in ("src", "tests", "benchmarks", "docs", "scripts", "examples", ".ci")
             for p in (ROOT / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    files += [ROOT / "README.md", ROOT / "pyproject.toml", ROOT / "data" / "README.md"]
    files.remove(Path(__file__).resolve())  # the patterns and cases above
    hits = []
    for f in files:
        try:
            text = f.read_text()
        except UnicodeDecodeError:
            continue
        hits += [f"{f.relative_to(ROOT)}: {m.group()}" for m in OUTSIDE.finditer(text)]
    assert hits == []

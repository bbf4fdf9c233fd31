"""The stage tar stream written without a tree (``adage.deploy.archive``)."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path, PurePosixPath

from hypothesis import given
from hypothesis import strategies as st

from adage.deploy import archive

SEGMENT = st.text("abz09_.-", min_size=1, max_size=4).filter(lambda s: s not in (".", ".."))
REL = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)


def test_a_stage_stream_extracts_to_its_tree(tmp_path: Path) -> None:
    exe = tmp_path / "ring"
    exe.write_bytes(b"\x7fELF" + b"x" * 70_000)
    exe.chmod(0o755)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w|") as tf:
        archive.write_tree(tf, ["u/adage-1/_adage", "u/adage-1/g/0/p/0"],
                           files={"u/adage-1/g/0/p/0/ring": str(exe)},
                           links={"u/adage-1/g/1/p/0/ring": "u/adage-1/g/0/p/0/ring"},
                           texts={"u/adage-1/_adage/satellite-n1.py": "print('sat')\n"})
    out = tmp_path / "out"
    out.mkdir()
    # extracted by GNU tar, as the nodes do
    subprocess.run(["tar", "-C", str(out), "--no-overwrite-dir", "-xf", "-"],
                   input=buf.getvalue(), check=True)
    ring = out / "u/adage-1/g/0/p/0/ring"
    assert ring.read_bytes() == exe.read_bytes() and ring.stat().st_mode & 0o777 == 0o755
    assert (out / "u/adage-1/g/1/p/0/ring").stat().st_ino == ring.stat().st_ino
    assert (out / "u/adage-1/_adage/satellite-n1.py").read_text() == "print('sat')\n"
    assert (out / "u/adage-1/_adage").stat().st_mode & 0o777 == 0o755
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tf:
        assert {m.uid for m in tf.getmembers()} == {os.getuid()}


@given(st.lists(REL, max_size=6), st.lists(REL, max_size=6))
def test_every_parent_comes_before_what_it_holds(dirs: list[str], paths: list[str]) -> None:
    made = archive.directories(dirs, paths)
    assert len(made) == len(set(made))
    position = {d: i for i, d in enumerate(made)}
    for rel in [*dirs, *(str(PurePosixPath(p).parent) for p in paths)]:
        parts = PurePosixPath(rel).parts
        chain = ["/".join(parts[:i]) for i in range(1, len(parts) + 1) if parts[:i] != (".",)]
        assert all(d in position for d in chain)
        assert [position[d] for d in chain] == sorted(position[d] for d in chain)

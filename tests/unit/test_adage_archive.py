"""The stage tar stream written without a tree (``adage.deploy.archive``)."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

import pytest
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


@given(st.lists(st.integers(0, 3 * tarfile.RECORDSIZE), min_size=1, max_size=3),
       st.sampled_from([512, 10_000, 1 << 16]))
def test_a_stream_sends_files_whole_and_ends_on_a_record_leaving_what_follows(
        sizes: list[int], bufsize: int) -> None:
    """Files of any size (padding), read back by tarfile and by GNU tar, which reads whole
    records and leaves the satellite's lines after them on the stream."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        files = {}
        for i, size in enumerate(sizes):
            src = d / f"f{i}"
            src.write_bytes(os.urandom(size))
            src.chmod(0o640 if i % 2 else 0o755)
            files[f"base/g/{i}/f{i}"] = str(src)
        stream = d / "stream"
        with open(stream, "wb") as out:
            with archive.Stream(out, bufsize) as tf:  # files from bufsize on: sendfile
                archive.write_tree(tf, ["base/_adage"], files=files,
                                   texts={"base/_adage/sat.py": "print('é')\n"})
            out.write(b'{"op": "detach"}\n')
        data = stream.read_bytes()
        assert data.index(b'{"op"') % tarfile.RECORDSIZE == 0
        with tarfile.open(stream) as tf:
            for dest, src in files.items():
                member = tf.getmember(dest)
                assert member.mode == Path(src).stat().st_mode & 0o777
                assert member.mtime == int(Path(src).stat().st_mtime)
                assert tf.extractfile(member).read() == Path(src).read_bytes()  # type: ignore[union-attr]
        out_dir = d / "out"
        out_dir.mkdir()
        with open(stream, "rb") as f:
            rest = subprocess.run(["sh", "-c", 'tar -C "$1" -xf - && cat', "sh", str(out_dir)],
                                  stdin=f, capture_output=True, check=True).stdout
        assert rest == b'{"op": "detach"}\n'
        for dest, src in files.items():
            assert (out_dir / dest).read_bytes() == Path(src).read_bytes()
        assert (out_dir / "base/_adage/sat.py").read_text() == "print('é')\n"


def test_a_stream_sends_a_file_through_a_pipe_and_a_link_as_its_content(tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.write_bytes(os.urandom(300_000))
    (tmp_path / "link").symlink_to(src)
    tar = subprocess.Popen(["tar", "-C", str(tmp_path), "-xf", "-"], stdin=subprocess.PIPE)
    assert tar.stdin is not None
    with archive.Stream(tar.stdin) as tf:
        tf.add(str(tmp_path / "link"), arcname="copy")
    tar.stdin.close()
    assert tar.wait(timeout=30) == 0
    assert (tmp_path / "copy").read_bytes() == src.read_bytes()
    assert not (tmp_path / "copy").is_symlink()


class Writes(io.RawIOBase):
    """A stream that records the size of each write."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sizes.append(len(data))
        return len(data)


def test_small_members_go_in_writes_of_the_buffer_size() -> None:
    """Hundreds of run directories (a header each) and small texts: each write to an ssh
    session is packets, so they leave in writes of ``bufsize``, the last one shorter."""
    out = Writes()
    with archive.Stream(out, bufsize=1 << 16) as tf:  # type: ignore[arg-type]
        archive.write_tree(tf, [f"g/{i}/p/0" for i in range(300)],
                           texts={f"g/{i}/t": "x" * 100 for i in range(50)})
    assert sum(out.sizes) % tarfile.RECORDSIZE == 0 and sum(out.sizes) > 4 * (1 << 16)
    assert all(n >= 1 << 16 for n in out.sizes[:-1])


def test_a_file_shorter_than_its_header_says_is_an_error() -> None:
    info = tarfile.TarInfo("f")
    info.size = 10
    with pytest.raises(OSError, match="shorter than its 10 bytes"):
        archive.Stream(io.BytesIO()).addfile(info, io.BytesIO(b"abc"))

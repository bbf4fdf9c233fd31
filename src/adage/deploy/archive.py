"""A stage's tree as tar members written straight to a stream: no tree is built (and removed)
on the front end. ``tarfile`` writes the members; a tree of hundreds of run directories costs
one small header each instead of a mkdir and an rmdir.

The common tree (``common_names``, ``write_common``): every distinct source file and the
satellite once, for the propagations that send one stream to every node (TakTuk's tree, the
chain); each node's own tree then holds hard links into it (``write_node_tree``).

Members are owned by the front-end user (as ``tarfile.add`` would record them): directories
0755, texts 0644, files with their source's mode and time.
"""

from __future__ import annotations

import grp
import io
import os
import pwd
import tarfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import IO

from adage.deploy.layout import Stage

COMMON = "satellite.py"  # name of the satellite in the common tree


def directories(dirs: Iterable[str], paths: Iterable[str]) -> list[str]:
    """Every directory of ``dirs`` and every parent of them and of ``paths`` (relative), in
    an order that creates parents first (pure)."""
    out: set[str] = set()
    for rel in [*dirs, *(str(PurePosixPath(p).parent) for p in paths)]:
        parts = PurePosixPath(rel).parts
        out.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    out.discard(".")
    return sorted(out)


def _owned(info: tarfile.TarInfo, mtime: int) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid = mtime, os.getuid(), os.getgid()
    try:
        info.uname = pwd.getpwuid(info.uid).pw_name
        info.gname = grp.getgrgid(info.gid).gr_name
    except KeyError:
        pass
    return info


class Stream:
    """A tar archive written to a stream as ``tarfile``'s ``w|`` writes it, but with a large
    file's data sent by the kernel (``os.sendfile``): ``tarfile`` copies every block through
    Python several times, and a 200 MB file to 32 nodes is 6.4 GB. Headers are
    ``TarInfo.tobuf``'s (PAX, tarfile's default); headers and small files are gathered into
    writes of ``bufsize`` (each write to an ssh session is packets to encrypt, send and
    decrypt: written member by member, a 32-node launch took 2.37-2.45 s instead of 2.24). The
    end (two zero blocks, then zeros up to a whole 10 KiB record) is written on leaving the
    ``with`` block without an error: GNU tar reads whole records, so what follows on the
    stream (the satellite's lines) is left there. A source file is read through a symbolic
    link (its content is sent, not the link)."""

    def __init__(self, out: IO[bytes], bufsize: int = 1 << 16) -> None:
        self.out = out
        self.offset = 0
        self.buf = bytearray()
        self.bufsize = bufsize

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self._write(tarfile.NUL * 2 * tarfile.BLOCKSIZE)
            self._write(tarfile.NUL * (-self.offset % tarfile.RECORDSIZE))
            self._flush()

    def _write(self, data: bytes) -> None:
        self.buf += data
        self.offset += len(data)
        if len(self.buf) >= self.bufsize:
            self._flush()

    def _flush(self) -> None:
        if self.buf:
            self.out.write(self.buf)
            self.buf.clear()
        self.out.flush()

    def addfile(self, info: tarfile.TarInfo, fileobj: IO[bytes] | None = None) -> None:
        """A member; its data (``info.size`` bytes) read from ``fileobj``."""
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if fileobj is not None:
            data = fileobj.read(info.size)
            if len(data) != info.size:
                raise OSError(f"{info.name}: shorter than its {info.size} bytes (changed?)")
            self._write(data)
            self._write(tarfile.NUL * (-info.size % tarfile.BLOCKSIZE))

    def add(self, name: str, arcname: str) -> None:
        """The file ``name`` as ``arcname``, with its mode and time."""
        with open(name, "rb") as f:
            st = os.fstat(f.fileno())
            info = _owned(tarfile.TarInfo(arcname), int(st.st_mtime))
            info.size, info.mode = st.st_size, st.st_mode & 0o7777
            if info.size < self.bufsize:
                self.addfile(info, f)
                return
            self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            self._flush()
            sent = 0
            while sent < info.size:
                n = os.sendfile(self.out.fileno(), f.fileno(), sent, info.size - sent)
                if n == 0:
                    raise OSError(f"{name}: shorter than its {info.size} bytes (changed?)")
                sent += n
            self.offset += sent
            self._write(tarfile.NUL * (-info.size % tarfile.BLOCKSIZE))


def write_tree(tf: tarfile.TarFile | Stream, dirs: Iterable[str], *,
               files: Mapping[str, str] | None = None, links: Mapping[str, str] | None = None,
               texts: Mapping[str, str] | None = None) -> None:
    """Write the directories ``dirs``, then ``files`` (dest -> source file on the front end),
    hard ``links`` (dest -> target, both relative to the archive's root) and ``texts`` (dest ->
    content), with the directories they need, to ``tf``."""
    files, links, texts = files or {}, links or {}, texts or {}
    now = int(time.time())
    for d in directories(dirs, [*files, *links, *texts]):
        info = _owned(tarfile.TarInfo(d), now)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(info)
    for dest, src in files.items():
        tf.add(src, arcname=dest)
    for dest, target in links.items():
        info = _owned(tarfile.TarInfo(dest), now)
        info.type, info.linkname = tarfile.LNKTYPE, target
        tf.addfile(info)
    for dest, text in texts.items():
        data = text.encode()
        info = _owned(tarfile.TarInfo(dest), now)
        info.size, info.mode = len(data), 0o644
        tf.addfile(info, io.BytesIO(data))


def common_names(stages: Iterable[Stage]) -> dict[str, str]:
    """Source file on the front end -> its path in the common tree (``<n>/<basename>``), one
    entry per distinct source."""
    sources = sorted({src for st in stages for src in st.files.values()})
    return {src: f"{i}/{Path(src).name}" for i, src in enumerate(sources)}


def write_common(out: IO[bytes], names: Mapping[str, str], satellite: str) -> None:
    """The common tree as a tar stream on ``out``: the satellite and every source file."""
    with Stream(out) as tf:
        data = satellite.encode()
        info = tarfile.TarInfo(COMMON)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tf.addfile(info, io.BytesIO(data))
        for src, name in names.items():
            tf.add(src, arcname=name)


def write_node_tree(tf: tarfile.TarFile | Stream, st: Stage, common_rel: str,
                    names: Mapping[str, str], satellites: Iterable[str]) -> None:
    """The tree of ``st`` (relative to its base): directories, texts, and hard links into the
    common tree (``common_rel``, relative to the base) for the files and the satellites
    (their paths relative to the base)."""
    links = {dest: f"{common_rel}/{names[src]}" for dest, src in st.files.items()}
    links.update({sat: f"{common_rel}/{COMMON}" for sat in satellites})
    write_tree(tf, st.dirs, links=links, texts=st.texts)

"""A stage's tree as tar members written straight to a stream: no tree is built (and removed)
on the front end. ``tarfile`` writes the members; a tree of hundreds of run directories costs
one small header each instead of a mkdir and an rmdir.

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
from pathlib import PurePosixPath


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


def write_tree(tf: tarfile.TarFile, dirs: Iterable[str], *,
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
        tf.add(src, arcname=dest, recursive=False)
    for dest, target in links.items():
        info = _owned(tarfile.TarInfo(dest), now)
        info.type, info.linkname = tarfile.LNKTYPE, target
        tf.addfile(info)
    for dest, text in texts.items():
        data = text.encode()
        info = _owned(tarfile.TarInfo(dest), now)
        info.size, info.mode = len(data), 0o644
        tf.addfile(info, io.BytesIO(data))

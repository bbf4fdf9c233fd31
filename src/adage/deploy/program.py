"""The satellite as the nodes run it: its code compiled once by the front end (``marshal``, as
a ``.pyc`` holds it), and its source for a node whose Python reads another bytecode: a file
(``satellite_program``) or, where a node gets no tree to hold it, bytes on stdin (``framed``)
that ``BOOT`` reads (``python -S -c BOOT NODE``).

Every node compiles what it runs: the satellite's 330 lines cost ~2.7 ms of CPU a start
(Python 3.11), loading them compiled ~1 ms (measured by hand, 80 starts in a row: 9.7 ms a
start from the source, 8.1 from this program). ``python3 -S`` runs a file given on its command
line from its source only, never from a cache, hence the code inside the file. The bytecode
check is ``importlib``'s own: the magic number of the Python that compiled it.

On stdin (``framed``), code and source come as bytes, not as Python literals for the node to
parse: 7.25 ms of CPU a start to the satellite's hello instead of 8.5 (by hand, 600 starts
each, alternating; a bare ``python3 -S -c pass`` 6.25).
"""

from __future__ import annotations

import importlib.util
import marshal
from binascii import b2a_base64
from functools import cache
from pathlib import Path

TEMPLATE = """\
# ADAGE's satellite (adage/deploy/satellite.py): its code compiled for Python with bytecode
# {magic!r}, else its source (each on a line of its own: a traceback quotes the lines below)
CODE = {code!r}
SOURCE = {source!r}
try:
    from _frozen_importlib_external import MAGIC_NUMBER
except ImportError:  # not CPython
    MAGIC_NUMBER = None
if MAGIC_NUMBER == {magic!r}:
    from binascii import a2b_base64
    from marshal import loads
    exec(loads(a2b_base64(CODE)))
else:
    exec(compile(SOURCE, "satellite.py", "exec"))
"""


# Reads from fd 0, without buffering (what follows on stdin is the satellite's), the bytecode
# magic number (4 bytes), the lengths of the code and of the source (12 digits each), then
# both; runs the code as ``__main__`` if this Python reads that bytecode, the source otherwise.
# One line: the command goes through the node's login shell, which may be csh.
BOOT = "exec({!r})".format("""import posix
def _adage_read(n):
    data = b""
    while len(data) < n:
        more = posix.read(0, n - len(data))
        if not more:
            raise SystemExit("adage: stdin ended before the satellite's program did")
        data += more
    return data
_adage_head = _adage_read(28)
_adage_code = _adage_read(int(_adage_head[4:16]))
_adage_source = _adage_read(int(_adage_head[16:]))
try:
    from _frozen_importlib_external import MAGIC_NUMBER as _adage_magic
except ImportError:  # not CPython
    _adage_magic = None
if _adage_magic == _adage_head[:4]:
    from marshal import loads
    exec(loads(_adage_code))
else:
    exec(compile(_adage_source, "satellite.py", "exec"))
""")


@cache
def framed(source: str | None = None) -> bytes:
    """The satellite of ``source`` (default: ADAGE's) as ``BOOT`` reads it."""
    source = satellite_source() if source is None else source
    code, text = _compiled(source), source.encode()
    return importlib.util.MAGIC_NUMBER + b"%12d%12d" % (len(code), len(text)) + code + text


def satellite_source() -> str:
    return Path(__file__).with_name("satellite.py").read_text()


@cache
def satellite_program(source: str | None = None) -> str:
    """The file each node runs (``python -S FILE NODE``) as the satellite ``source``."""
    source = satellite_source() if source is None else source
    code = b2a_base64(_compiled(source), newline=False).decode()
    return TEMPLATE.format(magic=importlib.util.MAGIC_NUMBER, source=source, code=code)


def _compiled(source: str) -> bytes:
    return marshal.dumps(compile(source, "satellite.py", "exec", dont_inherit=True))

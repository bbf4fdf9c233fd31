"""The satellite as the nodes run it: its code compiled once by the front end (``marshal``, as
a ``.pyc`` holds it), and its source for a node whose Python reads another bytecode; and
``BOOT``, which reads that program from stdin (``python -S -c BOOT NODE``) where a node gets
no tree to hold it.

Every node compiles what it runs: the satellite's 330 lines cost ~2.7 ms of CPU a start
(Python 3.11), loading them compiled ~1 ms (measured by hand, 80 starts in a row: 9.7 ms a
start from the source, 8.1 from this program). ``python3 -S`` runs a file given on its command
line from its source only, never from a cache, hence the code inside the file. The bytecode
check is ``importlib``'s own: the magic number of the Python that compiled it.
"""

from __future__ import annotations

import importlib.util
import marshal
from binascii import b2a_base64
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


# Reads a 12-byte length then that many bytes of program from fd 0, without buffering (what
# follows on stdin is the satellite's), and runs it as ``__main__``. One line: the command goes
# through the node's login shell, which may be csh.
BOOT = "exec({!r})".format("""import posix
def _adage_read(n):
    data = b""
    while len(data) < n:
        more = posix.read(0, n - len(data))
        if not more:
            raise SystemExit("adage: stdin ended before the satellite's program did")
        data += more
    return data
exec(compile(_adage_read(int(_adage_read(12))), "satellite", "exec"))
""")


def framed(program: str) -> bytes:
    """``program`` as ``BOOT`` reads it."""
    data = program.encode()
    return f"{len(data):12d}".encode() + data


def satellite_source() -> str:
    return Path(__file__).with_name("satellite.py").read_text()


def satellite_program(source: str | None = None) -> str:
    """The file each node runs (``python -S FILE NODE``) as the satellite ``source``."""
    source = satellite_source() if source is None else source
    code = marshal.dumps(compile(source, "satellite.py", "exec", dont_inherit=True))
    return TEMPLATE.format(magic=importlib.util.MAGIC_NUMBER, source=source,
                           code=b2a_base64(code, newline=False).decode())

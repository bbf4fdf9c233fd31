"""The plugins shipped with ADAGE (generic, mpi, dask), and what their converters share:
reading the process parts (executable, arguments, environment, files) that every application
document writes the same way (``process_parts.xsd``).

Converters receive documents already validated with the schema defaults filled in, so they
read attributes without fallbacks.
"""

from __future__ import annotations

import os
from pathlib import Path

from lxml import etree

from adage.model import FileSpec


def args_of(parent: etree._Element) -> tuple[str, ...]:
    """The ``arguments/arg`` texts under ``parent`` (an empty ``<arg/>`` is "")."""
    return tuple(a.text or "" for a in parent.iterfind("arguments/arg"))


def env_of(parent: etree._Element) -> tuple[tuple[str, str], ...]:
    """The ``environment/env`` name/value pairs under ``parent``."""
    return tuple((e.get("name"), e.get("value")) for e in parent.iterfind("environment/env"))


def resolve_src(src: str, source: Path) -> str:
    """``src`` as an absolute path, relative paths being taken from the document's folder."""
    return os.path.normpath(Path(source).absolute().parent / src)


def files_of(parent: etree._Element, source: Path) -> tuple[FileSpec, ...]:
    """The ``files/file`` entries under ``parent``, their ``src`` made absolute."""
    return tuple(
        FileSpec(f.get("type"), resolve_src(f.get("src"), source), f.get("dest", ""))
        for f in parent.iterfind("files/file")
    )

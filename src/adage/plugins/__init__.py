"""The plugins shipped with ADAGE (generic, mpi, dask), and what their converters share:
reading the process parts (executable, arguments, environment, files) that every application
document writes the same way (``process_parts.xsd``).

Converters receive documents already validated with the schema defaults filled in, so they
read attributes without fallbacks, but as the schema reads them: an element's text is all its
text and CDATA (comments and processing instructions inside it dropped), and numbers and
booleans may carry the whitespace, '+' and leading zeros XSD allows.
"""

from __future__ import annotations

import os
from pathlib import Path

from lxml import etree

from adage.model import FileSpec

XML_SPACE = " \t\r\n"  # what XML calls whitespace (not Python's str.strip: no U+00A0)


def text_of(elem: etree._Element) -> str:
    """The text of ``elem`` as its schema sees it: every text and CDATA part, in order, without
    the comments and processing instructions between them."""
    return str(elem.xpath("string()"))


def trimmed(elem: etree._Element) -> str:
    """``text_of(elem)`` without the whitespace around it (a ``trimmed`` element)."""
    return text_of(elem).strip(XML_SPACE)


def decimal(text: str) -> str:
    """The canonical text of an xs:integer value: no whitespace, '+' or leading zeros."""
    value = text.strip(XML_SPACE)
    digits = value.lstrip("+-").lstrip("0") or "0"
    return "-" + digits if value.startswith("-") and digits != "0" else digits


def integer(text: str) -> int:
    """An xs:integer value (its canonical text has at most 4300 digits, else ValueError)."""
    return int(decimal(text))


def boolean(text: str) -> bool:
    """An xs:boolean value: true, false, 1 or 0, with whitespace around it."""
    return text.strip(XML_SPACE) in ("true", "1")


def args_of(parent: etree._Element) -> tuple[str, ...]:
    """The ``arguments/arg`` texts under ``parent``, verbatim (an empty ``<arg/>`` is "")."""
    return tuple(text_of(a) for a in parent.iterfind("arguments/arg"))


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

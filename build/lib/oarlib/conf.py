"""oar.conf: read its settings and rewrite some of them in place.

oar.conf is a shell fragment of ``KEY="value"`` lines (OAR reads it with its own Perl parser,
which accepts single, double or no quotes and ignores comments); no library parses it, so this
module does, keeping every other line of the file untouched when it rewrites one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PATH = Path("/etc/oar/oar.conf")
_LINE = re.compile(r"""^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^#\s]*))""")


def parse(text: str) -> dict[str, str]:
    """Settings of an oar.conf text; later lines win, commented lines are ignored."""
    conf: dict[str, str] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            key, dq, sq, bare = m.groups()
            conf[key] = dq if dq is not None else sq if sq is not None else bare
    return conf


def read(path: Path = DEFAULT_PATH) -> dict[str, str]:
    return parse(path.read_text())


def set_values(text: str, values: dict[str, str | None]) -> str:
    """Return ``text`` with each key set (``None`` comments it out).

    The first line that sets the key, even commented out, is replaced; later ones are dropped.
    Keys the text does not mention are appended.
    """
    lines = text.splitlines()
    out: list[str] = []
    done: set[str] = set()
    for line in lines:
        m = re.match(r"^[#\s]*([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        key = m.group(1) if m else None
        if key is None or key not in values:
            out.append(line)
            continue
        if key in done:
            continue
        done.add(key)
        value = values[key]
        if value is None:
            out.append(line if line.lstrip().startswith("#") else "#" + line)
        else:
            out.append(f'{key}="{value}"')
    out.extend(f'{k}="{v}"' for k, v in values.items() if k not in done and v is not None)
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class DbParams:
    """How to reach OAR's database, as oar.conf says."""

    type: str  # "Pg" or "mysql"
    host: str
    port: int
    name: str
    user: str
    password: str

    @classmethod
    def from_conf(cls, conf: dict[str, str]) -> DbParams:
        kind = conf.get("DB_TYPE", "Pg")
        pg = kind.lower() in ("pg", "postgres", "postgresql")
        return cls(
            type="Pg" if pg else "mysql",
            host=conf.get("DB_HOSTNAME", "localhost"),
            port=int(conf.get("DB_PORT") or (5432 if pg else 3306)),
            name=conf.get("DB_BASE_NAME", "oar"),
            user=conf.get("DB_BASE_LOGIN", "oar"),
            password=conf.get("DB_BASE_PASSWD", ""),
        )


@dataclass(frozen=True)
class ServerAddress:
    """Almighty's TCP address (SERVER_HOSTNAME, SERVER_PORT)."""

    host: str
    port: int

    @classmethod
    def from_conf(cls, conf: dict[str, str]) -> ServerAddress:
        return cls(conf.get("SERVER_HOSTNAME", "localhost"), int(conf.get("SERVER_PORT") or 6666))

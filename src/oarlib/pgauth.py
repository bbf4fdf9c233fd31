"""OAR's database roles let in with md5 passwords on the test bed's PostgreSQL.

OAR opens a new connection for every module Almighty runs and for every user command, ~15 a
job in a replay, and the chain of them is serial. PostgreSQL 15's default authentication,
SCRAM-SHA-256 (4,096 PBKDF2 rounds on each side), makes a Perl DBD::Pg connection over
loopback take 5.7 ms here against 2.3 ms with md5 (100 connects timed by hand), PostgreSQL's
default until version 13 and what OAR 2.5's installations ran with. So the bed stores OAR's
two roles' passwords as md5 and lets them, and only them, into OAR's database with md5 over
loopback (a marked block at the head of ``pg_hba.conf``, which is read first match first);
every other rule is Debian's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from oarlib.run import run_checked

BEGIN = "# --- orpheus testbed: OAR's roles with md5 passwords (docs/testbed.md): begin"
END = "# --- orpheus testbed: OAR's roles with md5 passwords: end"
LOOPBACK = ("127.0.0.1/32", "::1/128")


class PgAuthError(RuntimeError):
    pass


def hba_text(text: str, database: str, roles: Sequence[str]) -> str:
    """``pg_hba.conf``'s text with the block for ``roles`` at its head (replacing one there
    before), the rest kept as it was."""
    lines = text.splitlines()
    if BEGIN in lines and END in lines[lines.index(BEGIN):]:
        begin = lines.index(BEGIN)
        lines = lines[:begin] + lines[lines.index(END, begin) + 1:]
    block = [f"host    {database}    {','.join(roles)}    {net}    md5" for net in LOOPBACK]
    return "\n".join([BEGIN, *block, END, *lines]) + "\n"


def _psql(sql: str, database: str, variables: Mapping[str, str] | None = None) -> str:
    """``sql`` run by psql as postgres; values given as psql variables (quoted by psql)."""
    argv = ["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-t", "-A", "-d", database,
            "-v", "ON_ERROR_STOP=1"]
    for name, value in (variables or {}).items():
        argv += ["-v", f"{name}={value}"]
    return run_checked(argv, PgAuthError, what="psql (OAR's roles)", input=sql, cwd="/tmp",
                       timeout=60).stdout


def ensure(hba: Path, database: str, roles: Mapping[str, str]) -> bool:
    """Put the block for ``roles`` (name -> password) in ``hba`` and store their passwords as
    md5 (idempotent); whether anything changed."""
    changed = False
    text = hba.read_text()
    if (wanted := hba_text(text, database, sorted(roles))) != text:
        hba.write_text(wanted)
        _psql("SELECT pg_reload_conf();", database)  # md5 rules accept SCRAM passwords too
        changed = True
    for role, password in roles.items():
        stored = _psql("SELECT rolpassword FROM pg_authid WHERE rolname = :'role';", database,
                       {"role": role}).strip()
        if stored != md5_password(role, password):
            _psql("SET password_encryption = 'md5';\nALTER ROLE :\"role\" PASSWORD :'pw';",
                  database, {"role": role, "pw": password})
            changed = True
    return changed


def md5_password(role: str, password: str) -> str:
    """How PostgreSQL stores an md5 password: ``md5`` + md5(password + role name)."""
    return "md5" + hashlib.md5((password + role).encode()).hexdigest()

"""OAR's database, PostgreSQL (psycopg 3) or MySQL/MariaDB (PyMySQL), behind one small API.

Both drivers take ``%s`` placeholders, so every statement is written once and always
parameterised. ``NOW`` is the SQL expression OAR itself uses for "now" in epoch seconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from oarlib.conf import DbParams


def marks(items: Sequence[Any]) -> str:
    """The ``%s`` placeholders of an SQL IN-list of ``items``: ``%s,%s,...``."""
    return ",".join(["%s"] * len(items))


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """``items`` in slices of ``size`` (one IN-list or multi-row statement each)."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


def connection_errors() -> tuple[type[Exception], ...]:
    """Errors that mean "the database is unreachable or the connection broke"."""
    import psycopg
    import pymysql

    return (psycopg.OperationalError, psycopg.InterfaceError, pymysql.err.OperationalError,
            pymysql.err.InterfaceError)


class Db:
    """One connection to OAR's database; autocommit unless inside ``transaction()``."""

    def __init__(self, params: DbParams, connect_timeout: float = 5.0) -> None:
        self.params = params
        self.kind = params.type
        if params.type == "Pg":
            import psycopg

            self._conn: Any = psycopg.connect(
                host=params.host, port=params.port, dbname=params.name, user=params.user,
                password=params.password, autocommit=True, connect_timeout=int(connect_timeout),
            )
            # whole seconds, truncated as OAR's get_date does (a cast alone would round)
            self.now_sql = "FLOOR(EXTRACT(EPOCH FROM current_timestamp))::integer"
        else:
            import pymysql

            self._conn = pymysql.connect(
                host=params.host, port=params.port, database=params.name, user=params.user,
                password=params.password, autocommit=True, connect_timeout=connect_timeout,
            )
            self.now_sql = "UNIX_TIMESTAMP()"
        self._in_tx = False

    def close(self) -> None:
        with suppress(Exception):  # closing a broken connection must not raise
            self._conn.close()

    def __enter__(self) -> Db:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        with self._conn.cursor() as cur:
            cur.execute(sql, tuple(args))
            return cur.rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(sql, [tuple(r) for r in rows])

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._conn.cursor() as cur:
            cur.execute(sql, tuple(args))
            return list(cur.fetchall())

    def scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        rows = self.query(sql, args)
        return rows[0][0] if rows else None

    def now(self) -> int:
        """OAR's current time, as its ``get_date`` reads it: the database's clock (the virtual
        one on a test bed under Orpheus's virtual clock)."""
        return int(self.scalar(f"SELECT {self.now_sql}"))

    @contextmanager
    def transaction(self) -> Iterator[Db]:
        """Run the block in one transaction (commit on success, roll back on error)."""
        if self._in_tx:
            yield self
            return
        self._in_tx = True
        try:
            if self.kind == "Pg":
                with self._conn.transaction():
                    yield self
            else:
                self._conn.begin()
                try:
                    yield self
                except BaseException:
                    self._conn.rollback()
                    raise
                self._conn.commit()
        finally:
            self._in_tx = False

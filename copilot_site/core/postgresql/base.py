"""Django's PostgreSQL backend whose connection pool recovers at once from a database restart.

``ENGINE = "copilot_site.core.postgresql"`` (set by the settings for every PostgreSQL
URL). With the pool on, Django builds a psycopg pool that checks each connection as
it hands it out (one empty round trip). When a check fails, psycopg_pool takes the
next idle connection, and after the second dead one backs off exponentially (1 s,
then 2 s). After a database restart every idle connection is dead: with three or more
of them, a request spent the whole pool wait (``COPILOT_DB_POOL_TIMEOUT_S``, 3 s) on
dead connections and answered the outage 503 although the database was back (seen
by the fault suite, and by ``tests/chat/turns/test_db_connections.py``).

Here the first dead connection makes the pool check all its idle connections at once
(``ConnectionPool.check()`` closes the dead ones and opens replacements), so the
request that found it waits only for one fresh connection.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.postgresql import base
from psycopg import Connection
from psycopg_pool import ConnectionPool


def connection_check(conn: Connection[Any]) -> None:
    """Raise when `conn` is unusable, after dropping every other dead idle connection."""
    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        pool = getattr(conn, "_pool", None)  # psycopg_pool sets it on each connection it hands out
        if isinstance(pool, ConnectionPool):
            pool.check()
        raise


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        pool: ConnectionPool | None = super().pool  # type: ignore[misc]  # not in django-stubs 5.2
        # Django passes its own check (``ConnectionPool.check_connection``) and refuses
        # another in OPTIONS["pool"]; the pool keeps it in `_check` (psycopg_pool 3.2, 3.3).
        if pool is not None and getattr(pool, "_check", None) is ConnectionPool.check_connection:
            pool._check = connection_check
        return pool

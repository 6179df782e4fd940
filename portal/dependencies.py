"""PostgreSQL and Redis: bounded checks for /health/, and one-line messages when one is down.

A PostgreSQL that accepts connections but never answers would hang a plain query forever (no
client-side timeout in libpq), so the health check sends its query without blocking and waits
for the answer with select() for at most HEALTH_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import select
import time
from urllib.parse import urlsplit

import psycopg
import redis
from django.conf import settings
from django.db import DatabaseError, connection

HEALTH_TIMEOUT_SECONDS = 2.0
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _redis_url() -> str:
    """The Redis the queues use, without the timeouts settings.py adds to the URL."""
    return settings.RQ_QUEUES["default"]["URL"].split("?", 1)[0]


def _redis_address() -> str:
    parts = urlsplit(_redis_url())  # host and port only: the URL may hold a password
    return f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"


def _database_address() -> str:
    db = connection.settings_dict
    return f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}"


def redis_check(timeout: float = HEALTH_TIMEOUT_SECONDS) -> str:
    """ "ok", or why Redis did not answer a PING within `timeout` seconds."""
    client = redis.Redis.from_url(_redis_url(), socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except REDIS_ERRORS as exc:
        return f"error: Redis at {_redis_address()} did not answer ({exc.__class__.__name__})"
    finally:
        client.close()
    return "ok"


def _postgres_select_1(timeout: float) -> None:
    db = connection.settings_dict
    deadline = time.monotonic() + timeout
    with psycopg.connect(
        dbname=db["NAME"], user=db.get("USER") or None, password=db.get("PASSWORD") or None,
        host=db.get("HOST") or None, port=db.get("PORT") or None, connect_timeout=max(1, int(timeout)),
        autocommit=True,
    ) as conn:  # fmt: skip
        pgconn = conn.pgconn
        pgconn.send_query(b"SELECT 1")
        while pgconn.flush():
            pass
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([pgconn.socket], [], [], left)[0]:
                raise TimeoutError("no answer")
            pgconn.consume_input()
            if not pgconn.is_busy():
                break
        while (result := pgconn.get_result()) is not None:
            if result.error_message:
                raise DatabaseError(result.error_message.decode(errors="replace"))


def database_check(timeout: float = HEALTH_TIMEOUT_SECONDS) -> str:
    """ "ok", or why the database did not answer SELECT 1 within about `timeout` seconds."""
    try:
        if connection.vendor == "postgresql":
            _postgres_select_1(timeout)
        else:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
    except (OSError, psycopg.Error, DatabaseError) as exc:
        return f"error: PostgreSQL at {_database_address()} did not answer ({exc.__class__.__name__})"
    return "ok"


def outage_message(exc: BaseException) -> str | None:
    """One line naming the unreachable dependency behind `exc` (or its causes), else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, REDIS_ERRORS):
            return (
                f"Cannot reach Redis at {_redis_address()}: {str(seen).splitlines()[0] if str(seen) else 'no answer'}."
            )
        if isinstance(seen, psycopg.OperationalError) or (
            isinstance(seen, DatabaseError) and seen.__class__.__name__ in {"OperationalError", "InterfaceError"}
        ):
            reason = str(seen).strip().splitlines()[-1] if str(seen).strip() else "no answer"
            return f"Cannot reach PostgreSQL at {_database_address()}: {reason}"
        seen = seen.__cause__ or seen.__context__
    return None

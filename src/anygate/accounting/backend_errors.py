"""What a counters backend raises when it cannot answer: the database's errors, and Redis's.

Importing Redis's client costs ~16 MB of memory, and only a process configured with a ``redis_url`` uses it
(the Redis limiter and the store's change notices import it then). An error of a module that was never
imported cannot be raised, so until something has imported it these tuples leave Redis's errors out.
"""

from __future__ import annotations

import sys

from sqlalchemy.exc import SQLAlchemyError


def redis_errors() -> tuple[type[Exception], ...]:
    client = sys.modules.get("redis")
    return () if client is None else (client.RedisError,)


def counters_errors(*also: type[Exception]) -> tuple[type[Exception], ...]:
    """The errors of an unavailable counters backend (SQL or Redis), and ``also``."""
    return (SQLAlchemyError, *redis_errors(), *also)

"""Which connections a caller may see: every service query that returns or
changes merchant data is narrowed to the caller's scope."""

from typing import Any, TypeVar

from sqlalchemy import Select, false

# None: every connection (an unscoped key); otherwise exactly these.
ConnectionScope = frozenset[str] | None

S = TypeVar("S", bound=Select[Any])


def restrict(statement: S, column: Any, scope: ConnectionScope) -> S:
    """The statement limited to rows whose connection is in `scope`."""
    if scope is None:
        return statement
    if not scope:
        return statement.where(false())
    return statement.where(column.in_(sorted(scope)))


def allows(scope: ConnectionScope, connection_id: str) -> bool:
    return scope is None or connection_id in scope

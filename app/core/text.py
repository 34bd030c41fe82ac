"""Text no database column accepts: NUL characters and lone surrogates.

Postgres refuses both in text and JSONB (SQLite would store them), so input
holding them is refused or quarantined before it reaches a query.
"""

from typing import Any


def find_unstorable_text(value: Any, path: str = "$") -> str | None:
    """Where the first NUL or lone surrogate is, as a readable path, or None.

    Iterative, so that deeply nested input cannot exhaust the stack.
    """
    pending: list[tuple[str, Any]] = [(path, value)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return f"{where} contains a NUL character"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return f"{where} contains an unpaired surrogate"
        elif isinstance(item, dict):
            for key, child in item.items():
                pending.append((f"{where}.<key>", key))
                pending.append((f"{where}.{key}"[:200], child))
        elif isinstance(item, list | tuple):
            pending.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return None

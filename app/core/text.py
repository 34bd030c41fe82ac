"""Values no database column accepts: NUL characters and lone surrogates in
text, and numbers that are not finite.

Postgres refuses the first two in text and JSONB (SQLite would store them),
and JSON has no spelling for infinity or NaN (a request body's `1e999` parses
as infinity), so input holding them is refused or quarantined before it
reaches a query.
"""

import math
import re
from typing import Any

# In JSON text, a NUL or a lone surrogate can only come from a `\u0000` or
# `\uD800`-`\uDFFF` escape, or from raw bytes that strict parsing or UTF-8
# decoding would refuse anyway (a NUL byte, an encoded surrogate). A body with
# none of these cannot hold either, whatever it parses to. Matches can be false
# alarms (an escaped backslash before "u0000"): they only cost the full walk.
_MAYBE_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\x00|\xed[\xa0-\xbf]")


def json_may_hold_unstorable_text(raw: bytes) -> bool:
    """False when JSON text `raw` certainly parses to storable text only."""
    return _MAYBE_UNSTORABLE.search(raw) is not None


def find_unstorable_text(value: Any, path: str = "$") -> str | None:
    """Where the first NUL, lone surrogate or non-finite number is, as a
    readable path, or None.

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
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{where} is not a finite number"
        elif isinstance(item, dict):
            for key, child in item.items():
                pending.append((f"{where}.<key>", key))
                pending.append((f"{where}.{key}"[:200], child))
        elif isinstance(item, list | tuple):
            pending.extend((f"{where}[{i}]", child) for i, child in enumerate(item))
    return None

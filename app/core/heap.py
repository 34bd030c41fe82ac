"""Garbage-collector settings for the long-running processes.

CPython's full collections walk every tracked object. The service starts with
about 140,000 of them (modules, FastAPI and SQLAlchemy structures), all alive
until exit, and concurrent requests that wait on the database survive young
collections and push full ones to every second or two under load: each took
over 100 ms here, stalling every request in the process. Freezing what start-up
built takes it out of those walks, and a larger young generation lets
short-lived request objects die before they are promoted.

Only `serve` and `worker` call this: tests create many applications in one
process, and frozen objects are never collected.
"""

import gc

# Allocations between young collections (CPython's default is 700).
YOUNG_THRESHOLD = 10_000


def settle_after_startup() -> None:
    """Collect once, then exempt everything alive now from later collections."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)

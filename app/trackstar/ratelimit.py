"""Client-side rate limiting per access token, so bursts stay under Trackstar's
budgets instead of discovering them through 429s."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum


class CallKind(StrEnum):
    READ = "read"
    WRITE = "write"


class ThrottledTooLong(Exception):
    """Waiting for a slot would take longer than the caller allows."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"next slot in {wait:.1f} s")
        self.wait = wait


@dataclass
class _Schedule:
    next_slot: float = 0.0


class RateLimiter:
    """Spaces calls per (connection, kind) at least 1/rate seconds apart.

    Even spacing, rather than a bucket that allows bursts, keeps every
    one-second window (Trackstar counts per second) within the budget, whatever
    the alignment of our clock with theirs. `pause` pushes the next slot out,
    for a 429 or an exhausted `remaining` count.
    """

    def __init__(
        self,
        *,
        read_rate: float,
        write_rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._intervals = {CallKind.READ: 1 / read_rate, CallKind.WRITE: 1 / write_rate}
        self._schedules: dict[tuple[str, CallKind], _Schedule] = {}
        self._clock = clock
        self._sleep = sleep

    def _schedule(self, key: str, kind: CallKind) -> _Schedule:
        return self._schedules.setdefault((key, kind), _Schedule())

    async def acquire(
        self, key: str, kind: CallKind, *, max_wait: float | None = None
    ) -> None:
        """Wait for this call's slot; `ThrottledTooLong` if beyond `max_wait`."""
        schedule = self._schedule(key, kind)
        now = self._clock()
        slot = max(now, schedule.next_slot)
        wait = slot - now
        if max_wait is not None and wait > max_wait:
            raise ThrottledTooLong(wait)
        schedule.next_slot = slot + self._intervals[kind]
        if wait > 0:
            await self._sleep(wait)

    def pause(self, key: str, kind: CallKind, seconds: float) -> None:
        schedule = self._schedule(key, kind)
        schedule.next_slot = max(schedule.next_slot, self._clock() + seconds)

    def keys(self) -> list[str]:
        return sorted({key for key, _ in self._schedules})

    def delay(self, key: str, kind: CallKind) -> float:
        """Seconds until the next free slot (0 when a call could go now)."""
        schedule = self._schedules.get((key, kind))
        if schedule is None:
            return 0.0
        return max(0.0, schedule.next_slot - self._clock())

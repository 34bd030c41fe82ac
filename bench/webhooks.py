"""Benchmark of the Trackstar webhook receiver against its bare-FastAPI baseline.

    .venv/bin/python bench/webhooks.py \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres

For each variant (see --variants) the script creates a fresh database, starts
the real server (`python -m app serve`) or the baseline (bench/baseline_app.py)
as a subprocess, drives it with the load generator in this file, stops it,
checks the database row by row against what the server accepted, and drops
the database. Results are printed as Markdown and written to bench/out/
(webhooks-*.md, webhooks-*.json, server logs, the py-spy profile).

By default the working tree is served; --git-ref REF serves a commit instead
(extracted read-only with `git archive` into a temporary directory), and
--app-dir DIR any other copy of the `app` package.

Traffic: Svix-signed `cart-order.created` / `cart-order.updated` deliveries
built from app/webhooks/samples/cart-order.created.json, each with its own
svix-id. About 10 % are exact resends of an earlier delivery (same svix-id,
timestamp, signature and body) and about 10 % are stale updates (a new
svix-id for an order already sent, with an `updated_date` older than any
version sent); about 20 % are newer updates of orders already sent, the rest
create new orders. A delivery that depends on an earlier one is placed at
least --gap positions later and held back until that one is answered, so the
outcome of every delivery is known. A 5xx or a dropped connection is retried
with the same bytes, as Svix does (up to 5 attempts).

Phases, per variant:
  warm-up       closed loop, --connections, --warmup seconds (also estimates
                the saturation rate, to size the next batch);
  saturation    closed loop, --connections, about --duration seconds:
                events/s and latency under saturation;
  open loop     --rate events/s for --open-duration seconds, sent on schedule
                whatever the responses; latency runs from the scheduled send
                time, so queueing in the server or in the generator counts (no
                coordinated omission). Deliveries still unsent 30 s after the
                schedule ends are abandoned and count as infinitely late.
Each batch is signed just before its phase starts (the receiver refuses
timestamps more than 5 minutes old). Before each measured phase the script
waits (up to --quiet-timeout) for other load on the machine to pass.

The generator is raw asyncio on uvloop over HTTP/1.1 keep-alive connections
(no HTTP client library), to leave as much of the CPUs as possible to the
server and Postgres. CPU time of the server (with its workers), of Postgres
(our database's backends and the shared processes) and of the generator is
read from /proc for every phase; the rest of the machine's busy time is
reported as "other".

--profile (on by default) attaches py-spy (`pip install py-spy`; found on
PATH, next to this Python, or given with --py-spy) to the one-worker service
during an extra saturation phase that is not part of the measured figures,
and summarises where the time goes.
"""

import argparse
import asyncio
import atexit
import base64
import bisect
import contextlib
import dataclasses
import enum
import hashlib
import hmac
import json
import math
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import simplejson
import uvloop

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SAMPLE = REPO / "app" / "webhooks" / "samples" / "cart-order.created.json"
WEBHOOK_PATH = "/webhooks/trackstar"
SIGNATURE_TOLERANCE = timedelta(minutes=5)
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_EVENTS_PER_SECOND = 1000.0
TARGET_P99_MS = 50.0
BASE_VERSION = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
STALE_STATUS = "cancelled"
STALE_TOTAL = "0.01"
UPDATE_STATUSES = ("confirmed", "processing", "partially_fulfilled", "fulfilled")
# Environment variables that would change how the server under test behaves.
SERVER_SETTINGS = (
    "ENVIRONMENT",
    "DATABASE_URL",
    "DATABASE_POOL_SIZE",
    "DATABASE_POOL_TIMEOUT",
    "DATABASE_STATEMENT_CACHE_SIZE",
    "TRACKSTAR_WEBHOOK_SECRET",
    "WEBHOOK_MAX_BODY_BYTES",
    "WEBHOOK_TOLERANCE",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "RUN_WORKER",
    "PYTHONPATH",
)


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------
# Deliveries: what is sent, and what each one should do.


class Kind(enum.IntEnum):
    CREATED = 0
    UPDATED = 1
    DUPLICATE = 2
    STALE = 3


EXPECTED_OUTCOME = {
    Kind.CREATED: "processed",
    Kind.UPDATED: "processed",
    Kind.DUPLICATE: "duplicate",
    Kind.STALE: "stale",
}


@dataclasses.dataclass(slots=True)
class Delivery:
    kind: Kind
    message_id: str
    order_id: str
    version: datetime
    body: bytes
    depends_on: int = -1
    request: bytes = b""
    # Filled in by the generator.
    sent: bool = False
    sequence: int = -1  # order of first sending, over the whole variant
    attempts: int = 0
    status_code: int = 0
    outcome: str = ""


@dataclasses.dataclass
class OrderState:
    order_id: str
    created_index: int
    created_version: datetime
    latest_index: int
    latest_version: datetime
    updates: int = 0


@dataclasses.dataclass(frozen=True)
class Mix:
    duplicates: float
    stale: float
    updates: float
    gap: int


class BodyTemplate:
    """The sample order as JSON text with a few fields left to fill in."""

    FIELDS = ("EVENT", "ID", "NUMBER", "UPDATED", "STATUS")

    def __init__(self) -> None:
        sample = simplejson.loads(SAMPLE.read_bytes(), use_decimal=True)
        data = sample["data"]
        sample["event_type"] = "@EVENT@"
        data["id"] = "@ID@"
        data["order_number"] = "@NUMBER@"
        data["updated_date"] = "@UPDATED@"
        data["trackstar_updated_date"] = "@UPDATED@"
        data["status"] = "@STATUS@"
        data["total_price"] = "@TOTAL@"
        self.connection_id: str = sample["connection_id"]
        self.text: str = simplejson.dumps(sample, use_decimal=True, ensure_ascii=False)

    def render(
        self,
        *,
        event_type: str,
        order_id: str,
        number: int,
        version: datetime,
        status: str,
        total: str,
    ) -> bytes:
        stamp = version.strftime("%Y-%m-%dT%H:%M:%SZ")
        text = (
            self.text.replace("@EVENT@", event_type)
            .replace("@ID@", order_id)
            .replace("@NUMBER@", str(number))
            .replace("@UPDATED@", stamp)
            .replace("@STATUS@", status)
            .replace('"@TOTAL@"', total)
        )
        return text.encode()


def plan_batch(
    size: int, tag: str, mix: Mix, rng: random.Random, template: BodyTemplate
) -> list[Delivery]:
    """`size` deliveries; dependencies point at least `mix.gap` positions back."""
    deliveries: list[Delivery] = []
    originals: list[int] = []  # created/updated deliveries, by index
    orders: list[OrderState] = []
    created_at: list[int] = []  # orders[k].created_index, ascending
    # The first `gap` deliveries can only create; scale so the whole batch
    # still carries the requested shares.
    scale = size / max(1, size - mix.gap)
    dup_cut = mix.duplicates * scale
    stale_cut = dup_cut + mix.stale * scale
    update_cut = stale_cut + mix.updates * scale
    for index in range(size):
        horizon = index - mix.gap
        draw = rng.random()
        kind = Kind.CREATED
        if horizon >= 0 and originals and originals[0] <= horizon:
            if draw < dup_cut:
                kind = Kind.DUPLICATE
            elif draw < stale_cut:
                kind = Kind.STALE
            elif draw < update_cut:
                kind = Kind.UPDATED
        eligible_orders = bisect.bisect_right(created_at, horizon)
        if kind is Kind.DUPLICATE:
            eligible = bisect.bisect_right(originals, horizon)
            origin_index = originals[rng.randrange(eligible)]
            original = deliveries[origin_index]
            deliveries.append(
                Delivery(
                    kind=Kind.DUPLICATE,
                    message_id=original.message_id,
                    order_id=original.order_id,
                    version=original.version,
                    body=original.body,
                    depends_on=origin_index,
                )
            )
            continue
        if kind is Kind.STALE:
            order = orders[rng.randrange(eligible_orders)]
            version = order.created_version - timedelta(days=1)
            body = template.render(
                event_type="cart-order.updated",
                order_id=order.order_id,
                number=index,
                version=version,
                status=STALE_STATUS,
                total=STALE_TOTAL,
            )
            deliveries.append(
                Delivery(
                    kind=Kind.STALE,
                    message_id=f"msg_{tag}_{index:07d}",
                    order_id=order.order_id,
                    version=version,
                    body=body,
                    depends_on=order.created_index,
                )
            )
            continue
        if kind is Kind.UPDATED:
            chosen: OrderState | None = None
            for _ in range(8):
                candidate = orders[rng.randrange(eligible_orders)]
                if candidate.latest_index <= horizon:
                    chosen = candidate
                    break
            if chosen is not None:
                version = chosen.latest_version + timedelta(minutes=1)
                status = UPDATE_STATUSES[min(chosen.updates, len(UPDATE_STATUSES) - 1)]
                body = template.render(
                    event_type="cart-order.updated",
                    order_id=chosen.order_id,
                    number=index,
                    version=version,
                    status=status,
                    total=f"{60 + chosen.updates}.00",
                )
                deliveries.append(
                    Delivery(
                        kind=Kind.UPDATED,
                        message_id=f"msg_{tag}_{index:07d}",
                        order_id=chosen.order_id,
                        version=version,
                        body=body,
                        depends_on=chosen.latest_index,
                    )
                )
                chosen.latest_index = index
                chosen.latest_version = version
                chosen.updates += 1
                originals.append(index)
                continue
        order_id = f"ord_{tag}_{index:07d}"
        version = BASE_VERSION + timedelta(seconds=index)
        body = template.render(
            event_type="cart-order.created",
            order_id=order_id,
            number=index,
            version=version,
            status="open",
            total="55.08",
        )
        deliveries.append(
            Delivery(
                kind=Kind.CREATED,
                message_id=f"msg_{tag}_{index:07d}",
                order_id=order_id,
                version=version,
                body=body,
            )
        )
        orders.append(OrderState(order_id, index, version, index, version))
        created_at.append(index)
        originals.append(index)
    return deliveries


def sign_batch(deliveries: Sequence[Delivery], secret: str, port: int) -> float:
    """Build each request with a fresh Svix signature; returns the signing time.

    The HMAC is computed here, independently of the `svix`/`standardwebhooks`
    code the server verifies with. A resend reuses its original's request
    bytes: same svix-id, timestamp, signature and body.
    """
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed_at = time.time()
    timestamp = str(int(signed_at))
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\n"
        f"host: 127.0.0.1:{port}\r\n"
        "content-type: application/json\r\n"
        "user-agent: Svix-Webhooks/1.0 (bench)\r\n"
    )
    for delivery in deliveries:
        if delivery.kind is Kind.DUPLICATE:
            delivery.request = deliveries[delivery.depends_on].request
            continue
        to_sign = f"{delivery.message_id}.{timestamp}.".encode() + delivery.body
        digest = hmac.new(key, to_sign, hashlib.sha256).digest()
        signature = base64.b64encode(digest).decode()
        delivery.request = (
            head
            + f"content-length: {len(delivery.body)}\r\n"
            + f"svix-id: {delivery.message_id}\r\n"
            + f"svix-timestamp: {timestamp}\r\n"
            + f"svix-signature: v1,{signature}\r\n\r\n"
        ).encode() + delivery.body
    return signed_at


# --------------------------------------------------------------------------
# CPU accounting from /proc.


@dataclasses.dataclass(frozen=True)
class ProcInfo:
    ppid: int
    comm: str
    cpu: float  # user + system seconds
    title: str = ""  # command line, read for Postgres processes only


@dataclasses.dataclass(frozen=True)
class Watched:
    """What a phase's CPU figures are about."""

    server_pid: int
    database: str | None  # Postgres backends of other databases are "other"


POSTGRES_CLIENT = re.compile(r"\d+\.\d+\.\d+\.\d+\(\d+\)|\[local\]")


def process_table() -> dict[int, ProcInfo]:
    table: dict[int, ProcInfo] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        title = ""
        if comm == "postgres":
            with contextlib.suppress(OSError):
                title = Path(entry.path, "cmdline").read_bytes().decode("latin-1")
        table[int(entry.name)] = ProcInfo(int(fields[1]), comm, cpu, title)
    return table


def is_ours(info: ProcInfo, database: str | None) -> bool:
    """A Postgres process working for us: a backend of our database, or one of
    the server's shared processes (postmaster, WAL writer, checkpointer...)."""
    if info.comm != "postgres":
        return False
    if POSTGRES_CLIENT.search(info.title) is None:
        return True
    return database is not None and f" {database} " in info.title


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


def descendants(table: dict[int, ProcInfo], root: int) -> set[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for pid, info in table.items():
        children[info.ppid].append(pid)
    found, pending = set(), [root]
    while pending:
        pid = pending.pop()
        if pid in found:
            continue
        found.add(pid)
        pending.extend(children.get(pid, []))
    return found


@dataclasses.dataclass
class CpuSnapshot:
    at: float
    table: dict[int, ProcInfo]
    jiffies: tuple[int, int]

    @classmethod
    def take(cls) -> "CpuSnapshot":
        return cls(time.perf_counter(), process_table(), machine_jiffies())


def cpu_usage(
    start: CpuSnapshot, end: CpuSnapshot, watched: Watched
) -> dict[str, float]:
    """Per group, CPU time as a percentage of one core over the interval."""
    wall = end.at - start.at

    def used(pids: set[int]) -> float:
        seconds = 0.0
        for pid in pids:
            before = start.table.get(pid)
            seconds += end.table[pid].cpu - (before.cpu if before else 0.0)
        return 100.0 * seconds / wall

    server = descendants(end.table, watched.server_pid) & end.table.keys()
    postgres = {
        pid for pid, info in end.table.items() if is_ours(info, watched.database)
    }
    generator = {os.getpid()} & end.table.keys()
    busy = end.jiffies[0] - start.jiffies[0]
    total = end.jiffies[1] - start.jiffies[1]
    cores = os.cpu_count() or 1
    usage = {
        "server": used(server),
        "postgres": used(postgres),
        "generator": used(generator),
        "machine": 100.0 * cores * busy / max(1, total),
    }
    # Everything else: other users of the machine, the kernel's own work.
    mine = usage["server"] + usage["postgres"] + usage["generator"]
    usage["other"] = max(0.0, usage["machine"] - mine)
    return usage


async def wait_for_quiet(limit: float, timeout: float) -> dict[str, float]:
    """Wait until the machine's load (% of one core) is at most `limit`."""
    cores = os.cpu_count() or 1
    started = time.monotonic()
    while True:
        before = machine_jiffies()
        await asyncio.sleep(1.0)
        after = machine_jiffies()
        load = 100.0 * cores * (after[0] - before[0]) / max(1, after[1] - before[1])
        waited = time.monotonic() - started
        if load <= limit or waited >= timeout:
            return {"load_before": load, "waited": waited}


# --------------------------------------------------------------------------
# The load generator: HTTP/1.1 keep-alive over raw asyncio transports.


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            response = self._parse()
        except ValueError as error:
            waiter.set_exception(error)
            return
        if response is not None:
            self.waiter = None
            waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def _parse(self) -> tuple[int, bytes] | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).lower()
        start = head.find(b"\r\ncontent-length:")
        if start < 0:
            raise ValueError("response without content-length")
        stop = head.find(b"\r\n", start + 2)
        length = int(head[start + 17 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return None
        status = int(head[9:12])
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        return status, body

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.transport is None:
            raise ConnectionError("not connected")
        waiter: asyncio.Future[tuple[int, bytes]] = (
            asyncio.get_running_loop().create_future()
        )
        self.waiter = waiter
        self.transport.write(data)
        return await waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(port: int) -> HttpConnection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(HttpConnection, "127.0.0.1", port)
    return protocol


def outcome_of(body: bytes) -> str:
    start = body.find(b'"status":"')
    if start < 0:
        return ""
    start += 10
    return body[start : body.find(b'"', start)].decode()


@dataclasses.dataclass
class PhaseResult:
    name: str
    mode: str  # "closed" or "open"
    connections: int
    offered_rate: float | None
    sent: int
    ok: int
    errors: int
    retries: int
    abandoned: int  # due but never sent: the phase overran its time limit
    elapsed: float
    latencies_ms: list[float]
    status_codes: dict[int, int]
    outcomes: dict[str, int]
    dependency_waits: int
    max_send_lag_ms: float
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    def summary(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        del data["latencies_ms"]
        data["events_per_second"] = self.rate
        for p in (50, 90, 99, 99.9, 100):
            data[f"p{p}_ms"] = self.percentile(p)
        return data


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of `values` (sorted on the fly)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class Tracker:
    """Completion of deliveries, so a dependent one waits for its original."""

    def __init__(self, size: int) -> None:
        self.done = bytearray(size)
        self.waiters: dict[int, asyncio.Future[None]] = {}
        self.waits = 0

    async def wait_for(self, index: int) -> None:
        if index < 0 or self.done[index]:
            return
        self.waits += 1
        future = self.waiters.get(index)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self.waiters[index] = future
        await future

    def finish(self, index: int) -> None:
        self.done[index] = 1
        future = self.waiters.pop(index, None)
        if future is not None and not future.done():
            future.set_result(None)


SEND_SEQUENCE = iter(range(1 << 62))
MAX_ATTEMPTS = 5
RETRY_DELAY = 0.2


async def send_one(
    connection: HttpConnection | None,
    port: int,
    delivery: Delivery,
) -> HttpConnection | None:
    """Send one delivery as Svix would: a 5xx or a broken connection is retried
    (same bytes) after a short pause, up to MAX_ATTEMPTS times in all."""
    delivery.sent = True
    delivery.sequence = next(SEND_SEQUENCE)
    while delivery.attempts < MAX_ATTEMPTS:
        if delivery.attempts:
            await asyncio.sleep(RETRY_DELAY)
        delivery.attempts += 1
        try:
            if connection is None or connection.transport is None:
                connection = await connect(port)
            status, body = await connection.request(delivery.request)
        except (ConnectionError, OSError, ValueError):
            if connection is not None:
                connection.close()
            connection = None
            delivery.status_code = -1
            continue
        delivery.status_code = status
        delivery.outcome = outcome_of(body)
        if status < 500:
            break
    return connection


def tally(
    name: str,
    mode: str,
    connections: int,
    offered_rate: float | None,
    deliveries: Sequence[Delivery],
    elapsed: float,
    latencies: list[float],
    waits: int,
    max_lag: float,
    cpu: dict[str, float],
    abandoned: int = 0,
) -> PhaseResult:
    sent = [d for d in deliveries if d.sent]
    codes = Counter(d.status_code for d in sent)
    ok = sum(n for code, n in codes.items() if 200 <= code < 300)
    # An abandoned delivery never got an answer: infinitely late.
    latencies = latencies + [math.inf] * abandoned
    return PhaseResult(
        name=name,
        mode=mode,
        connections=connections,
        offered_rate=offered_rate,
        sent=len(sent),
        ok=ok,
        errors=len(sent) - ok,
        retries=sum(d.attempts - 1 for d in sent),
        abandoned=abandoned,
        elapsed=elapsed,
        latencies_ms=[1000.0 * x for x in latencies],
        status_codes=dict(codes),
        outcomes=dict(Counter(d.outcome for d in sent)),
        dependency_waits=waits,
        max_send_lag_ms=1000.0 * max_lag,
        cpu=cpu,
    )


async def closed_loop(
    name: str,
    deliveries: Sequence[Delivery],
    port: int,
    connections: int,
    watched: Watched,
    deadline_seconds: float | None = None,
) -> PhaseResult:
    """Each connection sends its next delivery as soon as the last is answered."""
    tracker = Tracker(len(deliveries))
    latencies: list[float] = []
    pool = [await connect(port) for _ in range(connections)]
    next_index = 0
    start_cpu = CpuSnapshot.take()
    started = time.perf_counter()
    deadline = started + deadline_seconds if deadline_seconds else math.inf

    async def worker(connection: HttpConnection | None) -> None:
        nonlocal next_index
        while next_index < len(deliveries):
            if time.perf_counter() >= deadline:
                return
            index = next_index
            next_index += 1
            delivery = deliveries[index]
            await tracker.wait_for(delivery.depends_on)
            sent_at = time.perf_counter()
            connection = await send_one(connection, port, delivery)
            latencies.append(time.perf_counter() - sent_at)
            tracker.finish(index)
        if connection is not None:
            connection.close()

    await asyncio.gather(*(worker(c) for c in pool))
    elapsed = time.perf_counter() - started
    cpu = cpu_usage(start_cpu, CpuSnapshot.take(), watched)
    return tally(
        name,
        "closed",
        connections,
        None,
        deliveries,
        elapsed,
        latencies,
        tracker.waits,
        0.0,
        cpu,
    )


async def open_loop(
    name: str,
    deliveries: Sequence[Delivery],
    port: int,
    rate: float,
    connections: int,
    watched: Watched,
    grace: float = 30.0,
) -> PhaseResult:
    """Delivery i is due at start + i/rate, whatever happened to the others.

    Due deliveries wait in a queue for a free connection; their latency runs
    from the time they were due, so neither a slow server nor a late generator
    can hide the wait.
    """
    tracker = Tracker(len(deliveries))
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    pool = [await connect(port) for _ in range(connections)]
    max_lag = 0.0
    abandoned = 0
    hard_stop = math.inf

    async def worker(connection: HttpConnection | None) -> None:
        nonlocal max_lag, abandoned
        while True:
            item = await queue.get()
            if item is None:
                break
            index, due = item
            if time.perf_counter() > hard_stop:
                abandoned += 1
                tracker.finish(index)
                continue
            delivery = deliveries[index]
            await tracker.wait_for(delivery.depends_on)
            max_lag = max(max_lag, time.perf_counter() - due)
            connection = await send_one(connection, port, delivery)
            latencies.append(time.perf_counter() - due)
            tracker.finish(index)
        if connection is not None:
            connection.close()

    workers = [asyncio.create_task(worker(c)) for c in pool]
    start_cpu = CpuSnapshot.take()
    started = time.perf_counter() + 0.01
    hard_stop = started + len(deliveries) / rate + grace
    index = 0
    while index < len(deliveries):
        now = time.perf_counter()
        while index < len(deliveries):
            due = started + index / rate
            if due > now:
                break
            queue.put_nowait((index, due))
            index += 1
        if index < len(deliveries):
            await asyncio.sleep(max(0.0, started + index / rate - now))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - started
    cpu = cpu_usage(start_cpu, CpuSnapshot.take(), watched)
    return tally(
        name,
        "open",
        connections,
        rate,
        deliveries,
        elapsed,
        latencies,
        tracker.waits,
        max_lag,
        cpu,
        abandoned,
    )


# --------------------------------------------------------------------------
# Servers and databases.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def asyncpg_dsn(url: str) -> str:
    scheme, _, rest = url.partition("://")
    if scheme not in ("postgres", "postgresql", "postgresql+asyncpg"):
        raise SystemExit("--database-url must be a postgresql:// URL")
    return f"postgresql://{rest}"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def postgres_version(url: str) -> str:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        version: str = await connection.fetchval("SHOW server_version")
        settings = await connection.fetch(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('synchronous_commit', 'fsync', 'shared_buffers', 'max_connections')"
        )
    finally:
        await connection.close()
    details = ", ".join(f"{row['name']}={row['setting']}" for row in settings)
    return f"PostgreSQL {version} ({details})"


@dataclasses.dataclass
class Variant:
    name: str
    baseline: bool
    workers: int = 1
    log_level: str | None = "WARNING"  # None: the service's default (INFO)

    @property
    def description(self) -> str:
        what = "bare FastAPI baseline" if self.baseline else "service"
        level = self.log_level or "INFO (default)"
        logs = "" if self.baseline else f", LOG_LEVEL={level}"
        return f"{what}, {self.workers} worker(s){logs}"


VARIANTS = {
    "baseline": Variant("baseline", baseline=True),
    "service": Variant("service", baseline=False),
    "service-info": Variant("service-info", baseline=False, log_level=None),
    "service-workers2": Variant("service-workers2", baseline=False, workers=2),
    "baseline-workers2": Variant("baseline-workers2", baseline=True, workers=2),
}


PROFILED_VARIANTS = ("service",)


class Server:
    def __init__(
        self,
        variant: Variant,
        port: int,
        database_url: str | None,
        secret: str,
        out_dir: Path,
        app_dir: Path,
    ) -> None:
        self.variant = variant
        self.port = port
        self.log_path = out_dir / f"webhooks-{variant.name}.server.log"
        env = {k: v for k, v in os.environ.items() if k not in SERVER_SETTINGS}
        if app_dir != REPO:
            # Ahead of the editable install of the repository's `app`.
            env["PYTHONPATH"] = str(app_dir)
        if variant.baseline:
            self.argv = [
                sys.executable,
                str(BENCH_DIR / "baseline_app.py"),
                "--port",
                str(port),
                "--workers",
                str(variant.workers),
            ]
        else:
            assert database_url is not None
            self.argv = [
                sys.executable,
                "-m",
                "app",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(variant.workers),
            ]
            env["DATABASE_URL"] = database_url
            env["TRACKSTAR_WEBHOOK_SECRET"] = secret
            if variant.log_level is not None:
                env["LOG_LEVEL"] = variant.log_level
        self.env = env
        # Not the repository: a developer's .env there must not leak in.
        self.cwd = out_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 90.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        base = f"http://127.0.0.1:{self.port}"
        with httpx.Client(base_url=base, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.variant.name} exited with {self.process.returncode};"
                        f" see {self.log_path}"
                    )
                try:
                    if self.variant.baseline:
                        response = client.post(WEBHOOK_PATH, content=b"{}")
                    else:
                        response = client.get("/readyz")
                    if response.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"{self.variant.name} not ready after {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            # Our own session (start_new_session): the server and its workers.
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


# --------------------------------------------------------------------------
# The database check.


@dataclasses.dataclass
class Expectation:
    """What the database must hold, from the deliveries the server accepted.

    The receiver's rules are replayed over the accepted deliveries in the order
    they were first sent (a delivery that depends on another is only sent once
    that one is answered, so this is the order the server applied them in):
    a svix-id seen before is a duplicate; otherwise the event is stored, and
    the order is written unless the stored copy has a newer updated_date, in
    which case the event is stale. Refused deliveries (no 2xx after retries)
    must have changed nothing.
    """

    deliveries: list[Delivery] = dataclasses.field(default_factory=list)

    def add(self, deliveries: Sequence[Delivery]) -> None:
        self.deliveries.extend(d for d in deliveries if d.sent)

    def replay(self) -> dict[str, Any]:
        accepted_ids: set[str] = set()
        refused_ids: set[str] = set()
        orders: dict[str, datetime] = {}
        stale_orders: dict[str, datetime] = {}
        outcomes: Counter[str] = Counter()
        wrong_answers: Counter[str] = Counter()
        off_plan = 0
        for delivery in sorted(self.deliveries, key=lambda d: d.sequence):
            if not 200 <= delivery.status_code < 300:
                refused_ids.add(delivery.message_id)
                continue
            if delivery.message_id in accepted_ids:
                outcome = "duplicate"
            else:
                accepted_ids.add(delivery.message_id)
                stored = orders.get(delivery.order_id)
                if stored is not None and delivery.version < stored:
                    outcome = "stale"
                    stale_orders[delivery.order_id] = delivery.version
                else:
                    outcome = "processed"
                    orders[delivery.order_id] = delivery.version
            outcomes[outcome] += 1
            if outcome != EXPECTED_OUTCOME[delivery.kind]:
                off_plan += 1
            if delivery.outcome != outcome:
                wrong_answers[f"{outcome}->{delivery.outcome}"] += 1
        return {
            "accepted_ids": accepted_ids,
            "refused_ids": refused_ids - accepted_ids,
            "orders": orders,
            "stale_orders": stale_orders,
            "outcomes": outcomes,
            "wrong_answers": wrong_answers,
            "off_plan": off_plan,
            "kinds": Counter(d.kind.name.lower() for d in self.deliveries),
            "refused": sum(
                1 for d in self.deliveries if not 200 <= d.status_code < 300
            ),
        }


async def check_database(url: str, expected: Expectation) -> dict[str, Any]:
    model = expected.replay()
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        keys = await connection.fetch(
            "SELECT dedupe_key FROM webhook_events WHERE dedupe_key IS NOT NULL"
        )
        by_status = dict(
            await connection.fetch(
                "SELECT status, count(*) FROM webhook_events GROUP BY status"
            )
        )
        linked_duplicates = await connection.fetchval(
            "SELECT count(*) FROM webhook_events d JOIN webhook_events o"
            " ON o.id = d.duplicate_of_id AND o.message_id = d.message_id"
            " WHERE d.status = 'duplicate' AND o.dedupe_key IS NOT NULL"
        )
        stored = await connection.fetch(
            "SELECT id, updated_date, status, total_price FROM orders"
        )
        lines = await connection.fetchval("SELECT count(*) FROM order_lines")
        stale_targets = {
            row["record_id"]
            for row in await connection.fetch(
                "SELECT DISTINCT record_id FROM webhook_events WHERE status = 'stale'"
            )
        }
    finally:
        await connection.close()

    stored_keys = {row["dedupe_key"] for row in keys}
    accepted: set[str] = model["accepted_ids"]
    refused: set[str] = model["refused_ids"]
    expected_orders: dict[str, datetime] = model["orders"]
    stale_orders: dict[str, datetime] = model["stale_orders"]
    outcomes: Counter[str] = model["outcomes"]
    orders = {row["id"]: row for row in stored}
    wrong_versions = [
        order_id
        for order_id, version in expected_orders.items()
        if order_id not in orders or orders[order_id]["updated_date"] != version
    ]
    touched_by_stale = [
        order_id
        for order_id in stale_orders
        if order_id not in orders
        or orders[order_id]["status"] == STALE_STATUS
        or str(orders[order_id]["total_price"]) == STALE_TOTAL
        or orders[order_id]["updated_date"] != expected_orders.get(order_id)
    ]
    examples = []
    for order_id, stale_version in sorted(stale_orders.items())[:3]:
        row = orders.get(order_id)
        examples.append(
            {
                "order_id": order_id,
                "stale_updated_date": stale_version.isoformat(),
                "stored_updated_date": row["updated_date"].isoformat() if row else None,
                "stored_status": row["status"] if row else None,
                "stored_total_price": str(row["total_price"]) if row else None,
            }
        )
    other_statuses = sum(
        n
        for status, n in by_status.items()
        if status not in ("processed", "duplicate", "stale")
    )
    checks = {
        "webhook_events with dedupe_key = unique svix ids accepted": (
            len(stored_keys),
            len(accepted),
        ),
        "accepted svix ids missing from the database (lost)": (
            len(accepted - stored_keys),
            0,
        ),
        "stored svix ids never sent or refused (phantom)": (
            len(stored_keys - accepted - refused),
            0,
        ),
        "status duplicate = duplicates accepted": (
            by_status.get("duplicate", 0),
            outcomes["duplicate"],
        ),
        "duplicates linked to their original": (
            linked_duplicates,
            outcomes["duplicate"],
        ),
        "status stale = stale updates accepted": (
            by_status.get("stale", 0),
            outcomes["stale"],
        ),
        "stale events name an order that got a stale update": (
            len(stale_targets - stale_orders.keys()),
            0,
        ),
        "status processed = created + newer updates accepted": (
            by_status.get("processed", 0),
            outcomes["processed"],
        ),
        "other statuses (quarantined, ignored)": (other_statuses, 0),
        "orders = distinct orders accepted": (len(orders), len(expected_orders)),
        "order_lines = 3 per order": (lines, 3 * len(expected_orders)),
        "orders not at their newest accepted version": (len(wrong_versions), 0),
        "orders changed by a stale update": (len(touched_by_stale), 0),
        "answers whose status differs from the replay": (
            sum(model["wrong_answers"].values()),
            0,
        ),
    }
    return {
        "checks": {name: list(pair) for name, pair in checks.items()},
        "passed": all(actual == wanted for actual, wanted in checks.values()),
        "sent_by_kind": dict(model["kinds"]),
        "refused": model["refused"],
        "refused_but_stored": len(stored_keys & refused),
        "off_plan": model["off_plan"],
        "events_by_status": by_status,
        "stale_examples": examples,
        "stale_orders_checked": len(stale_orders),
        "wrong_answers": dict(model["wrong_answers"]),
    }


# --------------------------------------------------------------------------
# Profiling with py-spy.


def find_py_spy(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else None


def frame_parts(frame: str) -> tuple[str, str]:
    """`function (path:line)` -> (`function`, `path`)."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return name, path


def short_path(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if "/app/" in path:
        return "app/" + path.rsplit("/app/", 1)[1]
    if "/lib/python3" in path:
        return path.split("/lib/", 1)[1].split("/", 1)[1]
    return path


def package_of(path: str) -> str:
    short = short_path(path)
    if short.startswith("app/"):
        return ".".join(Path(short).with_suffix("").parts[:2])
    if "site-packages/" in path:
        return short.split("/", 1)[0]
    if "/lib/python3" in path:
        return "stdlib:" + short.split("/", 1)[0].removesuffix(".py")
    return path


# Where a sample's time goes: the first rule whose marker is in any frame of
# the stack, else the group of the innermost frame's package.
STACK_RULES = (
    ("anyio worker threads (sync dependencies)", ("WorkerThread.run (",)),
    ("SQL compilation (statement cache miss)", ("Compiled.__init__ (",)),
    ("SQL cache-key generation", ("_generate_cache_key (",)),
)
PACKAGE_GROUPS = (
    ("sqlalchemy/sql/", "SQLAlchemy Core: statement building, parameters"),
    ("sqlalchemy/orm/", "SQLAlchemy ORM: session, bulk insert"),
    ("sqlalchemy/", "SQLAlchemy engine, dialect, pool"),
    ("asyncpg/", "asyncpg: protocol, encoding"),
    ("pydantic", "pydantic: validation, serialization"),
    ("simplejson/", "JSON"),
    ("json/", "JSON"),
    ("decimal", "JSON"),
    ("structlog/", "logging"),
    ("logging/", "logging"),
    ("standardwebhooks/", "signature verification"),
    ("hmac", "signature verification"),
    ("app/webhooks/verification", "signature verification"),
    ("uvicorn/", "uvicorn, HTTP parsing"),
    ("httptools/", "uvicorn, HTTP parsing"),
    ("h11/", "uvicorn, HTTP parsing"),
    ("starlette/", "FastAPI, Starlette"),
    ("fastapi/", "FastAPI, Starlette"),
    ("anyio/", "anyio, threads"),
    ("threading", "anyio, threads"),
    ("concurrent/", "anyio, threads"),
    ("asyncio/", "event loop, greenlet"),
    ("uvloop/", "event loop, greenlet"),
    ("selectors", "event loop, greenlet"),
    ("greenlet/", "event loop, greenlet"),
    ("app/", "app code (own time)"),
)


# Innermost frames that mean "waiting", which py-spy cannot always tell from
# running here: a thread pool's idle threads, the event loop in epoll.
IDLE_LEAVES = (
    "Condition.wait (threading.py)",
    "Event.wait (threading.py)",
    "WorkerThread.run (anyio/_backends/_asyncio.py)",
    "_worker (concurrent/futures/thread.py)",
    "EpollSelector.select (selectors.py)",
    "Runner.run (asyncio/runners.py)",
)


def category_of(frames: Sequence[str]) -> str:
    for label, markers in STACK_RULES:
        if any(marker in frame for frame in frames for marker in markers):
            return label
    leaf = short_path(frame_parts(frames[-1])[1])
    for prefix, label in PACKAGE_GROUPS:
        if leaf.startswith(prefix):
            return label
    return "other"


def summarize_profile(raw: Path, seconds: float, rate: int) -> dict[str, Any]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    categories: Counter[str] = Counter()
    total = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [f for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        name, path = frame_parts(frames[-1])
        leaf = f"{name} ({short_path(path)})"
        if leaf in IDLE_LEAVES:
            idle += count
            total -= count
            continue
        own[leaf] += count
        packages[package_of(path)] += count
        categories[category_of(frames)] += count
        seen = set()
        for frame in frames:
            name, path = frame_parts(frame)
            seen.add(f"{name} ({short_path(path)})")
        for key in seen:
            inclusive[key] += count
    app_inclusive = [
        (key, n)
        for key, n in inclusive.most_common()
        if "(app/" in key and "__call__" not in key
    ]
    return {
        "samples": total,
        "idle_samples": idle,
        "busy_fraction": total / max(1.0, seconds * rate),
        "own": own.most_common(25),
        "packages": packages.most_common(20),
        "categories": categories.most_common(),
        "app_inclusive": app_inclusive[:25],
    }


# --------------------------------------------------------------------------
# Orchestration.


@dataclasses.dataclass
class Options:
    database_url: str
    connections: int
    open_connections: int
    duration: float
    warmup: float
    rate: float
    open_duration: float
    mix: Mix
    seed: int
    out_dir: Path
    keep_database: bool
    profile: bool
    profile_duration: float
    py_spy: str | None
    variants: list[str]
    app_dir: Path
    quiet_limit: float
    quiet_timeout: float


async def run_variant(
    variant: Variant,
    options: Options,
    template: BodyTemplate,
) -> dict[str, Any]:
    say(f"\n== {variant.name}: {variant.description}")
    rng = random.Random(f"{options.seed}-{variant.name}")
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    database_url: str | None = None
    if not variant.baseline:
        name = f"bench_webhooks_{variant.name.replace('-', '_')}_{os.getpid()}"
        await admin(options.database_url, f'DROP DATABASE IF EXISTS "{name}"')
        await admin(options.database_url, f'CREATE DATABASE "{name}"')
        database_url = with_database(options.database_url, name)
        say(f"   database {name}")
    port = free_port()
    server = Server(
        variant, port, database_url, secret, options.out_dir, options.app_dir
    )
    expected = Expectation()
    result: dict[str, Any] = {"variant": dataclasses.asdict(variant)}
    try:
        server.start()
        await asyncio.to_thread(server.wait_ready)
        say(f"   server pid {server.pid} on port {port}, log {server.log_path}")
        database = database_url.rsplit("/", 1)[1] if database_url else None
        watched = Watched(server.pid, database)

        async def phase_batch(tag: str, size: int) -> list[Delivery]:
            batch = plan_batch(size, tag, options.mix, rng, template)
            signed_at = sign_batch(batch, secret, port)
            result.setdefault("signing", []).append(
                {"phase": tag, "deliveries": size, "signed_at": signed_at}
            )
            return batch

        # Warm-up, also the estimate of the saturation rate.
        warm = await phase_batch("warm", 30_000)
        warmup = await closed_loop(
            "warm-up", warm, port, options.connections, watched, options.warmup
        )
        expected.add(warm)
        say(f"   warm-up: {warmup.ok} events in {warmup.elapsed:.1f} s")

        quiet: dict[str, dict[str, float]] = {}
        result["quiet"] = quiet
        quiet["saturation"] = await settle(options)
        size = max(2_000, int(warmup.rate * options.duration))
        batch = await phase_batch("sat", size)
        guard = max(4 * options.duration, 60.0)
        saturation = await closed_loop(
            "saturation", batch, port, options.connections, watched, guard
        )
        expected.add(batch)
        say(describe_phase(saturation))
        quiet["open loop"] = await settle(options)
        batch = await phase_batch("open", int(options.rate * options.open_duration))
        steady = await open_loop(
            "open loop",
            batch,
            port,
            options.rate,
            options.open_connections,
            watched,
        )
        expected.add(batch)
        say(describe_phase(steady))
        result["phases"] = [p.summary() for p in (warmup, saturation, steady)]

        if options.profile and variant.name in PROFILED_VARIANTS:
            result["profile"] = await profile_server(
                options, server, phase_batch, expected, saturation.rate, watched
            )
        server.stop()
        result["server_log_lines"] = sum(1 for _ in server.log_path.open("rb"))
        result["server_log_bytes"] = server.log_path.stat().st_size
        if database_url is not None:
            check = await check_database(database_url, expected)
            result["check"] = check
            verdict = "nothing lost, nothing doubled" if check["passed"] else "MISMATCH"
            say(f"   row check: {verdict}")
    finally:
        server.stop()
        if database_url is not None and not options.keep_database:
            name = database_url.rsplit("/", 1)[1]
            await admin(options.database_url, f'DROP DATABASE "{name}" WITH (FORCE)')
    return result


async def settle(options: Options) -> dict[str, float]:
    """Let the server settle, then wait for other load on the machine to pass."""
    await asyncio.sleep(1.0)
    quiet = await wait_for_quiet(options.quiet_limit, options.quiet_timeout)
    if quiet["load_before"] > options.quiet_limit:
        say(
            f"   machine still busy ({quiet['load_before']:.0f}% of a core) after "
            f"{quiet['waited']:.0f} s; measuring anyway"
        )
    elif quiet["waited"] > 1.5:
        say(f"   waited {quiet['waited']:.0f} s for other load to pass")
    return quiet


async def profile_server(
    options: Options,
    server: Server,
    phase_batch: Callable[[str, int], Awaitable[list[Delivery]]],
    expected: Expectation,
    expected_rate: float,
    watched: Watched,
) -> dict[str, Any]:
    py_spy = find_py_spy(options.py_spy)
    if py_spy is None:
        say("   profile: py-spy not found (pip install py-spy); skipped")
        return {"skipped": "py-spy not found"}
    raw = options.out_dir / f"webhooks-{server.variant.name}.py-spy.txt"
    rate = 200
    seconds = options.profile_duration
    await settle(options)
    size = max(2_000, int(1.5 * expected_rate * (seconds + 2)))
    batch: list[Delivery] = await phase_batch("prof", size)
    spy = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(server.pid),
            "--rate",
            str(rate),
            "--duration",
            str(int(seconds)),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    await asyncio.sleep(1.0)
    profiled = await closed_loop(
        "profiled", batch, server.port, options.connections, watched, seconds
    )
    expected.add(batch)
    _, errors = await asyncio.to_thread(spy.communicate)
    if spy.returncode != 0 or not raw.exists():
        say(f"   profile: py-spy failed: {errors.decode().strip()[-300:]}")
        return {"failed": errors.decode()[-2000:]}
    summary = summarize_profile(raw, seconds, rate)
    summary["events_per_second_while_profiled"] = profiled.rate
    summary["raw"] = str(raw)
    say(f"   profile: {summary['samples']} samples, written to {raw}")
    return summary


def describe_phase(phase: PhaseResult) -> str:
    return (
        f"   {phase.name}: {phase.ok}/{phase.sent} ok in {phase.elapsed:.1f} s = "
        f"{phase.rate:,.0f} events/s; p50 {phase.percentile(50):.1f} ms, "
        f"p99 {phase.percentile(99):.1f} ms, max {phase.percentile(100):.1f} ms; "
        f"CPU server {phase.cpu['server']:.0f}%, postgres "
        f"{phase.cpu['postgres']:.0f}%, generator {phase.cpu['generator']:.0f}%, "
        f"other {phase.cpu['other']:.0f}%, machine {phase.cpu['machine']:.0f}% "
        f"of {100 * (os.cpu_count() or 1)}%"
        + (f"; {phase.errors} non-2xx" if phase.errors else "")
        + (f", {phase.abandoned} abandoned" if phase.abandoned else "")
    )


# --------------------------------------------------------------------------
# Report.


def machine_info(database_url: str, app_dir: Path) -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()
    ram_gib = int(meminfo[1]) / 1024 / 1024
    os_name = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    packages = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in (
            "fastapi",
            "starlette",
            "uvicorn",
            "uvloop",
            "httptools",
            "sqlalchemy",
            "asyncpg",
            "pydantic",
            "structlog",
        )
    )
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "ram": f"{ram_gib:.1f} GiB",
        "os": f"{os_name}, Linux {platform.release()}",
        "python": platform.python_version(),
        "postgres": asyncio.run(postgres_version(database_url)),
        "packages": packages,
        "source": source_info(app_dir),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def fmt(value: float, digits: int = 1) -> str:
    if math.isinf(value):
        return "never (abandoned)"
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def ratio(phase: dict[str, Any], base: dict[str, Any], key: str, digits: int) -> str:
    numerator, denominator = float(phase[key]), float(base[key])
    if not denominator or math.isnan(numerator) or math.isnan(denominator):
        return "n/a"
    return f"{numerator / denominator:.{digits}f}"


def phase_of(result: dict[str, Any], name: str) -> dict[str, Any]:
    phases: list[dict[str, Any]] = result["phases"]
    return next(p for p in phases if p["name"] == name)


def markdown(
    info: dict[str, str], results: list[dict[str, Any]], options: Options
) -> Iterator[str]:
    yield "## Webhook receiver"
    yield ""
    keys = ("date", "source", "cpu", "cores", "ram", "os", "python", "postgres")
    for key in (*keys, "packages"):
        yield f"- {key}: {info[key]}"
    yield ""
    yield "```sh"
    yield " ".join(["python", *sys.argv]).replace(sys.executable, ".venv/bin/python")
    yield "```"
    yield ""
    yield (
        f"Saturation: closed loop, {options.connections} keep-alive connections, "
        f"about {options.duration:.0f} s after a {options.warmup:.0f} s warm-up. "
        f"Open loop: {options.rate:.0f} events/s for {options.open_duration:.0f} s "
        f"over up to {options.open_connections} connections, latency from the "
        "scheduled send time. CPU is % of one core over the phase (machine: "
        f"of {100 * (os.cpu_count() or 1)}%)."
    )
    yield ""
    by_name = {r["variant"]["name"]: r for r in results}
    baseline = by_name.get("baseline")
    rate = f"{options.rate:.0f}/s"
    yield (
        f"| variant | sat. events/s | sat. p50 ms | sat. p99 ms | {rate} achieved | "
        f"{rate} p50 ms | {rate} p99 ms | {rate} max ms | "
        "non-2xx / retries / abandoned |"
    )
    yield "|" + "---|" * 9
    for result in results:
        sat = phase_of(result, "saturation")
        steady = phase_of(result, "open loop")
        failures = "/".join(
            str(sat[key] + steady[key]) for key in ("errors", "retries", "abandoned")
        )
        yield (
            f"| {result['variant']['name']} | {fmt(sat['events_per_second'], 0)} | "
            f"{fmt(sat['p50_ms'])} | {fmt(sat['p99_ms'])} | "
            f"{fmt(steady['events_per_second'], 0)} | "
            f"{fmt(steady['p50_ms'])} | {fmt(steady['p99_ms'])} | "
            f"{fmt(steady['p100_ms'])} | {failures} |"
        )
    yield ""
    yield (
        "CPU, % of one core averaged over the phase (2 cores = 200%); 'other' is "
        "the machine's busy time not spent in the server, Postgres or the "
        "generator (other processes, kernel work); server ms/event is the "
        "server's CPU time per answered event:"
    )
    yield ""
    yield (
        "| variant | phase | server | postgres | generator | other | machine | "
        "server CPU ms/event |"
    )
    yield "|" + "---|" * 8
    for result in results:
        for name in ("saturation", "open loop"):
            phase = phase_of(result, name)
            cpu = phase["cpu"]
            per_event = (
                10.0 * cpu["server"] / phase["events_per_second"]
                if phase["events_per_second"]
                else math.nan
            )
            cells = " | ".join(
                f"{cpu[k]:.0f}"
                for k in ("server", "postgres", "generator", "other", "machine")
            )
            yield (
                f"| {result['variant']['name']} | {name} | {cells} | "
                f"{fmt(per_event, 2)} |"
            )
    if baseline is not None:
        yield ""
        yield "Ratios, service variant / baseline:"
        yield ""
        yield (
            "| variant | sat. events/s ratio | "
            f"{options.rate:.0f}/s p50 ratio | {options.rate:.0f}/s p99 ratio |"
        )
        yield "|---|---|---|---|"
        base_sat = phase_of(baseline, "saturation")
        base_open = phase_of(baseline, "open loop")
        for result in results:
            if result["variant"]["baseline"]:
                continue
            sat = phase_of(result, "saturation")
            steady = phase_of(result, "open loop")
            yield (
                f"| {result['variant']['name']} | "
                f"{ratio(sat, base_sat, 'events_per_second', 2)} | "
                f"{ratio(steady, base_open, 'p50_ms', 1)} | "
                f"{ratio(steady, base_open, 'p99_ms', 1)} |"
            )
    yield ""
    yield "Targets (service, 1 worker, LOG_LEVEL=WARNING):"
    service = by_name.get("service")
    if service is not None:
        sat = phase_of(service, "saturation")
        steady = phase_of(service, "open loop")
        ok_rate = sat["events_per_second"] >= TARGET_EVENTS_PER_SECOND
        ok_p99 = steady["p99_ms"] <= TARGET_P99_MS
        yield (
            f"- >= {TARGET_EVENTS_PER_SECOND:,.0f} events/s at saturation: "
            f"{fmt(sat['events_per_second'], 0)} -> {'met' if ok_rate else 'MISSED'}"
        )
        yield (
            f"- p99 <= {TARGET_P99_MS:.0f} ms at {options.rate:.0f} events/s: "
            f"{fmt(steady['p99_ms'])} ms -> {'met' if ok_p99 else 'MISSED'}"
        )
    for result in results:
        check = result.get("check")
        if check is None:
            continue
        yield ""
        verdict = (
            "nothing lost, nothing doubled"
            if check["passed"]
            else "MISMATCH (see the rows marked !)"
        )
        yield f"Row check, {result['variant']['name']}: {verdict}"
        yield ""
        yield "| check | database | expected |"
        yield "|---|---|---|"
        for name, (actual, wanted) in check["checks"].items():
            mark = "" if actual == wanted else " !"
            yield f"| {name}{mark} | {actual:,} | {wanted:,} |"
        yield ""
        kinds = check["sent_by_kind"]
        yield (
            f"Sent: {sum(kinds.values()):,} deliveries "
            f"({', '.join(f'{k} {v:,}' for k, v in sorted(kinds.items()))}); "
            f"refused after {MAX_ATTEMPTS} attempts: {check['refused']:,} "
            f"(of which stored anyway: {check['refused_but_stored']:,}); "
            f"outcome differs from plan because of a refusal: {check['off_plan']:,}."
        )
        yield f"Events by status: {json.dumps(check['events_by_status'])}."
        yield (
            f"Stale check: all {check['stale_orders_checked']:,} orders that got "
            "a stale update were compared with their newest accepted version; "
            "for example:"
        )
        for example in check["stale_examples"]:
            yield (
                f"- stale {example['order_id']}: sent updated_date "
                f"{example['stale_updated_date']}, stored "
                f"{example['stored_updated_date']} / {example['stored_status']} / "
                f"{example['stored_total_price']}"
            )
    for result in results:
        profile = result.get("profile")
        if not profile or "samples" not in profile:
            continue
        yield ""
        yield (
            f"py-spy, {result['variant']['name']} under saturation: "
            f"{profile['samples']} busy samples (idle waits excluded: "
            f"{profile.get('idle_samples', 0)}), the server busy "
            f"{100 * profile['busy_fraction']:.0f}% of the time, "
            f"{profile['events_per_second_while_profiled']:,.0f} events/s while "
            "profiled"
        )
        total = max(1, profile["samples"])
        yield ""
        yield "Where the time goes (first matching rule per sample):"
        yield ""
        for label, n in profile["categories"]:
            yield f"- {label}: {100 * n / total:.1f}%"
        yield ""
        yield "Own time by package:"
        yield ""
        for package, n in profile["packages"][:15]:
            yield f"- {package}: {100 * n / total:.1f}%"
        yield ""
        yield "Own time by function:"
        yield ""
        for key, n in profile["own"][:20]:
            yield f"- {100 * n / total:.1f}% {key}"
        yield ""
        yield "Inclusive time, app functions:"
        yield ""
        for key, n in profile["app_inclusive"][:20]:
            yield f"- {100 * n / total:.1f}% {key}"


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a Postgres server URL; a database is created and dropped per variant",
    )
    parser.add_argument(
        "--variants",
        default="baseline,service,service-info,service-workers2",
        help=f"comma-separated, from: {', '.join(VARIANTS)}",
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--open-connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--open-duration", type=float, default=30.0)
    parser.add_argument("--duplicates", type=float, default=0.10)
    parser.add_argument("--stale", type=float, default=0.10)
    parser.add_argument(
        "--updates",
        type=float,
        default=0.20,
        help="share of newer updates to orders already sent (the rest create)",
    )
    parser.add_argument("--gap", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "out")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="py-spy the 1-worker service during an extra, unmeasured phase",
    )
    parser.add_argument("--profile-duration", type=float, default=15.0)
    parser.add_argument("--py-spy", default=None)
    parser.add_argument(
        "--quiet-limit",
        type=float,
        default=25.0,
        help="before each measured phase, wait until the machine's load is at "
        "most this (%% of one core)",
    )
    parser.add_argument("--quiet-timeout", type=float, default=180.0)
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--git-ref",
        help="serve this commit (extracted read-only with `git archive` into "
        "--out) instead of the working tree",
    )
    source.add_argument(
        "--app-dir",
        type=Path,
        help="serve the `app` package found in this directory",
    )
    args = parser.parse_args(argv)
    unknown = set(args.variants.split(",")) - VARIANTS.keys()
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    longest = max(args.duration * 4, 60.0, args.open_duration)
    if longest >= SIGNATURE_TOLERANCE.total_seconds() - 30:
        parser.error("phases must stay well under the 5-minute signature window")
    return Options(
        database_url=args.database_url,
        connections=args.connections,
        open_connections=args.open_connections,
        duration=args.duration,
        warmup=args.warmup,
        rate=args.rate,
        open_duration=args.open_duration,
        mix=Mix(args.duplicates, args.stale, args.updates, args.gap),
        seed=args.seed,
        out_dir=args.out.resolve(),
        keep_database=args.keep_database,
        profile=args.profile,
        profile_duration=args.profile_duration,
        py_spy=args.py_spy,
        variants=args.variants.split(","),
        app_dir=resolve_app_dir(args.git_ref, args.app_dir),
        quiet_limit=args.quiet_limit,
        quiet_timeout=args.quiet_timeout,
    )


def resolve_app_dir(git_ref: str | None, app_dir: Path | None) -> Path:
    if app_dir is not None:
        return app_dir.resolve()
    if git_ref is None:
        return REPO
    commit = git("rev-parse", "--verify", f"{git_ref}^{{commit}}")
    # Outside the repository, so that linters and type checkers never see it.
    target = Path(tempfile.mkdtemp(prefix=f"bench-src-{commit[:12]}-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "app", "migrations"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def git(*args: str, cwd: Path = REPO) -> str:
    """A read-only git command's output."""
    done = subprocess.run(
        ["git", "--no-optional-locks", "-C", str(cwd), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def source_info(app_dir: Path) -> str:
    """Which code was served: the git state if known, and a content hash."""
    digest = hashlib.sha256()
    files = [
        path
        for folder in ("app", "migrations")
        for path in (app_dir / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    for path in sorted(files):
        digest.update(str(path.relative_to(app_dir)).encode() + b"\0")
        digest.update(path.read_bytes())
    fingerprint = f"sha256 of app/ + migrations/ {digest.hexdigest()[:16]}"
    if app_dir == REPO:
        try:
            head = git("rev-parse", "--short=12", "HEAD")
            dirty = git("status", "--porcelain", "--", "app", "migrations")
        except (OSError, subprocess.CalledProcessError):
            return f"working tree {REPO} ({fingerprint})"
        changes = len(dirty.splitlines())
        state = f"{changes} uncommitted change(s)" if changes else "clean"
        where = "under app/ and migrations/"
        return f"working tree at {head}, {state} {where} ({fingerprint})"
    if app_dir.name.startswith("bench-src-"):
        commit = app_dir.name.split("-")[2]
        return f"commit {commit} via git archive ({fingerprint})"
    return f"{app_dir} ({fingerprint})"


async def run_all(options: Options, template: BodyTemplate) -> list[dict[str, Any]]:
    results = []
    for name in options.variants:
        results.append(await run_variant(VARIANTS[name], options, template))
    return results


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    info = machine_info(options.database_url, options.app_dir)
    template = BodyTemplate()
    results = uvloop.run(run_all(options, template))
    report = "\n".join(markdown(info, results, options))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (options.out_dir / f"webhooks-{stamp}.md").write_text(report + "\n")
    (options.out_dir / f"webhooks-{stamp}.json").write_text(
        json.dumps(
            {"machine": info, "results": results, "argv": sys.argv},
            indent=2,
            default=str,
        )
    )
    say()
    say(report)
    failed = [
        r["variant"]["name"]
        for r in results
        if "check" in r and not r["check"]["passed"]
    ]
    if failed:
        say(f"\nrow check FAILED for: {', '.join(failed)}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()

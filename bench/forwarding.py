"""Benchmark of forwarding shipments and inventory adjustments to Trackstar.

    .venv/bin/python bench/forwarding.py

Each scenario (see --scenarios) sets itself up from nothing and tears itself
down, also on failure or Ctrl-C:

1. a fresh PostgreSQL database (dropped at the end), migrated with
   `python -m app migrate`;
2. a fake Trackstar (tests/fixtures/fake_trackstar.py, rate limits enforced:
   --write-limit writes and --read-limit reads per access token per second,
   --latency per request) served by uvicorn in its own process
   (bench/forwarding_fake.py), knowing --connections connections with their
   warehouses, orders and variant products;
3. the same connections, warehouses, orders and products in the service's
   database: the first connection with `python -m app connections add`
   (token in TRACKSTAR_ACCESS_TOKEN), the others with the same service
   function, the records with the service's store functions; an API key from
   `python -m app api-keys create`;
4. the service, `python -m app serve` (worker included), LOG_LEVEL=WARNING.

Then --items items, spread evenly over the connections, are POSTed to the
service: shipments (`POST /api/v1/orders/{id}/shipments`, most orders one,
some two) and inventory adjustments (`POST /api/v1/products/{id}/inventory-
adjustments`, --adjustments-per-product per variant, a random mix of
increase, decrease and exact, so their order matters). Items are sent in a
random order across connections, as fast as the API takes them over
--post-concurrency keep-alive connections (closed loop), or at --rate items/s
on a fixed schedule. Each has its own Idempotency-Key; a 5xx or transport
error is retried with the same key.

The benchmark waits until every outbox message is delivered (or failed),
then reads the outbox from the database and the fake's records over its
control routes, and checks: one write at the fake per item (by idempotency
key, by tracking number, by product), nothing missing or unknown, every
ordering key's writes in outbox-id order, and the fake's final stock equal to
the seeded stock with the adjustments applied in acceptance order (and equal
to what the service stored from Trackstar's answers).

Scenario `outage` is the same run with Trackstar gone for --outage-seconds
once --outage-at of the items are delivered. --outage-mode `down` keeps the
fake's process and sets `fake.down` (every call answers 503, as a gateway in
front of a failed Trackstar does); `kill` stops the process (SIGTERM; it
pickles its state) and starts a new one on the same port after the outage
(connection refused meanwhile), which then loads the state.

CPU time of the service, PostgreSQL (the bench database's backends and the
shared writer processes), the fake and this process is read from /proc.
--profile SECONDS attaches py-spy (`pip install py-spy`) to the service for
that long from the first POST (of the first scenario) and summarises it;
its figures are then perturbed by the profiler.

Results are printed as Markdown and written to bench/out/forwarding-*.md and
.json. The exit status is 1 when a check fails.
"""

import argparse
import asyncio
import base64
import contextlib
import copy
import itertools
import json
import math
import os
import platform
import random
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import simplejson
import uvloop

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
for _path in (str(BENCH_DIR), str(REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from forwarding_procs import (  # noqa: E402
    CLK_TCK,
    CpuSampler,
    Process,
    descendants,
    machine_busy_ticks,
    postgres_pids,
    start,
    stop,
    summarise_py_spy,
)

from app.connections.service import add_connection  # noqa: E402
from app.core.db import Database, create_engine  # noqa: E402
from app.core.secrets import SecretBox  # noqa: E402
from app.core.settings import Settings  # noqa: E402
from app.orders.service import store_orders  # noqa: E402
from app.products.service import store_products  # noqa: E402
from app.trackstar.schemas import (  # noqa: E402
    TrackstarOrder,
    TrackstarProduct,
    TrackstarWarehouse,
)
from app.warehouses.service import store_warehouses  # noqa: E402

SAMPLES = REPO / "app" / "webhooks" / "samples"
OUT_DIR = BENCH_DIR / "out"
SHIPMENT = "shipment"
ADJUSTMENT = "inventory_adjustment"
ADJUSTMENT_TYPES = (("increase", 0.4), ("decrease", 0.4), ("exact", 0.2))
# Of every 5 orders, 1 gets a second shipment.
SHIPMENTS_PER_ORDER = 1.25
POST_RETRIES = 6
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def log(text: str) -> None:
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    sys.stderr.write(f"[{stamp}] {text}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------
# Workload


@dataclass
class ConnectionSeed:
    id: str
    token: str
    warehouses: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    products: list[dict[str, Any]]


@dataclass
class Item:
    index: int
    kind: str  # SHIPMENT or ADJUSTMENT, as outbox_messages.kind
    connection_id: str
    subject: str  # order id or product id
    body: dict[str, Any]
    idempotency_key: str
    content: bytes = b""
    # Filled in while posting.
    status_code: int = 0
    tries: int = 0
    error: str = ""
    sent_at: float = 0.0  # first try
    accepted_at: float = 0.0  # the 202 arrived
    record_id: int = 0  # shipment or adjustment id

    @property
    def path(self) -> str:
        if self.kind == SHIPMENT:
            return f"/api/v1/orders/{self.subject}/shipments"
        return f"/api/v1/products/{self.subject}/inventory-adjustments"


@dataclass
class Workload:
    api_key: str  # Trackstar's organisation key, as the fake knows it
    connections: list[ConnectionSeed]
    items: list[Item]
    stock: dict[tuple[str, str], dict[str, int]]  # (connection, product) -> stock

    def fake_seed(self) -> dict[str, Any]:
        seed: dict[str, Any] = {
            "api_key": self.api_key,
            "connections": [asdict(connection) for connection in self.connections],
        }
        return seed


def _sample(name: str) -> dict[str, Any]:
    loaded = simplejson.loads((SAMPLES / f"{name}.json").read_text(), use_decimal=True)
    data: dict[str, Any] = loaded["data"]
    return data


def _spread(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def build_workload(args: argparse.Namespace, run_id: str) -> Workload:
    rng = random.Random(args.seed)
    order_template = _sample("cart-order.created")
    product_template = _sample("cart-product.created")
    warehouse_template = _sample("cart-warehouse.created")
    connections: list[ConnectionSeed] = []
    stock: dict[tuple[str, str], dict[str, int]] = {}
    timed: list[tuple[float, Item]] = []
    types = [name for name, _ in ADJUSTMENT_TYPES]
    weights = [weight for _, weight in ADJUSTMENT_TYPES]
    for c, count in enumerate(_spread(args.items, args.connections)):
        connection_id = f"conn_bench{c:03d}"
        shipments = round(count * args.shipment_share)
        adjustments = count - shipments
        warehouses = []
        for suffix in ("a", "b"):
            warehouse = copy.deepcopy(warehouse_template)
            warehouse["id"] = f"wh_b{c:03d}{suffix}"
            warehouse["name"] = f"Bench {c} {suffix.upper()}"
            warehouses.append(warehouse)
        orders = []
        for o in range(max(1, round(shipments / SHIPMENTS_PER_ORDER))):
            order = copy.deepcopy(order_template)
            order["id"] = f"ord_b{c:03d}_{o:05d}"
            order["order_number"] = f"{c}-{o}"
            orders.append(order)
        products = []
        product_count = math.ceil(adjustments / args.adjustments_per_product)
        for p in range(product_count):
            product = copy.deepcopy(product_template)
            product["id"] = f"prod_b{c:03d}_{p:05d}"
            product["sku"] = f"BENCH-{c}-{p}"
            product["parent_product_id"] = f"prod_b{c:03d}_parent{p // 4:05d}"
            levels = {w["id"]: rng.randint(20, 80) for w in warehouses}
            product["inventory_by_warehouse_id"] = levels
            product["inventory"] = sum(levels.values())
            stock[(connection_id, product["id"])] = dict(levels)
            products.append(product)
        connections.append(
            ConnectionSeed(
                id=connection_id,
                token=f"tok_bench_{c:03d}_{secrets.token_hex(12)}",
                warehouses=warehouses,
                orders=orders,
                products=products,
            )
        )
        for s in range(shipments):
            order = orders[s % len(orders)]
            tracking = f"1ZB{c:03d}{s:07d}"
            body: dict[str, Any] = {
                "tracking_number": tracking,
                "tracking_url": f"https://track.example.com/{tracking}",
                "carrier_name": "UPS",
                "shipping_method_name": "Ground",
            }
            item = Item(0, SHIPMENT, connection_id, order["id"], body, "")
            timed.append((rng.random(), item))
        left = adjustments
        for product in products:
            n = min(args.adjustments_per_product, left)
            left -= n
            # Several adjustments per product, spread over the whole run.
            for moment in sorted(rng.random() for _ in range(n)):
                kind = rng.choices(types, weights)[0]
                quantity = rng.randint(0, 40) if kind == "exact" else rng.randint(1, 9)
                adjustment: dict[str, Any] = {
                    "quantity": quantity,
                    "adjustment_type": kind,
                    "warehouse_id": rng.choice(warehouses)["id"],
                    "reason": "cycle count",
                }
                item = Item(0, ADJUSTMENT, connection_id, product["id"], adjustment, "")
                timed.append((moment, item))
    timed.sort(key=lambda pair: pair[0])
    items = []
    for index, (_, item) in enumerate(timed):
        item.index = index
        item.idempotency_key = f"bench-{run_id}-{index}"
        item.content = json.dumps(item.body, separators=(",", ":")).encode()
        items.append(item)
    api_key = f"bench-trackstar-key-{secrets.token_hex(8)}"
    return Workload(api_key=api_key, connections=connections, items=items, stock=stock)


def expected_stock(
    workload: Workload, adjustments_in_order: Sequence[Item]
) -> dict[tuple[str, str], dict[str, int]]:
    """The seeded stock with the adjustments applied in the given order."""
    stock = {key: dict(levels) for key, levels in workload.stock.items()}
    for item in adjustments_in_order:
        levels = stock[(item.connection_id, item.subject)]
        warehouse = item.body["warehouse_id"]
        quantity = int(item.body["quantity"])
        current = levels.get(warehouse, 0)
        kind = item.body["adjustment_type"]
        if kind == "increase":
            levels[warehouse] = current + quantity
        elif kind == "decrease":
            levels[warehouse] = current - quantity
        else:
            levels[warehouse] = quantity
    return stock


# --------------------------------------------------------------------------
# Set-up: database, processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _asyncpg_dsn(url: str) -> str:
    rest = url.split("://", 1)[1]
    return "postgresql://" + rest


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def _admin(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def settings_env_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


@dataclass
class Stack:
    """Everything a scenario started, stopped in reverse order by `close`."""

    server_url: str
    database: str | None = None
    processes: list[Process] = field(default_factory=list)
    tmp: Path | None = None
    closed: bool = False

    def add(self, process: Process) -> Process:
        self.processes.append(process)
        return process

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for process in reversed(self.processes):
            code = stop(process)
            if code not in (0, None, -signal.SIGTERM):
                log(f"{process.name} exited with {code}")
        if self.database is not None:
            try:
                asyncio.run(
                    _admin(
                        self.server_url,
                        f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)',
                    )
                )
                log(f"dropped database {self.database}")
            except Exception as error:
                log(f"could not drop database {self.database}: {error!r}")
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


def cli(
    argv: Sequence[str], env: dict[str, str], cwd: Path, *, stdin: str | None = None
) -> str:
    """Run `python -m app ...`; its stdout, or raise with its stderr."""
    completed = subprocess.run(
        [sys.executable, "-m", "app", *argv],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"python -m app {' '.join(argv[:2])} failed: {completed.stderr[-2000:]}"
        )
    return completed.stdout


async def seed_service(
    database_url: str, secret_key: str, workload: Workload, *, skip: set[str]
) -> None:
    """Connections (except `skip`, added by the CLI), warehouses, products and
    orders, stored by the service's own functions."""
    settings = Settings.model_validate(
        {"database_url": database_url, "secret_key": secret_key, "log_level": "ERROR"}
    )
    database = Database(create_engine(settings))
    box = SecretBox([secret_key])
    try:
        for connection in workload.connections:
            async with database.transaction() as session:
                if connection.id not in skip:
                    await add_connection(
                        session,
                        box,
                        connection_id=connection.id,
                        access_token=connection.token,
                        integration_name="shopify",
                    )
                await store_warehouses(
                    session,
                    connection_id=connection.id,
                    warehouses=[
                        (TrackstarWarehouse.model_validate(w), w)
                        for w in connection.warehouses
                    ],
                )
                await store_products(
                    session,
                    connection_id=connection.id,
                    products=[
                        (TrackstarProduct.model_validate(p), p)
                        for p in connection.products
                    ],
                )
                await store_orders(
                    session,
                    connection_id=connection.id,
                    orders=[
                        (TrackstarOrder.model_validate(o), o) for o in connection.orders
                    ],
                )
    finally:
        await database.dispose()


async def wait_http(url: str, process: Process, *, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(
                    f"{process.name} exited with {process.popen.returncode}; "
                    f"see {process.log_path}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{process.name} did not answer {url} within {timeout} s")


@dataclass
class Fake:
    """The fake Trackstar process, which may be stopped and started again."""

    argv: list[str]
    env: dict[str, str]
    port: int
    stack: Stack
    log_path: Path
    process: Process | None = None
    pids: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        process = start(
            "fake-trackstar",
            self.argv,
            env=self.env,
            cwd=REPO,
            log_path=self.log_path,
        )
        self.stack.add(process)
        self.process = process
        self.pids.append(process.pid)
        await wait_http(f"{self.url}/_bench/ready", process)

    async def stop(self) -> None:
        if self.process is not None:
            process = self.process
            await asyncio.to_thread(stop, process)
            self.stack.processes.remove(process)

    async def control(self, method: str, route: str) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=120.0) as client:
            response = await client.request(method, f"{self.url}/_bench/{route}")
            response.raise_for_status()
            answer: dict[str, Any] = response.json()
            return answer


# --------------------------------------------------------------------------
# The run


@dataclass
class PostSummary:
    started: float
    finished: float
    accepted: int
    refused: Counter[str]
    retried: int
    latencies_ms: list[float]


async def post_items(
    base_url: str,
    api_key: str,
    items: Sequence[Item],
    *,
    concurrency: int,
    rate: float,
) -> PostSummary:
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency
    )
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
    pending = iter(items)
    latencies: list[float] = []
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60.0
    ) as client:
        started = time.time()

        async def send(item: Item) -> None:
            for attempt in range(POST_RETRIES):
                item.tries += 1
                sent = time.time()
                if attempt == 0:
                    item.sent_at = sent
                try:
                    response = await client.post(
                        item.path,
                        content=item.content,
                        headers={"idempotency-key": item.idempotency_key},
                    )
                except httpx.TransportError as error:
                    item.error = type(error).__name__
                else:
                    item.status_code = response.status_code
                    if response.status_code == 202:
                        item.accepted_at = time.time()
                        item.record_id = int(response.json()["id"])
                        latencies.append((item.accepted_at - sent) * 1000)
                        return
                    item.error = response.text[:200]
                    if response.status_code < 500 and response.status_code != 429:
                        return
                await asyncio.sleep(0.2 * 2**attempt)

        async def sender() -> None:
            for item in pending:
                if rate > 0:
                    delay = started + item.index / rate - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await send(item)

        await asyncio.gather(*(sender() for _ in range(concurrency)))
        finished = time.time()
    refused = Counter(
        f"{item.status_code or item.error}" for item in items if not item.accepted_at
    )
    return PostSummary(
        started=started,
        finished=finished,
        accepted=sum(1 for item in items if item.accepted_at),
        refused=refused,
        retried=sum(1 for item in items if item.tries > 1),
        latencies_ms=latencies,
    )


@dataclass
class Progress:
    series: list[tuple[float, int, int, int]] = field(default_factory=list)
    delivered: int = 0
    failed: int = 0
    messages: int = 0


async def watch_outbox(
    dsn: str,
    progress: Progress,
    done: Callable[[Progress], bool],
    *,
    timeout: float,
) -> bool:
    """Poll the outbox until `done`; False on timeout."""
    connection = await asyncpg.connect(dsn)
    deadline = time.monotonic() + timeout
    last_report = 0.0
    try:
        while time.monotonic() < deadline:
            row = await connection.fetchrow(
                "SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered,"
                " count(*) FILTER (WHERE status = 'failed') AS failed,"
                " count(*) AS messages FROM outbox_messages"
            )
            assert row is not None
            progress.delivered = int(row["delivered"])
            progress.failed = int(row["failed"])
            progress.messages = int(row["messages"])
            now = time.time()
            progress.series.append(
                (now, progress.delivered, progress.failed, progress.messages)
            )
            if now - last_report >= 10:
                last_report = now
                log(
                    f"  outbox: {progress.messages} messages, "
                    f"{progress.delivered} delivered, {progress.failed} failed"
                )
            if done(progress):
                return True
            await asyncio.sleep(0.25)
        return False
    finally:
        await connection.close()


async def autovacuum_stand_in(
    dsn: str, every: float, actions: list[tuple[float, str, str]]
) -> None:
    """PostgreSQL's autovacuum rules, with its default thresholds, applied to
    the bench database every `every` seconds: for servers where autovacuum is
    off, so that the service's queries are planned with statistics as they
    would be in production. Runs until cancelled."""
    connection = await asyncpg.connect(dsn)
    try:
        while True:
            await asyncio.sleep(every)
            rows = await connection.fetch(
                "SELECT relname, n_live_tup, n_dead_tup, n_mod_since_analyze,"
                " n_ins_since_vacuum FROM pg_stat_user_tables"
            )
            for row in rows:
                live = int(row["n_live_tup"])
                if (
                    row["n_dead_tup"] > 50 + 0.2 * live
                    or row["n_ins_since_vacuum"] > 1000 + 0.2 * live
                ):
                    action = "VACUUM ANALYZE"
                elif row["n_mod_since_analyze"] > 50 + 0.1 * live:
                    action = "ANALYZE"
                else:
                    continue
                await connection.execute(f'{action} "{row["relname"]}"')
                actions.append((time.time(), str(row["relname"]), action))
    finally:
        await connection.close()


@dataclass
class Outage:
    mode: str
    at_fraction: float
    seconds: float
    down_at: float = 0.0
    back_at: float = 0.0
    delivered_at_down: int = 0


async def run_outage(
    outage: Outage, fake: Fake, progress: Progress, total: int, sampler: CpuSampler
) -> None:
    while progress.delivered < outage.at_fraction * total:
        await asyncio.sleep(0.05)
    outage.down_at = time.time()
    sampler.mark("down", outage.down_at)
    outage.delivered_at_down = progress.delivered
    log(f"  Trackstar down ({outage.mode}) at {progress.delivered} delivered")
    if outage.mode == "down":
        await fake.control("POST", "down/1")
    else:
        await fake.stop()
    await asyncio.sleep(max(0.0, outage.down_at + outage.seconds - time.time()))
    if outage.mode == "down":
        await fake.control("POST", "down/0")
    else:
        await fake.start()
    outage.back_at = time.time()
    sampler.mark("back", outage.back_at)
    log(f"  Trackstar back after {outage.back_at - outage.down_at:.1f} s")


@dataclass
class Scenario:
    name: str
    outage: Outage | None


@dataclass
class RunData:
    scenario: Scenario
    workload: Workload
    posts: PostSummary
    progress: Progress
    completed: bool
    finished_at: float
    messages: list[dict[str, Any]]
    attempts: dict[str, int]
    attempt_statuses: dict[str, int]
    service_products: dict[tuple[str, str], dict[str, int]]
    fake_stats: dict[str, Any]
    cpu: dict[str, dict[str, float]]
    cpu_seconds: dict[str, float]
    service_events: dict[str, int]
    settings: dict[str, str]
    profile: dict[str, Any] | None
    vacuum_actions: list[tuple[float, str, str]]


def service_events(paths: Sequence[Path]) -> dict[str, int]:
    """Counts of the service's log events (it logs JSON lines)."""
    counts: Counter[str] = Counter()
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                counts["(not json)"] += 1
                continue
            if isinstance(entry, dict):
                counts[f"{entry.get('level', '?')} {entry.get('event', '?')}"] += 1
    return dict(counts.most_common())


async def read_database(
    dsn: str,
) -> tuple[
    list[dict[str, Any]],
    dict[str, int],
    dict[str, int],
    dict[tuple[str, str], dict[str, int]],
]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT id, kind, subject_id, connection_id, ordering_key,"
            " idempotency_key, status, attempts, outcome_unknown, last_error_kind,"
            " created_at, first_attempt_at, delivered_at FROM outbox_messages"
            " ORDER BY id"
        )
        outcomes = await connection.fetch(
            "SELECT outcome, count(*) AS n FROM outbox_attempts GROUP BY outcome"
        )
        statuses = await connection.fetch(
            "SELECT coalesce(status_code::text, 'none') AS status, count(*) AS n"
            " FROM outbox_attempts GROUP BY 1"
        )
        products = await connection.fetch(
            "SELECT connection_id, id, inventory_by_warehouse_id::text AS stock"
            " FROM products"
        )
        sessions = await connection.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await connection.close()
    messages = [dict(row) for row in rows]
    for message in messages:
        for column in ("created_at", "first_attempt_at", "delivered_at"):
            value = message[column]
            message[column] = value.timestamp() if value is not None else None
    stored = {
        (row["connection_id"], row["id"]): {
            key: int(value) for key, value in json.loads(row["stock"] or "{}").items()
        }
        for row in products
    }
    return (
        messages,
        {row["outcome"]: int(row["n"]) for row in outcomes}
        | {"(postgres sessions opened in the bench database)": int(sessions or 0)},
        {row["status"]: int(row["n"]) for row in statuses},
        stored,
    )


def service_settings(args: argparse.Namespace) -> dict[str, str]:
    values = {
        "ENVIRONMENT": "production",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
    }
    for assignment in args.service_env:
        name, _, value = assignment.partition("=")
        values[name.strip().upper()] = value
    return values


async def run_scenario(
    args: argparse.Namespace, scenario: Scenario, stack: Stack, run_id: str
) -> RunData:
    tmp = Path(tempfile.mkdtemp(prefix="tsf-forwarding-"))
    stack.tmp = tmp
    OUT_DIR.mkdir(exist_ok=True)
    stem = f"forwarding-{run_id}-{scenario.name}"
    workload = build_workload(args, run_id)
    shipments = sum(1 for item in workload.items if item.kind == SHIPMENT)
    log(
        f"{scenario.name}: {len(workload.items)} items ({shipments} shipments, "
        f"{len(workload.items) - shipments} adjustments) over "
        f"{len(workload.connections)} connections"
    )

    name = f"tsf_bench_fwd_{secrets.token_hex(5)}"
    await _admin(stack.server_url, f'CREATE DATABASE "{name}"')
    stack.database = name
    database_url = _with_database(stack.server_url, name)
    dsn = _asyncpg_dsn(database_url)

    fake_port, service_port = free_port(), free_port()
    secret_key = secrets.token_urlsafe(32)
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    env = {k: v for k, v in os.environ.items() if k not in settings_env_names()}
    env.pop("PYTHONPATH", None)
    settings = service_settings(args)
    env |= {
        "DATABASE_URL": database_url,
        "SECRET_KEY": secret_key,
        "TRACKSTAR_WEBHOOK_SECRET": webhook_secret,
        "TRACKSTAR_API_KEY": workload.api_key,
        "TRACKSTAR_BASE_URL": f"http://127.0.0.1:{fake_port}",
        **settings,
    }

    # Schema, an API key, the first connection through the operator CLI.
    cli(["migrate"], env, tmp)
    api_key = cli(["api-keys", "create", "bench"], env, tmp).strip().splitlines()[0]
    first = workload.connections[0]
    cli(
        ["connections", "add", first.id, "--integration-name", "shopify"],
        env | {"TRACKSTAR_ACCESS_TOKEN": first.token},
        tmp,
    )
    await seed_service(database_url, secret_key, workload, skip={first.id})

    seed_path = tmp / "seed.json"
    seed_path.write_text(simplejson.dumps(workload.fake_seed(), use_decimal=True))
    fake_argv = [
        sys.executable,
        str(BENCH_DIR / "forwarding_fake.py"),
        "--port",
        str(fake_port),
        "--seed",
        str(seed_path),
        "--state",
        str(tmp / "fake-state.pickle"),
        "--latency",
        str(args.latency),
        "--read-limit",
        str(args.read_limit),
        "--write-limit",
        str(args.write_limit),
    ]
    fake = Fake(
        argv=fake_argv,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        port=fake_port,
        stack=stack,
        log_path=OUT_DIR / f"{stem}.fake.log",
    )
    await fake.start()

    service_logs = [OUT_DIR / f"{stem}.service.log"]
    serve = [sys.executable, "-m", "app", "serve", "--port", str(service_port)]
    if args.worker_processes:
        serve.append("--no-worker")
    service = stack.add(
        start("service", serve, env=env, cwd=tmp, log_path=service_logs[0])
    )
    service_url = f"http://127.0.0.1:{service_port}"
    await wait_http(f"{service_url}/readyz", service)
    workers = []
    for n in range(args.worker_processes):
        service_logs.append(OUT_DIR / f"{stem}.worker{n}.log")
        workers.append(
            stack.add(
                start(
                    "service",
                    [sys.executable, "-m", "app", "worker"],
                    env=env,
                    cwd=tmp,
                    log_path=service_logs[-1],
                )
            )
        )
    log(
        f"  service pid {service.pid} on {service_url}"
        + (f" + {len(workers)} worker processes" if workers else "")
        + f", fake on {fake.url}"
    )
    service_pids = [service.pid] + [worker.pid for worker in workers]

    groups: dict[str, Callable[[], set[int]]] = {
        "service": lambda: descendants(service_pids),
        "postgres": lambda: postgres_pids(name),
        "fake": lambda: set(fake.pids),
        "bench": lambda: {os.getpid()},
    }
    profiler: Process | None = None
    profile_path = OUT_DIR / f"{stem}.py-spy.txt"
    if args.profile and scenario.name == args.scenarios[0]:
        groups["py-spy"] = lambda: (
            descendants([profiler.pid]) if profiler is not None else set()
        )
    sampler = CpuSampler(groups)
    vacuum_actions: list[tuple[float, str, str]] = []
    sampler.start()
    progress = Progress()
    total = len(workload.items)
    try:
        sampler.mark("start")
        if "py-spy" in groups:
            profiler = stack.add(
                start(
                    "py-spy",
                    [
                        args.py_spy,
                        "record",
                        "--pid",
                        str(service_pids[-1]),
                        "--duration",
                        str(args.profile),
                        "--rate",
                        "100",
                        "--nonblocking",
                        "--format",
                        "raw",
                        "--output",
                        str(profile_path),
                    ],
                    env=dict(os.environ),
                    cwd=tmp,
                    log_path=OUT_DIR / f"{stem}.py-spy.log",
                )
            )
        posting = asyncio.create_task(
            post_items(
                service_url,
                api_key,
                workload.items,
                concurrency=args.post_concurrency,
                rate=args.rate,
            )
        )
        outage_task = None
        if scenario.outage is not None:
            outage_task = asyncio.create_task(
                run_outage(scenario.outage, fake, progress, total, sampler)
            )

        def done(state: Progress) -> bool:
            if not posting.done():
                return False
            if outage_task is not None and not outage_task.done():
                return False
            accepted = posting.result().accepted
            return state.delivered + state.failed >= accepted

        watcher = asyncio.create_task(
            watch_outbox(dsn, progress, done, timeout=args.timeout)
        )
        maintenance = None
        if args.autovacuum_every > 0:
            maintenance = asyncio.create_task(
                autovacuum_stand_in(dsn, args.autovacuum_every, vacuum_actions)
            )
        posts = await posting
        sampler.mark("posted", posts.finished)
        log(
            f"  posted {posts.accepted}/{total} in "
            f"{posts.finished - posts.started:.1f} s"
        )
        completed = await watcher
        if maintenance is not None:
            maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await maintenance
        if outage_task is not None:
            if not outage_task.done():
                outage_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await outage_task
        finished_at = time.time()
        sampler.mark("end", finished_at)
        log(f"  {'all delivered' if completed else 'TIMED OUT'}")
        fake_stats = await fake.control("GET", "stats")
        messages, attempts, statuses, stored = await read_database(dsn)
    finally:
        sampler.close()
        if profiler is not None:
            await asyncio.to_thread(stop, profiler)
    # Marks for the phases of the run, from the records.
    delivered_times = [m["delivered_at"] for m in messages if m["delivered_at"]]
    cpu = {"run": sampler.between("start", "end")}
    if posts.finished < finished_at:
        cpu["after posting"] = sampler.between("posted", "end")
    cpu["posting"] = sampler.between("start", "posted")
    if "back" in sampler.marks:
        cpu["outage"] = sampler.between("down", "back")
        cpu["drain"] = sampler.between("back", "end")
    cpu_seconds = sampler.cpu_seconds("start", "end")
    profile = None
    if profiler is not None and profile_path.exists():
        summary = summarise_py_spy(profile_path)
        profile = asdict(summary) | {"file": str(profile_path.relative_to(REPO))}
    # Stop the service before reading its log.
    for process in [p for p in stack.processes if p.name == "service"]:
        await asyncio.to_thread(stop, process)
    if not delivered_times:
        log("  nothing was delivered")
    return RunData(
        scenario=scenario,
        workload=workload,
        posts=posts,
        progress=progress,
        completed=completed,
        finished_at=finished_at,
        messages=messages,
        attempts=attempts,
        attempt_statuses=statuses,
        service_products=stored,
        fake_stats=fake_stats,
        cpu=cpu,
        cpu_seconds=cpu_seconds,
        service_events=service_events(service_logs),
        settings=settings,
        profile=profile,
        vacuum_actions=vacuum_actions,
    )


# --------------------------------------------------------------------------
# Analysis


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Check:
    name: str
    value: Any
    expected: Any

    @property
    def ok(self) -> bool:
        return bool(self.value == self.expected)


@dataclass
class TokenLoad:
    connection_id: str
    writes: int
    reads: int
    busy_windows: int
    max_per_window: int
    mean_per_window: float
    windows_at_limit: int
    windows_over_limit: int


def analyse(run: RunData) -> dict[str, Any]:
    items = run.workload.items
    by_subject = {
        (item.kind, item.record_id): item for item in items if item.accepted_at
    }
    messages = run.messages
    message_of: dict[int, dict[str, Any]] = {}
    unmatched = 0
    for message in messages:
        item = by_subject.get((message["kind"], message["subject_id"]))
        if item is None:
            unmatched += 1
            continue
        message_of[item.index] = message
    accepted = [item for item in items if item.accepted_at]
    statuses = Counter(message["status"] for message in messages)
    first_post = run.posts.started
    delivered = [m for m in messages if m["delivered_at"] is not None]
    last_delivered = max((m["delivered_at"] for m in delivered), default=first_post)
    first_delivered = min((m["delivered_at"] for m in delivered), default=first_post)

    e2e = [
        (message_of[item.index]["delivered_at"] - item.accepted_at) * 1000
        for item in accepted
        if item.index in message_of and message_of[item.index]["delivered_at"]
    ]
    queued = [
        (m["delivered_at"] - m["created_at"]) * 1000
        for m in delivered
        if m["created_at"] is not None
    ]
    per_second = Counter(int(m["delivered_at"] - first_post) for m in delivered)
    span = int(last_delivered - first_post) + 1
    counts = [per_second.get(second, 0) for second in range(span)]
    outage = run.scenario.outage
    busy_counts = counts[1:-1]
    if outage is not None and outage.back_at:
        down_s = int(outage.down_at - first_post)
        back_s = int(outage.back_at - first_post)
        busy_counts = [
            n for s, n in enumerate(counts[1:-1], 1) if not down_s <= s <= back_s
        ]

    # The fake: one write per message, in order per ordering key.
    stats = run.fake_stats
    writes = stats["writes"]
    write_keys = Counter(write[0] for write in writes)
    message_keys = {m["idempotency_key"]: m for m in messages}
    duplicated = sum(1 for n in write_keys.values() if n > 1)
    missing = sum(1 for key in message_keys if key not in write_keys)
    unknown = sum(1 for key in write_keys if key not in message_keys)
    sequence: dict[str, list[int]] = defaultdict(list)
    for write in writes:
        written = message_keys.get(write[0])
        if written is not None:
            sequence[written["ordering_key"]].append(written["id"])
    multi = {key: ids for key, ids in sequence.items() if len(ids) > 1}
    out_of_order = [
        key
        for key, ids in multi.items()
        if any(a >= b for a, b in itertools.pairwise(ids))
    ]
    adjustment_keys = [key for key in multi if key.startswith("product:")]
    order_keys = [key for key in multi if key.startswith("order:")]

    # By item: tracking numbers on the fake's orders, writes per product path.
    fake_tracking = Counter(
        number
        for orders in stats["orders"].values()
        for numbers in orders.values()
        for number in numbers
    )
    posted_tracking = Counter(
        item.body["tracking_number"] for item in accepted if item.kind == SHIPMENT
    )
    shipments_twice = sum(1 for n in fake_tracking.values() if n > 1)
    shipments_missing = sum(1 for t in posted_tracking if fake_tracking[t] == 0)
    writes_per_product = Counter(
        write[3] for write in writes if write[3].endswith("/adjust-inventory")
    )
    posted_per_product = Counter(
        f"/cart/products/{item.subject}/adjust-inventory"
        for item in accepted
        if item.kind == ADJUSTMENT
    )
    products_wrong_count = sum(
        1
        for path in posted_per_product.keys() | writes_per_product.keys()
        if posted_per_product[path] != writes_per_product[path]
    )

    # Final stock: seeded stock + adjustments in acceptance (outbox id) order.
    in_id_order = sorted(
        (
            item
            for item in accepted
            if item.kind == ADJUSTMENT and item.index in message_of
        ),
        key=lambda item: message_of[item.index]["id"],
    )
    expected = expected_stock(run.workload, in_id_order)
    fake_stock = {
        (connection, product): {k: int(v) for k, v in (levels or {}).items()}
        for connection, products in stats["products"].items()
        for product, levels in products.items()
    }
    stock_mismatch = sum(
        1 for key, levels in expected.items() if fake_stock.get(key) != levels
    )
    stored_mismatch = sum(
        1 for key in expected if run.service_products.get(key) != fake_stock.get(key)
    )

    checks = [
        Check("items accepted (202)", len(accepted), len(items)),
        Check("outbox messages", len(messages), len(accepted)),
        Check("messages not matching a posted item", unmatched, 0),
        Check("messages delivered", statuses.get("delivered", 0), len(accepted)),
        Check("messages failed", statuses.get("failed", 0), 0),
        Check("writes at the fake", len(writes), len(accepted)),
        Check("idempotency keys written twice or more", duplicated, 0),
        Check("messages never written (missing)", missing, 0),
        Check("writes with an unknown key", unknown, 0),
        Check("tracking numbers on 2+ shipments at the fake", shipments_twice, 0),
        Check("posted shipments missing at the fake", shipments_missing, 0),
        Check("products with writes != adjustments posted", products_wrong_count, 0),
        Check(
            f"products ({len(adjustment_keys)}) with adjustments out of id order",
            sum(1 for key in out_of_order if key.startswith("product:")),
            0,
        ),
        Check(
            f"orders ({len(order_keys)}) with 2+ shipments out of id order",
            sum(1 for key in out_of_order if key.startswith("order:")),
            0,
        ),
        Check(
            "fake's final stock != seeded + adjustments in id order", stock_mismatch, 0
        ),
        Check("service's stored stock != fake's", stored_mismatch, 0),
    ]

    # Per token: writes per one-second window while busy.
    limit = int(stats["write_limit"])
    outage_windows: set[int] = set()
    if outage is not None and outage.back_at:
        outage_windows = set(range(int(outage.down_at), int(outage.back_at) + 1))
    tokens = []
    for connection_id, windows in sorted(stats["windows"].items()):
        counted = {int(w): (int(r), int(wr)) for w, (r, wr) in windows.items()}
        with_writes = sorted(w for w, (_, wr) in counted.items() if wr)
        if not with_writes:
            continue
        first_w, last_w = with_writes[0], with_writes[-1]
        busy = [
            counted.get(w, (0, 0))[1]
            for w in range(first_w + 1, last_w)
            if w not in outage_windows
        ]
        all_writes = [wr for _, wr in counted.values()]
        tokens.append(
            TokenLoad(
                connection_id=connection_id,
                writes=sum(all_writes),
                reads=sum(r for r, _ in counted.values()),
                busy_windows=len(busy),
                max_per_window=max(all_writes),
                mean_per_window=statistics.fmean(busy) if busy else float("nan"),
                windows_at_limit=sum(1 for n in all_writes if n == limit),
                windows_over_limit=sum(1 for n in all_writes if n > limit),
            )
        )

    result: dict[str, Any] = {
        "scenario": run.scenario.name,
        "completed": run.completed,
        "items": len(items),
        "shipments": sum(1 for item in items if item.kind == SHIPMENT),
        "adjustments": sum(1 for item in items if item.kind == ADJUSTMENT),
        "connections": len(run.workload.connections),
        "posting": {
            "seconds": run.posts.finished - run.posts.started,
            "per_second": run.posts.accepted
            / max(run.posts.finished - run.posts.started, 1e-9),
            "accepted": run.posts.accepted,
            "refused": dict(run.posts.refused),
            "retried": run.posts.retried,
            "p50_ms": percentile(run.posts.latencies_ms, 0.5),
            "p99_ms": percentile(run.posts.latencies_ms, 0.99),
        },
        "delivery": {
            "first_post_to_last_delivered_s": last_delivered - first_post,
            "deliveries_per_second": len(delivered)
            / max(last_delivered - first_post, 1e-9),
            "first_to_last_delivered_per_second": len(delivered)
            / max(last_delivered - first_delivered, 1e-9),
            "median_per_second_busy": statistics.median(busy_counts)
            if busy_counts
            else float("nan"),
            "peak_per_second": max(counts) if counts else 0,
            "after_posting_per_second": sum(
                1 for m in delivered if m["delivered_at"] > run.posts.finished
            )
            / max(last_delivered - run.posts.finished, 1e-9)
            if last_delivered > run.posts.finished
            else float("nan"),
            "last_delivered_after_posting_s": last_delivered - run.posts.finished,
            "e2e_p50_ms": percentile(e2e, 0.5),
            "e2e_p90_ms": percentile(e2e, 0.9),
            "e2e_p99_ms": percentile(e2e, 0.99),
            "e2e_max_ms": max(e2e, default=float("nan")),
            "queued_p50_ms": percentile(queued, 0.5),
            "queued_p99_ms": percentile(queued, 0.99),
            "per_second": counts,
        },
        "fake": {
            "rate_limited_429": stats["rate_limited"],
            "requests": stats["requests"],
            "answers": stats["answers"],
            "replays": stats["replays"],
            "keys_sent_more_than_once": stats["keys_sent_more_than_once"],
            "write_limit": limit,
        },
        "tokens": [asdict(token) for token in tokens],
        "attempts": run.attempts,
        "attempt_statuses": run.attempt_statuses,
        "messages_with_retries": sum(1 for m in messages if (m["attempts"] or 0) > 1),
        "max_attempts": max((m["attempts"] or 0 for m in messages), default=0),
        "checks": [asdict(check) | {"ok": check.ok} for check in checks],
        "checks_ok": all(check.ok for check in checks) and run.completed,
        "cpu": run.cpu,
        "cpu_seconds": run.cpu_seconds,
        "service_events": run.service_events,
        "service_settings": run.settings,
        "profile": run.profile,
        "maintenance": dict(
            Counter(f"{action} {table}" for _, table, action in run.vacuum_actions)
        ),
    }
    if outage is not None:
        back = outage.back_at
        after = sorted(m["delivered_at"] for m in delivered if m["delivered_at"] > back)
        backlog = sum(
            1
            for item in accepted
            if item.accepted_at <= back
            and (
                item.index not in message_of
                or not message_of[item.index]["delivered_at"]
                or message_of[item.index]["delivered_at"] > back
            )
        )
        accepted_later = sum(1 for item in accepted if item.accepted_at > back)
        result["outage"] = {
            "mode": outage.mode,
            "down_after_s": outage.down_at - first_post,
            "length_s": back - outage.down_at,
            "delivered_when_down": outage.delivered_at_down,
            "delivered_during": sum(
                1 for m in delivered if outage.down_at <= m["delivered_at"] <= back
            ),
            "backlog_when_back": backlog,
            "accepted_after_back": accepted_later,
            "first_delivery_after_back_s": (after[0] - back) if after else None,
            "drain_s": (last_delivered - back) if after else None,
            "drain_per_second": (len(after) / (last_delivered - back))
            if after and last_delivered > back
            else None,
            "posting_ended_after_back": run.posts.finished > back,
        }
    return result


# --------------------------------------------------------------------------
# Report


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine_info(server_url: str) -> dict[str, str]:
    cpu_model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    ram = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        ram = f"{int(first.split()[1]) / 1024 / 1024:.1f} GiB"
    os_name = platform.system()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    os_name += f", Linux {platform.release()}"

    async def postgres() -> str:
        connection = await asyncpg.connect(_asyncpg_dsn(server_url))
        try:
            version = await connection.fetchval("SHOW server_version")
            names = (
                "fsync",
                "synchronous_commit",
                "shared_buffers",
                "max_connections",
                "autovacuum",
            )
            shown = [f"{n}={await connection.fetchval(f'SHOW {n}')}" for n in names]
        finally:
            await connection.close()
        return f"PostgreSQL {version} ({', '.join(shown)})"

    packages = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in (
            "fastapi",
            "uvicorn",
            "uvloop",
            "httpx",
            "sqlalchemy",
            "asyncpg",
            "pydantic",
            "structlog",
        )
    )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model,
        "cores": str(os.cpu_count()),
        "ram": ram,
        "os": os_name,
        "python": platform.python_version(),
        "postgres": asyncio.run(postgres()),
        "packages": packages,
        "load average at start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def _maintenance_summary(actions: dict[str, int]) -> str:
    outbox = {
        k.removesuffix(" outbox_messages"): v
        for k, v in actions.items()
        if k.endswith(" outbox_messages")
    }
    return (
        "outbox_messages "
        + (", ".join(f"{k} x{v}" for k, v in sorted(outbox.items())) or "never")
        + f" ({sum(actions.values())} runs over all tables)"
    )


def render(
    results: Sequence[dict[str, Any]], info: dict[str, str], command: str, args: Any
) -> str:
    lines = ["## Forwarding to Trackstar", ""]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    lines += ["", "```sh", command, "```", ""]
    first = results[0]
    lines.append(
        f"Workload: {first['items']:,} items over {first['connections']} connections "
        f"({first['shipments']:,} shipments, {first['adjustments']:,} inventory "
        f"adjustments, {args.adjustments_per_product} per product), posted "
        + (
            f"at {args.rate:g}/s"
            if args.rate > 0
            else "as fast as the API takes them (closed loop)"
        )
        + f" over {args.post_concurrency} connections. Fake Trackstar: "
        f"{args.write_limit} writes/s and {args.read_limit} reads/s per token "
        f"(enforced), {args.latency * 1000:g} ms per request. Service settings: "
        + ", ".join(f"{k}={v}" for k, v in first["service_settings"].items())
        + ", the rest default. Delivery: "
        + (
            f"`serve --no-worker` + {args.worker_processes} `python -m app worker` "
            "processes."
            if args.worker_processes
            else "the worker inside `serve` (one process)."
        )
        + (
            f" Autovacuum stand-in: autovacuum's default thresholds applied to the "
            f"bench database every {args.autovacuum_every:g} s (the server's "
            "autovacuum is off): "
            + "; ".join(
                f"{r['scenario']} {_maintenance_summary(r.get('maintenance', {}))}"
                for r in results
            )
            + "."
            if args.autovacuum_every > 0
            else " No autovacuum stand-in."
        )
        + " Background load (the rest of the machine, 6 s before each scenario): "
        + ", ".join(
            f"{r['scenario']} {r.get('background_cpu_before', float('nan')):.0f}%"
            for r in results
        )
        + " of one core."
    )
    lines.append("")
    header = (
        "| scenario | POST s | POST/s | POST p99 ms | first POST → last delivered s "
        "| deliveries/s | after POSTs /s | median/s busy | peak/s | e2e p50 ms "
        "| e2e p99 ms "
        "| e2e max ms | 429s | checks |"
    )
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for r in results:
        p, d = r["posting"], r["delivery"]
        lines.append(
            f"| {r['scenario']} | {fmt(p['seconds'])} | {fmt(p['per_second'], 0)} "
            f"| {fmt(p['p99_ms'])} | {fmt(d['first_post_to_last_delivered_s'])} "
            f"| {fmt(d['deliveries_per_second'], 0)} "
            f"| {fmt(d['after_posting_per_second'], 0)} "
            f"| {fmt(d['median_per_second_busy'], 0)} | {fmt(d['peak_per_second'])} "
            f"| {fmt(d['e2e_p50_ms'], 0)} | {fmt(d['e2e_p99_ms'], 0)} "
            f"| {fmt(d['e2e_max_ms'], 0)} | {fmt(r['fake']['rate_limited_429'])} "
            f"| {'all pass' if r['checks_ok'] else 'FAIL'} |"
        )
    lines.append("")
    lines.append(
        "e2e: from the 202 of each POST (client clock) to `delivered_at` "
        "(same machine). after POSTs /s: deliveries per second from the last "
        "202 to the last delivery (the worker alone). median/s busy: median of "
        "deliveries per wall-clock second, first and last second (and the "
        "outage) left out."
    )
    for r in results:
        if "outage" not in r:
            continue
        o = r["outage"]
        lines += [
            "",
            f"Outage ({r['scenario']}, mode `{o['mode']}`):",
            "",
            "| down after s | length s | backlog when back | first delivery after "
            "back s | drain s (back → last delivered) | drain rate /s | "
            "POSTs still running when back |",
            "|---|---|---|---|---|---|---|",
            f"| {fmt(o['down_after_s'])} | {fmt(o['length_s'])} "
            f"| {fmt(o['backlog_when_back'])} "
            f"| {fmt(o['first_delivery_after_back_s'], 2)} | {fmt(o['drain_s'])} "
            f"| {fmt(o['drain_per_second'], 0)} "
            f"| {'yes' if o['posting_ended_after_back'] else 'no'} |",
        ]
    for r in results:
        lines += [
            "",
            f"Per token, {r['scenario']} (limit {r['fake']['write_limit']}/s):",
            "",
        ]
        tokens = r["tokens"]
        if not tokens:
            continue
        means = [t["mean_per_window"] for t in tokens]
        lines += [
            "| writes per 1 s window while busy | min over tokens | median | max |",
            "|---|---|---|---|",
            f"| max | {min(t['max_per_window'] for t in tokens)} "
            f"| {statistics.median(t['max_per_window'] for t in tokens)} "
            f"| {max(t['max_per_window'] for t in tokens)} |",
            f"| mean | {fmt(min(means))} | {fmt(statistics.median(means))} "
            f"| {fmt(max(means))} |",
            "",
            f"Windows at the limit: {sum(t['windows_at_limit'] for t in tokens)}; "
            f"over it: {sum(t['windows_over_limit'] for t in tokens)}; "
            f"reads (GET) at the fake: {sum(t['reads'] for t in tokens):,}; "
            f"answers: {json.dumps(r['fake']['answers'], sort_keys=True)}; "
            f"idempotent replays: {r['fake']['replays']}; keys sent more than once: "
            f"{r['fake']['keys_sent_more_than_once']}.",
        ]
        lines.append(
            f"Attempts recorded: {json.dumps(r['attempts'], sort_keys=True)} "
            f"(status codes {json.dumps(r['attempt_statuses'], sort_keys=True)}); "
            f"messages with more than one attempt: {r['messages_with_retries']}, "
            f"most attempts: {r['max_attempts']}."
        )
    lines += [
        "",
        "Checks:",
        "",
        "| check | " + " | ".join(r["scenario"] for r in results) + " | expected |",
    ]
    lines.append("|---|" + "---|" * (len(results) + 1))
    for i, check in enumerate(results[0]["checks"]):
        values = [
            fmt(r["checks"][i]["value"]) + ("" if r["checks"][i]["ok"] else " !")
            for r in results
        ]
        lines.append(
            f"| {check['name']} | "
            + " | ".join(values)
            + f" | {fmt(check['expected'])} |"
        )
    lines += [
        "",
        "CPU, % of one core (the machine has "
        f"{os.cpu_count()} cores: {100 * (os.cpu_count() or 1)}%); postgres = the "
        "bench database's backends + the shared checkpointer/writers; other = "
        "the rest of the machine:",
        "",
        "| scenario | phase | s | service | postgres | fake | bench | machine "
        "| other |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for phase, cpu in r["cpu"].items():
            lines.append(
                f"| {r['scenario']} | {phase} | {fmt(cpu['seconds'])} "
                f"| {fmt(cpu.get('service'), 0)} | {fmt(cpu.get('postgres'), 0)} "
                f"| {fmt(cpu.get('fake'), 0)} | {fmt(cpu.get('bench'), 0)} "
                f"| {fmt(cpu.get('machine'), 0)} | {fmt(cpu.get('other'), 0)} |"
            )
    lines.append("")
    for r in results:
        seconds = r["cpu_seconds"]
        per_item = {
            k: 1000 * v / max(r["items"], 1)
            for k, v in seconds.items()
            if k != "machine"
        }
        lines.append(
            f"CPU ms per item, {r['scenario']}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in per_item.items())
        )
    for r in results:
        events = r["service_events"]
        if events:
            lines.append("")
            lines.append(
                f"Service log events ({r['scenario']}, WARNING and up): "
                + ", ".join(f"{k} x{v}" for k, v in events.items())
            )
        if r.get("profile"):
            prof = r["profile"]
            lines += [
                "",
                f"py-spy, {r['scenario']} ({prof['samples']} samples, "
                f"{prof['file']}), innermost frame by package: "
                + ", ".join(f"{k} {100 * v:.0f}%" for k, v in prof["packages"][:10]),
                "",
                "Self time: "
                + "; ".join(f"{k} {100 * v:.1f}%" for k, v in prof["self_time"][:12]),
                "",
                "Including callees (app code): "
                + "; ".join(f"{k} {100 * v:.1f}%" for k, v in prof["inclusive"][:20]),
            ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark forwarding to Trackstar through the outbox.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_SERVER_URL,
        help="a PostgreSQL server (any database on it); the "
        "benchmark creates and drops its own",
    )
    parser.add_argument(
        "--scenarios", default="normal,outage", help="comma-separated: normal, outage"
    )
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--shipment-share", type=float, default=0.4)
    parser.add_argument("--adjustments-per-product", type=int, default=5)
    parser.add_argument("--post-concurrency", type=int, default=8)
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="items/s on a schedule; 0: as fast as the API takes them",
    )
    parser.add_argument("--latency", type=float, default=0.020)
    parser.add_argument("--write-limit", type=int, default=50)
    parser.add_argument("--read-limit", type=int, default=10)
    parser.add_argument("--outage-mode", choices=("down", "kill"), default="down")
    parser.add_argument("--outage-seconds", type=float, default=60.0)
    parser.add_argument(
        "--outage-at",
        type=float,
        default=0.5,
        help="share of the items delivered when Trackstar goes away",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1200.0,
        help="seconds to wait for delivery, per scenario",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the service, e.g. OUTBOX_CONCURRENCY=50",
    )
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=0,
        help="0: the worker runs inside `serve`; N: `serve --no-worker` and N "
        "`python -m app worker` processes",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each scenario, wait up to this long for the rest of the "
        "machine to use less than --idle-below %% of one core",
    )
    parser.add_argument("--idle-below", type=float, default=20.0)
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="py-spy the service for this long (first scenario)",
    )
    parser.add_argument(
        "--py-spy",
        default=shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
    )
    parser.add_argument(
        "--autovacuum-every",
        type=float,
        default=-1.0,
        metavar="SECONDS",
        help="apply autovacuum's default rules (ANALYZE / VACUUM ANALYZE) to the "
        "bench database this often; -1: every 15 s if the server's autovacuum "
        "is off, else never; 0: never",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for name in args.scenarios:
        if name not in ("normal", "outage"):
            parser.error(f"unknown scenario {name!r}")
    return args


def wait_for_quiet(limit_s: float, below: float) -> float:
    """Wait (up to `limit_s`) until the machine has used less than `below` % of
    one core for 6 s; the last 6 s figure."""
    deadline = time.monotonic() + limit_s
    window: list[float] = []
    while True:
        before = machine_busy_ticks()
        time.sleep(2.0)
        window = [*window[-2:], 100 * (machine_busy_ticks() - before) / CLK_TCK / 2]
        busy = statistics.fmean(window)
        if len(window) == 3 and busy < below:
            return busy
        if time.monotonic() >= deadline and len(window) == 3:
            log(f"machine still busy ({busy:.0f}% of one core); starting anyway")
            return busy


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def rerender(path: Path) -> int:
    """Print the report of a saved run (its .json) again."""
    saved = json.loads(path.read_text())
    command: str = saved["command"]
    args = parse_args(shlex.split(command)[2:])
    if args.autovacuum_every < 0:
        off = "autovacuum=off" in saved["info"]["postgres"]
        args.autovacuum_every = 15.0 if off else 0.0
    say(render(saved["results"], saved["info"], command, args))
    return 0 if all(r["checks_ok"] for r in saved["results"]) else 1


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(argv if argv is not None else sys.argv[1:])
    if arguments[:1] == ["--render"]:
        return rerender(Path(arguments[1]))
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    command = "python bench/forwarding.py" + "".join(
        f" {arg}" for arg in (argv if argv is not None else sys.argv[1:])
    )
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    info = machine_info(args.database_url)
    if args.autovacuum_every < 0:
        args.autovacuum_every = 15.0 if "autovacuum=off" in info["postgres"] else 0.0
    results = []
    for name in args.scenarios:
        outage = (
            Outage(args.outage_mode, args.outage_at, args.outage_seconds)
            if name == "outage"
            else None
        )
        scenario = Scenario(name, outage)
        background = wait_for_quiet(args.wait_idle, args.idle_below)
        log(f"background load before {name}: {background:.0f}% of one core")
        stack = Stack(server_url=args.database_url)
        try:
            run = uvloop.run(run_scenario(args, scenario, stack, run_id))
        finally:
            stack.close()
        results.append(analyse(run) | {"background_cpu_before": background})
    report = render(results, info, command, args)
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / f"forwarding-{run_id}.md").write_text(report)
    (OUT_DIR / f"forwarding-{run_id}.json").write_text(
        json.dumps(
            {"info": info, "command": command, "results": results},
            indent=1,
            default=str,
        )
    )
    say(report)
    return 0 if all(r["checks_ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

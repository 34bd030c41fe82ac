"""Benchmark: pull N orders from Trackstar with `python -m app sync orders`.

    .venv/bin/python bench/pull.py [--sizes 10000,100000] [--repeat 3]
        [--fast-rate 1000] [--no-default-rate] [--no-resume] [--profile]
        [--wait-idle 600 --idle-below 0.25]

What it does, each step with its own processes and a fresh database:

1. Per size, the fake Trackstar (bench/pull_fake.py) in its own process,
   served by uvicorn on loopback, holding N orders with 1-5 lines each.
2. Per run, a new PostgreSQL database; `python -m app connections add CONN`
   (token from TRACKSTAR_ACCESS_TOKEN), then the measured command
   `python -m app sync orders --connection CONN`, with LOG_LEVEL=WARNING and
   TRACKSTAR_READ_RATE_LIMIT=--fast-rate, so the client-side limit does not
   decide the result. Measured: wall time of the command, peak RSS of the
   sync process (`ru_maxrss` of that one child from `os.wait4`, and the last
   VmHWM read from /proc while it ran), its CPU time, the CPU of the fake and
   of the database's backends, and how busy the machine was otherwise.
   Checked afterwards: orders and order_lines hold exactly what the fake
   holds (count and sum of total_price), sync_states has a watermark and no
   unfinished run, and every page was fetched once.
3. The largest size again at Trackstar's real read budget: the default
   TRACKSTAR_READ_RATE_LIMIT (10/s) and the fake enforcing 10 reads/s.
4. Resume: the largest size with SYNC_LEASE=PT5S, SIGKILLed once half its
   pages are committed; after the dead process's lease has expired, the same
   command again. It must fetch only the pages not yet stored (counted at the
   fake) and end with exact counts.
5. With --profile, one more run of the largest size under
   `py-spy record --format raw`, summarised by function (own and total).

Everything it starts is stopped (and every database it created dropped) when
it ends, also on failure or Ctrl-C; children also get SIGTERM if the
benchmark itself is killed. The report goes to stdout and to
bench/out/pull-<time>.{json,md}; the sync processes' output next to them.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import httpx

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from forwarding_procs import Process as Child  # noqa: E402
from forwarding_procs import start as start_process  # noqa: E402
from forwarding_procs import stop as stop_process  # noqa: E402

REPO = BENCH.parent
OUT = BENCH / "out"
PYTHON = sys.executable
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECTION_ID = "conn_bench_pull"
ACCESS_TOKEN = "tok_bench_pull_" + "5f2b9c1d7e3a4068"
API_KEY = "tsk_bench_pull_organisation_key"
SECRET_KEY = "bench-pull-secret-key-for-encrypting-access-tokens"
PAGE_SIZE = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_EVERY = 0.1
MIB = 1024 * 1024


class BenchFailed(Exception):
    pass


def say(text: str = "", *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


# -- processes -----------------------------------------------------------------


class Children:
    """Every process the benchmark starts, so that all of them get stopped."""

    def __init__(self) -> None:
        self.running: list[Child] = []

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path | None
    ) -> Child:
        child = start_process(name, argv, env=env, cwd=REPO, log_path=log)
        self.running.append(child)
        return child

    def reaped(self, child: Child, status: int) -> None:
        child.popen.returncode = os.waitstatus_to_exitcode(status)
        self.stop(child)

    def stop(self, child: Child, *, timeout: float = 15.0) -> None:
        stop_process(child, timeout=timeout)
        with contextlib.suppress(ValueError):
            self.running.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self.running)):
            with contextlib.suppress(Exception):
                self.stop(child)


# -- /proc -----------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (KiB) of a live process; empty once it has exited."""
    found: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return found
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def machine_ticks() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


def code_version() -> dict[str, Any]:
    """The commit measured, and whether app/ or migrations/ differ from it
    (read-only git commands)."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "app", "migrations")
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "subject": git("log", "-1", "--format=%s"),
        "app_changed_since": changed.splitlines() if changed else [],
    }


def load_average() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"') + f" ({platform.release()})"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "os": os_name,
        "python": platform.python_version(),
        "packages": {
            name: metadata.version(name)
            for name in ("sqlalchemy", "asyncpg", "pydantic", "httpx", "uvicorn")
        },
    }


async def wait_for_idle(limit_s: float, idle_below: float) -> dict[str, Any]:
    """Wait (up to limit_s) until the machine's CPU, over 10 s, is below
    `idle_below` of all cores; say what it was."""
    deadline = time.monotonic() + limit_s
    while True:
        busy0, total0 = machine_ticks()
        await asyncio.sleep(10)
        busy1, total1 = machine_ticks()
        busy = (busy1 - busy0) / max(total1 - total0, 1e-9)
        if busy < idle_below or time.monotonic() >= deadline:
            return {"busy_fraction": round(busy, 3), "calm": busy < idle_below}
        say(f"  machine {busy:.0%} busy; waiting for it to calm down")


# -- the fake ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Fake:
    child: Child
    url: str
    holding: dict[str, Any]

    def stats(self) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/_bench/stats", timeout=30)
        answer.raise_for_status()
        stats: dict[str, Any] = answer.json()
        return stats

    def limit_reads(self, read_limit: int, *, enforce: bool) -> None:
        params = {"read_limit": str(read_limit), "enforce": "1" if enforce else "0"}
        httpx.post(f"{self.url}/_bench/limits", params=params).raise_for_status()


def start_fake(children: Children, orders: int, log: Path) -> Fake:
    port = free_port()
    argv = [
        PYTHON,
        str(BENCH / "pull_fake.py"),
        f"--port={port}",
        f"--api-key={API_KEY}",
        f"--connection={CONNECTION_ID}",
        f"--token={ACCESS_TOKEN}",
        f"--orders={orders}",
        "--read-limit=1000000",
    ]
    child = children.start(f"fake-{orders}", argv, os.environ, log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if child.popen.poll() is not None:
            raise BenchFailed(f"the fake exited with {child.popen.returncode}; {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/_bench/ready", timeout=2).status_code == 200:
                break
        if time.monotonic() > deadline:
            raise BenchFailed("the fake did not start within 300 s")
        time.sleep(0.2)
    fake = Fake(child, url, {})
    stats = fake.stats()
    fake.holding = {k: stats[k] for k in ("orders", "lines", "total_price_sum")}
    fake.holding["seeded_in_s"] = stats["seeded_in_s"]
    return fake


# -- databases -----------------------------------------------------------------------


class Databases:
    def __init__(self, admin: Any) -> None:
        self.admin = admin
        self.created: list[str] = []

    async def create(self) -> str:
        name = f"bench_pull_{os.getpid()}_{secrets.token_hex(3)}"
        await self.admin.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return name

    async def drop(self, name: str) -> None:
        await self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with contextlib.suppress(ValueError):
            self.created.remove(name)

    async def drop_all(self) -> None:
        for name in list(self.created):
            with contextlib.suppress(Exception):
                await self.drop(name)

    async def backends(self, name: str) -> list[int]:
        rows = await self.admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1", name
        )
        return [int(row["pid"]) for row in rows]


def dsn(name: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


async def database_state(name: str) -> dict[str, Any]:
    connection = await asyncpg.connect(dsn(name))
    try:
        orders = await connection.fetchval("SELECT count(*) FROM orders")
        lines = await connection.fetchval("SELECT count(*) FROM order_lines")
        total = await connection.fetchval("SELECT sum(total_price) FROM orders")
        state = await connection.fetchrow(
            "SELECT watermark, run_started_at, run_pages, run_page_token,"
            " records_pulled, leased_by FROM sync_states"
            " WHERE connection_id = $1 AND resource = 'orders'",
            CONNECTION_ID,
        )
    finally:
        await connection.close()
    return {
        "orders": orders,
        "order_lines": lines,
        "total_price_sum": str(total) if total is not None else None,
        "watermark": state["watermark"].isoformat() if state["watermark"] else None,
        "unfinished_run": state["run_started_at"] is not None,
        "records_pulled": state["records_pulled"],
    }


async def pull_progress(name: str) -> dict[str, Any] | None:
    connection = await asyncpg.connect(dsn(name))
    try:
        row = await connection.fetchrow(
            "SELECT run_pages, run_records, run_page_token IS NOT NULL AS has_token,"
            " lease_expires_at, now() AS now FROM sync_states"
            " WHERE connection_id = $1 AND resource = 'orders'",
            CONNECTION_ID,
        )
    finally:
        await connection.close()
    return None if row is None else dict(row)


# -- one run of the sync command -------------------------------------------------------


def app_env(database: str, fake: Fake, **overrides: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": dsn(database),
        "SECRET_KEY": SECRET_KEY,
        "TRACKSTAR_API_KEY": API_KEY,
        "TRACKSTAR_BASE_URL": fake.url,
        "TRACKSTAR_ACCESS_TOKEN": ACCESS_TOKEN,
        "ENVIRONMENT": "development",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
    }
    for name in ("TRACKSTAR_READ_RATE_LIMIT", "SYNC_LEASE", "SYNC_PAGE_SIZE"):
        env.pop(name, None)
    for name, value in overrides.items():
        if value is not None:
            env[name] = value
    return env


def sync_argv() -> list[str]:
    return [PYTHON, "-m", "app", "sync", "orders", "--connection", CONNECTION_ID]


@dataclass
class Sampled:
    """What the sampler saw while the sync process ran."""

    vmhwm_kib: int = 0
    rss_kib: list[tuple[float, int]] = field(default_factory=list)
    backend_cpu: dict[int, float] = field(default_factory=dict)  # pid -> last


async def sample(
    pid: int,
    databases: Databases,
    database: str,
    sampled: Sampled,
    started: float,
    stop: asyncio.Event,
) -> None:
    """Memory of the sync process, CPU of its database backends (a backend's
    last reading before it ends counts), until `stop`."""
    ticks = 0
    while not stop.is_set():
        memory = memory_kib(pid)
        if memory:
            sampled.vmhwm_kib = max(sampled.vmhwm_kib, memory.get("VmHWM", 0))
            sampled.rss_kib.append(
                (round(time.monotonic() - started, 2), memory.get("VmRSS", 0))
            )
        if ticks % 3 == 0:
            for backend in await databases.backends(database):
                sampled.backend_cpu.setdefault(backend, 0.0)
        for backend in sampled.backend_cpu:
            used = cpu_seconds(backend)
            if used is not None:
                sampled.backend_cpu[backend] = used
        ticks += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)


@dataclass
class Run:
    scenario: str
    orders: int
    rate_limit: str
    exit_code: int
    wall_s: float
    startup_s: float | None  # command start -> first page request at the fake
    pull_s: float | None  # first page request -> command end
    records_per_s: float
    maxrss_mib: float
    vmhwm_mib: float
    rss_curve_mib: list[tuple[float, float]]
    sync_cpu_s: float
    fake_cpu_s: float
    fake_handle_cpu_s: float
    postgres_cpu_s: float
    machine_busy_cores: float
    others_busy_cores: float
    load_before: list[float]
    load_after: list[float]
    pages_fetched: int
    first_pages_fetched: int
    statuses: dict[str, int]
    rate_limited: int
    output: str
    database: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    killed_after_pages: int | None = None


async def run_sync(
    *,
    scenario: str,
    children: Children,
    databases: Databases,
    database: str,
    fake: Fake,
    env: dict[str, str],
    rate_limit: str,
    log: Path,
    kill_at_pages: int | None = None,
    wrap: Sequence[str] = (),
) -> Run:
    """Run the sync command once and measure it (SIGKILL it once
    `kill_at_pages` pages are committed, if given)."""
    before = fake.stats()
    load_before = load_average()
    busy0, total0 = machine_ticks()
    log.write_text("")
    started_wall = time.time()
    started = time.monotonic()
    child = children.start(scenario, [*wrap, *sync_argv()], env, log)
    sampled = Sampled()
    stop = asyncio.Event()
    sampler = asyncio.create_task(
        sample(child.pid, databases, database, sampled, started, stop)
    )
    killer = None
    if kill_at_pages is not None:
        killer = asyncio.create_task(kill_when(database, child, kill_at_pages, stop))
    fake_cpu0 = cpu_seconds(fake.child.pid) or 0.0
    try:
        status, usage = await reap(child.pid)
    finally:
        ended = time.monotonic()
        stop.set()
        for task in (sampler, killer):
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 30)
    fake_cpu1 = cpu_seconds(fake.child.pid) or 0.0
    children.reaped(child, status)
    busy1, total1 = machine_ticks()
    after = fake.stats()
    wall = ended - started
    cores = (total1 - total0) / max(wall, 1e-9)
    machine_busy = (busy1 - busy0) / max(total1 - total0, 1e-9) * cores
    postgres_cpu = sum(sampled.backend_cpu.values())
    sync_cpu = usage.ru_utime + usage.ru_stime
    fake_cpu = fake_cpu1 - fake_cpu0
    ours = (sync_cpu + fake_cpu + postgres_cpu) / max(wall, 1e-9)
    times = after["list_times"][len(before["list_times"]) :]
    first_request = times[0] - started_wall if times else None
    statuses = Counter(after["list_statuses"])
    statuses.subtract(before["list_statuses"])
    return Run(
        scenario=scenario,
        orders=fake.holding["orders"],
        rate_limit=rate_limit,
        exit_code=child.popen.returncode,
        wall_s=round(wall, 2),
        startup_s=round(first_request, 2) if first_request is not None else None,
        pull_s=round(wall - first_request, 2) if first_request is not None else None,
        records_per_s=round(fake.holding["orders"] / wall),
        maxrss_mib=round(usage.ru_maxrss / 1024, 1),
        vmhwm_mib=round(sampled.vmhwm_kib / 1024, 1),
        rss_curve_mib=_curve(sampled.rss_kib),
        sync_cpu_s=round(sync_cpu, 2),
        fake_cpu_s=round(fake_cpu, 2),
        fake_handle_cpu_s=round(after["handle_cpu_s"] - before["handle_cpu_s"], 2),
        postgres_cpu_s=round(postgres_cpu, 2),
        machine_busy_cores=round(machine_busy, 2),
        others_busy_cores=round(max(0.0, machine_busy - ours), 2),
        load_before=load_before,
        load_after=load_average(),
        pages_fetched=after["list_requests"] - before["list_requests"],
        first_pages_fetched=after["list_first_pages"] - before["list_first_pages"],
        statuses={k: v for k, v in statuses.items() if v},
        rate_limited=after["rate_limited"] - before["rate_limited"],
        output=_summary_line(log),
    )


def _curve(samples: list[tuple[float, int]]) -> list[tuple[float, float]]:
    """RSS at about every tenth of the run (MiB)."""
    if not samples:
        return []
    step = max(1, len(samples) // 10)
    picked = samples[::step]
    if picked[-1] != samples[-1]:
        picked.append(samples[-1])
    return [(at, round(kib / 1024, 1)) for at, kib in picked]


def _summary_line(log: Path) -> str:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(f"{CONNECTION_ID}:"):
            return line.strip()
    return ""


async def reap(pid: int) -> tuple[int, Any]:
    """Wait for the child without a thread (so that Ctrl-C never waits on
    one): its exit status and its own resource usage (ru_maxrss: its peak RSS)."""
    while True:
        reaped, status, usage = os.wait4(pid, os.WNOHANG)
        if reaped == pid:
            return status, usage
        await asyncio.sleep(0.01)


async def kill_when(
    database: str, child: Child, pages: int, stop: asyncio.Event
) -> None:
    """SIGKILL the sync process once `pages` pages are committed."""
    connection = await asyncpg.connect(dsn(database))
    try:
        while not stop.is_set():
            with contextlib.suppress(asyncpg.PostgresError):
                done = await connection.fetchval(
                    "SELECT run_pages FROM sync_states"
                    " WHERE connection_id = $1 AND resource = 'orders'",
                    CONNECTION_ID,
                )
                if done is not None and done >= pages:
                    os.kill(child.pid, signal.SIGKILL)
                    return
            await asyncio.sleep(0.02)
    finally:
        await connection.close()


def verify(run: Run, fake: Fake, *, pages: int | None) -> None:
    state = run.database
    run.checks = {
        "exit 0": run.exit_code == 0,
        "orders exact": state["orders"] == fake.holding["orders"],
        "order_lines exact": state["order_lines"] == fake.holding["lines"],
        "total_price sum exact": Decimal(state["total_price_sum"] or "0")
        == Decimal(fake.holding["total_price_sum"]),
        "watermark set": state["watermark"] is not None,
        "no unfinished run": not state["unfinished_run"],
    }
    if pages is not None:
        run.checks["each page fetched once"] = run.pages_fetched == pages


async def measured_run(
    *,
    scenario: str,
    children: Children,
    databases: Databases,
    fake: Fake,
    out: Path,
    rate: str | None,
    rate_label: str,
    wrap: Sequence[str] = (),
) -> Run:
    database = await databases.create()
    try:
        env = app_env(database, fake, TRACKSTAR_READ_RATE_LIMIT=rate)
        await add_connection(children, env, out.with_suffix(".add.log"))
        run = await run_sync(
            scenario=scenario,
            children=children,
            databases=databases,
            database=database,
            fake=fake,
            env=env,
            rate_limit=rate_label,
            log=out.with_suffix(".sync.log"),
            wrap=wrap,
        )
        run.database = await database_state(database)
        verify(run, fake, pages=-(-fake.holding["orders"] // PAGE_SIZE))
        return run
    finally:
        await databases.drop(database)


async def add_connection(children: Children, env: dict[str, str], log: Path) -> None:
    argv = [PYTHON, "-m", "app", "connections", "add", CONNECTION_ID]
    child = children.start("connections-add", argv, env, log)
    deadline = time.monotonic() + 120
    while (code := child.popen.poll()) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    children.stop(child)
    if code != 0:
        raise BenchFailed(f"connections add exited with {code}; see {log}")


async def resume_check(
    *, children: Children, databases: Databases, fake: Fake, out: Path, rate: str
) -> dict[str, Any]:
    total_pages = -(-fake.holding["orders"] // PAGE_SIZE)
    database = await databases.create()
    try:
        env = app_env(database, fake, TRACKSTAR_READ_RATE_LIMIT=rate, SYNC_LEASE="PT5S")
        await add_connection(children, env, out.with_suffix(".add.log"))
        first = await run_sync(
            scenario="resume: 1st run, SIGKILLed",
            children=children,
            databases=databases,
            database=database,
            fake=fake,
            env=env,
            rate_limit=f"{rate}/s",
            log=out.with_suffix(".killed.log"),
            kill_at_pages=total_pages // 2,
        )
        stored = await pull_progress(database)
        assert stored is not None
        first.database = await database_state(database)
        lease_left = (stored["lease_expires_at"] - stored["now"]).total_seconds()
        waited = max(0.0, lease_left) + 0.5
        await asyncio.sleep(waited)
        second = await run_sync(
            scenario="resume: 2nd run",
            children=children,
            databases=databases,
            database=database,
            fake=fake,
            env=env,
            rate_limit=f"{rate}/s",
            log=out.with_suffix(".resumed.log"),
        )
        second.database = await database_state(database)
        verify(second, fake, pages=total_pages - stored["run_pages"])
        second.checks["no first page fetched again"] = second.first_pages_fetched == 0
        first.checks = {"killed by SIGKILL": first.exit_code == -signal.SIGKILL}
        # records/s of each half: what it committed, what was left
        first.records_per_s = round(stored["run_records"] / first.wall_s)
        left = fake.holding["orders"] - stored["run_records"]
        second.records_per_s = round(left / second.wall_s)
        first.killed_after_pages = stored["run_pages"]
        return {
            "total_pages": total_pages,
            "killed_at_pages_committed": stored["run_pages"],
            "killed_at_records_committed": stored["run_records"],
            "orders_in_db_after_kill": first.database["orders"],
            "lease_left_after_kill_s": round(lease_left, 2),
            "waited_s": round(waited, 2),
            "killed": asdict(first),
            "resumed": asdict(second),
        }
    finally:
        await databases.drop(database)


# -- py-spy ---------------------------------------------------------------------------


# What a sample was doing, by the first of these found in its stack. SQLAlchemy
# runs the ORM in greenlets whose stacks py-spy shows without their callers, so
# a statement's cost is recognised by its own frames rather than by app code.
ACTIVITIES = (
    ("start-up: imports", ("_find_and_load",)),
    ("start-up: migrations check", ("upgrade (app/core/migrations.py",)),
    (
        "orders upsert: .values(rows) + compiling a 1000-row VALUES each page",
        ("_extend_values_for_multiparams", "ValuesBase.values (sqlalchemy"),
    ),
    ("other SQL compilation", ("_compile_w_cache",)),
    ("JSON encoding of JSONB columns (dumps_json)", ("dumps_json (app/core/db.py",)),
    ("asyncpg: execute/protocol", ("(asyncpg/",)),
    ("pydantic validation", ("model_validate (pydantic",)),
    ("HTTP response JSON decode", ("_json_object (app/trackstar",)),
    ("httpx/httpcore/h11", ("(httpx/", "(httpcore/", "(h11/")),
    (
        "building rows (_order_row, _line_rows, model_dump)",
        ("_order_row (app", "_line_rows (app", "model_dump (pydantic"),
    ),
    ("other SQLAlchemy (ORM bulk insert, parameters, results)", ("(sqlalchemy/",)),
    ("asyncio event loop", ("(asyncio/",)),
)


def summarise_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """Own and total samples per function from py-spy's raw (collapsed)
    output, and samples per activity (`ACTIVITIES`)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    activities: Counter[str] = Counter()
    samples = 0
    pattern = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
    for line in raw.read_text().splitlines():
        match = pattern.match(line)
        if match is None:
            continue
        count = int(match["count"])
        frames = [_frame(f) for f in match["stack"].split(";") if f]
        frames = [f for f in frames if f]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
        stack = ";".join(frames)
        activity = next(
            (name for name, keys in ACTIVITIES if any(k in stack for k in keys)),
            "other",
        )
        activities[activity] += count

    def share(counts: Counter[str], n: int | None) -> list[tuple[str, int, float]]:
        return [
            (name, k, round(100 * k / max(samples, 1), 1))
            for name, k in counts.most_common(n)
        ]

    return {
        "samples": samples,
        "activities": share(activities, None),
        "own": share(own, top),
        "total": share(total, top),
    }


def _frame(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)" under the repo
    # or site-packages, so that the lines of one function count together.
    match = re.match(r"^(?P<fn>.*?) \((?P<path>[^:]+)(?::\d+)?\)$", frame.strip())
    if match is None:
        return frame.strip()
    path = match["path"]
    for marker in ("site-packages/", str(REPO) + "/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['fn']} ({path})"


# -- the report ---------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    lines = [
        f"Pull benchmark, {results['date']}",
        "",
        "Machine: {cpu}, {cores} cores, {ram_gib} GiB RAM, {os}, Python {python}, "
        "{postgres}".format(**results["machine"]),
        "Code: {commit} ({subject}){dirty}".format(
            **results["code"],
            dirty=", app/ changed since"
            if results["code"]["app_changed_since"]
            else "",
        ),
        f"Load average before/after: {results['load_start']} / {results['load_end']}",
        "",
        "| scenario | orders | rate limit | wall s | start-up s | records/s "
        "| peak RSS MiB (ru_maxrss / VmHWM) | sync CPU s | Postgres CPU s "
        "| fake CPU s | others' cores | checks |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| --- |",
    ]
    rows = list(results["runs"])
    if results.get("resume"):
        rows += [results["resume"]["killed"], results["resume"]["resumed"]]
    if results.get("profile"):
        rows.append(results["profile"]["run"])
    for run in rows:
        failed = [name for name, ok in run["checks"].items() if not ok]
        lines.append(
            f"| {run['scenario']} | {run['orders']:,} | {run['rate_limit']} "
            f"| {run['wall_s']} | {run['startup_s']} | {run['records_per_s']:,} "
            f"| {run['maxrss_mib']} / {run['vmhwm_mib']} | {run['sync_cpu_s']} "
            f"| {run['postgres_cpu_s']} | {run['fake_cpu_s']} "
            f"| {run['others_busy_cores']} "
            f"| {'ok' if not failed else 'FAILED: ' + ', '.join(failed)} |"
        )
    lines.append("")
    for size, summary in results["summary"].items():
        lines.append(
            f"{size} orders (fast rate): median wall {summary['median_wall_s']} s, "
            f"{summary['median_records_per_s']:,} records/s, "
            f"peak RSS max {summary['max_maxrss_mib']} MiB"
        )
    if "rss_growth_pct" in results:
        lines.append(f"RSS growth smallest -> largest: {results['rss_growth_pct']} %")
    resume = results.get("resume")
    if resume:
        second = resume["resumed"]
        lines += [
            "",
            f"Resume: killed with {resume['killed_at_pages_committed']} of "
            f"{resume['total_pages']} pages committed "
            f"({resume['orders_in_db_after_kill']:,} orders stored); waited "
            f"{resume['waited_s']} s for the lease (SYNC_LEASE=PT5S); the second "
            f"run fetched {second['pages_fetched']} pages "
            f"({second['first_pages_fetched']} first pages) in {second['wall_s']} s: "
            f"{second['output']}; first run killed by SIGKILL: "
            f"{resume['killed']['checks']['killed by SIGKILL']}; checks: "
            + ", ".join(
                f"{k}={'ok' if v else 'FAIL'}" for k, v in second["checks"].items()
            ),
        ]
    profile = results.get("profile")
    if profile:
        lines += ["", f"py-spy ({profile['samples']} samples), by activity:"]
        lines += [f"  {pct:5.1f}%  {name}" for name, _, pct in profile["activities"]]
        lines += ["top own time:"]
        lines += [f"  {pct:5.1f}%  {name}" for name, _, pct in profile["own"][:15]]
        lines += ["top total time:"]
        lines += [f"  {pct:5.1f}%  {name}" for name, _, pct in profile["total"][:25]]
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, children: Children) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = OUT
    out_dir.mkdir(exist_ok=True)
    base = out_dir / f"pull-{stamp}"
    admin = await asyncpg.connect(ADMIN_DSN)
    databases = Databases(admin)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            **machine(),
            "postgres": (await admin.fetchval("SHOW server_version")).split()[0],
        },
        "argv": sys.argv,
        "code": code_version(),
        "runs": [],
    }
    results["machine"]["postgres"] = "PostgreSQL " + results["machine"]["postgres"]
    try:
        if args.wait_idle:
            results["idle_wait"] = await wait_for_idle(args.wait_idle, args.idle_below)
        results["load_start"] = load_average()
        sizes = sorted(int(s) for s in args.sizes.split(","))
        fast = str(args.fast_rate)
        for size in sizes:
            say(f"fake with {size:,} orders ...")
            fake = start_fake(
                children, size, base.with_name(f"{base.name}-{size}.fake.log")
            )
            results.setdefault("fakes", {})[str(size)] = fake.holding
            try:
                for repeat in range(1, args.repeat + 1):
                    name = f"{size}-r{repeat}"
                    run = await measured_run(
                        scenario=f"full pull #{repeat}",
                        children=children,
                        databases=databases,
                        fake=fake,
                        out=base.with_name(f"{base.name}-{name}"),
                        rate=fast,
                        rate_label=f"{fast}/s",
                    )
                    results["runs"].append(asdict(run))
                    say(
                        f"  {name}: {run.wall_s} s, {run.maxrss_mib} MiB, "
                        f"checks {run.checks}",
                    )
                if size != sizes[-1]:
                    continue
                if args.default_rate:
                    fake.limit_reads(10, enforce=True)
                    try:
                        run = await measured_run(
                            scenario="full pull, default rate",
                            children=children,
                            databases=databases,
                            fake=fake,
                            out=base.with_name(f"{base.name}-{size}-rate10"),
                            rate=None,
                            rate_label="10/s (default; fake enforces 10/s)",
                        )
                    finally:
                        fake.limit_reads(1_000_000, enforce=False)
                    results["runs"].append(asdict(run))
                    say(
                        f"  default rate: {run.wall_s} s, checks {run.checks}",
                    )
                if args.resume:
                    resume = await resume_check(
                        children=children,
                        databases=databases,
                        fake=fake,
                        out=base.with_name(f"{base.name}-{size}-resume"),
                        rate=fast,
                    )
                    results["resume"] = resume
                    say(
                        f"  resume: {resume['resumed']['pages_fetched']} pages "
                        f"after {resume['killed_at_pages_committed']}, checks "
                        f"{resume['resumed']['checks']}",
                    )
                if args.profile:
                    results["profile"] = await profile_run(
                        children, databases, fake, base, size, fast
                    )
            finally:
                children.stop(fake.child)
        results["load_end"] = load_average()
        summarise(results, sizes)
    finally:
        children.stop_all()
        await databases.drop_all()
        await admin.close()
    base.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    text = report(results)
    base.with_suffix(".md").write_text(text)
    say(f"\nwritten: {base}.json, {base}.md\n")
    return results


async def profile_run(
    children: Children,
    databases: Databases,
    fake: Fake,
    base: Path,
    size: int,
    fast: str,
) -> dict[str, Any]:
    py_spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if not Path(py_spy).exists():
        raise BenchFailed("--profile needs py-spy (pip install py-spy)")
    raw = base.with_name(f"{base.name}-{size}-profile.txt")
    wrap = [py_spy, "record", "--rate", "200", "--format", "raw", "-o", str(raw), "--"]
    run = await measured_run(
        scenario="full pull under py-spy",
        children=children,
        databases=databases,
        fake=fake,
        out=base.with_name(f"{base.name}-{size}-profile"),
        rate=fast,
        rate_label=f"{fast}/s",
        wrap=wrap,
    )
    summary = summarise_profile(raw)
    summary["run"] = asdict(run)
    summary["raw"] = os.path.relpath(raw, REPO)
    return summary


def summarise(results: dict[str, Any], sizes: list[int]) -> None:
    summary: dict[str, Any] = {}
    for size in sizes:
        runs = [
            r
            for r in results["runs"]
            if r["orders"] == size and r["scenario"].startswith("full pull #")
        ]
        if not runs:
            continue
        summary[str(size)] = {
            "median_wall_s": statistics.median(r["wall_s"] for r in runs),
            "median_records_per_s": round(
                statistics.median(r["records_per_s"] for r in runs)
            ),
            "max_maxrss_mib": max(r["maxrss_mib"] for r in runs),
            "median_maxrss_mib": statistics.median(r["maxrss_mib"] for r in runs),
        }
    results["summary"] = summary
    if len(summary) >= 2:
        small = summary[str(sizes[0])]["max_maxrss_mib"]
        large = summary[str(sizes[-1])]["max_maxrss_mib"]
        results["rss_growth_pct"] = round(100 * (large - small) / small, 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--fast-rate", type=int, default=1000, help="TRACKSTAR_READ_RATE_LIMIT"
    )
    parser.add_argument(
        "--no-default-rate",
        dest="default_rate",
        action="store_false",
        help="skip the run at the default 10 reads/s",
    )
    parser.add_argument("--no-resume", dest="resume", action="store_false")
    parser.add_argument("--profile", action="store_true", help="one run under py-spy")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        help="first wait up to this many seconds for the machine to calm down",
    )
    parser.add_argument("--idle-below", type=float, default=0.25)
    args = parser.parse_args()

    children = Children()

    def terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    try:
        results = asyncio.run(bench(args, children))
    except (KeyboardInterrupt, BenchFailed) as error:
        say(f"bench/pull.py: stopped: {error}", err=True)
        sys.exit(1)
    finally:
        children.stop_all()
    say(report(results))
    failed = [
        run["scenario"] for run in results["runs"] if not all(run["checks"].values())
    ]
    resume = results.get("resume")
    if resume and not all(
        [*resume["resumed"]["checks"].values(), *resume["killed"]["checks"].values()]
    ):
        failed.append("resume")
    if failed:
        say(f"FAILED checks in: {', '.join(failed)}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

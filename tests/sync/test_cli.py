"""`python -m app sync` end to end: a subprocess pulling over real HTTP from the
fake Trackstar served on loopback."""

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn

from app.core.timestamps import format_timestamp
from tests.conftest import ACCESS_TOKEN, CONNECTION_ID, TEST_API_KEY, TEST_SECRET_KEY
from tests.fixtures import builders
from tests.fixtures.fake_trackstar import FakeTrackstar

RECENT = format_timestamp(datetime.now(UTC) - timedelta(hours=1))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def served_fake() -> Iterator[tuple[FakeTrackstar, str]]:
    fake = FakeTrackstar(api_key=TEST_API_KEY, tokens={ACCESS_TOKEN: CONNECTION_ID})
    port = free_port()
    config = uvicorn.Config(
        fake.asgi_app(), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the fake did not start"
        time.sleep(0.02)
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def cli_env(tmp_path: Path, served_fake) -> dict[str, str]:
    _, base_url = served_fake
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "SECRET_KEY": TEST_SECRET_KEY,
        "TRACKSTAR_API_KEY": TEST_API_KEY,
        "TRACKSTAR_BASE_URL": base_url,
        "TRACKSTAR_ACCESS_TOKEN": ACCESS_TOKEN,
        "ENVIRONMENT": "development",
        "LOG_FORMAT": "json",
    }


def test_sync_pulls_every_page_into_the_database(served_fake, cli_env, tmp_path):
    fake, _ = served_fake
    for number in range(2001):
        fake.add_order(
            CONNECTION_ID,
            builders.order(
                f"ord_{number:05d}", updated_date=RECENT, trackstar_updated_date=RECENT
            ),
        )
    added = run_cli(cli_env, "connections", "add", CONNECTION_ID)
    assert added.returncode == 0, added.stderr

    pulled = run_cli(cli_env, "sync", "orders", "--connection", CONNECTION_ID)

    assert pulled.returncode == 0, pulled.stderr
    assert f"{CONNECTION_ID}: 2001 orders in 3 pages" in pulled.stdout
    assert pulled.stderr.count('"event": "sync.page"') == 3
    assert ACCESS_TOKEN not in pulled.stdout + pulled.stderr
    with sqlite3.connect(tmp_path / "cli.db") as db:
        (orders,) = db.execute("SELECT count(*) FROM orders").fetchone()
        (watermark,) = db.execute(
            "SELECT watermark FROM sync_states WHERE resource = 'orders'"
        ).fetchone()
    assert orders == 2001
    assert watermark is not None
    pages = [r for r in fake.requests if r.path == "/cart/orders"]
    assert [r.query.get("limit") for r in pages] == ["1000"] * 3


def test_sync_of_an_unknown_connection_fails_clearly(cli_env):
    result = run_cli(cli_env, "sync", "products", "--connection", "conn_nope")

    assert result.returncode == 2
    assert "unknown connection 'conn_nope'" in result.stderr


def test_sync_with_a_bad_since_is_refused(cli_env):
    result = run_cli(cli_env, "sync", "orders", "--since", "last tuesday")

    assert result.returncode == 2
    assert "since" in result.stderr.lower()

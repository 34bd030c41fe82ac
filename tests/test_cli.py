"""`python -m app` end to end, as an operator runs it: API keys, and the whole
service started with `serve`, fed by `webhooks simulate`, read through the API.

Every command runs as a subprocess on its own SQLite file, in a directory with
no `.env`, with no setting inherited from the outer environment.
"""

import hashlib
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from app.main import create_app
from tests.conftest import make_settings

KEY_FORMAT = re.compile(r"^tsf_(?P<prefix>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
COMMAND_TIMEOUT = 120
SERVER_START_TIMEOUT = 60


class Cli:
    """Runs `python -m app` against one SQLite database."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.database_path = directory / "service.db"
        self.env = {
            name: value
            for name, value in os.environ.items()
            if name.lower() not in Settings.model_fields
        }
        self.env.update(
            DATABASE_URL=f"sqlite:///{self.database_path}",
            ENVIRONMENT="development",
            LOG_FORMAT="json",
        )

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.database_path}"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", *args],
            env=self.env,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def create_key(self, name: str) -> str:
        result = self.run("api-keys", "create", name)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.database_path)) as connection:
            return connection.execute(sql).fetchall()

    def stored_bytes(self) -> bytes:
        """Everything SQLite keeps on disk: the file and its journals."""
        return b"".join(
            path.read_bytes()
            for path in sorted(self.directory.glob(f"{self.database_path.name}*"))
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def api(cli: Cli) -> FastAPI:
    """The application, in-process, on the CLI's database."""
    return create_app(make_settings(cli.database_url))


async def get_orders(application: FastAPI, key: str) -> httpx.Response:
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t"
        ) as client:
            return await client.get(
                "/api/v1/orders", headers={"Authorization": f"Bearer {key}"}
            )


# --- api-keys -----------------------------------------------------------------


def test_api_keys_create_prints_the_key_once_on_stdout(cli):
    result = cli.run("api-keys", "create", "wms-east")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert KEY_FORMAT.match(lines[0]), lines[0]
    assert "cannot be shown again" in result.stderr
    assert lines[0] not in result.stderr


def test_api_keys_create_stores_only_the_sha256_of_the_key(cli):
    key = cli.create_key("wms-east")

    rows = cli.rows("SELECT name, prefix, key_hash, revoked_at FROM api_keys")

    match = KEY_FORMAT.match(key)
    assert match is not None
    assert rows == [
        ("wms-east", match["prefix"], hashlib.sha256(key.encode()).hexdigest(), None)
    ]
    stored = cli.stored_bytes()
    assert match["secret"].encode() not in stored
    assert key.encode() not in stored


def test_each_created_key_is_different(cli):
    first = cli.create_key("wms-east")
    second = cli.create_key("wms-west")

    assert first != second
    assert first.split("_")[1] != second.split("_")[1]


def test_api_keys_create_with_a_taken_name_exits_1_with_a_message(cli):
    first = cli.create_key("wms-east")

    result = cli.run("api-keys", "create", "wms-east")

    assert result.returncode == 1
    assert result.stdout == ""
    assert "error: An API key named 'wms-east' exists already." in result.stderr
    hashes = cli.rows("SELECT key_hash FROM api_keys")
    assert hashes == [(hashlib.sha256(first.encode()).hexdigest(),)]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "needs a name"),
        ("   ", "needs a name"),
        ("wms\nsecond-line", "control characters"),
        ("x" * 101, "at most 100"),
    ],
)
def test_api_keys_create_refuses_a_name_it_could_not_list(cli, name, message):
    result = cli.run("api-keys", "create", name)

    assert result.returncode == 1
    assert result.stdout == ""
    assert message in result.stderr
    assert cli.rows("SELECT count(*) FROM api_keys") == [(0,)]


def test_unreachable_database_ends_migrate_with_one_line_and_no_password(cli):
    cli.env["DATABASE_URL"] = "postgresql://postgres:hunter2secret@127.0.0.1:1/nope"

    result = cli.run("migrate")

    assert result.returncode == 1
    assert "error: cannot use the database at" in result.stderr
    assert "127.0.0.1:1/nope" in result.stderr
    assert "hunter2secret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_api_keys_list_never_prints_the_secret(cli):
    key = cli.create_key("wms-east")
    match = KEY_FORMAT.match(key)
    assert match is not None

    result = cli.run("api-keys", "list")

    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"wms-east\ttsf_{match['prefix']}_…\t")
    assert line.endswith("\tactive")
    assert match["secret"] not in result.stdout + result.stderr
    assert match["secret"][:8] not in result.stdout + result.stderr


@pytest.mark.asyncio
async def test_revoked_key_gets_401(cli, api):
    key = cli.create_key("wms-east")
    before = await get_orders(api, key)
    assert before.status_code == 200

    result = cli.run("api-keys", "revoke", "wms-east")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "revoked wms-east"
    after = await get_orders(api, key)
    assert after.status_code == 401
    assert after.json() == {
        "error": "InvalidApiKey",
        "detail": "The API key has been revoked.",
    }
    ((revoked_at,),) = cli.rows("SELECT revoked_at FROM api_keys")
    assert revoked_at is not None
    listed = cli.run("api-keys", "list")
    assert listed.stdout.rstrip("\n").endswith("\trevoked")


def test_api_keys_revoke_of_an_unknown_name_exits_1_with_a_message(cli):
    cli.create_key("wms-east")

    result = cli.run("api-keys", "revoke", "wms-west")

    assert result.returncode == 1
    assert "error: No API key named 'wms-west'." in result.stderr
    assert cli.rows("SELECT revoked_at FROM api_keys") == [(None,)]


def test_invalid_setting_ends_a_command_with_exit_2_and_the_reason(cli):
    cli.env["LOG_LEVEL"] = "LOUD"

    result = cli.run("api-keys", "list")

    assert result.returncode == 2
    assert "LOG_LEVEL='LOUD'" in result.stderr
    assert not cli.database_path.exists()


# --- the production stack -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until_ready(
    base_url: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"the server exited with {process.returncode}:\n{log.read_text()}"
            )
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(
        f"the server was not ready in {SERVER_START_TIMEOUT}s:\n{log.read_text()}"
    )


@pytest.fixture
def server(cli: Cli) -> Iterator[str]:
    """`python -m app serve` on a free port; its base URL. Always stopped."""
    port = free_port()
    log = cli.directory / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--port", str(port)],
            env=cli.env,
            cwd=cli.directory,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_until_ready(base_url, process, log)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


EXPECTED_SIMULATION = {
    # Sorted by name, so the newest order snapshot arrives first.
    "cart-order.cart-shipment.created": "processed",
    "cart-order.created": "stale",
    "cart-order.updated": "stale",
    "cart-product.created": "processed",
    "cart-product.created.parent": "processed",
    "cart-product.updated": "processed",
    "cart-warehouse.created": "processed",
}


def test_served_service_takes_simulated_webhooks_and_serves_them(cli, server):
    assert "TRACKSTAR_WEBHOOK_SECRET" not in cli.env

    simulated = cli.run(
        "webhooks", "simulate", "all", "--url", f"{server}/webhooks/trackstar"
    )

    assert simulated.returncode == 0, simulated.stderr
    answers = {}
    for line in simulated.stdout.splitlines():
        name, _, answer = line.partition(": ")
        status_code, _, body = answer.partition(" ")
        answers[name] = (int(status_code), json.loads(body))
    assert {name: code for name, (code, _) in answers.items()} == dict.fromkeys(
        EXPECTED_SIMULATION, 200
    )
    assert {name: body["status"] for name, (_, body) in answers.items()} == (
        EXPECTED_SIMULATION
    )

    key = cli.create_key("wms-east")
    headers = {"Authorization": f"Bearer {key}"}
    orders = httpx.get(f"{server}/api/v1/orders", headers=headers, timeout=10)
    products = httpx.get(f"{server}/api/v1/products", headers=headers, timeout=10)
    warehouses = httpx.get(f"{server}/api/v1/warehouses", headers=headers, timeout=10)
    unauthorized = httpx.get(f"{server}/api/v1/orders", timeout=10)

    assert orders.status_code == 200
    (order,) = orders.json()["data"]
    assert (order["id"], order["status"]) == ("ord_5b1e0c7a93d24f68", "fulfilled")
    assert order["total_price"] == "74.67"
    assert [line["line_item_id"] for line in order["line_items"]] == [
        "li_2f8a4c6e0b1d",
        "li_4b0d6f8a2c3e",
        "li_6d2f8b0c4e5a",
    ]
    assert [s["tracking_number"] for s in order["shipments"]] == ["1ZEXAMPLE0000000001"]
    assert sorted(p["id"] for p in products.json()["data"]) == [
        "prod_3a7c5e9b1d0f4c26",
        "prod_5e9b1d3f7a2c4b18",
        "prod_8d2f1a6c0e4b4a39",
    ]
    assert [w["id"] for w in warehouses.json()["data"]] == ["wh_1b5d9f3a7e2c4a60"]
    assert unauthorized.status_code == 401
    statuses = cli.rows("SELECT status FROM webhook_events ORDER BY id")
    assert [status for (status,) in statuses] == list(EXPECTED_SIMULATION.values())


def test_served_service_sends_security_headers_and_no_server_version(server):
    health = httpx.get(f"{server}/healthz", timeout=10)
    missing = httpx.get(f"{server}/api/v1/nothing-here", timeout=10)

    for response in (health, missing):
        assert "server" not in response.headers
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        assert "access-control-allow-origin" not in response.headers
    assert missing.status_code == 404
    assert missing.json()["error"] == "NotFound"

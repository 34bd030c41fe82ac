"""`python -m app connections ...` as an operator runs it: each command a
subprocess on its own SQLite file, with SECRET_KEY set and no other setting
inherited from the outer environment."""

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from app.core.secrets import SecretBox, UndecryptableSecret
from app.core.settings import Settings

COMMAND_TIMEOUT = 120
OLD_KEY = "old-cli-secret-key-0123456789-abcdefghijkl"
NEW_KEY = "new-cli-secret-key-9876543210-lkjihgfedcba"
CONN = "conn_cli_7f3a9c2e5b1d"
TOKEN = "tok_cli_secret_5f2b9c1d7e3a40689abc"


class ConnectionsCli:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.database_path = directory / "service.db"
        self.env = {
            name: value
            for name, value in os.environ.items()
            if name.lower() not in Settings.model_fields
            and name != "TRACKSTAR_ACCESS_TOKEN"
        }
        self.env.update(
            DATABASE_URL=f"sqlite:///{self.database_path}",
            SECRET_KEY=OLD_KEY,
            ENVIRONMENT="development",
            LOG_FORMAT="json",
        )

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "app", "connections", *args],
            env=self.env | env,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        # Whatever the command, the token is never printed or logged.
        assert TOKEN not in result.stdout
        assert TOKEN not in result.stderr
        return result

    def add(self, *extra: str, **env: str) -> subprocess.CompletedProcess[str]:
        result = self.run(
            "add", CONN, "--access-token", TOKEN, "--integration-name", "shopify",
            *extra, **env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result

    def rows(self) -> list[tuple[str, str | None, str]]:
        with closing(sqlite3.connect(self.database_path)) as connection:
            return connection.execute(
                "SELECT id, integration_name, access_token_encrypted "
                "FROM connections ORDER BY id"
            ).fetchall()

    def ciphertext(self) -> str:
        ((_, _, encrypted),) = self.rows()
        return encrypted

    def stored_bytes(self) -> bytes:
        """Everything SQLite keeps on disk: the file and its journals."""
        return b"".join(
            path.read_bytes()
            for path in sorted(self.directory.glob(f"{self.database_path.name}*"))
        )


@pytest.fixture
def cli(tmp_path: Path) -> ConnectionsCli:
    return ConnectionsCli(tmp_path)


def test_add_stores_the_connection_with_its_token_encrypted(cli):
    result = cli.add()

    assert result.stdout.startswith(f"connection {CONN} saved")
    ((connection_id, integration, encrypted),) = cli.rows()
    assert (connection_id, integration) == (CONN, "shopify")
    assert TOKEN not in encrypted
    assert SecretBox([OLD_KEY]).decrypt(encrypted) == TOKEN
    assert TOKEN.encode() not in cli.stored_bytes()


def test_list_shows_id_and_integration_but_never_the_token(cli):
    cli.add()

    result = cli.run("list")

    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    fields = line.split("\t")
    assert fields[:2] == [CONN, "shopify"]
    assert fields[2].startswith("added ")
    assert fields[3] == "active"
    assert cli.ciphertext() not in result.stdout + result.stderr


def test_list_with_no_connections_prints_nothing(cli):
    result = cli.run("list")

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_remove_deletes_the_connection(cli):
    cli.add()

    result = cli.run("remove", CONN)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"connection {CONN} removed"
    assert cli.rows() == []
    assert cli.run("list").stdout == ""


def test_removing_an_unknown_connection_exits_1_with_a_message(cli):
    result = cli.run("remove", "conn_unknown")

    assert result.returncode == 1
    assert "error: No connection with id 'conn_unknown'." in result.stderr
    assert "removed" not in result.stdout


def test_token_can_come_from_the_environment(cli):
    result = cli.run(
        "add", CONN, "--integration-name", "shopify", TRACKSTAR_ACCESS_TOKEN=TOKEN
    )

    assert result.returncode == 0, result.stderr
    assert SecretBox([OLD_KEY]).decrypt(cli.ciphertext()) == TOKEN


def test_adding_again_replaces_the_token(cli):
    cli.add()

    result = cli.run("add", CONN, TRACKSTAR_ACCESS_TOKEN="tok_cli_replacement_0001")

    assert result.returncode == 0, result.stderr
    ((_, integration, encrypted),) = cli.rows()
    assert integration == "shopify"
    assert SecretBox([OLD_KEY]).decrypt(encrypted) == "tok_cli_replacement_0001"


def test_reencrypt_after_adding_a_new_key_keeps_the_token_readable(cli):
    cli.add()
    before = cli.ciphertext()

    result = cli.run("reencrypt", SECRET_KEY=f"{NEW_KEY},{OLD_KEY}")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("re-encrypted 1 token(s)")
    after = cli.ciphertext()
    assert after != before
    assert SecretBox([NEW_KEY]).decrypt(after) == TOKEN
    with pytest.raises(UndecryptableSecret):
        SecretBox([OLD_KEY]).decrypt(after)
    # The old key can now be dropped: the new one alone still lists it.
    listed = cli.run("list", SECRET_KEY=NEW_KEY)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(f"{CONN}\tshopify\t")

"""Settings from the environment: defaults, URL normalisation, secrets, and
errors that name the variable (and its value, unless it is a secret)."""

import base64
from datetime import timedelta
from pathlib import Path

import pytest

from app.core.settings import Settings, SettingsError, load_settings

SECRET_A = "whsec_" + base64.b64encode(b"first signing secret").decode()
SECRET_B = "whsec_" + base64.b64encode(b"second signing secret").decode()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the outer environment, and no `.env` in the directory."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults_use_an_sqlite_file_with_the_aiosqlite_driver():
    settings = load_settings()

    assert settings.database_url == "sqlite+aiosqlite:///./fulfillment.db"
    assert settings.is_sqlite
    assert settings.environment == "development"
    assert settings.webhook_secrets() == []
    assert settings.webhook_event_retention == timedelta(days=30)


def test_dotenv_in_the_working_directory_is_read(tmp_path: Path):
    (tmp_path / ".env").write_text("LOG_LEVEL=warning\n")

    assert load_settings().log_level == "WARNING"


def test_environment_wins_over_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path):
    (tmp_path / ".env").write_text("LOG_LEVEL=warning\n")
    monkeypatch.setenv("LOG_LEVEL", "debug")

    assert load_settings().log_level == "DEBUG"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgresql://user:pw@db:5432/app",
            "postgresql+asyncpg://user:pw@db:5432/app",
        ),
        ("postgres://user@db/app", "postgresql+asyncpg://user@db/app"),
        ("PostgreSQL://user@db/app", "postgresql+asyncpg://user@db/app"),
        ("postgresql+asyncpg://user@db/app", "postgresql+asyncpg://user@db/app"),
        ("sqlite:///./data/service.db", "sqlite+aiosqlite:///./data/service.db"),
        ("  sqlite:////var/lib/app.db ", "sqlite+aiosqlite:////var/lib/app.db"),
    ],
)
def test_database_url_gets_the_async_driver(
    monkeypatch: pytest.MonkeyPatch, given, expected
):
    monkeypatch.setenv("DATABASE_URL", given)

    settings = load_settings()

    assert settings.database_url == expected
    assert settings.is_sqlite == expected.startswith("sqlite")


def test_comma_separated_webhook_secrets_give_each_secret(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("TRACKSTAR_WEBHOOK_SECRET", f"{SECRET_A}, {SECRET_B},")

    assert load_settings().webhook_secrets() == [SECRET_A, SECRET_B]


def test_webhook_secrets_are_hidden_in_the_settings_repr(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("TRACKSTAR_WEBHOOK_SECRET", SECRET_A)

    settings = load_settings()

    assert SECRET_A not in repr(settings)
    assert SECRET_A not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DATABASE_URL", "mysql://x", "DATABASE_URL='mysql://x'"),
        ("DATABASE_URL", "fulfillment.db", "DATABASE_URL='fulfillment.db'"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL='LOUD'"),
        ("ENVIRONMENT", "staging", "ENVIRONMENT='staging'"),
        ("WEBHOOK_MAX_BODY_BYTES", "12", "WEBHOOK_MAX_BODY_BYTES='12'"),
    ],
)
def test_invalid_value_is_refused_naming_the_variable_and_the_value(
    monkeypatch: pytest.MonkeyPatch, variable, value, expected
):
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert expected in str(raised.value)


def test_every_invalid_value_is_reported_at_once(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://x")
    monkeypatch.setenv("LOG_LEVEL", "LOUD")

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert "DATABASE_URL='mysql://x'" in message
    assert "LOG_LEVEL='LOUD'" in message


@pytest.mark.parametrize(
    ("secret", "private_part"),
    [("whsec_!!!s3cr3t-b4d", "s3cr3t-b4d"), ("whsec_", None)],
    ids=["bad-length", "empty"],
)
def test_malformed_webhook_secret_is_named_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, secret, private_part
):
    monkeypatch.setenv("TRACKSTAR_WEBHOOK_SECRET", f"{SECRET_A},{secret}")

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert (
        "TRACKSTAR_WEBHOOK_SECRET: entry 2 is not a whsec_<base64> signing secret"
        in message
    )
    assert "TRACKSTAR_WEBHOOK_SECRET=" not in message
    assert SECRET_A.removeprefix("whsec_") not in message
    if private_part is not None:
        assert private_part not in message


@pytest.mark.parametrize(
    "secret",
    ["whsec_not!base64?at-all", "whsec_c2VjcmV0 c2VjcmV0", "whsec_dGVzdA==trailing"],
    ids=["punctuation", "inner-space", "after-padding"],
)
def test_webhook_secret_with_characters_outside_base64_is_refused(
    monkeypatch: pytest.MonkeyPatch, secret
):
    monkeypatch.setenv("TRACKSTAR_WEBHOOK_SECRET", secret)

    with pytest.raises(SettingsError, match="TRACKSTAR_WEBHOOK_SECRET: entry 1"):
        load_settings()


@pytest.mark.parametrize("retention", ["P29D", "P29DT23H59M59S", "P1D"])
def test_webhook_event_retention_under_30_days_is_refused(
    monkeypatch: pytest.MonkeyPatch, retention
):
    monkeypatch.setenv("WEBHOOK_EVENT_RETENTION", retention)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert f"WEBHOOK_EVENT_RETENTION='{retention}'" in message
    assert "at least 30 days" in message


@pytest.mark.parametrize(
    ("retention", "expected"),
    [("P30D", timedelta(days=30)), ("P90D", timedelta(days=90))],
)
def test_webhook_event_retention_of_30_days_or_more_is_accepted(
    monkeypatch: pytest.MonkeyPatch, retention, expected
):
    monkeypatch.setenv("WEBHOOK_EVENT_RETENTION", retention)

    assert load_settings().webhook_event_retention == expected

"""Production refuses to start without real secrets; the message names the
setting, and shows a value only when it is a placeholder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.settings import SettingsError, load_settings
from tests.signing import TEST_SECRET

REAL_KEY = "k" * 40


def production(**values: str) -> None:
    load_settings(_env_file=None, environment="production", **values)


def test_production_without_a_secret_key_is_refused():
    with pytest.raises(
        SettingsError, match="SECRET_KEY must be set outside development"
    ):
        production(trackstar_webhook_secret=TEST_SECRET)


def test_production_without_a_webhook_secret_is_refused():
    with pytest.raises(
        SettingsError, match="TRACKSTAR_WEBHOOK_SECRET must be set outside development"
    ):
        production(secret_key=REAL_KEY)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("secret_key", "change-me-change-me-change-me-change-me"),
        ("trackstar_api_key", "change-me"),
        ("trackstar_api_key", "placeholder"),
    ],
)
def test_placeholder_secrets_are_refused_naming_key_and_value(setting, value):
    values = {"secret_key": REAL_KEY, "trackstar_webhook_secret": TEST_SECRET}
    values[setting] = value

    with pytest.raises(SettingsError) as raised:
        production(**values)

    assert f"{setting.upper()}={value!r} looks like a placeholder" in str(raised.value)


def test_short_secret_key_is_refused_without_showing_it():
    with pytest.raises(SettingsError) as raised:
        load_settings(_env_file=None, secret_key="too-short-secret")

    assert "SECRET_KEY" in str(raised.value)
    assert "too-short-secret" not in str(raised.value)


def test_production_with_real_secrets_starts():
    settings = load_settings(
        _env_file=None,
        environment="production",
        secret_key=REAL_KEY,
        trackstar_webhook_secret=TEST_SECRET,
        trackstar_api_key="tsk_live_0123456789abcdef",
    )

    assert settings.log_format == "json"


def test_serve_in_production_without_secrets_exits_with_one_line(tmp_path: Path):
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TRACKSTAR_", "SECRET_", "DATABASE_", "ENVIRONMENT"))
    }
    env |= {"ENVIRONMENT": "production", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}

    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: invalid settings:",
        "  SECRET_KEY must be set outside development",
    ]

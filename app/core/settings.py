"""The service's one settings class, read from the environment and `.env`."""

import binascii
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./fulfillment.db"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class SettingsError(Exception):
    """Raised at start-up when a setting is missing or has a bad value."""


def normalize_database_url(url: str) -> str:
    """Pick the async driver for plain `postgresql://` and `sqlite://` URLs."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise ValueError("expected a URL such as postgresql://user@host/db")
    scheme = scheme.lower()
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return f"postgresql+asyncpg://{rest}"
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return f"sqlite+aiosqlite://{rest}"
    raise ValueError("only postgresql:// and sqlite:// databases are supported")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    environment: Environment = Environment.DEVELOPMENT
    database_url: str = DEFAULT_DATABASE_URL
    database_pool_size: int = Field(default=10, ge=1, le=200)
    # Fail fast when the pool is exhausted: Svix gives up on a delivery after 15 s,
    # so a 503 after a few seconds lets it retry instead of timing out.
    database_pool_timeout: timedelta = timedelta(seconds=5)
    # asyncpg caches prepared statements per connection, which breaks behind a
    # transaction-mode pooler (PgBouncer); set to 0 there.
    database_statement_cache_size: int = Field(default=100, ge=0)

    trackstar_webhook_secret: Annotated[list[SecretStr], NoDecode] = []
    trackstar_api_key: SecretStr | None = None
    trackstar_base_url: str = "https://production.trackstarhq.com"

    webhook_max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    webhook_tolerance: timedelta = timedelta(minutes=5)
    webhook_event_retention: timedelta = timedelta(days=30)

    log_level: str = "INFO"
    log_format: LogFormat | None = None

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        return normalize_database_url(value.strip())

    @field_validator("trackstar_webhook_secret", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trackstar_webhook_secret")
    @classmethod
    def _check_secrets(cls, value: list[SecretStr]) -> list[SecretStr]:
        for position, secret in enumerate(value, start=1):
            try:
                Webhook(secret.get_secret_value())
            except (EmptyWebhookSecretError, binascii.Error, ValueError):
                # The value itself is never repeated: it is a secret.
                raise ValueError(
                    f"entry {position} is not a whsec_<base64> signing secret"
                ) from None
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("webhook_event_retention")
    @classmethod
    def _check_retention(cls, value: timedelta) -> timedelta:
        # Svix retries for about 28 hours and operators replay by hand later;
        # a shorter memory would let a replay through as a new event.
        if value < timedelta(days=30):
            raise ValueError("must be at least 30 days")
        return value

    @model_validator(mode="after")
    def _default_log_format(self) -> "Settings":
        if self.log_format is None:
            if self.environment is Environment.DEVELOPMENT:
                self.log_format = LogFormat.CONSOLE
            else:
                self.log_format = LogFormat.JSON
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def webhook_secrets(self) -> list[str]:
        return [secret.get_secret_value() for secret in self.trackstar_webhook_secret]


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad setting, naming the environment variable and the value."""
    lines = []
    for item in error.errors(include_input=True, include_url=False):
        name = str(item["loc"][0]).upper() if item["loc"] else "settings"
        message = item["msg"].removeprefix("Value error, ")
        field = Settings.model_fields.get(str(item["loc"][0])) if item["loc"] else None
        is_secret = field is not None and "Secret" in str(field.annotation)
        if is_secret or "input" not in item:
            lines.append(f"{name}: {message}")
        else:
            lines.append(f"{name}={item['input']!r}: {message}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once at start-up; a bad value raises `SettingsError`."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None

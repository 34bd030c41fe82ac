"""The service's one settings class, read from the environment and `.env`."""

import base64
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
MIN_SECRET_KEY_LENGTH = 32


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class SettingsError(Exception):
    """Raised at start-up when a setting is missing or has a bad value."""


# Values copied from examples rather than set: refused outside development.
PLACEHOLDERS = frozenset(
    {
        "change-me",
        "changeme",
        "change_me",
        "replace-me",
        "placeholder",
        "secret",
        "example",
        "todo",
        "xxx",
        "dummy",
        "password",
        "test",
    }
)


def _is_placeholder(value: str) -> bool:
    bare = value.strip().lower().removeprefix("whsec_")
    return bare in PLACEHOLDERS or bare.startswith(("change-me", "changeme"))


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
    # Connections kept open per process. The delivery worker alone records up
    # to OUTBOX_CONCURRENCY outcomes at once; connections beyond the pool
    # (up to 10 may overflow) are closed after each use, and opening
    # them again, with their prepared statements, costs far more than
    # keeping them.
    database_pool_size: int = Field(default=25, ge=1, le=200)
    # Fail fast when the pool is exhausted: Svix gives up on a delivery after 15 s,
    # so a 503 after a few seconds lets it retry instead of timing out.
    database_pool_timeout: timedelta = timedelta(seconds=5)
    # asyncpg caches prepared statements per connection, which breaks behind a
    # transaction-mode pooler (PgBouncer); set to 0 there.
    database_statement_cache_size: int = Field(default=100, ge=0)

    # Encrypts connection access tokens at rest. Several keys, comma-separated:
    # the first encrypts, all decrypt, so a new key can be rolled in.
    secret_key: Annotated[list[SecretStr], NoDecode] = []

    trackstar_webhook_secret: Annotated[list[SecretStr], NoDecode] = []
    trackstar_api_key: SecretStr | None = None
    trackstar_base_url: str = "https://production.trackstarhq.com"
    trackstar_connect_timeout: timedelta = timedelta(seconds=5)
    trackstar_read_timeout: timedelta = timedelta(seconds=30)
    trackstar_write_timeout: timedelta = timedelta(seconds=30)
    trackstar_pool_timeout: timedelta = timedelta(seconds=10)
    trackstar_max_connections: int = Field(default=20, ge=1, le=500)
    # Trackstar's documented budgets per access token, per process.
    trackstar_write_rate_limit: float = Field(default=50, gt=0)
    trackstar_read_rate_limit: float = Field(default=10, gt=0)

    run_worker: bool = True
    outbox_concurrency: int = Field(default=20, ge=1, le=500)
    outbox_batch_size: int = Field(default=50, ge=1, le=1000)
    outbox_poll_interval: timedelta = timedelta(seconds=1)
    # A claimed message whose worker stops is picked up again after this.
    outbox_lease: timedelta = timedelta(minutes=5)
    outbox_retry_base_delay: timedelta = timedelta(seconds=1)
    outbox_retry_max_delay: timedelta = timedelta(minutes=5)
    outbox_max_age: timedelta = timedelta(hours=24)

    # Reconciliation: pull what changed since the last pull, this often, with
    # this much overlap (webhooks can be missed; overlapping pulls are harmless).
    sync_interval: timedelta = timedelta(minutes=15)
    sync_overlap: timedelta = timedelta(minutes=10)
    # How far back a full pull of orders goes (a new connection's backfill).
    sync_orders_backfill: timedelta = timedelta(days=30)
    # Records per page; Trackstar's maximum (and default) is 1000.
    sync_page_size: int = Field(default=1000, ge=1, le=1000)
    sync_lease: timedelta = timedelta(minutes=5)
    sync_retry_delay: timedelta = timedelta(minutes=1)

    webhook_max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    webhook_tolerance: timedelta = timedelta(minutes=5)
    webhook_event_retention: timedelta = timedelta(days=30)

    log_level: str = "INFO"
    log_format: LogFormat | None = None

    # Browser origins allowed to call the API, comma-separated. Empty (the
    # default): no CORS headers, so browsers keep other sites out.
    cors_allow_origins: Annotated[list[str], NoDecode] = []

    @field_validator("database_url")
    @classmethod
    def _normalize_database_url(cls, value: str) -> str:
        return normalize_database_url(value.strip())

    @field_validator("trackstar_webhook_secret", "secret_key", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trackstar_webhook_secret")
    @classmethod
    def _check_secrets(cls, value: list[SecretStr]) -> list[SecretStr]:
        for position, secret in enumerate(value, start=1):
            text = secret.get_secret_value().removeprefix("whsec_")
            try:
                # Strictly: the verifier decodes leniently, dropping stray
                # characters, and would then check with a different key.
                base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
                Webhook(secret.get_secret_value())
            except (EmptyWebhookSecretError, binascii.Error, ValueError):
                # The value itself is never repeated: it is a secret.
                raise ValueError(
                    f"entry {position} is not a whsec_<base64> signing secret"
                ) from None
        return value

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_allow_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*" or not origin.startswith(("https://", "http://")):
                raise ValueError(
                    f"{origin!r} is not an origin such as https://wms.example.com "
                    "(a wildcard is not allowed)"
                )
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for position, key in enumerate(value, start=1):
            if len(key.get_secret_value()) < MIN_SECRET_KEY_LENGTH:
                raise ValueError(
                    f"entry {position} is shorter than {MIN_SECRET_KEY_LENGTH} "
                    "characters; use e.g. `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(32))'`"
                )
        return value

    @field_validator("trackstar_base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("expected an http(s) URL")
        return value.rstrip("/")

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

    @field_validator("trackstar_api_key", mode="before")
    @classmethod
    def _empty_api_key_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> "Settings":
        if self.environment is Environment.DEVELOPMENT:
            return self
        required = {
            "SECRET_KEY": self.secret_key,
            "TRACKSTAR_WEBHOOK_SECRET": self.trackstar_webhook_secret,
        }
        for name, values in required.items():
            if not values:
                raise ValueError(f"{name} must be set outside development")
        named = [
            (name, secret) for name, values in required.items() for secret in values
        ]
        if self.trackstar_api_key is not None:
            named.append(("TRACKSTAR_API_KEY", self.trackstar_api_key))
        for name, secret in named:
            if _is_placeholder(secret.get_secret_value()):
                raise ValueError(
                    f"{name}={secret.get_secret_value()!r} looks like a "
                    "placeholder; set a real value"
                )
        return self

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

    def secret_keys(self) -> list[str]:
        return [key.get_secret_value() for key in self.secret_key]


def _without_password(value: Any) -> Any:
    """A URL's password replaced by ***, so that errors can show the URL."""
    if isinstance(value, str) and "://" in value and "@" in value:
        scheme, _, rest = value.partition("://")
        credentials, _, host = rest.rpartition("@")
        user, separator, _ = credentials.partition(":")
        if separator:
            return f"{scheme}://{user}:***@{host}"
    return value


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad setting, naming the environment variable and the value."""
    lines = []
    for item in error.errors(include_input=True, include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:
            # A check across settings: its message names what it is about.
            lines.append(message)
            continue
        name = str(item["loc"][0]).upper()
        field = Settings.model_fields.get(str(item["loc"][0]))
        is_secret = field is not None and "Secret" in str(field.annotation)
        if is_secret or "input" not in item:
            lines.append(f"{name}: {message}")
        else:
            lines.append(f"{name}={_without_password(item['input'])!r}: {message}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once at start-up; a bad value raises `SettingsError`."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise SettingsError(describe_validation_error(error)) from None

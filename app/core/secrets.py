"""Secrets the service keeps itself: encryption of stored credentials, and
secrets generated for local development when none is configured."""

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Database, insert_for
from app.core.models import Base, UTCDateTime, utcnow
from app.core.settings import Environment, Settings, SettingsError

log = structlog.get_logger(__name__)

DEVELOPMENT_WEBHOOK_SECRET = "development-webhook-secret"
DEVELOPMENT_SECRET_KEY = "development-secret-key"
_KDF_INFO = b"trackstar-fulfillment stored credentials v1"


class GeneratedSecret(Base):
    """A secret generated for local development, kept with the local data.

    Used only when the matching setting is empty in development, so the
    embedded default works end to end without any configuration.
    """

    __tablename__ = "generated_secrets"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    secret: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UndecryptableSecret(Exception):
    """No configured SECRET_KEY decrypts the stored value."""


class SecretBox:
    """Encrypts short secrets (access tokens) with keys from SECRET_KEY.

    Each configured key is stretched to a Fernet key with HKDF; the first key
    encrypts, every key decrypts, so keys rotate without downtime.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one secret key is required")
        self._fernet = MultiFernet([Fernet(_derive(key)) for key in keys])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise UndecryptableSecret(
                "no configured SECRET_KEY decrypts this value"
            ) from None

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt with the first key."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise UndecryptableSecret(
                "no configured SECRET_KEY decrypts this value"
            ) from None


def _derive(key: str) -> bytes:
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO)
    return base64.urlsafe_b64encode(kdf.derive(key.encode()))


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def new_secret_key() -> str:
    return secrets.token_urlsafe(32)


async def development_secret(session: AsyncSession, *, name: str, generate: str) -> str:
    """The stored development secret `name`, storing `generate` if none is."""
    statement = (
        insert_for(session, GeneratedSecret)
        .values(name=name, secret=generate, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    await session.execute(statement)
    secret = await stored_development_secret(session, name=name)
    assert secret is not None
    return secret


async def stored_development_secret(session: AsyncSession, *, name: str) -> str | None:
    return await session.scalar(
        select(GeneratedSecret.secret).where(GeneratedSecret.name == name)
    )


@dataclass(frozen=True)
class ServiceSecrets:
    webhook_secrets: list[str]
    secret_keys: list[str]


async def resolve_secrets(database: Database, settings: Settings) -> ServiceSecrets:
    """The configured secrets; in development, generated ones for what is unset.

    Generated secrets are kept in the database, so they survive restarts and
    the CLI (`webhooks simulate`, `connections add`) uses the same ones.
    """
    webhook_secrets = settings.webhook_secrets()
    secret_keys = settings.secret_keys()
    missing = [
        name
        for name, value in (
            ("TRACKSTAR_WEBHOOK_SECRET", webhook_secrets),
            ("SECRET_KEY", secret_keys),
        )
        if not value
    ]
    if not missing:
        return ServiceSecrets(webhook_secrets, secret_keys)
    if settings.environment is not Environment.DEVELOPMENT:
        raise SettingsError(f"{' and '.join(missing)} must be set outside development")
    async with database.transaction() as session:
        if not webhook_secrets:
            webhook_secrets = [
                await development_secret(
                    session,
                    name=DEVELOPMENT_WEBHOOK_SECRET,
                    generate=new_webhook_secret(),
                )
            ]
        if not secret_keys:
            secret_keys = [
                await development_secret(
                    session, name=DEVELOPMENT_SECRET_KEY, generate=new_secret_key()
                )
            ]
    log.warning(
        "secrets.development_secrets_in_use",
        generated_for=missing,
        hint="set them in the environment or .env (see .env.example); "
        "`python -m app webhooks simulate` signs with the development secret",
    )
    return ServiceSecrets(webhook_secrets, secret_keys)

"""API keys for warehouse systems: create, authenticate, list, revoke.

A key reads `tsf_<prefix>_<secret>`. The prefix finds the row; the SHA-256 of
the whole key is compared in constant time. Keys carry 256 bits of randomness,
so a fast hash is enough: there is nothing to brute-force.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey
from app.core.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthorized,
    Unprocessable,
)
from app.core.models import utcnow

KEY_SCHEME = "tsf"
PREFIX_BYTES = 6
SECRET_BYTES = 32
# Recording every use would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyNameTaken(Conflict):
    pass


class InvalidApiKeyName(Unprocessable):
    pass


NAME_MAX_LENGTH = 100


def _check_name(name: str) -> None:
    """A name is how operators tell keys apart in `api-keys list` and revoke
    them: it must be visible text, on one line."""
    if not name.strip():
        raise InvalidApiKeyName("An API key needs a name.")
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidApiKeyName(
            f"An API key name has at most {NAME_MAX_LENGTH} characters."
        )
    if not name.isprintable():
        raise InvalidApiKeyName(
            "An API key name cannot hold control characters or line breaks."
        )


class ApiKeyNotFound(NotFound):
    pass


class InvalidApiKey(Unauthorized):
    pass


class AdminKeyRequired(Forbidden):
    pass


@dataclass(frozen=True)
class IssuedApiKey:
    record: ApiKey
    key: str


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _split(key: str) -> str | None:
    scheme, _, rest = key.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or not prefix or not secret:
        return None
    return prefix


async def create_api_key(
    session: AsyncSession,
    *,
    name: str,
    connection_ids: list[str] | None = None,
    is_admin: bool = False,
) -> IssuedApiKey:
    """Create a key; the plain key is returned once and never stored.

    `connection_ids` limits it to those connections (None: all of them).
    """
    _check_name(name)
    prefix = secrets.token_hex(PREFIX_BYTES)
    key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    record = ApiKey(
        name=name,
        prefix=prefix,
        key_hash=_hash(key),
        is_admin=is_admin,
        connection_ids=sorted(set(connection_ids)) if connection_ids else None,
    )
    session.add(record)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise ApiKeyNameTaken(f"An API key named {name!r} exists already.") from None
    return IssuedApiKey(record=record, key=key)


async def authenticate(session: AsyncSession, key: str) -> ApiKey:
    prefix = _split(key)
    if prefix is None:
        raise InvalidApiKey("The API key is not valid.")
    record = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if record is None or not hmac.compare_digest(record.key_hash, _hash(key)):
        raise InvalidApiKey("The API key is not valid.")
    if not record.is_active:
        raise InvalidApiKey("The API key has been revoked.")
    now = utcnow()
    if record.last_used_at is None or now - record.last_used_at > LAST_USED_RESOLUTION:
        await session.execute(
            update(ApiKey).where(ApiKey.id == record.id).values(last_used_at=now)
        )
    return record


async def list_api_keys(session: AsyncSession) -> list[ApiKey]:
    return list((await session.scalars(select(ApiKey).order_by(ApiKey.id))).all())


async def revoke_api_key(session: AsyncSession, *, name: str) -> ApiKey:
    record = await session.scalar(select(ApiKey).where(ApiKey.name == name))
    if record is None:
        raise ApiKeyNotFound(f"No API key named {name!r}.")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
    return record

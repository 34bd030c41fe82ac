"""Who is calling: the API key in `Authorization: Bearer <key>`.

401 without a key or with an unknown or revoked one; 403 for a valid key
without the right (an admin-only call). Merchant data outside a key's
connections answers 404, as if it did not exist: services narrow every query
to `caller.scope`.
"""

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth import service
from app.auth.models import ApiKey
from app.core.db import DbSession

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `python -m app api-keys create NAME`.",
)


async def _authenticated_key(
    session: DbSession,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> ApiKey:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise service.InvalidApiKey(
            "Send the API key as `Authorization: Bearer <key>`."
        )
    return await service.authenticate(session, credentials.credentials)


async def _admin_key(key: Annotated[ApiKey, Depends(_authenticated_key)]) -> ApiKey:
    if not key.is_admin:
        raise service.AdminKeyRequired("This call needs an admin API key.")
    return key


require_api_key = Depends(_authenticated_key)
require_admin = Depends(_admin_key)

CurrentApiKey = Annotated[ApiKey, Depends(_authenticated_key)]

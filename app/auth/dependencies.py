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


require_api_key = Depends(_authenticated_key)

CurrentApiKey = Annotated[ApiKey, Depends(_authenticated_key)]

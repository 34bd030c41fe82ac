"""The one HTTP client for Trackstar: auth headers, timeouts, rate limits,
request ids in logs, and failures turned into `app.trackstar.errors` types.

A call is a single attempt. Retrying is the caller's decision: the outbox
schedules it durably, a pull retries in place.
"""

import json
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import structlog
from pydantic import SecretStr

from app.connections.service import ConnectionCredentials
from app.core.settings import Settings
from app.trackstar.errors import (
    TrackstarError,
    TrackstarFinal,
    TrackstarRateLimited,
    error_from_exception,
    error_from_response,
    retry_after_seconds,
)
from app.trackstar.ratelimit import CallKind, RateLimiter

log = structlog.get_logger(__name__)

# When Trackstar gives no usable wait on a 429, hold the token this long.
DEFAULT_RATE_LIMIT_PAUSE_S = 1.0


@dataclass(frozen=True)
class TrackstarWriteResult:
    data: Any
    record_id: str | None
    unused_fields: list[str]
    request_id: str | None
    replayed: bool


class TrackstarClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | None,
        timeout: httpx.Timeout,
        max_connections: int,
        limiter: RateLimiter,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._api_key = api_key
        self._limiter = limiter
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
            ),
            transport=transport,
            headers={"accept": "application/json"},
            follow_redirects=False,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> "TrackstarClient":
        return cls(
            base_url=settings.trackstar_base_url,
            api_key=settings.trackstar_api_key,
            timeout=httpx.Timeout(
                connect=settings.trackstar_connect_timeout.total_seconds(),
                read=settings.trackstar_read_timeout.total_seconds(),
                write=settings.trackstar_write_timeout.total_seconds(),
                pool=settings.trackstar_pool_timeout.total_seconds(),
            ),
            max_connections=settings.trackstar_max_connections,
            limiter=RateLimiter(
                read_rate=settings.trackstar_read_rate_limit,
                write_rate=settings.trackstar_write_rate_limit,
            ),
            transport=transport,
        )

    @property
    def is_configured(self) -> bool:
        return self._api_key is not None

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "TrackstarClient":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def write(
        self,
        credentials: ConnectionCredentials,
        *,
        method: str,
        path: str,
        body: bytes,
        idempotency_key: str,
        max_wait: float | None = None,
    ) -> TrackstarWriteResult:
        """Send one write with its Idempotency-Key; raise `TrackstarError`."""
        request = self._http.build_request(
            method,
            path,
            content=body,
            headers={
                **self._auth(credentials),
                "content-type": "application/json",
                "idempotency-key": idempotency_key,
            },
        )
        response = await self._send(credentials, CallKind.WRITE, request, max_wait)
        payload = _json_object(response)
        unused = payload.get("unused_fields") or []
        record_id = payload.get("id")
        return TrackstarWriteResult(
            data=payload.get("data"),
            record_id=str(record_id) if record_id is not None else None,
            unused_fields=[str(field) for field in unused]
            if isinstance(unused, list)
            else [],
            request_id=response.headers.get("x-request-id"),
            replayed=response.headers.get("idempotent-replayed", "").lower() == "true",
        )

    async def get(
        self,
        credentials: ConnectionCredentials,
        path: str,
        *,
        params: dict[str, str] | None = None,
        max_wait: float | None = None,
    ) -> dict[str, Any]:
        """One read; the decoded JSON object or `TrackstarError`."""
        request = self._http.build_request(
            "GET", path, params=params, headers=self._auth(credentials)
        )
        response = await self._send(credentials, CallKind.READ, request, max_wait)
        return _json_object(response)

    async def get_truncated_event(
        self, credentials: ConnectionCredentials, data_url: str
    ) -> dict[str, Any]:
        """The full body of an oversized webhook event.

        `data_url` (on Trackstar's host, with the API key alone) answers with a
        `download_url` valid for 20 minutes, which serves the event itself.
        """
        if httpx.URL(data_url).host != self._http.base_url.host:
            raise TrackstarFinal("data_url is not on Trackstar's host; not fetched")
        if self._api_key is None:
            raise TrackstarFinal("TRACKSTAR_API_KEY is not set")
        request = self._http.build_request(
            "GET",
            data_url,
            headers={"x-trackstar-api-key": self._api_key.get_secret_value()},
        )
        pointer = _json_object(
            await self._send(credentials, CallKind.READ, request, None)
        )
        download_url = pointer.get("download_url")
        if not isinstance(download_url, str) or not download_url.startswith("https://"):
            raise TrackstarFinal("data_url answered without an https download_url")
        # A pre-signed link: it must not receive our credentials.
        download = self._http.build_request(
            "GET", download_url, headers={"accept": "application/json"}
        )
        return _json_object(
            await self._send(credentials, CallKind.READ, download, None)
        )

    def _auth(self, credentials: ConnectionCredentials) -> dict[str, str]:
        if self._api_key is None:
            raise TrackstarFinal("TRACKSTAR_API_KEY is not set")
        return {
            "x-trackstar-api-key": self._api_key.get_secret_value(),
            "x-trackstar-access-token": credentials.access_token.get_secret_value(),
        }

    async def _send(
        self,
        credentials: ConnectionCredentials,
        kind: CallKind,
        request: httpx.Request,
        max_wait: float | None,
    ) -> httpx.Response:
        connection_id = credentials.connection_id
        await self._limiter.acquire(connection_id, kind, max_wait=max_wait)
        started = time.perf_counter()
        fields = {
            "connection_id": connection_id,
            "method": request.method,
            "path": request.url.path,
        }
        try:
            response = await self._http.send(request)
        except httpx.HTTPError as exc:
            error = error_from_exception(exc)
            log.warning(
                "trackstar.call_failed",
                **fields,
                error=error.message,
                duration_ms=_elapsed_ms(started),
            )
            raise error from exc
        self._observe_budget(connection_id, kind, response)
        log.info(
            "trackstar.call",
            **fields,
            status_code=response.status_code,
            request_id=response.headers.get("x-request-id"),
            duration_ms=_elapsed_ms(started),
        )
        if response.status_code >= 400:
            error = error_from_response(response)
            if isinstance(error, TrackstarRateLimited):
                pause = error.retry_after or DEFAULT_RATE_LIMIT_PAUSE_S
                self._limiter.pause(connection_id, kind, pause)
            raise error
        return response

    def _observe_budget(
        self, connection_id: str, kind: CallKind, response: httpx.Response
    ) -> None:
        # Pause before the 429 rather than after it.
        remaining = response.headers.get("x-ratelimit-remaining") or (
            response.headers.get("x-rate-limit-remaining")
        )
        if remaining is not None and remaining.strip() == "0":
            wait = retry_after_seconds(response.headers)
            if wait:
                self._limiter.pause(connection_id, kind, wait)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    # Amounts become exact decimals, as everywhere else in the service.
    try:
        payload = json.loads(response.content, parse_float=Decimal)
    except ValueError:
        raise TrackstarError(
            "Trackstar answered with a body that is not JSON",
            status_code=response.status_code,
            request_id=response.headers.get("x-request-id"),
        ) from None
    if not isinstance(payload, dict):
        raise TrackstarError(
            "Trackstar answered with JSON that is not an object",
            status_code=response.status_code,
            request_id=response.headers.get("x-request-id"),
        )
    return payload


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


__all__ = ["TrackstarClient", "TrackstarError", "TrackstarWriteResult"]

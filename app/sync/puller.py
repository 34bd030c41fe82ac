"""Pull a resource of a connection from Trackstar, page by page.

Each page is validated and stored in its own transaction together with the
pull's progress (next page token), so memory stays flat whatever the size of
the pull, and a pull stopped half-way resumes from its last committed page.
The next page is fetched while the current one is stored.
"""

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import stamina
import structlog
from pydantic import ValidationError

from app.connections.service import (
    ConnectionCredentials,
    ConnectionNotConfigured,
    credentials_for,
)
from app.core.db import Database
from app.core.secrets import SecretBox
from app.core.settings import Settings
from app.sync import service
from app.sync.resources import RESOURCES, Resource
from app.sync.service import PullPlan
from app.trackstar.client import TrackstarClient
from app.trackstar.errors import (
    TrackstarError,
    TrackstarFinal,
    TrackstarRetryable,
)

log = structlog.get_logger(__name__)

READ_ATTEMPTS = 8
READ_RETRY_TIMEOUT = timedelta(minutes=5)


def _retry_wait(error: Exception) -> bool | float:
    """stamina hook: retry transient read failures, waiting as Trackstar asks."""
    if not isinstance(error, TrackstarRetryable):
        return False
    return error.retry_after if error.retry_after else True


@dataclass
class PullProgress:
    connection_id: str
    resource: Resource
    pages: int = 0
    records: int = 0
    stale: int = 0
    invalid: int = 0
    resumed: bool = False
    invalid_ids: list[str] = field(default_factory=list)


@dataclass
class _Page:
    """A fetched page, validated: what to store, and what could not be."""

    items: list[tuple[Any, dict[str, Any]]]
    invalid: int
    next_token: str | None


class PullBusy(Exception):
    """Another worker holds this pull's lease."""


class _LeaseLost(Exception):
    pass


class Puller:
    def __init__(
        self,
        *,
        database: Database,
        client: TrackstarClient,
        box: SecretBox,
        settings: Settings,
        worker_id: str | None = None,
        on_page: Callable[[PullProgress], None] | None = None,
    ) -> None:
        self.database = database
        self.client = client
        self.box = box
        self.settings = settings
        self.worker_id = worker_id or f"pull:{os.getpid()}:{id(self):x}"
        self.on_page = on_page

    async def pull(
        self,
        connection_id: str,
        resource: Resource,
        *,
        since: Any = None,
        full: bool = False,
    ) -> PullProgress:
        """Run (or resume) one pull to its last page; raises `PullBusy`."""
        async with self.database.transaction() as session:
            credentials = await credentials_for(session, self.box, connection_id)
            if credentials is None:
                raise ConnectionNotConfigured(
                    f"Connection {connection_id!r} has no access token."
                )
            plan = await service.claim_pull(
                session,
                connection_id=connection_id,
                resource=resource,
                worker_id=self.worker_id,
                lease=self.settings.sync_lease,
                since=since,
                full=full,
                overlap=self.settings.sync_overlap,
                orders_window=self.settings.sync_orders_backfill,
                page_size=self.settings.sync_page_size,
            )
        if plan is None:
            raise PullBusy(f"{resource} of {connection_id} is being pulled already")
        progress = PullProgress(
            connection_id=connection_id,
            resource=resource,
            pages=plan.pages_done,
            records=plan.records_done,
            resumed=plan.resumed,
        )
        bound = log.bind(connection_id=connection_id, resource=resource.value)
        bound.info("sync.started", resumed=plan.resumed, query=_loggable(plan.query))
        try:
            await self._pages(credentials, plan, progress)
        except (TrackstarError, _LeaseLost) as error:
            await self._fail(plan, error)
            bound.error("sync.failed", error=str(error), pages=progress.pages)
            raise
        except BaseException as error:
            await asyncio.shield(self._fail(plan, error))
            raise
        async with self.database.transaction() as session:
            await service.finish_pull(session, plan, worker_id=self.worker_id)
        bound.info(
            "sync.finished",
            pages=progress.pages,
            records=progress.records,
            stale=progress.stale,
            invalid=progress.invalid,
        )
        return progress

    async def _pages(
        self,
        credentials: ConnectionCredentials,
        plan: PullPlan,
        progress: PullProgress,
    ) -> None:
        token = plan.page_token
        if plan.pages_done and token is None:
            return  # resumed after its last page was stored
        # A token handed out twice would page forever.
        seen = {token}
        # The next page is fetched and validated while this one is written, so
        # the database and this process work at the same time.
        fetching = asyncio.create_task(self._fetch(credentials, plan, token))
        try:
            while True:
                page = await fetching
                if page.next_token is not None:
                    if page.next_token in seen:
                        raise TrackstarFinal(
                            "Trackstar answered a page with a next_token it had "
                            "already given: the pull stopped instead of looping"
                        )
                    seen.add(page.next_token)
                    fetching = asyncio.create_task(
                        self._fetch(credentials, plan, page.next_token)
                    )
                await self._store(plan, page, progress)
                if page.next_token is None:
                    return
        finally:
            if not fetching.done():
                fetching.cancel()

    async def _fetch(
        self, credentials: ConnectionCredentials, plan: PullPlan, token: str | None
    ) -> _Page:
        body = await self._get_page(credentials, plan, token)
        return self._validate(plan, body)

    async def _get_page(
        self, credentials: ConnectionCredentials, plan: PullPlan, token: str | None
    ) -> dict[str, Any]:
        # Page tokens do not carry the query: every page repeats the filters.
        params = dict(plan.query)
        if token is not None:
            params["page_token"] = token
        path = RESOURCES[plan.resource].list_path
        async for attempt in stamina.retry_context(
            on=_retry_wait,
            attempts=READ_ATTEMPTS,
            timeout=READ_RETRY_TIMEOUT,
            wait_initial=0.5,
            wait_max=30,
        ):
            with attempt:
                return await self.client.get(credentials, path, params=params)
        raise AssertionError("unreachable: stamina re-raises the last error")

    def _validate(self, plan: PullPlan, body: dict[str, Any]) -> _Page:
        spec = RESOURCES[plan.resource]
        items = []
        invalid = 0
        for raw in body.get("data") or []:
            try:
                items.append((spec.model.model_validate(raw), raw))
            except ValidationError:
                invalid += 1
                record_id = raw.get("id") if isinstance(raw, dict) else None
                log.warning(
                    "sync.invalid_record",
                    connection_id=plan.connection_id,
                    resource=plan.resource.value,
                    record_id=str(record_id)[:255] if record_id else None,
                )
        return _Page(items=items, invalid=invalid, next_token=_next_token(body))

    async def _store(self, plan: PullPlan, page: _Page, progress: PullProgress) -> None:
        spec = RESOURCES[plan.resource]
        async with self.database.transaction() as session:
            result = await spec.store(session, plan.connection_id, page.items)
            owned = await service.record_page(
                session,
                plan,
                worker_id=self.worker_id,
                next_token=page.next_token,
                records=len(page.items),
                lease=self.settings.sync_lease,
            )
            if not owned:
                raise _LeaseLost("another worker took over this pull")
        progress.pages += 1
        progress.records += len(page.items)
        progress.invalid += page.invalid
        progress.stale += len(result.stale)
        if self.on_page is not None:
            self.on_page(progress)

    async def _fail(self, plan: PullPlan, error: BaseException) -> None:
        # A page token Trackstar refuses (expired, say) would fail every
        # resume: the next pull starts the query again instead.
        restart = isinstance(error, TrackstarFinal) and plan.page_token is not None
        async with self.database.transaction() as session:
            await service.fail_pull(
                session,
                plan,
                worker_id=self.worker_id,
                error=f"{type(error).__name__}: {error}"[:1000],
                restart=restart,
            )


def _next_token(page: dict[str, Any]) -> str | None:
    token = page.get("next_token")
    return str(token) if token else None


def _loggable(query: dict[str, str]) -> dict[str, str]:
    return {key: value for key, value in query.items() if key != "page_token"}

"""The fake Trackstar of bench/pull.py, served by uvicorn in its own process.

    python bench/pull_fake.py --port P --api-key K --connection C --token T \
        --orders N [--seed S] [--read-limit 10] [--enforce-rate-limits]

It is `tests.fixtures.fake_trackstar.FakeTrackstar` holding N generated orders
(1-5 lines each, addresses, Decimal money, `updated_date` within the last week
so a full pull selects them), with one bench-only change: list pages are cut
from the records pre-sorted by id once, instead of filtering and sorting every
record on every request (`list_page` does that: about 0.25 s of CPU per page at
100,000 orders, which would make the fake the bottleneck). The page itself is
still computed by the unchanged `list_page`, on a window of the sorted records
that starts after the page token's last id and is widened until it provably
holds the whole page: the answers are identical to the test fake's.

Control routes, answered before the fake sees the request (no budget counted):

    GET  /_bench/ready    200 once serving
    GET  /_bench/stats    requests served, CPU used, what the fake holds
    POST /_bench/limits?read_limit=N&enforce=0|1    change the read budget
"""

import argparse
import bisect
import json
import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from app.core.timestamps import format_timestamp  # noqa: E402
from tests.fixtures import builders  # noqa: E402
from tests.fixtures.fake_trackstar import FakeTrackstar, RecordedRequest  # noqa: E402
from tests.fixtures.fake_trackstar_lists import (  # noqa: E402
    MAX_LIMIT,
    ListQueryError,
    _decode_token,
    list_page,
)

CENT = Decimal("0.01")
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Radia", "Linus")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson")
CITIES = (
    ("Portland", "OR", "97201"),
    ("Austin", "TX", "73301"),
    ("Brooklyn", "NY", "11201"),
    ("Denver", "CO", "80202"),
    ("Madison", "WI", "53703"),
)
STATUSES = ("open", "open", "open", "confirmed", "processing", "fulfilled")


def make_order(rng: random.Random, number: int, now: datetime) -> dict[str, Any]:
    """One realistic order: 1-5 lines, addresses, totals that add up."""
    order_id = f"ord_{number:08d}"
    updated = now - timedelta(seconds=rng.randint(120, 7 * 24 * 3600))
    created = updated - timedelta(seconds=rng.randint(0, 3 * 24 * 3600))
    tracked = min(updated + timedelta(seconds=rng.randint(1, 60)), now)
    lines = []
    subtotal = tax_total = discount_total = Decimal(0)
    for position in range(rng.randint(1, 5)):
        quantity = rng.randint(1, 4)
        unit_price = (Decimal(rng.randint(199, 19999)) / 100).quantize(CENT)
        discount = (unit_price * Decimal(rng.choice((0, 0, 0, 10, 15)))) / 100
        discount = discount.quantize(CENT)
        tax = ((unit_price - discount) * Decimal("0.08")).quantize(CENT)
        product = rng.randint(1, 5000)
        lines.append(
            builders.line_item(
                f"li_{number:08d}_{position}",
                product_id=f"prod_var_{product:05d}",
                product_sku=f"SKU-{product:05d}",
                parent_product_id=f"prod_parent_{product // 4:05d}",
                quantity=quantity,
                unit_price=unit_price,
                discount=discount,
                tax=tax,
            )
        )
        subtotal += unit_price * quantity
        discount_total += discount * quantity
        tax_total += tax * quantity
    shipping = Decimal(rng.choice(("0.00", "4.99", "9.99")))
    city, state, postal_code = rng.choice(CITIES)
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    ship_to = builders.address(
        full_name=name,
        address1=f"{rng.randint(1, 9999)} Example Avenue",
        address2=rng.choice((None, None, f"Apt {rng.randint(1, 400)}")),
        city=city,
        state=state,
        postal_code=postal_code,
        email_address=f"customer{number}@example.com",
        phone_number=f"+1555{rng.randint(1000000, 9999999)}",
    )
    return builders.order(
        order_id,
        order_number=f"#{100000 + number}",
        status=rng.choice(STATUSES),
        created_date=format_timestamp(created),
        updated_date=format_timestamp(updated),
        trackstar_created_date=format_timestamp(created),
        trackstar_updated_date=format_timestamp(tracked),
        requested_shipping_method=rng.choice(("Standard", "Express", "Ground")),
        total_price=subtotal - discount_total + tax_total + shipping,
        total_tax=tax_total,
        total_discount=discount_total,
        total_shipping=shipping,
        ship_to_address=ship_to,
        bill_to_address=dict(ship_to) if rng.random() < 0.5 else None,
        line_items=lines,
        additional_fields={"source_name": "web", "note": None},
        trackstar_tags=rng.choice(([], [], ["vip"], [{"channel": "web"}])),
    )


class SortedListFake(FakeTrackstar):
    """`FakeTrackstar` whose list pages come from records sorted once by id."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sorted: dict[tuple[str, str], tuple[list[str], list[dict[str, Any]]]]
        self._sorted = {}
        self.handle_seconds = 0.0

    def seed_orders(self, connection_id: str, orders: list[dict[str, Any]]) -> None:
        # Straight into the store: `add_order` deep-copies every record.
        store = self._store(connection_id, "orders")
        for order in orders:
            store[order["id"]] = order
        self._sorted.pop((connection_id, "orders"), None)

    def add_order(self, connection_id: str, order: dict[str, Any]) -> None:
        super().add_order(connection_id, order)
        self._sorted.pop((connection_id, "orders"), None)

    def _index(
        self, connection: str, kind: str
    ) -> tuple[list[str], list[dict[str, Any]]]:
        index = self._sorted.get((connection, kind))
        if index is None:
            records = sorted(
                self._store(connection, kind).values(), key=lambda r: str(r["id"])
            )
            index = ([str(r["id"]) for r in records], records)
            self._sorted[(connection, kind)] = index
        return index

    def handle(self, request: httpx.Request) -> httpx.Response:
        started = time.process_time()
        try:
            return super().handle(request)
        finally:
            self.handle_seconds += time.process_time() - started

    def _route(
        self,
        connection: str,
        record: RecordedRequest,
        params: list[tuple[str, str]],
    ) -> tuple[int, dict[str, Any]]:
        parts = record.path.removeprefix("/cart/").split("/")
        if (
            record.method != "GET"
            or len(parts) != 1
            or parts[0] != "orders"
            or any(name == "ids[in]" for name, _ in params)
        ):
            return super()._route(connection, record, params)
        try:
            return 200, self._windowed_page(connection, parts[0], params)
        except _Unwindowed:
            return super()._route(connection, record, params)

    def _windowed_page(
        self, connection: str, kind: str, params: list[tuple[str, str]]
    ) -> dict[str, Any]:
        """`list_page` over the shortest run of sorted records after the page
        token that holds the whole page (the same answer as over all records:
        the page and whether more records follow)."""
        values = dict(params)
        limit_text = values.get("limit", str(MAX_LIMIT))
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise _Unwindowed
        after = ""
        if "page_token" in values:
            try:
                after = _decode_token(values["page_token"])["a"]
            except ListQueryError:
                raise _Unwindowed from None
        ids, records = self._index(connection, kind)
        start = bisect.bisect_right(ids, after)
        size = int(limit_text) + 1
        while True:
            try:
                page = list_page(kind, records[start : start + size], params)
            except ListQueryError:
                raise _Unwindowed from None  # the full call answers the 422
            if page["next_token"] is not None or start + size >= len(records):
                return page
            size *= 4  # filters left out part of the window: widen it

    def stats(self) -> dict[str, Any]:
        lists = [r for r in self.requests if r.path == "/cart/orders"]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "requests": len(self.requests),
            "list_requests": len(lists),
            "list_first_pages": sum(1 for r in lists if "page_token" not in r.query),
            "list_statuses": _count(str(r.status_code) for r in lists),
            "rate_limited": self.rate_limited,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "handle_cpu_s": self.handle_seconds,
            "list_times": [r.at for r in lists],
        }


class _Unwindowed(Exception):
    """Leave this request to the test fake's own list code."""


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def with_controls(
    fake: SortedListFake, app: ASGIApp, holding: dict[str, Any]
) -> ASGIApp:
    async def controlled(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/_bench/"):
            await app(scope, receive, send)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        status = 200
        body: dict[str, Any] = {"ok": True}
        if path == "/_bench/stats":
            body = {**fake.stats(), **holding}
        elif path == "/_bench/limits" and scope["method"] == "POST":
            fake.read_limit = int(query.get("read_limit", fake.read_limit))
            fake.enforce_rate_limits = query.get("enforce", "0") == "1"
        elif path != "/_bench/ready":
            status, body = 404, {"error": "Not Found"}
        content = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": content})

    return controlled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--connection", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--read-limit", type=int, default=10)
    parser.add_argument("--enforce-rate-limits", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    rng = random.Random(args.seed)
    now = datetime.now(UTC)
    orders = [make_order(rng, number, now) for number in range(args.orders)]
    holding = {
        "orders": len(orders),
        "lines": sum(len(order["line_items"]) for order in orders),
        "total_price_sum": str(sum(order["total_price"] for order in orders)),
        "seeded_in_s": 0.0,
    }
    fake = SortedListFake(
        api_key=args.api_key,
        tokens={args.token: args.connection},
        read_limit=args.read_limit,
        enforce_rate_limits=args.enforce_rate_limits,
    )
    fake.seed_orders(args.connection, orders)
    del orders
    fake._index(args.connection, "orders")
    holding["seeded_in_s"] = round(time.perf_counter() - started, 2)
    config = uvicorn.Config(
        with_controls(fake, fake.asgi_app(), holding),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()

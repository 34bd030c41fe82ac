"""The fake Trackstar of bench/forwarding.py, served by uvicorn in its own process.

    python bench/forwarding_fake.py --port P --api-key K --seed seed.json \
        [--state state.pickle] [--latency 0.020]

It is `tests.fixtures.fake_trackstar.FakeTrackstar` with `enforce_rate_limits`
on, behind `asgi_app(latency=...)`, plus a few control routes that the fake
itself never sees (so they count against no budget):

    GET  /_bench/ready      200 once serving
    POST /_bench/down/1     `fake.down = True`: every API call answers 503
    POST /_bench/down/0     back to normal
    GET  /_bench/stats      what the benchmark checks (see `stats`)

With --state, the fake is loaded from that pickle when the file exists (the
seed is then ignored) and written back to it when the server stops (SIGTERM or
SIGINT): a restarted process carries on with the same records, idempotency
keys and rate-limit windows.
"""

import argparse
import json
import os
import pickle
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fixtures.fake_trackstar import FakeTrackstar  # noqa: E402

CONTROL_PREFIX = "/_bench/"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def build_fake(
    seed: dict[str, Any], *, read_limit: int, write_limit: int
) -> FakeTrackstar:
    fake = FakeTrackstar(
        api_key=seed["api_key"],
        enforce_rate_limits=True,
        read_limit=read_limit,
        write_limit=write_limit,
    )
    for connection in seed["connections"]:
        connection_id = connection["id"]
        fake.add_connection(connection_id, connection["token"])
        for warehouse in connection["warehouses"]:
            fake.add_warehouse(connection_id, warehouse)
        for order in connection["orders"]:
            fake.add_order(connection_id, order)
        for product in connection["products"]:
            fake.add_product(connection_id, product)
    return fake


def stats(fake: FakeTrackstar) -> dict[str, Any]:
    """Everything the benchmark checks, keyed by connection id, never by token."""
    by_token = dict(fake.tokens)
    windows = {
        by_token.get(token, token): {
            str(window): [counts["read"], counts["write"]]
            for window, counts in sorted(per_window.items())
        }
        for token, per_window in fake.window_counts.items()
    }
    answers: Counter[str] = Counter()
    sends_per_key: Counter[str] = Counter()
    replays = 0
    for request in fake.requests:
        kind = "write" if request.method in WRITE_METHODS else "read"
        answers[f"{kind} {request.status_code}"] += 1
        if kind == "write" and request.idempotency_key is not None:
            sends_per_key[request.idempotency_key] += 1
            if request.status_code == 200 and not request.wrote:
                replays += 1
    writes = [
        [
            request.idempotency_key,
            by_token.get(request.headers.get("x-trackstar-access-token", ""), ""),
            request.method,
            request.path,
            request.at,
        ]
        for request in fake.writes()
    ]
    products: dict[str, dict[str, Any]] = {}
    orders: dict[str, dict[str, list[str]]] = {}
    for connection_id, stores in fake._records.items():
        products[connection_id] = {
            product_id: product.get("inventory_by_warehouse_id")
            for product_id, product in stores.get("products", {}).items()
        }
        orders[connection_id] = {
            order_id: [
                str(shipment.get("tracking_number"))
                for shipment in order.get("shipments") or []
            ]
            for order_id, order in stores.get("orders", {}).items()
        }
    return {
        "pid": os.getpid(),
        "rate_limited": fake.rate_limited,
        "write_limit": fake.write_limit,
        "read_limit": fake.read_limit,
        "requests": len(fake.requests),
        "answers": dict(answers),
        "replays": replays,
        "keys_sent_more_than_once": sum(1 for n in sends_per_key.values() if n > 1),
        "windows": windows,
        "writes": writes,
        "products": products,
        "orders": orders,
    }


def save(fake: FakeTrackstar, path: Path) -> None:
    partial = path.with_suffix(".tmp")
    with partial.open("wb") as file:
        pickle.dump(fake, file, protocol=pickle.HIGHEST_PROTOCOL)
    partial.replace(path)


def with_control(
    fake: FakeTrackstar, api: ASGIApp, state: Path | None = None
) -> ASGIApp:
    """The API plus the control routes; saves the fake to `state` at shutdown
    (uvicorn runs the lifespan shutdown after the last request, and then
    re-raises SIGTERM, so code after `Server.run()` would never run)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if state is not None:
                        save(fake, state)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(CONTROL_PREFIX):
            await api(scope, receive, send)
            return
        while (await receive()).get("more_body", False):
            pass
        route = (scope["method"], path.removeprefix(CONTROL_PREFIX))
        status, payload = 200, {"ok": True, "pid": os.getpid()}
        if route == ("GET", "ready"):
            pass
        elif route == ("POST", "down/1"):
            fake.down = True
        elif route == ("POST", "down/0"):
            fake.down = False
        elif route == ("GET", "stats"):
            payload = stats(fake)
        else:
            status, payload = 404, {"ok": False}
        body = json.dumps(payload, default=str, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=Path, required=True)
    parser.add_argument("--state", type=Path)
    parser.add_argument("--latency", type=float, default=0.020)
    parser.add_argument("--read-limit", type=int, default=10)
    parser.add_argument("--write-limit", type=int, default=50)
    args = parser.parse_args()

    fake: FakeTrackstar
    if args.state is not None and args.state.exists():
        with args.state.open("rb") as file:
            fake = pickle.load(file)
        fake.down = False
    else:
        seed = json.loads(args.seed.read_text())
        fake = build_fake(
            seed, read_limit=args.read_limit, write_limit=args.write_limit
        )
    app = with_control(fake, fake.asgi_app(latency=args.latency), args.state)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
        date_header=False,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()

"""The benchmark's baseline: bare FastAPI on uvicorn, served as `app serve` is.

One POST endpoint at the webhook path that reads the body and returns `{}`.
Nothing else: no middleware, no verification, no database, no logging. The
uvicorn options mirror `app.cli.serve`, so the difference between the two is
the service's own work.

    python bench/baseline_app.py --port 8001 [--workers 1]
"""

import argparse

import uvicorn
from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/webhooks/trackstar")
async def receive(request: Request) -> dict[str, str]:
    await request.body()
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "baseline_app:app" if args.workers > 1 else app,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()

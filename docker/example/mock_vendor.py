"""A mock vendor API for docker/compose.yaml: it enforces its own rate limit, the way a real
vendor does, so the example shows whether sluice keeps it.

GET /v1/items answers 200 while fewer than LIMIT requests were answered 200 in the last WINDOW
seconds (a rolling window), else 429 with Retry-After. Every 5 s it prints its counts.
"""

import asyncio
import collections
import os
import time

from aiohttp import web

LIMIT = int(os.environ.get("VENDOR_LIMIT", "10"))
WINDOW = float(os.environ.get("VENDOR_WINDOW_SECONDS", "1"))
PORT = int(os.environ.get("VENDOR_PORT", "8000"))

admitted = collections.deque(maxlen=LIMIT)  # the times of the last LIMIT 200s: bounded
counts = collections.Counter()


async def items(request: web.Request) -> web.Response:
    now = time.monotonic()
    if len(admitted) == LIMIT and now - admitted[0] < WINDOW:
        counts["429"] += 1
        retry_after = max(1, round(WINDOW - (now - admitted[0])))
        return web.json_response({"error": "rate_limited"}, status=429,
                                 headers={"Retry-After": str(retry_after)})
    admitted.append(now)
    counts["200"] += 1
    return web.json_response({"items": [1, 2, 3]})


async def report(app: web.Application) -> None:
    while True:
        await asyncio.sleep(5)
        print(f"vendor: answered 200={counts['200']} 429={counts['429']} "
              f"(limit {LIMIT} per {WINDOW:g} s)", flush=True)


async def start_report(app: web.Application):
    task = asyncio.create_task(report(app))
    yield
    task.cancel()


app = web.Application()
app.router.add_get("/v1/items", items)
app.cleanup_ctx.append(start_report)

if __name__ == "__main__":
    web.run_app(app, host="0.0.0.0", port=PORT, access_log=None)

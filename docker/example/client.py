"""The example's client for docker/compose.yaml: WORKERS concurrent loops sending GETs through
sluice (SLUICE_URL) to the mock vendor, far faster than the vendor allows. Every 5 s it prints
how many answers of each kind it got: the vendor's 200s, sluice's own 429s (Sluice-Error
header: the request could not be admitted within the queue's max_wait, so sluice answered at
once), and any vendor 429 (which sluice's limit should keep at zero).
"""

import asyncio
import collections
import os

import aiohttp

URL = os.environ.get("SLUICE_URL", "http://127.0.0.1:8080/vendor/v1/items")
WORKERS = int(os.environ.get("WORKERS", "20"))

counts = collections.Counter()


def kind(response: aiohttp.ClientResponse) -> str:
    error = response.headers.get("Sluice-Error")
    if error:
        return f"{response.status} sluice {error}"
    return f"{response.status} vendor"


async def worker(session: aiohttp.ClientSession) -> None:
    while True:
        try:
            async with session.get(URL) as response:
                await response.read()
                counts[kind(response)] += 1
                retry_after = response.headers.get("Retry-After", "")
            # A well-behaved client: after a 429 it waits as told (at most 5 s) before the next try.
            if response.status == 429 and retry_after.isdigit():
                await asyncio.sleep(min(int(retry_after), 5))
        except aiohttp.ClientError as error:
            counts[f"error {type(error).__name__}"] += 1
            await asyncio.sleep(1)  # sluice not up yet, or restarting


async def report() -> None:
    while True:
        await asyncio.sleep(5)
        summary = ", ".join(f"{name}: {n}" for name, n in sorted(counts.items()))
        print(f"client: {summary or 'nothing yet'}", flush=True)


async def main() -> None:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(report(), *(worker(session) for _ in range(WORKERS)))


if __name__ == "__main__":
    asyncio.run(main())

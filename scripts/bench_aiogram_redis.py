"""aiogram's RedisStorage on the workload of `fsmstore bench` (one awaited call at a time,
the same phases and keys), for the comparison in docs/benchmarks.md.

    python scripts/bench_aiogram_redis.py redis://127.0.0.1:6379/7 [keys] [rounds]

Prints one line per phase: ops/s and p50/p99 in microseconds, medians over the rounds.
Run it with the project's virtualenv (scripts/python-venv.sh prints its interpreter). It
writes keys under the prefix `bench_aiogram:` and deletes them afterwards.
"""

import asyncio
import statistics
import sys
import time

from aiogram.fsm.storage.base import DefaultKeyBuilder, StorageKey
from aiogram.fsm.storage.redis import RedisStorage

PHASES = ["set_state", "get_state", "set_data", "get_data", "update_data", "clear"]


def key(i):
    return StorageKey(bot_id=42, chat_id=-i, user_id=i)


def data_for(i):
    return {"name": f"user {i}", "age": 20 + i % 50, "tags": ["a", "b"]}


async def phase(storage, name, keys):
    nanos = []
    for i in range(1, keys + 1):
        k = key(i)
        started = time.perf_counter_ns()
        if name == "set_state":
            await storage.set_state(k, "Form:name")
        elif name == "get_state":
            await storage.get_state(k)
        elif name == "set_data":
            await storage.set_data(k, data_for(i))
        elif name == "get_data":
            await storage.get_data(k)
        elif name == "update_data":
            await storage.update_data(k, {"step": 2})
        else:
            await storage.set_state(k, None)
            await storage.set_data(k, {})
        nanos.append(time.perf_counter_ns() - started)
    nanos.sort()
    return (
        len(nanos) / (sum(nanos) / 1e9),
        nanos[len(nanos) // 2] / 1000,
        nanos[min(len(nanos) - 1, len(nanos) * 99 // 100)] / 1000,
    )


async def main():
    url = sys.argv[1]
    keys = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    storage = RedisStorage.from_url(url, key_builder=DefaultKeyBuilder(prefix="bench_aiogram"))
    results = {name: [] for name in PHASES}
    try:
        for _ in range(rounds):
            for name in PHASES:
                results[name].append(await phase(storage, name, keys))
    finally:
        await storage.close()
    print(f"aiogram RedisStorage · {keys} keys · {rounds} rounds (medians)")
    print("phase        ops/s   p50 µs  p99 µs")
    for name in PHASES:
        ops = statistics.median(r[0] for r in results[name])
        p50 = statistics.median(r[1] for r in results[name])
        p99 = statistics.median(r[2] for r in results[name])
        print(f"{name:<12} {ops:<7.0f} {p50:<7.1f} {p99:.1f}")


asyncio.run(main())

"""The Python side of tests/python_coexistence.rs: the real aiogram-sqlalchemy-storage on
the table fsmstore shares in the aiogram layout, or aiogram's own RedisStorage on the Redis
fsmstore shares in aiogram's layout (its keys under the prefix ``<table>:fsm``).

    python peer.py <sqlalchemy-url|redis-url> <table> <command>    (a JSON request on stdin)

Commands (the answer is one JSON document on stdout):

* ``write``: ``[{"key": K, "state": S}|{"key": K, "data": D}|{"key": K, "update": D}, ...]``
  applied in order with set_state / set_data / update_data; answers ``{"acknowledged": n}``.
* ``read``: ``[K, ...]``; answers ``[{"state": S, "data": D}, ...]``.
* ``race``: ``{"keys": [K...], "shared": K, "tasks": n, "rounds": m, "python_updates": b}``:
  ``tasks`` writers at once; writer i sets state and data of its own key ``keys[i]`` each
  round, and sets the state of the shared key (never clearing it, which Python does in two
  sessions) and, with ``python_updates``, ``update_data`` a field of its own there (a read
  and a write in two sessions: not atomic). Answers what was acknowledged.

K is ``{"bot_id", "chat_id", "user_id", "thread_id", "business_connection_id", "destiny"}``.
Keys are built with ``DefaultKeyBuilder(with_business_connection_id=True,
with_destiny=True)``, as the Rust side builds them.
"""

import asyncio
import json
import sys

from aiogram.fsm.storage.base import DefaultKeyBuilder, StorageKey
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy_storage import SQLAlchemyStorage


def storage_key(k):
    return StorageKey(
        bot_id=k["bot_id"],
        chat_id=k["chat_id"],
        user_id=k["user_id"],
        thread_id=k.get("thread_id"),
        business_connection_id=k.get("business_connection_id"),
        destiny=k.get("destiny", "default"),
    )


async def write(storage, ops):
    done = 0
    for op in ops:
        key = storage_key(op["key"])
        if "state" in op:
            await storage.set_state(key, op["state"])
        elif "data" in op:
            await storage.set_data(key, op["data"])
        else:
            await storage.update_data(key, op["update"])
        done += 1
    return {"acknowledged": done}


async def read(storage, keys):
    out = []
    for k in keys:
        key = storage_key(k)
        out.append({"state": await storage.get_state(key), "data": await storage.get_data(key)})
    return out


async def race(storage, request):
    shared = storage_key(request["shared"])
    rounds = request["rounds"]
    own = {}
    shared_states = []
    shared_fields = []
    errors = []

    async def writer(i):
        key = storage_key(request["keys"][i])
        for r in range(rounds):
            try:
                await storage.set_state(key, f"py:{i}:{r}")
                await storage.set_data(key, {"writer": i, "round": r, "name": "Женя"})
                own[i] = r
                state = f"py:shared:{i}:{r}"
                await storage.set_state(shared, state)
                shared_states.append(state)
                if request.get("python_updates", True):
                    field = f"py_{i}_{r}"
                    await storage.update_data(shared, {field: r})
                    shared_fields.append(field)
            except Exception as err:  # counted, and reported to the test
                errors.append(f"{type(err).__name__}: {err}")

    await asyncio.gather(*(writer(i) for i in range(request["tasks"])))
    return {
        "own_rounds": {str(i): r for i, r in own.items()},
        "shared_states": shared_states,
        "shared_fields": shared_fields,
        "errors": errors,
    }


async def lock(url, table, request):
    """aiogram's RedisEventIsolation on key K: ``{"key": K, "hold_ms": n, "wait_ms": m}``
    waits at most ``wait_ms`` for the lock; holding it for ``hold_ms`` > 0, prints
    ``locked`` (flushed) first. Answers ``{"locked": bool}``."""
    from aiogram.fsm.storage.redis import RedisEventIsolation
    from redis.exceptions import LockError

    isolation = RedisEventIsolation.from_url(
        url,
        key_builder=DefaultKeyBuilder(
            prefix=f"{table}:fsm", with_business_connection_id=True, with_destiny=True
        ),
        lock_kwargs={"timeout": 60, "blocking_timeout": request["wait_ms"] / 1000},
    )
    try:
        async with isolation.lock(storage_key(request["key"])):
            if request["hold_ms"] > 0:
                print("locked", flush=True)
                await asyncio.sleep(request["hold_ms"] / 1000)
        return {"locked": True}
    except LockError:
        return {"locked": False}
    finally:
        await isolation.redis.aclose()


async def main():
    url, table, command = sys.argv[1], sys.argv[2], sys.argv[3]
    request = json.load(sys.stdin)
    if command == "lock":
        json.dump(await lock(url, table, request), sys.stdout)
        return
    handler = {"write": write, "read": read, "race": race}[command]
    if url.startswith("redis"):
        from aiogram.fsm.storage.redis import RedisStorage

        storage = RedisStorage.from_url(
            url,
            key_builder=DefaultKeyBuilder(
                prefix=f"{table}:fsm", with_business_connection_id=True, with_destiny=True
            ),
        )
        try:
            answer = await handler(storage, request)
        finally:
            await storage.close()
        json.dump(answer, sys.stdout, ensure_ascii=False)
        return
    engine = create_async_engine(url) if url.startswith("sqlite") else create_async_engine(url, pool_size=10)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    storage = SQLAlchemyStorage(
        sessions,
        table_name=table,
        key_builder=DefaultKeyBuilder(with_business_connection_id=True, with_destiny=True),
    )
    try:
        answer = await handler(storage, request)
    finally:
        await engine.dispose()
    json.dump(answer, sys.stdout, ensure_ascii=False)


asyncio.run(main())

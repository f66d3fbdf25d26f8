"""The data plane's one database thread per worker. Key and routing-table loads (a few per
tenant per GATEWAY_CONFIG_SECONDS) and the batched usage inserts all run here, so a worker
holds one PostgreSQL connection, and shutdown can close it."""

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

from django.db import connections

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tollgate-db")


async def run_db(fn, /, *args, **kwargs):
    return await asyncio.get_running_loop().run_in_executor(_executor, functools.partial(fn, *args, **kwargs))


async def close_db() -> None:
    await run_db(connections.close_all)

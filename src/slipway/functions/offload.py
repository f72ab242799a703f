"""Long activities run off the Python worker's thread pool.

The worker runs every synchronous function on one pool of ``PYTHON_THREADPOOL_THREAD_COUNT``
threads: orchestrator episodes, the webhook, queue and timer functions, every activity. A
step or a build holding one of those threads for minutes starves the rest: with the pool
full of steps, a push's webhook waits (GitHub gives up after 10 s) and a cancel's episode
never runs. So the activities that may run long are ``async``: the worker awaits them on its
event loop, and their blocking work runs on pools of this module's own, one per kind of work.

The same holds for the host's own activity limit: host.json's maxConcurrentActivityFunctions
(64) is well above the threads here (:data:`POOL_THREADS`), so long work waiting for a
thread does not keep the bookkeeping activities (a run's record and finish, a cancel's end)
from getting an activity slot. The pools, not the host, bound how many steps and builds run
at once in one worker.

A deadline bounds the invocation itself: past it the activity answers (timed out) even if
the code it ran has not returned, so no invocation outlives host.json's ``functionTimeout``,
which would make the host restart the worker and fail everything in flight on it. A step's
code runs in a process of its own (``slipway.isolation``), stopped by its own timeout well
before this deadline; the deadline is the guard should that process not answer.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# Threads per kind of long work in one worker process: workflow steps run 16 at a time (as many as
# host.json allowed activities before), deploy phases (build, publish, verify) 8, the GitHub sync
# (a singleton orchestration: one pass at a time) 2.
POOL_THREADS = {"steps": 16, "deploy": 8, "sync": 2}
# After its deadline an activity still waits this long for the work to wrap up (kill its
# commands, flush its log) before it answers without it.
WRAP_UP_SECONDS = 30.0

_pools = {
    kind: ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"slipway-{kind}")
    for kind, threads in POOL_THREADS.items()
}


async def run_long(
    kind: str,
    work: Callable[..., T],
    *args: Any,
    deadline_seconds: float | None,
    on_deadline: Callable[[], T],
) -> T:
    """``work(*args)`` on the ``kind`` pool; ``on_deadline()`` if it is still going after
    ``deadline_seconds`` (plus the wrap-up grace)."""
    future = asyncio.get_running_loop().run_in_executor(_pools[kind], functools.partial(work, *args))
    if deadline_seconds is None:
        return await future
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout=deadline_seconds + WRAP_UP_SECONDS)
    except TimeoutError:
        return on_deadline()


def shutdown() -> None:
    """Stop taking long work (the process is stopping); what runs already ends when its code does."""
    for pool in _pools.values():
        pool.shutdown(wait=False, cancel_futures=True)

"""Running a set of per-trigger loops until the runner stops."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


async def run_until_stopped(loops: list[Coroutine[Any, Any, None]], stop: asyncio.Event) -> None:
    """Run each loop as a task until ``stop`` is set, then cancel them and wait for the ends."""
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""The optional scheduler: a decision cycle every N minutes, as an asyncio task of the app."""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger("kryptobot.trader.scheduler")


async def run_every(minutes: float, cycle: Callable[[], Awaitable[object]], lock: asyncio.Lock) -> None:
    """Run ``cycle`` every ``minutes`` (after the first interval) until cancelled.

    ``lock`` is the one POST /cycle takes: a scheduled cycle never overlaps a manual one.
    """
    while True:
        await asyncio.sleep(minutes * 60)
        try:
            async with lock:
                await cycle()
        except Exception:  # noqa: BLE001 - the scheduler must outlive one bad cycle
            log.exception("scheduled cycle failed")

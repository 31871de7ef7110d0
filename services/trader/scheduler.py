"""The trader's scheduler (APScheduler, on the app's event loop): decision cycles every
``schedule_minutes``, and each layer's retraining rule (FreqAI's ``live_retrain_hours``).

A retraining rule is a crontab in ``retraining.timezone`` (``"30 17 * * mon-fri"``:
weekdays after the New York close; a sixth, leading, field is seconds). When it fires,
the trader POSTs the layer's service ``/train`` with the layer's ``train_body`` or, by
default, the service's first-start body from :mod:`services.table` with ``activate``
``"if_better"``: the same job a person would start, so the promotion gate decides whether
the new version serves (a worse one is stored inactive, with the reason in ``/models``).

Among several replicas every one schedules the jobs, and a job runs only on the replica
that leads at that moment (``leads``, :mod:`.leader`): one cycle and one retrain per tick.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from kryptobot.settings import ConfigError
from kryptobot.trading.settings import LayerSchedule, TraderConfig
from services.table import spec

log = logging.getLogger("kryptobot.trader.scheduler")
#: a retrain whose time passed while the trader was busy or down still runs this late
MISFIRE_GRACE_SECONDS = 3600


def cron_trigger(rule: str, timezone: str) -> CronTrigger:
    """APScheduler's trigger of a 5-field crontab, or of 6 fields with seconds first."""
    fields = rule.split()
    if len(fields) == 5:
        return CronTrigger.from_crontab(rule, timezone=timezone)
    second, minute, hour, day, month, day_of_week = fields
    return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week, timezone=timezone)


def retrain_body(layer: str, schedule: LayerSchedule) -> dict:
    """The ``POST /train`` body a layer's rule sends."""
    if schedule.train_body is not None:
        return schedule.train_body
    return {**spec(layer).training_body(), "activate": "if_better"}


async def run_cycle(cycle: Callable[[], Awaitable[object]], lock: asyncio.Lock) -> None:
    """One scheduled cycle under the lock POST /cycle takes: never two at once."""
    try:
        async with lock:
            await cycle()
    except Exception:  # noqa: BLE001 - the scheduler must outlive one bad cycle
        log.exception("scheduled cycle failed")


async def if_leader(leads: Callable[[], bool], job: Callable[..., Awaitable[object]], *args) -> object:
    """``job(*args)`` when this replica leads the schedule; nothing otherwise."""
    if not leads():
        log.debug("not the scheduler leader: %s skipped", getattr(job, "__name__", job))
        return None
    return await job(*args)


async def retrain(layer: str, url: str, body: dict, http: httpx.AsyncClient, api_key: str | None = None) -> dict | None:
    """Start the layer's training job; the job record (None when the service did not take it)."""
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        resp = await http.post(f"{url.rstrip('/')}/train", json=body, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        log.error("scheduled retrain of %s: %s unreachable: %s", layer, url, exc)
        return None
    if resp.status_code == 202:
        log.info("scheduled retrain of %s: job %s started", layer, resp.json()["id"])
        return resp.json()
    # 409: a job is running (an operator's, or the last rule's still going): this one is skipped
    log.warning("scheduled retrain of %s: %s answered %s: %s", layer, url, resp.status_code, resp.text[:300])
    return None


def build_scheduler(config: TraderConfig, urls: dict[str, str], cycle: Callable[[], Awaitable[object]], lock: asyncio.Lock,
                    http: httpx.AsyncClient, api_key: str | None = None,
                    leads: Callable[[], bool] = lambda: True) -> AsyncIOScheduler | None:
    """The scheduler of ``config`` (not started; None when it has nothing to do); each job
    runs only while ``leads()`` (this replica is the leader).

    Raises ConfigError naming the key of a retraining rule APScheduler cannot read.
    """
    t = config.trader
    scheduler = AsyncIOScheduler(timezone=t.retraining.timezone)
    if t.schedule_minutes > 0:
        # after the first interval, not at start-up, as the sleep loop this replaces did
        scheduler.add_job(if_leader, IntervalTrigger(seconds=t.schedule_minutes * 60), args=[leads, run_cycle, cycle, lock], id="cycle",
                          max_instances=1, coalesce=True)
    for layer, schedule in t.retraining.layers().items():
        if schedule.retrain is None:
            continue
        try:
            trigger = cron_trigger(schedule.retrain, t.retraining.timezone)
        except ValueError as exc:
            raise ConfigError(f"trader_settings.json: key 'retraining.{layer}.retrain': {exc}") from exc
        scheduler.add_job(if_leader, trigger, args=[leads, retrain, layer, urls[layer], retrain_body(layer, schedule), http, api_key],
                          id=f"retrain:{layer}", max_instances=1, coalesce=True, misfire_grace_time=MISFIRE_GRACE_SECONDS)
    return scheduler if scheduler.get_jobs() else None

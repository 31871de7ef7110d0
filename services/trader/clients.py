"""HTTP clients for the model services: timeouts, bounded retries with backoff, and a
circuit breaker per service so a dead service costs one fast failure, not a timeout
per symbol per cycle.

A cycle's calls share one :class:`Deadline`: each request gets ``min(timeout, time left)``
as a whole (sending, waiting and reading the body: httpx's own timeouts are per read, so a
service that trickles a byte a second would never trip them), and no try or retry starts
once the time left cannot hold it. A call the deadline stopped raises
:class:`DeadlineReached`, a ServiceUnavailable.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential

from kryptobot.errors import InvalidInput, ServiceUnavailable
from kryptobot.schemas import PredictResponse
from services.framework.schemas import ModelList
from services.trader.wire import PREDICTIONS

M = TypeVar("M", bound=BaseModel)


class _Retryable(Exception):
    """A failure worth another try: connection trouble, a 5xx, no whole answer in time."""


class DeadlineReached(ServiceUnavailable):
    """The cycle's deadline came before the service answered (or before it could be asked)."""


class Deadline:
    """When a cycle must be done by: ``Deadline(seconds)`` from now, on the monotonic clock."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self._clock = clock
        self.at = clock() + seconds

    def left(self) -> float:
        """Seconds left (0 once passed)."""
        return max(0.0, self.at - self._clock())

    def reached(self, name: str) -> DeadlineReached:
        """The error a call stopped by this deadline raises; its message starts with ``deadline``."""
        return DeadlineReached(f"deadline: the cycle's {self.seconds:g} s ran out before {name} answered", field=name)


@dataclass
class CircuitBreaker:
    """closed -> (``threshold`` failures in a row) -> open for ``reset_after`` s -> half-open.

    Half-open lets one trial call through (the others fail fast while it runs): its
    success closes the circuit, its failure opens it again. A trial that never reports
    (cancelled) is given up after ``reset_after`` s so the circuit cannot stick open.
    """

    threshold: int = 3
    reset_after: float = 10.0
    failures: int = 0
    opened_at: float | None = None
    trial_started: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.reset_after else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "open":
            return False
        now = self.clock()
        if self.trial_started is not None and now - self.trial_started < self.reset_after:
            return False  # a trial is already in flight
        self.trial_started = now
        return True

    def success(self) -> None:
        self.failures, self.opened_at, self.trial_started = 0, None, None

    def abandoned(self) -> None:
        """A call stopped for a reason of ours (the cycle's deadline): no verdict on the
        service, and a half-open circuit's trial slot is free for the next call."""
        self.trial_started = None

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.threshold or self.trial_started is not None:
            self.opened_at = self.clock()
        self.trial_started = None


class ModelClient:
    """One model service: ``predict``, ``model``; raises ServiceUnavailable when it cannot answer."""

    def __init__(self, name: str, base_url: str, http: httpx.AsyncClient, timeout: float, retries: int, breaker: CircuitBreaker | None = None):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.timeout = timeout
        self.retries = retries
        self.breaker = breaker or CircuitBreaker()

    async def predict(self, body: dict, request_id: str | None = None, deadline: Deadline | None = None) -> PredictResponse:
        """The answer, parsed with the service's own ``PredictResponse[Prediction]``."""
        return await self._call("POST", "/predict", body, request_id, PredictResponse[PREDICTIONS[self.name]], deadline)

    async def model(self, request_id: str | None = None, deadline: Deadline | None = None) -> ModelList:
        return await self._call("GET", "/model", None, request_id, ModelList, deadline)

    async def _call(self, method: str, path: str, body: dict | None, request_id: str | None, schema: type[M],
                    deadline: Deadline | None = None) -> M:
        if deadline is not None and deadline.left() <= 0:
            raise deadline.reached(self.name)  # not asked: says nothing about the service's health
        if not self.breaker.allow():
            raise ServiceUnavailable(f"{self.name} circuit open after repeated failures", field=self.name)
        headers = {"X-Request-ID": request_id} if request_id else {}
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.retries + 1) | _out_of_time(deadline),
                wait=wait_exponential(multiplier=0.05, max=1.0),
                retry=retry_if_exception_type(_Retryable),
                reraise=True,
            ):
                with attempt:
                    resp = await self._request(method, path, body, headers, deadline)
        except DeadlineReached:
            # cut short by the cycle's clock, not by the service's own timeout
            self.breaker.abandoned()
            raise
        except _Retryable as exc:
            self.breaker.failure()
            raise ServiceUnavailable(f"{self.name} unavailable: {exc}", field=self.name) from exc
        if resp.status_code >= 400:
            self.breaker.success()  # it answered: the request, not the service, is at fault
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            raise InvalidInput(f"{self.name} rejected the request ({resp.status_code}): {str(detail)[:300]}", field=self.name)
        try:
            answer = schema.model_validate_json(resp.content)
        except ValidationError as exc:
            # a 200 that does not parse is a broken service, not a reason to crash the cycle
            self.breaker.failure()
            raise ServiceUnavailable(f"{self.name} answered a malformed {path} body: {_first_error(exc)}", field=self.name) from exc
        self.breaker.success()
        return answer

    async def _request(self, method: str, path: str, body: dict | None, headers: dict, deadline: Deadline | None) -> httpx.Response:
        """One try, the whole of it within ``min(timeout, time left)``."""
        budget = self.timeout if deadline is None else min(self.timeout, deadline.left())
        if budget <= 0:
            raise deadline.reached(self.name)
        try:
            async with asyncio.timeout(budget):
                resp = await self.http.request(method, self.base_url + path, json=body, headers=headers, timeout=self.timeout)
        except TimeoutError as exc:
            if budget < self.timeout:
                raise deadline.reached(self.name) from exc
            raise _Retryable(f"no whole answer in {self.timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 500:
            raise _Retryable(f"HTTP {resp.status_code}: {resp.text[:200]}")
        return resp


def _out_of_time(deadline: Deadline | None):
    """Stop retrying when the backoff before the next try would use up the time left."""
    def stop(state: RetryCallState) -> bool:
        return deadline is not None and deadline.left() <= state.upcoming_sleep

    return stop


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(map(str, err.get('loc', ()))) or 'body'}: {err.get('msg', 'invalid')} ({exc.error_count()} error(s))"

"""Request ids, structured logs and Prometheus metrics, shared by every service."""
from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REQUEST_ID_HEADER = "X-Request-ID"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("service", "request_id", "path", "status", "ms"):
            if getattr(record, key, "-") != "-":
                payload[key] = getattr(record, key)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def _default_request_id(record: logging.LogRecord) -> bool:
    if not hasattr(record, "request_id"):
        record.request_id = "-"
    return True


def configure_logging(service: str, fmt: str = "auto") -> None:
    """JSON logs when not on a terminal (or when asked), plain text otherwise."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler()
    handler.addFilter(_default_request_id)
    handler.setFormatter(
        JsonFormatter() if use_json else logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s [%(request_id)s]: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


class Metrics:
    """A registry per app (not the global one), so several apps can live in one process."""

    def __init__(self, service: str):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kryptobot_http_requests_total", "HTTP requests", ["service", "path", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "kryptobot_http_request_seconds",
            "HTTP request latency",
            ["service", "path"],
            buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.predictions = Counter(
            "kryptobot_predictions_total", "Instances predicted", ["service"], registry=self.registry
        )
        self.jobs = Counter("kryptobot_training_jobs_total", "Training jobs by outcome", ["service", "state"], registry=self.registry)
        self.active = Gauge(
            "kryptobot_active_model_info", "Active model version (value 1)", ["service", "line", "version"], registry=self.registry
        )
        self.service = service


_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:\-]{1,64}")


def _request_id(given: bytes | None) -> str:
    """The caller's id when it is a safe token (it is echoed in headers and logs), else a new one."""
    if given and _REQUEST_ID.fullmatch(given):
        return given.decode("ascii")
    return uuid.uuid4().hex[:16]


class RequestContextMiddleware:
    """Pure ASGI (cheaper than BaseHTTPMiddleware on the hot path): request id, metrics, access log."""

    def __init__(self, app, metrics: Metrics | None):
        self.app = app
        self.metrics = metrics
        self.log = logging.getLogger("kryptobot.access")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        request_id = _request_id(headers.get(REQUEST_ID_HEADER.lower().encode()))
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            if self.metrics is not None:
                self.metrics.requests.labels(self.metrics.service, path, scope["method"], str(status["code"])).inc()
                self.metrics.latency.labels(self.metrics.service, path).observe(elapsed)
            if path not in ("/health/live", "/health/ready", "/metrics"):
                self.log.info(
                    "%s %s %s %.1fms",
                    scope["method"],
                    scope["path"],
                    status["code"],
                    elapsed * 1000,
                    extra={"request_id": request_id, "path": path, "status": status["code"], "ms": round(elapsed * 1000, 2)},
                )


def install_request_middleware(app: FastAPI, metrics: Metrics | None) -> None:
    app.add_middleware(RequestContextMiddleware, metrics=metrics)

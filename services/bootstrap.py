"""First-start training: give every model service without a model one to serve.

A fresh deployment (``docker compose up``, ``make run`` on a new checkout) has empty model
stores, so every ``/predict`` would be a 503. For each model service that is not ready
and has no stored version at all, this POSTs ``/train`` with a small but sensible body
and waits for the job; a service that already has versions is left alone (an operator
chose its state: its versions may be deliberately inactive or failing to load).

Used by the local stack (:mod:`services.stack`) and, in Docker Compose, by the one-shot
``bootstrap`` service::

    python -m services.bootstrap                              # all four, URLs from KRYPTOBOT_*_URL
    python -m services.bootstrap --service signal --service-url http://127.0.0.1:8001
    python -m services.bootstrap --quick                      # tiny bodies (tests)

Only HTTP: it imports no model code, so it runs in any image of the project.
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from kryptobot.settings import Settings
from services.table import MODEL_SERVICES, ServiceUrls, spec

Log = Callable[[str], None]

#: request id of the job-status polls: the local stack hides their access-log lines,
#: which would otherwise bury everything else while the first models train
POLL_REQUEST_ID = "bootstrap-poll"


class BootstrapError(RuntimeError):
    """A service could not be given a model; the message says which and why."""


@dataclass
class Outcome:
    service: str
    action: str  # "ready" | "kept" | "trained"
    detail: str = ""
    seconds: float = 0.0


def bodies(quick: bool = False) -> dict[str, dict]:
    """Each model service's first-start ``POST /train`` body, from the service table."""
    return {name: spec(name).training_body(quick) for name in MODEL_SERVICES}


def service_urls(urls: ServiceUrls | None = None) -> dict[str, str]:
    """The model services' URLs from ``KRYPTOBOT_<NAME>_URL``."""
    return (urls or ServiceUrls()).urls()


def needs_training(client: httpx.Client) -> tuple[bool, str]:
    """(True, why) when the service is not ready and holds no version at all."""
    ready = client.get("/health/ready")
    if ready.status_code == 200:
        return False, "ready"
    stored = client.get("/models")
    stored.raise_for_status()
    versions = [m["version"] for m in stored.json()["models"]]
    if versions:
        return False, (
            f"not ready but has versions {versions} ({ready.json().get('detail', '')}); "
            "activate one with POST /models/{version}/activate or train with POST /train"
        )
    return True, "no model"


def ensure_model(
    name: str,
    url: str,
    body: dict,
    *,
    api_key: str | None = None,
    timeout: float = 900.0,
    log: Log = print,
    stop: threading.Event | None = None,
    poll: float = 2.0,
) -> Outcome:
    """Train ``name`` at ``url`` with ``body`` unless it has a model; wait for the job.

    ``stop`` (set by a shutting-down caller) cancels the job rather than leaving a
    training process behind.
    """
    stop = stop or threading.Event()
    headers = {"X-API-Key": api_key} if api_key else {}
    began = time.monotonic()
    with httpx.Client(base_url=url, timeout=30.0, headers=headers) as client:
        train, why = needs_training(client)
        if train and stop.is_set():  # the caller is shutting down: start nothing new
            raise BootstrapError(f"{name}: not trained (stopping)")
        if not train:
            if why != "ready":
                log(f"{name}: left alone, {why}")
            return Outcome(name, "ready") if why == "ready" else Outcome(name, "kept", why)
        resp = client.post("/train", json=body)
        if resp.status_code == 409:  # another bootstrap (or a user) started one: wait for that
            running = [j["id"] for j in client.get("/jobs").json() if j["state"] in ("queued", "running", "trained")]
            if not running:
                raise BootstrapError(f"{name}: POST /train answered 409 but no job is running: {resp.text[:500]}")
            job_id = running[0]
        elif resp.status_code == 202:
            job_id = resp.json()["id"]
        else:
            raise BootstrapError(f"{name}: POST /train answered {resp.status_code}: {resp.text[:500]}")
        log(f"{name}: training a first model (job {job_id})")
        record = _wait(client, name, job_id, began + timeout, log, stop, poll)
    seconds = time.monotonic() - began
    if record["state"] != "succeeded":
        raise BootstrapError(f"{name}: training job {job_id} {record['state']}: {record.get('error')}")
    log(f"{name}: trained {', '.join(record['versions'])} in {seconds:.0f}s")
    return Outcome(name, "trained", ", ".join(record["versions"]), seconds)


def _wait(client: httpx.Client, name: str, job_id: str, deadline: float, log: Log, stop: threading.Event, poll: float) -> dict:
    last_message = None
    while True:
        resp = client.get(f"/train/{job_id}", headers={"X-Request-ID": POLL_REQUEST_ID})
        resp.raise_for_status()
        record = resp.json()
        if record["state"] in ("succeeded", "failed", "cancelled"):
            return record
        if stop.is_set() or time.monotonic() > deadline:
            client.delete(f"/train/{job_id}")
            why = "stopping" if stop.is_set() else "timed out"
            raise BootstrapError(f"{name}: training job {job_id} cancelled ({why})")
        if record.get("message") != last_message:
            last_message = record.get("message")
            log(f"{name}: {record['progress']:.0%} {last_message}")
        stop.wait(poll)


def ensure_models(
    urls: dict[str, str],
    *,
    quick: bool = False,
    parallel: int = 2,
    api_key: str | None = None,
    timeout: float = 900.0,
    log: Log = print,
    stop: threading.Event | None = None,
    poll: float = 2.0,
) -> list[Outcome]:
    """:func:`ensure_model` for each service of ``urls``, ``parallel`` jobs at a time.

    Raises :class:`BootstrapError` naming every service that failed (the others are done).
    """
    chosen = bodies(quick)

    def one(name: str) -> Outcome | BootstrapError:
        try:
            return ensure_model(
                name, urls[name], chosen[name], api_key=api_key, timeout=timeout, log=log, stop=stop, poll=poll
            )
        except (BootstrapError, httpx.HTTPError) as exc:
            return exc if isinstance(exc, BootstrapError) else BootstrapError(f"{name}: {exc!r}")

    # The slowest (the recurrent nets) first, so they overlap with the quick forests.
    order = sorted(urls, key=lambda n: ("forecast", "anomaly", "ensemble", "signal").index(n))
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="bootstrap") as pool:
        results = list(pool.map(one, order))
    failures = [r for r in results if isinstance(r, BootstrapError)]
    if failures:
        raise BootstrapError("; ".join(str(f) for f in failures))
    return [r for r in results if isinstance(r, Outcome)]


def wait_until_live(urls: dict[str, str], timeout: float = 120.0) -> None:
    """Wait for ``/health/live`` of each service (compose starts them concurrently)."""
    deadline = time.monotonic() + timeout
    for name, url in urls.items():
        while True:
            try:
                if httpx.get(f"{url}/health/live", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BootstrapError(f"{name} at {url} is not live after {timeout:.0f}s")
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.bootstrap", description=__doc__.split("\n\n")[0])
    parser.add_argument("--service", action="append", choices=MODEL_SERVICES, help="service to bootstrap (repeatable; default: all four)")
    parser.add_argument("--service-url", action="append", default=[], help="URL of the --service at the same position (default: KRYPTOBOT_<NAME>_URL)")
    parser.add_argument("--quick", action="store_true", help="tiny training bodies (tests)")
    parser.add_argument("--parallel", type=int, default=2, help="training jobs at a time (default 2)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per service")
    parser.add_argument("--live-timeout", type=float, default=300.0, help="seconds to wait for the services to start")
    args = parser.parse_args(argv)
    names = args.service or list(MODEL_SERVICES)
    if args.service_url and not args.service:
        parser.error("--service-url needs the --service it belongs to")
    if len(args.service_url) > len(names):
        parser.error("more --service-url than --service")
    urls = {**{n: service_urls()[n] for n in names}, **dict(zip(names, args.service_url))}
    api_key = Settings().api_key
    log = lambda line: print(f"[bootstrap] {line}", flush=True)
    try:
        wait_until_live(urls, args.live_timeout)
        for outcome in ensure_models(urls, quick=args.quick, parallel=args.parallel, api_key=api_key, timeout=args.timeout, log=log):
            log(f"{outcome.service}: {outcome.action} {outcome.detail}".rstrip())
    except BootstrapError as exc:
        log(f"failed: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

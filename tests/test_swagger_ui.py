"""Swagger UI as a person uses it: open /docs, "Try it out", "Execute" the shown example.

Headless Chromium from Debian (installed by `make browser`), driven by Playwright; no
browser download. Screenshots land in test-artifacts/.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.bootstrap import ensure_models
from services.table import MODEL_SERVICES, spec
from tests.services.trader.stack import trader_env

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--disable-sync", "--disable-quic",
]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def services(start_server, redis_url, tmp_path_factory):
    # started side by side (each start is mostly imports), then trained before anything is
    # pressed, with the first-start bootstrap's tiny bodies
    with ThreadPoolExecutor(len(MODEL_SERVICES)) as pool:
        started = pool.map(lambda name: start_server(spec(name).app), MODEL_SERVICES)
        models = dict(zip(MODEL_SERVICES, started))
    ensure_models({name: server.url for name, server in models.items()}, quick=True, poll=0.3, log=lambda _: None)
    env = trader_env(models, redis_url, tmp_path_factory.mktemp("trader-ui"), "test-ui:forecast")
    return {**models, "trader": start_server("services.trader.app:create_app", env=env)}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.mark.parametrize(
    ("service", "method", "path"),
    [
        ("signal", "post", "/predict"),
        ("ensemble", "post", "/predict"),
        ("anomaly", "post", "/predict"),
        ("forecast", "post", "/predict"),
        ("trader", "post", "/cycle"),
    ],
)
def test_try_it_out_and_execute_the_example(services, browser, service, method, path):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    base = services[service].url
    elsewhere = []  # a CDN asset would hang or fail here: Swagger UI must come from the service
    page.on("request", lambda request: request.url.startswith(base) or elsewhere.append(request.url))
    try:
        page.goto(f"{base}/docs")
        # rendered only once the bundle has run and fetched openapi.json: waits, never sleeps
        page.locator(".swagger-ui .info .title").first.wait_for(timeout=30_000)
        operation = page.locator(f".opblock-{method}").filter(has=page.locator(f'[data-path="{path}"]')).first
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        operation.get_by_role("button", name="Execute").click()
        status = operation.locator(".live-responses-table .response .response-col_status").first
        status.wait_for(timeout=60_000)
        status.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"swagger-{service}.png"), full_page=False)
        assert status.inner_text().strip().startswith("200"), operation.locator(".live-responses-table").inner_text()
        assert not elsewhere, f"requests left the service: {elsewhere}"
    finally:
        page.close()

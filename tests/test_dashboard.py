"""The dashboard as a person uses it: /dashboard on the trader, in headless Chromium.

A real stack (the four model services trained with the table's quick bodies, behind an API
key, and the trader) and a few real decision cycles; the page reads only the services'
public HTTP APIs. Screenshots land in test-artifacts/dashboard/.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import httpx
import pytest

from services.bootstrap import ensure_models
from services.table import MODEL_SERVICES, spec
from tests.services.trader.stack import trader_env
from tests.test_swagger_ui import ARTIFACTS, browser  # noqa: F401 - the Chromium fixture

pytestmark = pytest.mark.browser
SHOTS = ARTIFACTS / "dashboard"
KEY = "dashboard-test-key"
WATCHLIST = ["SPY", "QQQ", "AAPL", "MSFT"]
VIEWS = ["portfolio", "decisions", "models", "backtests", "health"]
WIDE, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def stack(start_server, redis_url, tmp_path_factory):
    with ThreadPoolExecutor(len(MODEL_SERVICES)) as pool:
        started = pool.map(lambda name: start_server(spec(name).app, env={"KRYPTOBOT_API_KEY": KEY}), MODEL_SERVICES)
        models = dict(zip(MODEL_SERVICES, started))
    env = {**trader_env(models, redis_url, tmp_path_factory.mktemp("trader-dashboard"), "test-dashboard:forecast"),
           "KRYPTOBOT_API_KEY": KEY, "KRYPTOBOT_TRADER_SETTINGS__WATCHLIST": json.dumps(WATCHLIST)}
    with ThreadPoolExecutor(1) as pool:  # the trader starts while the models train (all four at once)
        trader = pool.submit(start_server, "services.trader.app:create_app", env=env)
        ensure_models({n: s.url for n, s in models.items()}, quick=True, parallel=len(models), api_key=KEY, poll=0.3,
                      log=lambda _: None)
        trader = trader.result()
    with httpx.Client(base_url=trader.url, timeout=120, headers={"X-API-Key": KEY}) as client:
        _trade(client)
    SHOTS.mkdir(parents=True, exist_ok=True)
    return {**models, "trader": trader}


def _trade(client: httpx.Client) -> None:
    """Three cycles around the latest bar the technical strategy buys on (read off GET
    /bars): one on an earlier buy that asks every model, one on that bar with the technical
    signal alone (so it places an order), and the next bar with every model (it holds)."""
    buys = []  # (day, next day, symbol)
    for symbol in WATCHLIST:
        history = client.get(f"/bars/{symbol}", params={"n": 60}).json()
        days = [t[:10] for t in history["bars"]["timestamp"]]
        buys += [(d, days[i + 1], symbol) for i, (d, side) in enumerate(zip(days[:-1], history["indicators"]["technical"])) if side == "buy"]
    day, after, symbol = max(buys)
    early, _, other = next(b for b in sorted(buys, reverse=True) if b[2] != symbol)
    assert client.post("/cycle", json={"as_of": early, "symbols": [other]}).status_code == 200
    traded = client.post("/cycle", json={"as_of": day, "symbols": [symbol], "layers": []}).json()
    assert traded["orders"], traded
    assert client.post("/cycle", json={"as_of": after, "symbols": WATCHLIST}).status_code == 200


def _open(browser, stack, view: str, viewport=WIDE):
    """A page on ``view`` once it has drawn its data, and every URL the page requested."""
    page = browser.new_page(viewport=viewport)
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{stack['trader'].url}/dashboard/#{view}")
    page.locator("body[data-ready=true]").wait_for(timeout=30_000)
    page.locator(f"#view-{view}[data-loaded=true]").wait_for(timeout=30_000)
    return page, requested


def _shoot(page, name: str) -> None:
    size = page.viewport_size
    page.screenshot(path=str(SHOTS / f"{name}-{size['width']}x{size['height']}.png"), full_page=True)


def _badges_say_what_they_mean(page) -> None:
    # colour is never alone: every badge carries a word
    texts = page.locator(".view:not([hidden]) .badge").all_inner_texts()
    assert texts and all(any(c.isalpha() for c in t) for t in texts), texts


def test_every_view_renders_the_stack_with_no_request_leaving_127_0_0_1(browser, stack):
    api = httpx.Client(base_url=stack["trader"].url, timeout=30)
    page, requested = _open(browser, stack, "portfolio")
    try:
        portfolio = api.get("/portfolio").json()
        assert f"{portfolio['equity']:,.2f}" in page.locator("#portfolio-kpis").inner_text()
        page.locator("#equity-chart[data-rendered=true]").wait_for()
        for symbol in api.get("/positions").json():
            assert page.locator("#positions th", has_text=symbol).count() == 1
        orders = api.get("/orders").json()
        assert page.locator("#orders tbody tr").count() == len(orders)
        _badges_say_what_they_mean(page)
        _shoot(page, "portfolio")

        page.get_by_role("link", name="Decisions").click()
        page.locator("#view-decisions[data-loaded=true]").wait_for()
        decisions = api.get("/decisions", params={"limit": 300}).json()
        assert page.locator("#decisions tr[data-decision]").count() == len(decisions)
        _badges_say_what_they_mean(page)
        _shoot(page, "decisions")
        page.select_option("#f-action", "buy")
        buys = page.locator("#decisions tr[data-decision]")
        assert buys.count() == sum(d["action"] == "buy" for d in decisions) > 0
        assert all("Buy" in t for t in buys.locator("td[data-label=Action]").all_inner_texts())
        page.select_option("#f-rule", "technical_buy")
        asked = next(d for d in decisions if d["action"] == "buy")
        page.locator(f"tr[data-decision='{asked['id']}']").get_by_role("button", name="Chart").click()
        facts = page.locator("#decision-facts")
        facts.get_by_text("Forecast over").wait_for(timeout=60_000)  # asked of the forecast service through the proxy
        assert "Anomaly score" in facts.inner_text()
        page.locator("#decision-detail .chart[data-rendered=true]").wait_for()
        _shoot(page, "decision-chart")

        page.get_by_role("link", name="Models").click()
        page.locator("#view-models[data-loaded=true]").wait_for()
        for name in MODEL_SERVICES:
            card = page.locator(f"#svc-{name}")
            card.get_by_text("ready", exact=False).first.wait_for()
            assert "active" in card.inner_text() and "succeeded" in card.inner_text()
        page.locator("#svc-signal").get_by_role("button", name="Details of signal-v1").click()
        image = page.locator("#svc-signal .reports img").first
        image.wait_for()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        assert page.locator("#svc-signal").get_by_text("roc_auc").count() > 0  # next to its baseline
        _shoot(page, "models")

        page.get_by_role("link", name="Health").click()
        page.locator("#view-health[data-loaded=true]").wait_for()
        for name in MODEL_SERVICES:
            assert "ready" in page.locator(f"#health-{name}").inner_text()
        trader = page.locator("#health-trader").inner_text()
        assert "closed" in trader and "lookups" in trader  # the breakers and the forecast cache's hit rate
        _shoot(page, "health")

        page.get_by_role("link", name="Backtests").click()
        page.locator("#view-backtests[data-loaded=true]").wait_for()
        _shoot(page, "backtests")
    finally:
        page.close()
    origin = urlparse(stack["trader"].url)
    elsewhere = [u for u in requested if urlparse(u).scheme != "data" and urlparse(u).netloc != origin.netloc]
    assert not elsewhere, f"requests left the trader: {elsewhere}"
    assert any("/vendor/echarts.min.js" in u for u in requested)
    assert all(urlparse(u).hostname == "127.0.0.1" for u in requested if urlparse(u).scheme != "data")


def test_every_view_fits_a_phone(browser, stack):
    for view in VIEWS:
        page, _ = _open(browser, stack, view, PHONE)
        try:
            page.wait_for_timeout(300)  # the charts draw on the next frame
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{view} is {width}px wide on a {PHONE['width']}px screen"
            _shoot(page, view)
        finally:
            page.close()


def test_the_controls_are_reached_with_the_keyboard(browser, stack):
    page, _ = _open(browser, stack, "portfolio")
    try:
        reached = []
        for _ in range(12):
            page.keyboard.press("Tab")
            reached.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
        assert "api-key" in reached and "Models" in reached, reached
        page.get_by_role("link", name="Models").focus()
        page.keyboard.press("Enter")
        page.locator("#view-models[data-loaded=true]").wait_for()
        assert page.locator("#view-portfolio").is_hidden()
    finally:
        page.close()


def test_a_backtest_started_from_the_form_shows_its_curves_and_two_runs_compare(browser, stack):
    page, _ = _open(browser, stack, "backtests")
    try:
        _use_key(page, KEY)  # a backtest writes reports: the trader asks for the key
        ids = []
        for modes in (["technical", "all"], ["technical", "signal"]):
            page.fill("#b-symbols", "SPY, QQQ")
            page.fill("#b-start", "2024-06-01")
            page.fill("#b-end", "2024-12-31")
            for box in page.locator("#b-modes input").all():
                box.set_checked(box.get_attribute("value") in modes)
            page.get_by_role("button", name="Run backtest").click()
            page.locator("#backtest-status.ok").wait_for(timeout=120_000)
            report = page.locator("#backtest-report")
            ids.append(report.get_attribute("data-run"))
            curves = report.locator("[data-curves]")
            if curves.get_attribute("data-curves") == "png":  # the trader's plot of the run
                page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=curves.element_handle())
            else:
                report.locator(".chart[data-rendered=true]").wait_for()
            metrics = report.locator("table").first.inner_text()
            assert "buy & hold" in metrics and all(m in metrics for m in modes)
        _shoot(page, "backtest-run")
        page.select_option("#c-a", ids[0])
        page.select_option("#c-b", ids[1])
        page.get_by_role("button", name="Compare").click()
        compared = page.locator("#compare-result table").first
        compared.wait_for()
        assert "total return" in compared.inner_text() and ids[0] in page.locator("#compare-result").inner_text()
        page.locator("#compare-result").scroll_into_view_if_needed()
        _shoot(page, "backtest-compare")
    finally:
        page.close()


def _use_key(page, key: str) -> None:
    page.fill("#api-key", key)
    page.get_by_role("button", name="Use key").click()


def test_a_wrong_key_is_refused_with_a_visible_message(browser, stack):
    signal = httpx.Client(base_url=stack["signal"].url, timeout=30)
    jobs_before = len(signal.get("/jobs").json())
    page, _ = _open(browser, stack, "models")
    try:
        _use_key(page, "not-the-key")
        page.locator("#train-card > summary").click()
        page.select_option("#t-service", "signal")
        page.get_by_role("button", name="Start training").click()
        result = page.locator("#train-result.error")
        result.wait_for()
        assert "Unauthorized" in result.inner_text()
        notice = page.get_by_role("alert")
        assert notice.is_visible() and "API key" in notice.inner_text()
        _shoot(page, "wrong-key")
    finally:
        page.close()
    assert len(signal.get("/jobs").json()) == jobs_before  # refused: nothing started


def test_activating_a_version_from_the_models_view_changes_what_predict_reports(browser, stack):
    signal = httpx.Client(base_url=stack["signal"].url, timeout=60)
    bars = httpx.get(f"{stack['trader'].url}/bars/SPY", params={"n": 200}).json()["bars"]

    def predicted_version() -> str:
        resp = signal.post("/predict", json={"instances": [{"symbol": "SPY", "bars": bars}]})
        assert resp.status_code == 200, resp.text
        return resp.json()["model_version"]

    page, _ = _open(browser, stack, "models")
    try:
        _use_key(page, KEY)
        page.locator("#train-card > summary").click()
        page.select_option("#t-service", "signal")
        page.select_option("#t-activate", "true")
        page.get_by_role("button", name="Start training").click()
        page.locator("#train-result.ok").wait_for()
        card = page.locator("#svc-signal")
        # followed by polling until the job ends, then the new version is listed
        card.locator("tr", has_text="signal-v2").locator(".state-ok", has_text="active").wait_for(timeout=120_000)
        assert predicted_version() == "signal-v2"

        _use_key(page, "not-the-key")
        card.locator("[data-activate='signal-v1']").click()
        card.get_by_text("Activation refused").wait_for()
        assert "Unauthorized" in page.get_by_role("alert").inner_text()
        assert predicted_version() == "signal-v2"

        _use_key(page, KEY)
        rollback = card.locator("[data-activate='signal-v1']")
        assert rollback.inner_text() == "Roll back to signal-v1"
        rollback.click()
        page.get_by_role("alert").get_by_text("signal-v1 is now active").wait_for()
        assert predicted_version() == "signal-v1"
        card.locator("tr", has_text="signal-v1").locator(".state-ok", has_text="active").wait_for()
        _shoot(page, "models-rolled-back")
    finally:
        page.close()


def test_equity_replays_the_ledger_and_the_proxy_forwards_only_its_allow_list(stack):
    trader = httpx.Client(base_url=stack["trader"].url, timeout=30)
    points = trader.get("/equity").json()["points"]
    cash = trader.get("/portfolio").json()["cash"]
    assert len(points) >= 4 and points[-2]["cash"] == pytest.approx(cash)  # the last cycle's replay is the ledger's cash
    assert trader.get("/dashboard/api/signal/models").json()["models"]
    assert trader.get("/dashboard/api/signal/openapi.json").status_code == 404
    assert trader.get("/dashboard/api/signal/reports/..%2F..%2Fsecret.json").status_code == 404
    assert trader.get("/dashboard/api/nosuch/models").json()["field"] == "service"
    assert trader.post("/dashboard/api/signal/models").status_code == 404
    assert trader.delete("/dashboard/api/signal/train/abc").status_code == 405
    refused = trader.post("/dashboard/api/signal/models/signal-v1/activate", headers={"X-API-Key": "wrong"})
    assert refused.status_code == 401 and refused.json()["error"] == "Unauthorized"


def test_reports_are_read_in_the_shapes_they_may_come_in(browser, stack):
    """What the page reads off a backtest report and a version's metrics, whichever of the
    shapes the services use (or may: the curves are a PNG today)."""
    page, _ = _open(browser, stack, "health")
    try:
        read = page.evaluate("""async () => {
            const { curvesOf } = await import("./js/backtests.js");
            const { comparisons } = await import("./js/metrics.js");
            const t = ["2024-01-02", "2024-01-03"];
            return {
                none: curvesOf({ results: {} }),
                columns: curvesOf({ curves: { timestamp: t, technical: [1, 2], buy_and_hold: [1, 3] } }),
                records: curvesOf({ curves: { technical: { timestamp: t, equity: [1, 2] } } }),
                pairs: curvesOf({ curves: { technical: [[t[0], 1], [t[1], 2]] } }),
                metrics: comparisons({
                    rmse: 0.9, baseline: "naive last value", naive: { rmse: 1.0 },
                    direction: { accuracy: 0.6, baseline_accuracy: 0.5, brier: 0.26, brier_coin_flip: 0.25 },
                    detection: { baselines: { isolation_forest: "sklearn" }, autoencoder: { f1: 0.4 }, isolation_forest: { f1: 0.3 } },
                }).map((c) => [c.path, c.metric, c.against, c.better]),
            };
        }""")
    finally:
        page.close()
    expected = [[t, v] for t, v in zip(["2024-01-02", "2024-01-03"], [1, 2])]
    assert read["none"] is None
    assert read["columns"]["technical"] == expected and read["columns"]["buy_and_hold"][1] == ["2024-01-03", 3]
    assert read["records"]["technical"] == expected and read["pairs"]["technical"] == expected
    assert sorted(read["metrics"]) == sorted([
        ["", "rmse", "naive last value", "better"],
        ["direction", "accuracy", "baseline", "better"],
        ["direction", "brier", "coin flip", "worse"],
        ["detection › autoencoder", "f1", "isolation forest", "better"],
    ])

"""The trader with every model service unreachable: it keeps answering, on the technical
signal or not at all (the unavailable-service policy), and its scheduler runs cycles."""
from __future__ import annotations

import json
import time

import httpx
import pytest

from kryptobot.data import get_provider
from tests.live import free_port

TRADER = "services.trader.app:create_app"
DAYS = ["2023-03-01", "2023-03-08", "2023-03-15", "2023-03-22"]


def _env(tmp_path, redis_url: str, **settings) -> dict:
    dead = {f"KRYPTOBOT_{name.upper()}_URL": f"http://127.0.0.1:{free_port()}" for name in ("signal", "ensemble", "anomaly", "forecast")}
    return {
        **dead,
        "KRYPTOBOT_REDIS_URL": redis_url,
        "KRYPTOBOT_LEDGER_PATH": str(tmp_path / "ledger.sqlite"),
        "KRYPTOBOT_REPORTS_DIR": str(tmp_path / "reports"),
        "KRYPTOBOT_CACHE_PREFIX": "test-trader-nomodels:forecast",
        # these tests walk one paper ledger back and forth through history on purpose
        "KRYPTOBOT_TRADER_SETTINGS__REPLAY_PAST": "true",
        **{f"KRYPTOBOT_TRADER_SETTINGS__{k.upper()}": json.dumps(v) for k, v in settings.items()},
    }


def test_scheduled_cycles_fall_back_to_the_technical_signal(start_server, redis_url, tmp_path):
    trader = start_server(TRADER, env=_env(tmp_path, redis_url, schedule_minutes=0.01, unavailable_policy="technical"))
    with httpx.Client(base_url=trader.url, timeout=60) as client:
        deadline = time.monotonic() + 30
        decisions = []
        while time.monotonic() < deadline and len(decisions) < 24:  # three scheduled cycles of 8 symbols
            time.sleep(0.5)
            decisions = client.get("/decisions", params={"limit": 100}).json()
        assert len({d["cycle_id"] for d in decisions}) >= 3, "the scheduler ran no cycles"
        assert all(d["degraded"] and "forecast" in d["unavailable"] for d in decisions)
        ready = client.get("/health/ready").json()
        # one failed GET /model per cycle: after three the breaker stops calling the dead service
        assert ready["services"]["forecast"] in ("open", "half-open")
        # a day with technical entries: they are taken, marked as a fallback
        body = client.post("/cycle", json={"as_of": "2023-03-15", "layers": ["signal", "ensemble", "anomaly", "forecast"]}).json()
        assert body["degraded"]
        fallbacks = [d for d in body["decisions"] if any(r.startswith("service_unavailable_technical_fallback") for r in d["rules"])]
        assert all(d["action"] == "buy" for d in fallbacks)


def test_skip_policy_takes_no_entry_without_the_models(start_server, redis_url, tmp_path):
    trader = start_server(TRADER, env=_env(tmp_path, redis_url, unavailable_policy="skip"))
    with httpx.Client(base_url=trader.url, timeout=60) as client:
        buys = []
        for day in DAYS:
            body = client.post("/cycle", json={"as_of": day}).json()
            assert body["degraded"]
            buys += [d for d in body["decisions"] if d["technical"] == "buy"]
        assert buys, "no technical entry in the sampled days"
        assert all(d["action"] == "skip" and d["rules"][-1].startswith("service_unavailable_skip") for d in buys)
        assert client.get("/orders").json() == []
        assert client.post("/cycle", json={"as_of": "1999-01-04"}).json()["field"] == "as_of"


def test_a_bar_is_traded_once_however_often_it_is_decided(start_server, redis_url, tmp_path):
    """A cycle run again on the same bar (the scheduler, a retried request) neither re-enters
    a position the first run exited on that bar nor repeats an order: one decision per
    bar, as the backtest makes."""
    from kryptobot.data import get_provider

    symbols = ["SPY", "QQQ", "AAPL", "MSFT"]
    bars = get_provider("synthetic").get_bars("SPY")
    days = [ts.date().isoformat() for ts in bars["timestamp"] if "2023-01-01" <= ts.date().isoformat() <= "2023-06-30"]
    trader = start_server(TRADER, env=_env(tmp_path, redis_url))
    repeated = []
    with httpx.Client(base_url=trader.url, timeout=60) as client:
        for day in days:
            first, again = (client.post("/cycle", json={"as_of": day, "symbols": symbols, "layers": []}).json() for _ in range(2))
            assert again["orders"] == [], (day, again["orders"])
            repeated += [d for d in again["decisions"] if "already_traded_this_bar" in d["rules"]]
        orders = client.get("/orders", params={"limit": 1000}).json()
    assert repeated, "no bar was decided twice with a trade on it"
    assert any(d["technical"] == "buy" for d in repeated), "no exit bar that was also a technical buy in the sample"
    for symbol in symbols:
        sides = [o["side"] for o in sorted(orders, key=lambda o: o["id"]) if o["symbol"] == symbol]
        assert all(a != b for a, b in zip(sides, sides[1:])), (symbol, sides)  # buy, sell, buy, ...: never two entries


def test_a_symbol_without_enough_history_is_skipped_not_fatal(start_server, redis_url, tmp_path):
    # the offline sample history has 196 bars of FB: too few for a decision
    trader = start_server(TRADER, env=_env(tmp_path, redis_url, data_source="sample", watchlist=["AAPL", "FB"]))
    with httpx.Client(base_url=trader.url, timeout=60) as client:
        body = client.post("/cycle", json={"layers": []})
        assert body.status_code == 200, body.text
        by_symbol = {d["symbol"]: d for d in body.json()["decisions"]}
        assert by_symbol["FB"]["action"] == "skip" and by_symbol["FB"]["rules"][0].startswith("no_market_data:")
        assert by_symbol["AAPL"]["rules"][0] != by_symbol["FB"]["rules"][0]
        only_fb = client.post("/cycle", json={"symbols": ["FB"], "layers": []})
        assert only_fb.status_code == 422 and only_fb.json()["field"] == "as_of"  # nothing to decide: the request is wrong


def test_a_live_cycle_before_the_ledgers_last_traded_bar_is_refused(start_server, redis_url, tmp_path):
    symbols = ["SPY", "QQQ", "AAPL", "MSFT"]
    bars = get_provider("synthetic").get_bars("SPY")
    days = [ts.date().isoformat() for ts in bars["timestamp"] if "2023-01-01" <= ts.date().isoformat() <= "2023-03-31"]
    trader = start_server(TRADER, env=_env(tmp_path, redis_url, replay_past=False))
    with httpx.Client(base_url=trader.url, timeout=60) as client:
        for day in days[1:]:  # forward in time until something trades (with a day before it to go back to)
            if client.post("/cycle", json={"as_of": day, "symbols": symbols, "layers": []}).json()["orders"]:
                traded = day
                break
        else:
            pytest.fail("no technical trade in the first quarter of 2023")
        portfolio = client.get("/portfolio").json()
        earlier = days[days.index(traded) - 1]
        refused = client.post("/cycle", json={"as_of": earlier, "symbols": symbols, "layers": []})
        assert refused.status_code == 409 and refused.json()["field"] == "as_of"
        assert "backtest" in refused.json()["detail"]
        assert client.get("/portfolio").json() == portfolio  # nothing re-marked backwards
        assert client.post("/cycle", json={"as_of": traded, "symbols": symbols, "layers": []}).status_code == 200  # that bar again: fine

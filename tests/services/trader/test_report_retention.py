"""Backtest reports do not pile up: the trader keeps the reports of its newest
``KRYPTOBOT_KEEP_REPORTS`` runs (over real HTTP, technical-only backtests: no model service)."""
from __future__ import annotations

import httpx

from tests.live import free_port

TRADER = "services.trader.app:create_app"
BACKTEST = {"symbols": ["SPY"], "modes": ["technical"], "start": "2023-01-03", "end": "2023-03-31"}


def test_only_the_newest_runs_reports_are_kept(start_server, redis_url, tmp_path):
    dead = {f"KRYPTOBOT_{n.upper()}_URL": f"http://127.0.0.1:{free_port()}" for n in ("signal", "ensemble", "anomaly", "forecast")}
    reports = tmp_path / "reports"
    trader = start_server(TRADER, env={**dead, "KRYPTOBOT_REDIS_URL": redis_url, "KRYPTOBOT_LEDGER_PATH": str(tmp_path / "ledger.sqlite"),
                                       "KRYPTOBOT_REPORTS_DIR": str(reports), "KRYPTOBOT_KEEP_REPORTS": "2"})
    with httpx.Client(base_url=trader.url, timeout=120) as client:
        ids = []
        for _ in range(3):
            resp = client.post("/backtest", json=BACKTEST)
            assert resp.status_code == 200, resp.text
            ids.append(resp.json()["id"])
        first, *kept = ids
        for name in (f"backtest_{first}.json", f"equity_curve_{first}.png"):
            assert client.get(f"/reports/{name}").status_code == 404, name
        for run_id in kept:
            for name in (f"backtest_{run_id}.json", f"equity_curve_{run_id}.png"):
                assert client.get(f"/reports/{name}").status_code == 200, name
        latest = client.get("/reports/backtest_report.json").json()
        assert latest["id"] == ids[-1] and client.get("/reports/equity_curve.png").status_code == 200
    assert sorted(p.name for p in reports.iterdir()) == sorted(
        ["backtest_report.json", "equity_curve.png"] + [f"{k}_{i}.{e}" for i in kept for k, e in (("backtest", "json"), ("equity_curve", "png"))])

"""Walk-forward backtests: every fold's models trained on the bars before it only, through
the services' own training code, scored out of sample, stitched into one curve per mode.

What it must show: on a predictable synthetic market the ML modes pick better trades than
the technical strategy, out of sample; on a pure random walk no mode shows skill. Four
symbols: with two, a fold's classifiers see too few signals (about 150) to learn the
market's edge reliably.
"""
from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from kryptobot.data import DataSpec
from kryptobot.errors import InvalidInput
from kryptobot.settings import Settings
from kryptobot.trading.backtest import BacktestRequest
from kryptobot.trading.settings import TraderConfig
from kryptobot.trading.walkforward import WalkForwardSpec, plan_folds
from services.cli import app as cli
from services.trader.backtest import walk_forward
from tests.live import free_port

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config"
BASE = TraderConfig.load(CONFIG_DIR)
SETTINGS = Settings(config_dir=CONFIG_DIR)
SYMBOLS = ["SYNA", "SYNB", "SYNC", "SYND"]
SMALL_MODELS = {
    "signal": {"model": {"n_estimators": 60, "max_depth": 5, "min_samples_leaf": 20}, "evaluation": {"n_splits": 2}},
    "ensemble": {"random_forest": {"n_estimators": 30}, "gradient_boosting": {"n_estimators": 30},
                 "ada_boost": {"n_estimators": 30}, "evaluation": {"n_splits": 2}},
}
TINY_MODELS = {
    "signal": {"model": {"n_estimators": 10, "max_depth": 3}, "evaluation": {"n_splits": 2}},
    "ensemble": {"random_forest": {"n_estimators": 5}, "gradient_boosting": {"n_estimators": 5},
                 "ada_boost": {"n_estimators": 5}, "evaluation": {"n_splits": 2}},
    "anomaly": {"epochs": 1, "units": 8, "window": 20},
    "forecast": {"model_types": ["gru"], "sequence_length": 20, "forecast_horizon": 5, "epochs": 1, "units": 8},
}


def config(threshold: float = 0.45, costs: bool = True) -> TraderConfig:
    """The seed's settings with the classifiers' thresholds where their probabilities lie."""
    trader = BASE.trader if costs else BASE.trader.model_copy(update={"commission": 0.0, "slippage": 0.0})
    return TraderConfig(trader, BASE.ml.model_copy(update={"min_confidence_threshold": threshold}),
                        BASE.ensemble.model_copy(update={"confidence_threshold": threshold}), BASE.forecasting)


def run(predictability: float, costs: bool = True) -> dict:
    request = BacktestRequest(symbols=SYMBOLS, start="2012-01-01", end="2024-12-31", modes=["technical", "signal", "ensemble"],
                              walk_forward={"train_bars": 1500, "retrain_every": 378, "n_jobs": 2, "training": SMALL_MODELS})
    return walk_forward(request, config(costs=costs), SETTINGS, DataSpec(symbols=SYMBOLS, predictability=predictability))


@pytest.fixture(scope="module")
def predictable():
    return run(1.0)


@pytest.fixture(scope="module")
def random_walk():
    return run(0.0, costs=False)  # costs are no skill: without them a random walk's trades average zero


def test_folds_train_only_on_bars_before_them():
    days = pd.bdate_range("2015-01-01", "2020-12-31")
    spec = WalkForwardSpec(train_bars=500, retrain_every=100)
    folds, note = plan_folds(days, "2016-01-01", "2019-12-31", spec, embargo=10, warmup=320)
    assert note and "2016-01-01" in note  # 500 + 10 bars are needed before the first fold
    assert folds[0].first == days[510] and folds[-1].last == pd.Timestamp("2019-12-31")
    assert sum(f.bars for f in folds) == len(days[(days >= days[510]) & (days <= "2019-12-31")])
    for fold, after in zip(folds, folds[1:]):
        assert after.first == days[days.get_loc(fold.last) + 1]  # contiguous, no day traded twice
    for fold in folds:
        first = days.get_loc(fold.first)
        assert pd.Timestamp(fold.train_end) == days[first - 11]  # the embargo: 10 bars between data and fold
        assert pd.Timestamp(fold.train_start) == days[first - 510]  # the window: 500 bars
    hourly = pd.date_range("2020-01-01", periods=2000, freq="h")
    (first_fold, *_), _ = plan_folds(hourly, None, None, WalkForwardSpec(train_bars=500, retrain_every=500), embargo=0, warmup=320)
    assert first_fold.train_end < first_fold.first.date()  # intraday: the data, in days, ends the day before
    with pytest.raises(InvalidInput) as err:
        plan_folds(days, None, None, WalkForwardSpec(train_bars=20_000), embargo=10, warmup=320)
    assert err.value.field == "walk_forward.train_bars"


def test_ml_modes_pick_better_trades_than_the_technical_strategy_on_a_predictable_market(predictable):
    results = predictable["results"]
    technical = results["technical"]
    assert technical["trades"] > 200
    for mode in ("signal", "ensemble"):
        assert results[mode]["trades"] > 30, mode
        assert results[mode]["mean_trade_return"] > technical["mean_trade_return"], (mode, results[mode], technical)
        assert results[mode]["sharpe"] > technical["sharpe"], mode
        assert results[mode]["vs_technical"]["difference"] > 0
    assert results["signal"]["degraded_decisions"] == 0  # every fold trained its layers and answered every buy


def test_no_mode_shows_skill_on_a_random_walk(random_walk):
    for mode, stats in random_walk["results"].items():
        if mode == "buy_and_hold":
            continue
        low, high = stats["mean_trade_return_ci95"]
        assert low < 0 < high, (mode, stats["mean_trade_return_ci95"])
        if mode != "technical":
            assert stats["vs_technical"]["verdict"] == "no evidence"
    assert any("no evidence" in line for line in random_walk["summary"])


def test_each_fold_reports_its_versions_out_of_sample_metrics_and_trades(predictable):
    folds = predictable["folds"]
    assert len(folds) >= 4 and predictable["walk_forward"]["embargo_bars"] == BASE.trader.strategy.max_holding_bars
    hashes = set()
    for fold in folds:
        first = pd.Timestamp(fold["test"]["start"])
        assert pd.Timestamp(fold["train"]["end"]) < first
        for name in ("signal", "ensemble"):
            layer = fold["layers"][name]
            version = layer["versions"][name]
            hashes.add(version["artifacts_sha256"])
            assert pd.Timestamp(version["data_range"]["end"]) < first  # the labels too end before the fold
            assert version["training_metrics"]["roc_auc"] is not None
            oos = layer["out_of_sample"]
            assert oos["n"] > 10 and {"roc_auc", "brier", "baseline", "mean_return_taken", "mean_return_all"} <= set(oos)
        for mode, trades in fold["trades"].items():
            assert len(trades) == fold["results"][mode]["trades"]
            assert all(fold["test"]["start"] <= t["decided"] <= fold["test"]["end"] for t in trades)
            assert all(t["entry"] > t["decided"] for t in trades)  # filled at a later open
    assert len(hashes) == 2 * len(folds)  # a new model in every fold
    for mode, stats in predictable["results"].items():
        if mode != "buy_and_hold":
            assert stats["trades"] == sum(f["results"][mode]["trades"] for f in folds)
    curve = predictable["curves"]["technical"]
    assert curve.index[0] == pd.Timestamp(folds[0]["test"]["start"]) and curve.index[-1] == pd.Timestamp(folds[-1]["test"]["end"])


def test_a_wrong_training_field_is_refused_before_any_fold_trains():
    request = BacktestRequest(symbols=["SYNA"], modes=["technical", "signal"],
                              walk_forward={"training": {"signal": {"model": {"n_estimators": 0}}}})
    with pytest.raises(InvalidInput) as err:
        walk_forward(request, config(), SETTINGS)
    assert err.value.field == "walk_forward.training.signal.model.n_estimators"
    with pytest.raises(ValueError, match="set by each fold"):
        WalkForwardSpec(training={"signal": {"data": {"symbols": ["SPY"]}}})


def test_auto_thresholds_come_from_each_folds_own_versions():
    auto = TraderConfig(BASE.trader, BASE.ml.model_copy(update={"min_confidence_threshold": "auto"}), BASE.ensemble, BASE.forecasting)
    request = BacktestRequest(symbols=["SYNA", "SYNB"], start="2019-01-01", end="2020-12-31", modes=["technical", "signal"],
                              walk_forward={"train_bars": 700, "retrain_every": 260, "n_jobs": 2,
                                            "training": {"signal": TINY_MODELS["signal"]}})
    report = walk_forward(request, auto, SETTINGS, DataSpec(symbols=["SYNA", "SYNB"]))
    for fold in report["folds"]:
        signal = fold["thresholds"]["signal"]
        assert signal["setting"] == "auto" and 0 < signal["threshold"] < 1
        assert signal["version"] == fold["layers"]["signal"]["versions"]["signal"]["version"]
        assert fold["thresholds"]["ensemble"]["reason"] == "fixed in the settings"
    assert report["results"]["signal"]["degraded_decisions"] == 0


@pytest.fixture(scope="module")
def trader(start_server, redis_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("walkforward")
    dead = {f"KRYPTOBOT_{n.upper()}_URL": f"http://127.0.0.1:{free_port()}" for n in ("signal", "ensemble", "anomaly", "forecast")}
    return start_server("services.trader.app:create_app", env={
        **dead, "KRYPTOBOT_REDIS_URL": redis_url, "KRYPTOBOT_LEDGER_PATH": str(tmp / "ledger.sqlite"),
        "KRYPTOBOT_REPORTS_DIR": str(tmp / "reports"), "KRYPTOBOT_CACHE_PREFIX": "test-walkforward:forecast",
        "KRYPTOBOT_ML_SETTINGS__MIN_CONFIDENCE_THRESHOLD": "0.45",
    })


HTTP_BODY = {"symbols": ["SYNA", "SYNB"], "start": "2019-01-01", "end": "2020-12-31", "modes": ["technical", "signal"],
             "walk_forward": {"train_bars": 700, "retrain_every": 260, "n_jobs": 2, "training": {"signal": TINY_MODELS["signal"]}}}


def test_walk_forward_over_http_with_its_report_and_plot(trader, tmp_path):
    """The model services are down: a walk-forward needs none of them, it trains its own."""
    with httpx.Client(base_url=trader.url, timeout=600) as client:
        resp = client.post("/backtest", json=HTTP_BODY)
        assert resp.status_code == 200, resp.text
        report = resp.json()
        assert report["kind"] == "walk_forward" and len(report["folds"]) == 3 and report["layers_available"] == ["signal"]
        assert report["results"]["signal"]["degraded_decisions"] == 0
        assert report["timing"]["fold_seconds_mean"] > 0
        assert client.get("/reports/backtest_report.json").json()["folds"][0]["layers"]["signal"]["versions"]
        png = client.get(f"/reports/equity_curve_{report['id']}.png")
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        (tmp_path / "walk_forward_equity.png").write_bytes(png.content)
        for body, field in (
            ({**HTTP_BODY, "walk_forward": {"train_bars": 20_000}}, "walk_forward.train_bars"),
            ({**HTTP_BODY, "walk_forward": {"retrain_every": 1}}, "walk_forward.retrain_every"),
            ({**HTTP_BODY, "walk_forward": {"training": {"signal": {"model": {"max_depth": "deep"}}}}},
             "walk_forward.training.signal.model.max_depth"),
            ({**HTTP_BODY, "walk_forward": {"training": {"astrology": {}}}}, "walk_forward.training"),
        ):
            bad = client.post("/backtest", json=body)
            assert bad.status_code == 422 and bad.json()["field"] == field, bad.text


def test_the_cli_runs_a_walk_forward_and_prints_the_folds(trader, monkeypatch):
    monkeypatch.setenv("KRYPTOBOT_TRADER_URL", trader.url)
    wf = HTTP_BODY["walk_forward"]
    result = CliRunner().invoke(cli, [
        "backtest", "--walk-forward", "--symbols", "SYNA,SYNB", "--start", "2019-01-01", "--end", "2020-12-31",
        "--modes", "technical,signal", "--train-bars", str(wf["train_bars"]), "--retrain-every", str(wf["retrain_every"]),
        "--jobs", "2", "--training", json.dumps(wf["training"])])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "walk-forward, 3 folds" in lines[0]
    assert any(line.startswith("signal ") for line in lines) and any(line.startswith("buy_and_hold") for line in lines)
    assert sum(line.startswith("fold ") and "signal " in line for line in lines) == 3
    assert any(line.startswith("signal:") for line in lines)  # the plain verdict


@pytest.mark.tf
def test_every_layer_retrains_in_every_fold():
    """All four layers, tiny networks, two folds: each fold has each layer's version and
    its out-of-sample numbers, and the anomaly and forecast layers answer every day."""
    symbols = ["SYNA", "SYNB"]
    start = date(2021, 1, 1)
    request = BacktestRequest(symbols=symbols, start=start, end=start + timedelta(days=240), modes=["technical", "all"],
                              walk_forward={"train_bars": 700, "retrain_every": 90, "n_jobs": 2, "training": TINY_MODELS})
    report = walk_forward(request, config(), SETTINGS, DataSpec(symbols=symbols))
    assert len(report["folds"]) == 2 and report["layers_available"] == ["signal", "ensemble", "anomaly", "forecast"]
    for fold in report["folds"]:
        layers = fold["layers"]
        assert set(layers["forecast"]["versions"]) == {"gru"} and layers["forecast"]["out_of_sample"]["skill"] is not None
        assert layers["anomaly"]["out_of_sample"]["n"] == 2 * fold["test"]["bars"]
    assert report["results"]["all"]["degraded_decisions"] == 0
    assert report["model_outputs"]["forecast"]["answers"] == report["bars"]

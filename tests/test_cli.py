"""The CLI against real running services (typer's runner, real HTTP)."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from services.cli import app
from tests.live import free_port

runner = CliRunner()
KEY = "cli-test-key"  # the ensemble service asks for it on its mutating endpoints


@pytest.fixture(scope="module")
def urls(start_server, monkeypatch_module):
    signal = start_server("services.signal.app:create_app")
    ensemble = start_server("services.ensemble.app:create_app", env={"KRYPTOBOT_API_KEY": KEY})
    monkeypatch_module.setenv("KRYPTOBOT_SIGNAL_URL", signal.url)
    monkeypatch_module.setenv("KRYPTOBOT_ENSEMBLE_URL", ensemble.url)
    for name in ("anomaly", "forecast", "trader"):  # not started (the trader is, by its own fixture)
        monkeypatch_module.setenv(f"KRYPTOBOT_{name.upper()}_URL", f"http://127.0.0.1:{free_port()}")
    return signal, ensemble


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


SMALL = ["--symbols", "SYNA,SYNB", "--start", "2017-01-01", "--end", "2022-12-31"]


def test_train_signal_then_feature_selection_then_status(urls):
    result = runner.invoke(app, ["train-signal", *SMALL, "--n-estimators", "30"])
    assert result.exit_code == 0, result.output
    # the promotion gate's verdict: a first version on a predictable market beats the base rate
    assert "signal-v1: activated" in result.output, result.output
    result = runner.invoke(app, ["feature-selection", *SMALL, "--no-rfecv", "--activate", "true"])
    assert result.exit_code == 0, result.output
    assert "signal-v2: activated" in result.output, result.output
    result = runner.invoke(app, ["status"])
    assert "signal-v2" in result.output and "ready" in result.output


def test_train_hard_ensemble_with_weights(urls):
    result = runner.invoke(app, ["--api-key", KEY, "train-ensemble", "--voting", "hard", "--weights", "1,2,1", *SMALL])
    assert result.exit_code == 0, result.output
    assert "ensemble-v1" in result.output
    result = runner.invoke(app, ["status"])
    assert "ensemble-v1" in result.output
    ensemble = next(line for line in result.output.splitlines() if line.startswith("ensemble"))
    assert "ready" in ensemble.split() and "ensemble=ensemble-v1" in ensemble
    # nothing was started for these: they are shown down, not a crash
    assert any(line.split()[:2] == ["anomaly", "down"] for line in result.output.splitlines())


@pytest.fixture(scope="module")
def trader(urls, start_server, redis_url, tmp_path_factory, monkeypatch_module):
    """A real trader asking the two trained services; anomaly and forecast are down."""
    signal, ensemble = urls
    state = tmp_path_factory.mktemp("cli-trader")
    server = start_server("services.trader.app:create_app", env={
        "KRYPTOBOT_SIGNAL_URL": signal.url,
        "KRYPTOBOT_ENSEMBLE_URL": ensemble.url,
        "KRYPTOBOT_ANOMALY_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "KRYPTOBOT_FORECAST_URL": f"http://127.0.0.1:{free_port()}",
        "KRYPTOBOT_REDIS_URL": redis_url,
        "KRYPTOBOT_LEDGER_PATH": str(state / "ledger.sqlite"),
        "KRYPTOBOT_REPORTS_DIR": str(state / "reports"),
        "KRYPTOBOT_CACHE_PREFIX": "test-cli:forecast",
    })
    monkeypatch_module.setenv("KRYPTOBOT_TRADER_URL", server.url)
    return server


def test_run_bot_runs_a_trader_cycle_with_the_chosen_layers(trader):
    result = runner.invoke(app, ["run-bot", "--no-ml", "--ensemble", "--no-forecast", "--symbols", "SPY,QQQ"])
    assert result.exit_code == 0, result.output
    header, *lines = [line.split() for line in result.output.splitlines() if line.strip()]
    assert header[0] == "cycle" and "layers ensemble," in " ".join(header)
    assert [words[0] for words in lines] == ["SPY", "QQQ"]
    assert all(words[1] in ("buy", "sell", "hold", "skip") for words in lines)
    assert "degraded" not in result.output, "only the ensemble was asked, and it answers"
    # --x alone picks x: the forecast layer is on, and its missing service shows
    result = runner.invoke(app, ["run-bot", "--forecast", "--symbols", "SPY"])
    assert result.exit_code == 0, result.output
    assert "layers forecast," in result.output and "[degraded: forecast unavailable]" in result.output
    # --no-x drops x from the rest; --ml means the signal model and the anomaly detector
    result = runner.invoke(app, ["run-bot", "--no-ensemble", "--no-forecast", "--symbols", "SPY"])
    assert result.exit_code == 0, result.output
    assert "layers signal, anomaly," in result.output


def test_run_bot_trains_first_when_asked_like_the_start_scripts(trader):
    """start_ensemble_bot.sh --train-ensemble --voting soft --weights 1,1,2, then the bot."""
    before = runner.invoke(app, ["status"]).output
    result = runner.invoke(app, ["--api-key", KEY, "run-bot", "--train-ensemble", "--voting", "soft", "--weights", "1,1,2",
                                 "--no-ml", "--ensemble", "--no-forecast", "--symbols", "SYNA"])
    assert result.exit_code == 0, result.output
    trained = next(line for line in result.output.splitlines() if line.startswith("ensemble: new version"))
    assert trained.split()[-1] not in before, "a new ensemble version"
    assert "layers ensemble," in result.output and any(line.startswith("SYNA ") for line in result.output.splitlines())


def test_service_errors_are_printed_with_their_detail(urls):
    # the key also comes from the environment, as in a deployment
    result = runner.invoke(app, ["train-ensemble", "--weights", "1,2", *SMALL], env={"KRYPTOBOT_API_KEY": KEY})
    assert result.exit_code == 1
    assert "422" in result.output and "weights" in result.output
    result = runner.invoke(app, ["train-ensemble", *SMALL], env={"KRYPTOBOT_API_KEY": None})
    assert result.exit_code == 1
    assert "401" in result.output and "API key" in result.output
    result = runner.invoke(app, ["train-ensemble", "--weights", "a,b,c"])
    assert result.exit_code == 1 and "--weights" in result.output
    # checked before any --train-* job starts, not after the first ones ran
    result = runner.invoke(app, ["run-bot", "--train-ml", "--train-ensemble", "--weights", "1;2;1"])
    assert result.exit_code == 1 and "--weights" in result.output and "new version" not in result.output

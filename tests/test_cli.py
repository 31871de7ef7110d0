"""The CLI against real running services (typer's runner, real HTTP)."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from services.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def urls(start_server, monkeypatch_module):
    signal = start_server("services.signal.app:create_app")
    ensemble = start_server("services.ensemble.app:create_app")
    monkeypatch_module.setenv("KRYPTOBOT_SIGNAL_URL", signal.url)
    monkeypatch_module.setenv("KRYPTOBOT_ENSEMBLE_URL", ensemble.url)
    return signal, ensemble


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


SMALL = ["--symbols", "SYNA,SYNB", "--start", "2017-01-01", "--end", "2022-12-31"]


def test_train_signal_then_feature_selection_then_status(urls):
    result = runner.invoke(app, ["train-signal", *SMALL, "--n-estimators", "30"])
    assert result.exit_code == 0, result.output
    assert "signal-v1" in result.output
    result = runner.invoke(app, ["feature-selection", *SMALL, "--no-rfecv"])
    assert result.exit_code == 0, result.output
    assert "signal-v2" in result.output
    result = runner.invoke(app, ["status"])
    assert "signal-v2" in result.output and "ready" in result.output


def test_train_hard_ensemble_with_weights(urls):
    result = runner.invoke(app, ["train-ensemble", "--voting", "hard", "--weights", "1,2,1", *SMALL])
    assert result.exit_code == 0, result.output
    assert "ensemble-v1" in result.output


def test_service_errors_are_printed_with_their_detail(urls):
    result = runner.invoke(app, ["train-ensemble", "--weights", "1,2", *SMALL])
    assert result.exit_code == 1
    assert "422" in result.output and "weights" in result.output
    result = runner.invoke(app, ["train-ensemble", "--weights", "a,b,c"])
    assert result.exit_code == 1 and "--weights" in result.output

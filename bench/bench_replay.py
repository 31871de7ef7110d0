"""Backtest replay in process: bar-decisions per second over precomputed model outputs.

8 symbols x 10 years of daily synthetic bars; every layer's reading on every day it matters
(the classifiers on the technical buys, the anomaly flag and the forecast every day), drawn
at random with the acceptance rates of real answers; then each mode replays the days with
the live rules (``kryptobot.trading.backtest.replay``). Target: at least 50,000
bar-decisions per second (the replay through batched HTTP calls did about 7,000).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from common import ROOT

from kryptobot.data import get_provider
from kryptobot.features import FeatureParams
from kryptobot.trading.backtest import MODES, Tape, _simulate, replay, symbol_history
from kryptobot.trading.decisions import ModelOutputs
from kryptobot.trading.settings import TraderConfig

SYMBOLS = ["SPY", "QQQ", "AAPL", "MSFT", "AMZN", "GOOGL", "META", "TSLA"]
TARGET = 50_000


def histories(years: int, seed: int = 0) -> dict:
    config = TraderConfig.load(ROOT / "config")
    provider = get_provider("synthetic")
    start = pd.Timestamp("2024-12-31") - pd.DateOffset(years=years)
    out = {s: symbol_history(provider, s, start, None, FeatureParams(), config.trader.strategy) for s in SYMBOLS}
    rng = np.random.default_rng(seed)
    for h in out.values():
        for day, side in zip(h.bars["timestamp"], h.signals["side"]):
            readings = {
                "anomaly": ModelOutputs(anomaly=bool(rng.random() < 0.02), anomaly_score=float(rng.gamma(2, 0.4))),
                "forecast": ModelOutputs(forecast_trend=float(rng.normal(0, 0.02)), forecast_confidence=float(rng.beta(5, 4))),
            }
            if side == "buy":
                readings["signal"] = ModelOutputs(signal_probability=float(rng.beta(6, 5)))
                readings["ensemble"] = ModelOutputs(ensemble_score=float(rng.beta(6, 5)))
            h.outputs[day] = readings
    return out


def best_of(fn, repeat: int) -> float:
    """The fastest of ``repeat`` runs, in seconds: the machine is shared, the minimum is the code's cost."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    config = TraderConfig.load(ROOT / "config")
    started = time.perf_counter()
    hs = histories(args.years)
    traded = {s: h.bars for s, h in hs.items()}
    bars = sum(len(b) for b in traded.values())
    print(f"{len(hs)} symbols x {args.years} years: {bars} symbol-bars with model outputs, built in {time.perf_counter() - started:.1f} s")
    tape = Tape.of(hs, traded)
    print(f"{'mode':<12}{'bar-decisions/s':>18}{'trades':>9}")
    for mode, layers in MODES.items():
        seconds = best_of(lambda: _simulate(hs, traded, config, layers, 100_000.0, tape), args.repeat)
        trades = len(_simulate(hs, traded, config, layers, 100_000.0, tape).trades)
        print(f"{mode:<12}{bars / seconds:>18,.0f}{trades:>9}")
    modes = list(MODES)
    seconds = best_of(lambda: replay(hs, traded, config, modes, 100_000.0).results(), args.repeat)
    rate = bars * len(modes) / seconds
    print(f"whole replay: {len(modes)} modes + buy-and-hold + every metric, {seconds * 1000:.0f} ms: {rate:,.0f} bar-decisions/s"
          f"  target >= {TARGET:,}: {'OK' if rate >= TARGET else 'MISSED'}")


if __name__ == "__main__":
    main()

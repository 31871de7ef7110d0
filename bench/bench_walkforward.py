"""Walk-forward backtest cost: wall time and per-fold cost of retraining all four layers.

The issue's size is 8 symbols x 10 years of daily bars, quarterly retraining (63 bars) on
3-year windows (756 bars), with each layer's default training config, folds two at a
time (2 cores): about 28 folds, target under 15 minutes. ``--folds N`` stops after N
folds (and ``--symbols``) to measure at a small scale; the per-fold cost then extrapolates
to the full size (``folds x per-fold cost / jobs``), printed at the end.

``--models``: ``defaults`` (each ``POST /train`` schema's defaults), ``first-start`` (the
bodies a fresh stack trains, ``services/table.py``) or ``tiny`` (the tests').
"""
from __future__ import annotations

import argparse
import math
import time

import pandas as pd

from common import ROOT

from kryptobot.data import DataSpec, get_provider
from kryptobot.settings import Settings
from kryptobot.trading.backtest import BacktestRequest
from kryptobot.trading.settings import TraderConfig
from services.table import spec as service
from services.trader.backtest import walk_forward

SYMBOLS = ["SPY", "QQQ", "AAPL", "MSFT", "AMZN", "GOOGL", "META", "TSLA"]
LAYERS = ("signal", "ensemble", "anomaly", "forecast")
TINY = {
    "signal": {"model": {"n_estimators": 10, "max_depth": 3}, "evaluation": {"n_splits": 2}},
    "ensemble": {"random_forest": {"n_estimators": 5}, "gradient_boosting": {"n_estimators": 5},
                 "ada_boost": {"n_estimators": 5}, "evaluation": {"n_splits": 2}},
    "anomaly": {"epochs": 1, "units": 8},
    "forecast": {"model_types": ["gru"], "sequence_length": 20, "epochs": 1, "units": 8},
}


def training(models: str) -> dict:
    if models == "defaults":
        return {}
    if models == "tiny":
        return TINY
    return {name: {k: v for k, v in service(name).first_training.items() if k != "data"} for name in LAYERS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=8, help=f"the first N of {SYMBOLS}")
    parser.add_argument("--years", type=int, default=10, help="years of bars, ending 2024-12-31")
    parser.add_argument("--train-bars", type=int, default=756)
    parser.add_argument("--retrain-every", type=int, default=63)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--folds", type=int, default=None, help="stop after this many folds (default: all)")
    parser.add_argument("--models", choices=("defaults", "first-start", "tiny"), default="defaults")
    args = parser.parse_args()
    symbols = SYMBOLS[: args.symbols]
    config = TraderConfig.load(ROOT / "config")
    embargo = config.trader.strategy.max_holding_bars
    days = get_provider("synthetic").get_bars(symbols[0])["timestamp"]
    days = days[days >= pd.Timestamp("2024-12-31") - pd.DateOffset(years=args.years)].reset_index(drop=True)
    first = args.train_bars + embargo
    all_folds = math.ceil((len(days) - first) / args.retrain_every)
    end = None if args.folds is None else days.iat[min(first + args.folds * args.retrain_every, len(days)) - 1].date()
    # the first fold trains on the first train_bars of the years; the folds trade the rest
    request = BacktestRequest(
        symbols=symbols, start=days.iat[first].date(), end=end, modes=["technical", "signal", "ensemble", "anomaly", "forecast", "all"],
        walk_forward={"train_bars": args.train_bars, "retrain_every": args.retrain_every, "n_jobs": args.jobs,
                      "training": training(args.models)})
    market = DataSpec(symbols=symbols)
    print(f"{len(symbols)} symbols, bars from {days.iat[0].date()}, {args.train_bars}-bar windows retrained every "
          f"{args.retrain_every} bars, {args.models} models, {args.jobs} jobs: {args.folds or all_folds} of {all_folds} folds")
    started = time.perf_counter()
    report = walk_forward(request, config, Settings(config_dir=ROOT / "config"), market)
    wall = time.perf_counter() - started
    folds = report["folds"]
    per_fold = report["timing"]["fold_seconds_mean"]
    print(f"wall {wall:.1f} s for {len(folds)} folds ({report['timing']['wall_seconds']:.1f} s in the folds); "
          f"per fold {per_fold:.1f} s of one worker")
    for name in LAYERS:
        seconds = [f["layers"][name]["train_seconds"] for f in folds]
        print(f"  {name:<9} train {sum(seconds) / len(seconds):7.1f} s per fold"
              + ("" if all("versions" in f["layers"][name] for f in folds) else "  (failed in some folds: see the report)"))
    scoring = [f["seconds"] - sum(layer["train_seconds"] for layer in f["layers"].values()) for f in folds]
    print(f"  scoring  {sum(scoring) / len(scoring):7.1f} s per fold (the fold's days through every layer, and its metrics)")
    estimate = all_folds * per_fold / args.jobs
    print(f"full size ({all_folds} folds, {args.jobs} jobs, these {len(symbols)} symbols): about {estimate / 60:.1f} min "
          f"(target for 8 symbols: < 15 min)")
    for line in report["summary"]:
        print(line)


if __name__ == "__main__":
    main()

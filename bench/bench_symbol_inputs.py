"""Is a training job's per-symbol input building worth shipping to other processes or Ray?

Prints, for N symbols x Y years of synthetic bars: each model's per-symbol input building
(signal/ensemble: features and triple-barrier labels; forecast: windows; anomaly: bar
features), the bars' loading, the signal model's whole default training on the same data,
and, with ``KRYPTOBOT_RAY_ADDRESS`` set, what Ray costs: this process's first connection
and one round of tiny tasks on the workers. The input building is run in the job's
process (docs/architecture.md, *Where the folds run*) while it stays a small share of the
training and below Ray's overhead.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import ROOT

from kryptobot import parallel
from kryptobot.data import DataSpec, load_bars
from kryptobot.data.base import check_symbol
from kryptobot.features import FeatureParams
from kryptobot.jobs import import_runtime
from kryptobot.labels import LabelParams, build_meta_dataset
from kryptobot.models.anomaly.schemas import AnomalyTrainConfig
from kryptobot.models.anomaly.training import split_symbol
from kryptobot.models.forecast.data import INPUTS, symbol_samples
from kryptobot.runtime import TrainContext
from kryptobot.settings import Settings
from kryptobot.store import ModelStore

SYMBOLS = ["SPY", "QQQ", "AAPL", "MSFT", "AMZN", "GOOGL", "META", "TSLA"]


def seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=8)
    parser.add_argument("--years", type=int, default=10, help="years of bars, ending 2024-12-31")
    parser.add_argument("--timeframe", default="1d")
    args = parser.parse_args()
    symbols = SYMBOLS[: args.symbols]
    spec = DataSpec(symbols=symbols, timeframe=args.timeframe, start=f"{2025 - args.years}-01-01", end="2024-12-31")
    settings = Settings(config_dir=ROOT / "config")
    load = seconds(lambda: load_bars(spec))
    bars = load_bars(spec)
    print(f"{len(symbols)} symbols x {args.years} years of {args.timeframe} bars ({len(next(iter(bars.values())))} a symbol)")
    print(f"  load the bars (synthetic generator)      {load:7.2f} s")
    meta = seconds(lambda: build_meta_dataset(bars, FeatureParams(), LabelParams()))
    print(f"  signal/ensemble features + labels       {meta:7.2f} s  ({meta / len(symbols):.3f} s a symbol)")
    forecast = seconds(lambda: [symbol_samples(s, f, INPUTS["multivariate"], 60, 5, (0.6, 0.15, 0.1, 0.15)) for s, f in bars.items()])
    print(f"  forecast windows                        {forecast:7.2f} s")
    anomaly = seconds(lambda: [split_symbol(s, f, AnomalyTrainConfig()) for s, f in bars.items()])
    print(f"  anomaly bar features                    {anomaly:7.2f} s")
    runtime = import_runtime("kryptobot.models.signal.runtime:SignalRuntime")(settings)
    config = runtime.TrainConfig.model_validate({"data": spec.model_dump(mode="json")})
    store = ModelStore(Path(tempfile.mkdtemp(prefix="kryptobot-bench-")), runtime.name)
    train = seconds(lambda: runtime.train(config, TrainContext(settings=settings, store=store, runtime=runtime)))
    print(f"  signal training, defaults (all of it)   {train:7.2f} s: inputs are {meta / train:.1%} of it")
    if settings.ray_address:
        connect = seconds(lambda: parallel.workers(settings.ray_address))
        pool = parallel.workers(settings.ray_address)
        first = seconds(lambda: pool.map(check_symbol, symbols))
        warm = seconds(lambda: pool.map(check_symbol, symbols))
        print(f"  Ray at {settings.ray_address}: connect {connect:.2f} s, {len(symbols)} tiny tasks {first:.2f} s "
              f"(cold workers), {warm:.3f} s (warm)")
    else:
        print("  (set KRYPTOBOT_RAY_ADDRESS, e.g. 127.0.0.1:6389 after `make ray`, to measure Ray's overhead)")


if __name__ == "__main__":
    main()

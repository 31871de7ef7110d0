"""``kryptobot``: the original scripts' commands, over the services' HTTP APIs.

Every command is a thin HTTP call (the logic lives in the services): training commands
start a job and follow it with a progress bar; ``run-bot`` asks the trader for cycles.
The exception is ``download-data``, the data tool: it fills the local market-data store
in-process, from an exchange (ccxt) or Alpaca.
URLs come from ``KRYPTOBOT_*_URL``; the API key from ``--api-key`` or ``KRYPTOBOT_API_KEY``.
An option left out is not sent, so the service's own default (or settings file) applies.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import Enum
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from services.table import MODEL_SERVICES, ServiceUrls

app = typer.Typer(help="KryptoBot ML: train the models and run the bot through the services' HTTP APIs.", no_args_is_help=True)
console = Console()
ENDED = ("succeeded", "failed", "cancelled")

Symbols = Annotated[str | None, typer.Option(help="space- or comma-separated symbols (default: the service's)")]
Start = Annotated[str | None, typer.Option(help="first day of training data, YYYY-MM-DD")]
End = Annotated[str | None, typer.Option(help="last day of training data, YYYY-MM-DD")]
Source = Annotated[str | None, typer.Option(help="synthetic, csv, sample or local (default: the service's)")]
Wait = Annotated[bool, typer.Option(help="follow the job until it ends")]


class Activation(str, Enum):
    if_better = "if_better"
    true = "true"
    false = "false"


Activate = Annotated[Activation | None, typer.Option(
    help="if_better (the service's default): only when the promotion gate passes the new version; true: anyway; false: never")]


def _activate(choice: Activation | None) -> str | bool | None:
    """The ``activate`` field of a training body (None: not sent, the service's default)."""
    return None if choice is None else {"if_better": "if_better", "true": True, "false": False}[choice.value]


class Voting(str, Enum):
    soft = "soft"
    hard = "hard"


@dataclass(frozen=True)
class Api:
    """One invocation's view of the services: their URLs and the key it sends.

    Kept on click's context (``ctx.obj``), not in a module global: each invocation (a process,
    or one ``CliRunner.invoke``) gets its own.
    """

    api_key: str | None
    urls: ServiceUrls

    def url(self, service: str) -> str:
        return self.urls.url(service)

    def headers(self) -> dict:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def call(self, method: str, url: str, body: dict | None = None, timeout: float = 600) -> dict | list:
        """One request; a connection failure or an error answer ends the command with exit code 1."""
        try:
            resp = httpx.request(method, url, json=body, headers=self.headers(), timeout=timeout)
        except httpx.HTTPError as exc:
            _say(f"cannot reach {url}: {exc}", "red")
            raise typer.Exit(1) from exc
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:  # not JSON: a proxy's error page, say
                detail = resp.text
            _say(f"{resp.status_code} from {url}: {detail}", "red")
            raise typer.Exit(1)
        return resp.json()


@app.callback()
def main(ctx: typer.Context,
         api_key: Annotated[str | None, typer.Option(envvar="KRYPTOBOT_API_KEY", help="sent as X-API-Key")] = None) -> None:
    ctx.obj = Api(api_key, ServiceUrls())


def _say(text: str, style: str | None = None) -> None:
    """Print service text as it is: a detail like "[weights] ..." is not a rich markup tag."""
    console.print(text, style=style, markup=False, highlight=False)



def _symbols(symbols: str) -> list[str]:
    return [s for s in symbols.replace(",", " ").split() if s]


def _given(**options) -> dict:
    """The options the user gave: the rest is left to the service's defaults."""
    return {k: v for k, v in options.items() if v is not None}


def _data(symbols: str | None, start: str | None, end: str | None, source: str | None) -> dict:
    return _given(source=source, symbols=_symbols(symbols) if symbols else None, start=start, end=end)


def _chosen(flags: dict[str, bool | None]) -> list[str] | None:
    """``--x`` picks x, ``--no-x`` drops x from the rest; no flag at all: None (the service decides)."""
    if all(on is None for on in flags.values()):
        return None
    picked = any(flags.values())
    return [name for name, on in flags.items() if on or (on is None and not picked)]


def _run_job(api: Api, service: str, path: str, body: dict, wait: bool) -> None:
    base = api.url(service)
    job = api.call("POST", f"{base}{path}", body)
    console.print(f"{service}: job {job['id']} started")
    if not wait:
        return
    columns = (TextColumn("[bold]{task.fields[service]}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TextColumn("{task.fields[message]}", markup=False), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("train", total=1.0, service=service, message="queued")
            while job["state"] not in ENDED:
                time.sleep(0.5)
                job = api.call("GET", f"{base}/train/{job['id']}")
                # the message carries the epoch and loss of a neural model (see neural.progress_callback)
                progress.update(task, completed=job["progress"], message=job.get("message") or job["state"])
    except KeyboardInterrupt:
        # the job belongs to the service: leaving the bar does not stop it
        _say(f"{service}: job {job['id']} goes on; GET {base}/train/{job['id']} to follow, DELETE to cancel", "yellow")
        raise typer.Exit(130) from None
    if job["state"] != "succeeded":
        _say(f"{service}: job {job['state']}: {job.get('error')}", "red")
        raise typer.Exit(1)
    _say(f"{service}: new version(s) {', '.join(job['versions'])}", "green")
    for version, verdict in ((job.get("details") or {}).get("promotion") or {}).items():
        _say(f"{version}: {verdict['outcome']}", "green" if verdict["activated"] else "yellow")


@app.command("train-signal")
def train_signal(ctx: typer.Context, symbols: Symbols = None, start: Start = None, end: End = None, source: Source = None,
                 n_estimators: Annotated[int | None, typer.Option(help="trees (default: the service's)")] = None,
                 max_depth: Annotated[int | None, typer.Option(help="tree depth (default: the service's)")] = None,
                 activate: Activate = None, wait: Wait = True) -> None:
    """Train the RandomForest signal model (train_ml_model.py)."""
    body = _given(data=_data(symbols, start, end, source), model=_given(n_estimators=n_estimators, max_depth=max_depth),
                  activate=_activate(activate))
    _run_job(ctx.obj, "signal", "/train", body, wait)


@app.command("train-anomaly")
def train_anomaly(ctx: typer.Context, symbols: Symbols = None, start: Start = None, end: End = None, source: Source = None,
                  epochs: Annotated[int | None, typer.Option(help="maximum epochs (default: the service's)")] = None,
                  batch_size: Annotated[int | None, typer.Option(help="default: the service's")] = None,
                  activate: Activate = None, wait: Wait = True) -> None:
    """Train the LSTM autoencoder (train_anomaly_detector.py --symbols --epochs --batch-size)."""
    body = _given(data=_data(symbols, start, end, source), epochs=epochs, batch_size=batch_size, activate=_activate(activate))
    _run_job(ctx.obj, "anomaly", "/train", body, wait)


def _weights(weights: str | None) -> list[float] | None:
    """``--weights 1,2,1`` as numbers; the service checks their count and signs."""
    if weights is None:
        return None
    try:
        return [float(w) for w in weights.split(",")]
    except ValueError as exc:
        _say(f"--weights must be numbers separated by commas, got {weights!r}", "red")
        raise typer.Exit(1) from exc


@app.command("train-ensemble")
def train_ensemble(ctx: typer.Context, voting: Annotated[Voting | None, typer.Option(help="default: the service's")] = None,
                   weights: Annotated[str | None, typer.Option(help="one per base model, comma-separated, e.g. 1,2,1")] = None,
                   symbols: Symbols = None, start: Start = None, end: End = None, source: Source = None,
                   activate: Activate = None, wait: Wait = True) -> None:
    """Train the voting ensemble (ensemble_learning.py / start_ensemble_bot.sh --voting --weights)."""
    body = _given(data=_data(symbols, start, end, source), voting=voting and voting.value, weights=_weights(weights),
                  activate=_activate(activate))
    _run_job(ctx.obj, "ensemble", "/train", body, wait)


@app.command("train-forecast")
def train_forecast(ctx: typer.Context, lstm: Annotated[bool | None, typer.Option("--lstm/--no-lstm")] = None,
                   gru: Annotated[bool | None, typer.Option("--gru/--no-gru", help="neither: the settings' model_types")] = None,
                   symbols: Symbols = None, start: Start = None, end: End = None, source: Source = None,
                   epochs: Annotated[int | None, typer.Option(help="maximum epochs (default: the service's)")] = None,
                   activate: Activate = None, wait: Wait = True) -> None:
    """Train the LSTM and/or GRU forecasters (time_series_forecasting.py / start_forecast_bot.sh --train-lstm --train-gru)."""
    types = _chosen({"lstm": lstm, "gru": gru})
    if types == []:
        _say("nothing to train: --no-lstm and --no-gru leave no model", "red")
        raise typer.Exit(1)
    body = _given(data=_data(symbols, start, end, source), model_types=types, epochs=epochs, activate=_activate(activate))
    _run_job(ctx.obj, "forecast", "/train", body, wait)


@app.command("feature-selection")
def feature_selection(ctx: typer.Context, symbols: Symbols = None, start: Start = None, end: End = None, source: Source = None,
                      rfecv: Annotated[bool | None, typer.Option("--rfecv/--no-rfecv", help="also run RFECV (default: the service's)")] = None,
                      activate: Activate = None, wait: Wait = True) -> None:
    """Compare feature sets of the active signal model; the best becomes a new version (run_feature_selection.sh)."""
    body = _given(data=_data(symbols, start, end, source), rfecv=rfecv, activate=_activate(activate))
    _run_job(ctx.obj, "signal", "/feature-selection", body, wait)


def _ready(url: str) -> tuple[int, dict] | None:
    """``GET /health/ready``: (status code, body), or None when nothing sensible answers."""
    try:
        resp = httpx.get(f"{url}/health/ready", timeout=5)
        return resp.status_code, resp.json()
    except (httpx.HTTPError, ValueError):
        return None


@app.command("status")
def status(ctx: typer.Context) -> None:
    """Health and active model versions of every service."""
    for service in MODEL_SERVICES:
        answer = _ready(ctx.obj.url(service))
        if answer is None:
            _say(f"{service:<9} down")
            continue
        code, body = answer
        versions = ", ".join(f"{line}={v}" for line, v in (body.get("model_versions") or {}).items())
        _say(f"{service:<9} {'ready' if code == 200 else 'not ready':<10} {versions or body.get('detail', '')}")
    answer = _ready(ctx.obj.url("trader"))
    if answer is None:
        _say(f"{'trader':<9} down")
    else:
        code, body = answer
        _say(f"{'trader':<9} {'ready' if code == 200 else 'not ready':<10} redis={body.get('redis')} circuits={body.get('services')}")


@app.command("run-bot")
def run_bot(ctx: typer.Context, ml: Annotated[bool | None, typer.Option("--ml/--no-ml", help="signal model + anomaly detector")] = None,
            ensemble: Annotated[bool | None, typer.Option("--ensemble/--no-ensemble")] = None,
            forecast: Annotated[bool | None, typer.Option("--forecast/--no-forecast", help="no layer flag: the trader's settings")] = None,
            every: Annotated[float, typer.Option(help="minutes between cycles (0 = one cycle)")] = 0,
            as_of: Annotated[str | None, typer.Option(help="decide on bars up to this day")] = None,
            symbols: Annotated[str | None, typer.Option(help="space- or comma-separated: what the --train-* jobs train on "
                                                               "and the cycles trade (default: the services' and the watchlist)")] = None,
            train_ml_first: Annotated[bool, typer.Option("--train-ml", help="train the signal model first (start_ml_bot.sh --train-ml)")] = False,
            train_anomaly_first: Annotated[bool, typer.Option("--train-anomaly", help="train the anomaly detector first")] = False,
            train_ensemble_first: Annotated[bool, typer.Option("--train-ensemble", help="train the ensemble first (start_ensemble_bot.sh --train-ensemble)")] = False,
            train_lstm_first: Annotated[bool, typer.Option("--train-lstm", help="train the LSTM forecaster first (start_forecast_bot.sh --train-lstm)")] = False,
            train_gru_first: Annotated[bool, typer.Option("--train-gru", help="train the GRU forecaster first")] = False,
            epochs: Annotated[int | None, typer.Option(help="epochs of the --train-anomaly / --train-lstm / --train-gru jobs")] = None,
            batch_size: Annotated[int | None, typer.Option(help="batch size of the --train-anomaly job")] = None,
            voting: Annotated[Voting | None, typer.Option(help="voting of the --train-ensemble job")] = None,
            weights: Annotated[str | None, typer.Option(help="weights of the --train-ensemble job, e.g. 1,2,1")] = None) -> None:
    """Run trader cycles with the chosen ML layers (start_ml_bot.sh / start_ensemble_bot.sh / start_forecast_bot.sh),
    after the --train-* jobs, if any, have succeeded."""
    _weights(weights)  # a typo must not surface only after the earlier training jobs ran
    if train_ml_first:
        train_signal(ctx, symbols=symbols, start=None, end=None, source=None, n_estimators=None, max_depth=None, activate=None, wait=True)
    if train_anomaly_first:
        train_anomaly(ctx, symbols=symbols, start=None, end=None, source=None, epochs=epochs, batch_size=batch_size, activate=None,
                      wait=True)
    if train_ensemble_first:
        train_ensemble(ctx, voting=voting, weights=weights, symbols=symbols, start=None, end=None, source=None, activate=None, wait=True)
    if train_lstm_first or train_gru_first:
        train_forecast(ctx, lstm=train_lstm_first, gru=train_gru_first, symbols=symbols, start=None, end=None, source=None, epochs=epochs,
                       activate=None, wait=True)
    chosen = _chosen({"ml": ml, "ensemble": ensemble, "forecast": forecast})
    layers = None if chosen is None else [layer for c in chosen for layer in (("signal", "anomaly") if c == "ml" else (c,))]
    body = _given(layers=layers, as_of=as_of, symbols=_symbols(symbols) if symbols else None)
    while True:
        try:
            result = ctx.obj.call("POST", ctx.obj.url("trader") + "/cycle", body)
        except typer.Exit:
            if every <= 0:
                raise
            # a scheduled bot outlives a trader restart: the error is printed, the next cycle comes
            _say(f"cycle failed; next one in {every:g} min", "yellow")
            time.sleep(every * 60)
            continue
        used = result["decisions"][0]["layers"] if result["decisions"] else []
        _say(f"cycle {result['cycle_id']}: layers {', '.join(used) or 'none (technical only)'}, {len(result['orders'])} order(s)")
        for d in result["decisions"]:
            degraded = f"  [degraded: {', '.join(d.get('unavailable') or [])} unavailable]" if d["degraded"] else ""
            _say(f"{d['symbol']:<6} {d['action']:<5} {', '.join(d['rules'])}{degraded}")
        if every <= 0:
            return
        time.sleep(every * 60)


class DownloadSource(str, Enum):
    ccxt = "ccxt"
    alpaca = "alpaca"


class _DownloadBar:
    """download-data's rich progress bar: one line per symbol (a DownloadProgress)."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def symbol_started(self, symbol: str, expected: int) -> None:
        self.tasks[symbol] = self.progress.add_task(symbol, total=max(expected, 1), symbol=symbol, message="")

    def candles(self, symbol: str, count: int) -> None:
        self.progress.update(self.tasks[symbol], advance=count, message=f"+{count}")

    def symbol_done(self, symbol: str, report, error: str | None) -> None:
        if symbol not in self.tasks:  # it failed before it started (an unreadable file)
            self.symbol_started(symbol, 1)
        task = self.tasks[symbol]
        self.progress.update(task, completed=self.progress.tasks[task].total, message="failed" if error else "done")


def _download_window(start: str | None, end: str | None, days: int | None):
    """--start/--end/--days as UTC timestamps (end None: up to the last closed candle)."""
    import pandas as pd

    from kryptobot.errors import InvalidInput

    if start is not None and days is not None:
        raise InvalidInput("give --start or --days, not both", field="days")
    if days is not None and days < 1:
        raise InvalidInput(f"--days must be at least 1, got {days}", field="days")
    bounds = {}
    for name, value in (("start", start), ("end", end)):
        try:
            ts = None if value is None else pd.Timestamp(value)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"--{name} must be a date (YYYY-MM-DD) or an ISO time, got {value!r}", field=name) from exc
        bounds[name] = ts.tz_convert("UTC").tz_localize(None) if ts is not None and ts.tz is not None else ts
    if bounds["end"] is not None and end is not None and len(end) <= 10:
        bounds["end"] += pd.Timedelta(days=1) - pd.Timedelta(1, "ns")  # a day is inclusive: all its candles
    if bounds["start"] is None:
        bounds["start"] = (pd.Timestamp.now("UTC").tz_localize(None) - pd.Timedelta(days=days or 30)).normalize()
    if bounds["end"] is not None and bounds["end"] < bounds["start"]:
        raise InvalidInput(f"--end {end} is before the start {bounds['start'].date()}", field="end")
    return bounds["start"], bounds["end"]


def _remote_source(source: DownloadSource, exchange: str):
    from kryptobot.settings import Settings

    settings = Settings()
    if source is DownloadSource.ccxt:
        from kryptobot.data.ccxt_source import CCXTSource

        return CCXTSource(exchange, config=settings.ccxt_config), settings
    from kryptobot.data.alpaca_source import AlpacaSource

    secret = lambda value: value.get_secret_value() if value else None  # noqa: E731
    return AlpacaSource(secret(settings.alpaca_api_key), secret(settings.alpaca_secret_key), url=settings.alpaca_data_url), settings


def _say_download(result) -> None:
    for r in result.reports:
        span = f"{r.first:%Y-%m-%d %H:%M} .. {r.last:%Y-%m-%d %H:%M}"
        _say(f"{r.symbol} {r.timeframe}: +{r.added} candle(s), {r.stored} stored ({span}); {r.duplicates} duplicate(s), "
             f"{r.out_of_order} out of order, {len(r.gaps)} gap(s) ({r.missing} missing) -> {r.path}",
             "yellow" if r.gaps or r.duplicates or r.out_of_order else None)
        for gap in r.gaps[:5]:
            _say(f"  gap after {gap.after:%Y-%m-%d %H:%M}, before {gap.before:%Y-%m-%d %H:%M}: {gap.missing} candle(s) missing (not filled)")
        if len(r.gaps) > 5:
            _say(f"  ... and {len(r.gaps) - 5} more gap(s)")
    for symbol, error in result.failures.items():
        _say(f"{symbol}: failed, its file is unchanged: {error}", "red")


@app.command("download-data")
def download_data(
    symbols: Annotated[str, typer.Option(help="space- or comma-separated: pairs (BTC/USDT, BTC/USDT:USDT) for ccxt, tickers (SPY) for alpaca")],
    source: Annotated[DownloadSource, typer.Option(help="ccxt (crypto exchanges) or alpaca (US stocks, ALPACA_API_KEY/ALPACA_SECRET_KEY)")] = DownloadSource.ccxt,
    exchange: Annotated[str, typer.Option(help="ccxt's exchange id (binance, kraken, bybit...); KRYPTOBOT_CCXT_CONFIG adds ccxt config")] = "binance",
    timeframe: Annotated[str, typer.Option(help="1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 8h, 12h, 1d or 1w")] = "1d",
    start: Annotated[str | None, typer.Option(help="first candle, YYYY-MM-DD (UTC); default: --days back")] = None,
    end: Annotated[str | None, typer.Option(help="last day (inclusive), YYYY-MM-DD; default: up to the last closed candle")] = None,
    days: Annotated[int | None, typer.Option(help="the last N days, instead of --start (default 30)")] = None,
    datadir: Annotated[str | None, typer.Option(help="the market-data store (default: KRYPTOBOT_MARKET_DATA_DIR, var/market-data)")] = None,
) -> None:
    """Download candles into the local market-data store that the `local` source reads (freqtrade's download-data).

    Runs here, not in a service: it is the data tool. A second run fetches only the candles after the last stored one (and before the first, for an earlier --start); the summary lists candles added, duplicates, out-of-order candles and gaps (reported, never filled)."""
    from kryptobot.data.download import download
    from kryptobot.data.local_store import MarketDataStore
    from kryptobot.data.timeframes import check_timeframe
    from kryptobot.errors import KryptoError

    columns = (TextColumn("[bold]{task.fields[symbol]}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TextColumn("{task.fields[message]}", markup=False), TimeElapsedColumn())
    try:
        check_timeframe(timeframe)
        first, last = _download_window(start, end, days)
        remote, settings = _remote_source(source, exchange)
        store = MarketDataStore(datadir or settings.market_data_dir)
        with Progress(*columns, console=console, transient=False) as progress:
            result = download(remote, store, _symbols(symbols), timeframe, first, last, progress=_DownloadBar(progress))
    except KryptoError as exc:
        _say(f"{exc.field}: {exc.message}" if exc.field else exc.message, "red")
        raise typer.Exit(1) from exc
    _say_download(result)
    if not result.ok:
        raise typer.Exit(1)


RESULT_COLUMNS = (("total_return", "return"), ("cagr", "CAGR"), ("sharpe", "Sharpe"), ("sortino", "Sortino"),
                  ("max_drawdown", "max DD"), ("trades", "trades"), ("mean_trade_return", "mean trade"))


@app.command("backtest")
def backtest(ctx: typer.Context, symbols: Annotated[str | None, typer.Option(help="space- or comma-separated (default: the watchlist)")] = None,
             start: Annotated[str | None, typer.Option(help="first traded day, YYYY-MM-DD")] = None,
             end: Annotated[str | None, typer.Option(help="last traded day, YYYY-MM-DD")] = None,
             modes: Annotated[str | None, typer.Option(help="comma-separated, of technical, signal, ensemble, anomaly, forecast, all "
                                                            "(default: all of them)")] = None,
             initial_cash: Annotated[float | None, typer.Option(help="default: the trader's")] = None,
             walk_forward: Annotated[bool, typer.Option("--walk-forward/--active-models",
                                                        help="retrain every layer before each fold, on the bars before it "
                                                             "(default: replay the services' active models)")] = False,
             train_bars: Annotated[int | None, typer.Option(help="walk-forward: bars each fold trains on")] = None,
             retrain_every: Annotated[int | None, typer.Option(help="walk-forward: bars per fold")] = None,
             embargo_bars: Annotated[int | None, typer.Option(help="walk-forward: bars between training data and fold")] = None,
             jobs: Annotated[int | None, typer.Option("--jobs", help="walk-forward: folds trained at once (default: one per core)")] = None,
             training: Annotated[str | None, typer.Option(help='walk-forward: JSON of each layer\'s training fields, '
                                                               'e.g. \'{"signal": {"model": {"n_estimators": 50}}}\'')] = None,
             timeout: Annotated[float, typer.Option(help="seconds to wait for the report")] = 3600) -> None:
    """Backtest the rules for each mode next to buy-and-hold (POST /backtest); with --walk-forward the models are
    retrained before each fold, as FreqAI's backtesting does."""
    body = _given(symbols=_symbols(symbols) if symbols else None, start=start, end=end, initial_cash=initial_cash,
                  modes=[m.strip() for m in modes.split(",") if m.strip()] if modes else None)
    if walk_forward:
        try:
            layers = json.loads(training) if training else None
        except json.JSONDecodeError as exc:
            _say(f"--training is not JSON: {exc}", "red")
            raise typer.Exit(1) from exc
        body["walk_forward"] = _given(train_bars=train_bars, retrain_every=retrain_every, embargo_bars=embargo_bars,
                                      n_jobs=jobs, training=layers)
    report = ctx.obj.call("POST", ctx.obj.url("trader") + "/backtest", body, timeout=timeout)
    kind = f"walk-forward, {len(report['folds'])} folds" if report.get("folds") else f"models trained until {report['models_trained_until']}"
    _say(f"backtest {report['id']}: {', '.join(report['symbols'])} {report['start']}..{report['end']} ({kind})")
    if report.get("note"):
        _say(report["note"], "yellow")
    _say(f"{'mode':<13}" + "".join(f"{title:>11}" for _, title in RESULT_COLUMNS) + "   mean trade 95% interval")
    for mode, stats in report["results"].items():
        cells = "".join(f"{'-':>11}" if stats.get(key) is None else f"{stats[key]:>11d}" if key == "trades"
                        else f"{stats[key]:>11.3f}" if key in ("sharpe", "sortino") else f"{stats[key]:>+11.2%}"
                        for key, _ in RESULT_COLUMNS)
        ci = stats.get("mean_trade_return_ci95")
        _say(f"{mode:<13}{cells}" + (f"   [{ci[0]:+.2%}, {ci[1]:+.2%}]" if ci else ""))
    for fold in report.get("folds") or []:
        trained = ", ".join(f"{name} {next(iter(layer['versions'].values()))['artifacts_sha256'][:8]}" if "versions" in layer
                            else f"{name} failed: {layer['error']}" for name, layer in fold["layers"].items())
        _say(f"fold {fold['index']}: trained {fold['train']['start']}..{fold['train']['end']}, traded "
             f"{fold['test']['start'][:10]}..{fold['test']['end'][:10]} ({trained or 'no ML layer'})")
    for line in report.get("summary") or []:
        _say(line)
    _say(f"reports: {', '.join(report.get('reports') or [])}")


if __name__ == "__main__":
    app()

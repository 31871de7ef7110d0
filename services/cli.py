"""``kryptobot``: the original scripts' commands, over the services' HTTP APIs.

Every command is a thin HTTP call (the logic lives in the services): training commands
start a job and follow it with a progress bar; ``run-bot`` asks the trader for cycles.
URLs come from ``KRYPTOBOT_*_URL``; the API key from ``--api-key`` or ``KRYPTOBOT_API_KEY``.
An option left out is not sent, so the service's own default (or settings file) applies.
"""
from __future__ import annotations

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
Source = Annotated[str | None, typer.Option(help="synthetic, csv or sample (default: the service's)")]
Wait = Annotated[bool, typer.Option(help="follow the job until it ends")]


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

    def call(self, method: str, url: str, body: dict | None = None) -> dict | list:
        """One request; a connection failure or an error answer ends the command with exit code 1."""
        try:
            resp = httpx.request(method, url, json=body, headers=self.headers(), timeout=600)
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


@app.command("train-signal")
def train_signal(ctx: typer.Context, symbols: Symbols = None, start: Start = None, end: End = None, source: Source = None,
                 n_estimators: Annotated[int | None, typer.Option(help="trees (default: the service's)")] = None,
                 max_depth: Annotated[int | None, typer.Option(help="tree depth (default: the service's)")] = None,
                 wait: Wait = True) -> None:
    """Train the RandomForest signal model (train_ml_model.py)."""
    body = _given(data=_data(symbols, start, end, source), model=_given(n_estimators=n_estimators, max_depth=max_depth))
    _run_job(ctx.obj, "signal", "/train", body, wait)


@app.command("train-anomaly")
def train_anomaly(ctx: typer.Context, symbols: Symbols = None, start: Start = None, end: End = None, source: Source = None,
                  epochs: Annotated[int | None, typer.Option(help="maximum epochs (default: the service's)")] = None,
                  batch_size: Annotated[int | None, typer.Option(help="default: the service's")] = None,
                  wait: Wait = True) -> None:
    """Train the LSTM autoencoder (train_anomaly_detector.py --symbols --epochs --batch-size)."""
    body = _given(data=_data(symbols, start, end, source), epochs=epochs, batch_size=batch_size)
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
                   wait: Wait = True) -> None:
    """Train the voting ensemble (ensemble_learning.py / start_ensemble_bot.sh --voting --weights)."""
    body = _given(data=_data(symbols, start, end, source), voting=voting and voting.value, weights=_weights(weights))
    _run_job(ctx.obj, "ensemble", "/train", body, wait)


@app.command("train-forecast")
def train_forecast(ctx: typer.Context, lstm: Annotated[bool | None, typer.Option("--lstm/--no-lstm")] = None,
                   gru: Annotated[bool | None, typer.Option("--gru/--no-gru", help="neither: the settings' model_types")] = None,
                   symbols: Symbols = None, start: Start = None, end: End = None, source: Source = None,
                   epochs: Annotated[int | None, typer.Option(help="maximum epochs (default: the service's)")] = None,
                   wait: Wait = True) -> None:
    """Train the LSTM and/or GRU forecasters (time_series_forecasting.py / start_forecast_bot.sh --train-lstm --train-gru)."""
    types = _chosen({"lstm": lstm, "gru": gru})
    if types == []:
        _say("nothing to train: --no-lstm and --no-gru leave no model", "red")
        raise typer.Exit(1)
    _run_job(ctx.obj, "forecast", "/train", _given(data=_data(symbols, start, end, source), model_types=types, epochs=epochs), wait)


@app.command("feature-selection")
def feature_selection(ctx: typer.Context, symbols: Symbols = None, start: Start = None, end: End = None, source: Source = None,
                      rfecv: Annotated[bool | None, typer.Option("--rfecv/--no-rfecv", help="also run RFECV (default: the service's)")] = None,
                      wait: Wait = True) -> None:
    """Compare feature sets of the active signal model; the best becomes a new version (run_feature_selection.sh)."""
    _run_job(ctx.obj, "signal", "/feature-selection", _given(data=_data(symbols, start, end, source), rfecv=rfecv), wait)


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
        train_signal(ctx, symbols=symbols, start=None, end=None, source=None, n_estimators=None, max_depth=None, wait=True)
    if train_anomaly_first:
        train_anomaly(ctx, symbols=symbols, start=None, end=None, source=None, epochs=epochs, batch_size=batch_size, wait=True)
    if train_ensemble_first:
        train_ensemble(ctx, voting=voting, weights=weights, symbols=symbols, start=None, end=None, source=None, wait=True)
    if train_lstm_first or train_gru_first:
        train_forecast(ctx, lstm=train_lstm_first, gru=train_gru_first, symbols=symbols, start=None, end=None, source=None, epochs=epochs, wait=True)
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


if __name__ == "__main__":
    app()

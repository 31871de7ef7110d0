"""``kryptobot``: the original scripts' commands, over the services' HTTP APIs.

Every command is a thin HTTP call (the logic lives in the services): training commands
start a job and follow it with a progress bar; ``run-bot`` asks the trader for cycles.
URLs come from ``KRYPTOBOT_*_URL`` and the API key from ``KRYPTOBOT_API_KEY``.
"""
from __future__ import annotations

import json
import time
from typing import Annotated, Optional

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from kryptobot.settings import Settings

app = typer.Typer(help="KryptoBot ML: train the models and run the bot through the services' HTTP APIs.", no_args_is_help=True)
console = Console()
SERVICES = ("signal", "ensemble", "anomaly", "forecast")

Symbols = Annotated[Optional[str], typer.Option(help="space- or comma-separated symbols (default: the service's)")]
Start = Annotated[Optional[str], typer.Option(help="first day of training data, YYYY-MM-DD")]
End = Annotated[Optional[str], typer.Option(help="last day of training data, YYYY-MM-DD")]
Source = Annotated[str, typer.Option(help="synthetic, csv or sample")]
Wait = Annotated[bool, typer.Option(help="follow the job until it ends")]


def _url(service: str) -> str:
    return getattr(Settings(), f"{service}_url")


def _headers() -> dict:
    key = Settings().api_key
    return {"X-API-Key": key} if key else {}


def _call(method: str, url: str, body: dict | None = None) -> dict | list:
    try:
        resp = httpx.request(method, url, json=body, headers=_headers(), timeout=600)
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {url}: {exc}[/red]")
        raise typer.Exit(1) from exc
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except json.JSONDecodeError:
            detail = resp.text
        console.print(f"[red]{resp.status_code} from {url}: {detail}[/red]")
        raise typer.Exit(1)
    return resp.json()


def _data(symbols: str | None, start: str | None, end: str | None, source: str) -> dict:
    data: dict = {"source": source}
    if symbols:
        data["symbols"] = [s for s in symbols.replace(",", " ").split() if s]
    if start:
        data["start"] = start
    if end:
        data["end"] = end
    return data


def _run_job(service: str, path: str, body: dict, wait: bool) -> None:
    base = _url(service)
    job = _call("POST", f"{base}{path}", body)
    console.print(f"{service}: job {job['id']} started")
    if not wait:
        return
    columns = (TextColumn("[bold]{task.fields[service]}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TextColumn("{task.fields[message]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("train", total=1.0, service=service, message="queued")
        while job["state"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.5)
            job = _call("GET", f"{base}/train/{job['id']}")
            progress.update(task, completed=job["progress"], message=job.get("message") or "")
    if job["state"] != "succeeded":
        console.print(f"[red]{service}: job {job['state']}: {job.get('error')}[/red]")
        raise typer.Exit(1)
    console.print(f"[green]{service}: new version(s) {', '.join(job['versions'])}[/green]")


@app.command("train-signal")
def train_signal(symbols: Symbols = None, start: Start = None, end: End = None, source: Source = "synthetic",
                 n_estimators: int = 200, max_depth: int = 6, wait: Wait = True) -> None:
    """Train the RandomForest signal model (train_ml_model.py)."""
    body = {"data": _data(symbols, start, end, source), "model": {"n_estimators": n_estimators, "max_depth": max_depth}}
    _run_job("signal", "/train", body, wait)


@app.command("train-anomaly")
def train_anomaly(symbols: Symbols = None, start: Start = None, end: End = None, source: Source = "synthetic",
                  epochs: int = 20, batch_size: int = 64, wait: Wait = True) -> None:
    """Train the LSTM autoencoder (train_anomaly_detector.py --symbols --epochs --batch-size)."""
    body = {"data": _data(symbols, start, end, source), "epochs": epochs, "batch_size": batch_size}
    _run_job("anomaly", "/train", body, wait)


@app.command("train-ensemble")
def train_ensemble(voting: Annotated[str, typer.Option(help="soft or hard")] = "soft",
                   weights: Annotated[str, typer.Option(help="comma-separated, e.g. 1,2,1")] = "1,1,1",
                   symbols: Symbols = None, start: Start = None, end: End = None, source: Source = "synthetic", wait: Wait = True) -> None:
    """Train the voting ensemble (ensemble_learning.py / start_ensemble_bot.sh --voting --weights)."""
    try:
        parsed = [float(w) for w in weights.split(",")]
    except ValueError as exc:
        console.print(f"[red]--weights must be numbers separated by commas, got {weights!r}[/red]")
        raise typer.Exit(1) from exc
    body = {"data": _data(symbols, start, end, source), "voting": voting, "weights": parsed}
    _run_job("ensemble", "/train", body, wait)


@app.command("train-forecast")
def train_forecast(lstm: Annotated[bool, typer.Option("--lstm/--no-lstm")] = True, gru: Annotated[bool, typer.Option("--gru/--no-gru")] = True,
                   symbols: Symbols = None, start: Start = None, end: End = None, source: Source = "synthetic",
                   epochs: int = 30, wait: Wait = True) -> None:
    """Train the LSTM and/or GRU forecasters (time_series_forecasting.py / start_forecast_bot.sh --train-lstm --train-gru)."""
    types = [t for t, on in (("lstm", lstm), ("gru", gru)) if on]
    if not types:
        console.print("[red]nothing to train: give --lstm and/or --gru[/red]")
        raise typer.Exit(1)
    _run_job("forecast", "/train", {"data": _data(symbols, start, end, source), "model_types": types, "epochs": epochs}, wait)


@app.command("feature-selection")
def feature_selection(symbols: Symbols = None, start: Start = None, end: End = None, source: Source = "synthetic",
                      rfecv: bool = True, wait: Wait = True) -> None:
    """Compare feature sets of the active signal model; the best becomes a new version (run_feature_selection.sh)."""
    _run_job("signal", "/feature-selection", {"data": _data(symbols, start, end, source), "rfecv": rfecv}, wait)


@app.command("status")
def status() -> None:
    """Health and active model versions of every service."""
    for service in SERVICES:
        try:
            resp = httpx.get(f"{_url(service)}/health/ready", timeout=5)
            body = resp.json()
            state = ", ".join(f"{k}={v}" for k, v in (body.get("model_versions") or {}).items()) or body.get("detail", "")
            console.print(f"{service:<9} {'ready' if resp.status_code == 200 else 'not ready':<10} {state}")
        except httpx.HTTPError:
            console.print(f"{service:<9} down")
    try:
        ready = httpx.get(f"{Settings().trader_url}/health/ready", timeout=5).json()
        console.print(f"{'trader':<9} ready      redis={ready['redis']} circuits={ready['services']}")
    except httpx.HTTPError:
        console.print(f"{'trader':<9} down")


@app.command("run-bot")
def run_bot(ml: Annotated[bool, typer.Option("--ml/--no-ml", help="signal model + anomaly detector")] = True,
            ensemble: Annotated[bool, typer.Option("--ensemble/--no-ensemble")] = True,
            forecast: Annotated[bool, typer.Option("--forecast/--no-forecast")] = True,
            every: Annotated[float, typer.Option(help="minutes between cycles (0 = one cycle)")] = 0,
            as_of: Annotated[Optional[str], typer.Option(help="decide on bars up to this day")] = None) -> None:
    """Run trader cycles with the chosen ML layers (start_ml_bot.sh / start_ensemble_bot.sh / start_forecast_bot.sh)."""
    layers = [name for name, on in (("signal", ml), ("anomaly", ml), ("ensemble", ensemble), ("forecast", forecast)) if on]
    while True:
        body: dict = {"layers": layers}
        if as_of:
            body["as_of"] = as_of
        result = _call("POST", f"{Settings().trader_url}/cycle", body)
        for d in result["decisions"]:
            console.print(f"{d['symbol']:<6} {d['action']:<5} {', '.join(d['rules'])}{' [degraded]' if d['degraded'] else ''}")
        if every <= 0:
            return
        time.sleep(every * 60)


if __name__ == "__main__":
    app()

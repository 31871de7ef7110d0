"""Signal service latency: /predict over HTTP, and the in-process pieces behind it.

The server runs pinned to one core (core 0) and the load generator (``common.http_load``:
keep-alive connections, request bytes built once) on the other (core 1), so the figures are
the server's. Prints p50/p99 of /predict for one raw-bars instance of ``MODEL_BARS`` bars
(what the trader sends) at concurrency 1 and 8 and for one named-features instance, each with
the server's CPU time per request (what other work on a shared machine disturbs least); then
the in-process feature pipeline, the ONNX Runtime call, and scikit-learn's own
predict_proba of the same 100-tree forest.

``--baseline DIR`` measures the code of another checkout as well, on the same model store,
the two taking turns for ``ROUNDS`` rounds (the best of each figure is kept: other work
only ever slows a run down), e.g. the commit before a change::

    git worktree add /tmp/before HEAD~1 && python bench/bench_signal.py --baseline /tmp/before

Targets: raw bars p50 <= 1.5 ms at concurrency 1; p99 <= 3x p50 at concurrency 8.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from common import (TreeServer, cores_text, cpu_seconds, http_load, percentile, pinned, report,
                    report_feature_building, time_calls, train_signal_model)

from kryptobot.models.common.examples import classifier_example, example_bars
from kryptobot.trading.market import MODEL_BARS

N = 500
N_CONCURRENT = 2000
WARMUP = 50  # unmeasured requests per connection
ROUNDS = 3
SERVER_CORES, CLIENT_CORES = ({0}, {1}) if (os.cpu_count() or 1) >= 2 else (None, None)


def bodies() -> dict[str, bytes]:
    features = classifier_example()["instances"][1]
    raw = {"symbol": "SYNA", "side": "buy", "bars": example_bars(MODEL_BARS)}
    return {"raw": json.dumps({"instances": [raw]}).encode(), "features": json.dumps({"instances": [features]}).encode()}


def start_server(root: Path, models_dir: Path) -> TreeServer:
    return TreeServer("services.signal.app:create_app", {"KRYPTOBOT_MODELS_DIR": str(models_dir), "KRYPTOBOT_LOG_FORMAT": "text"},
                      root=root, cores=SERVER_CORES).start()


def measure(server: TreeServer) -> dict[str, float]:
    """p50/p99 and server CPU per request: raw bars at concurrency 1 and 8, named features at 1."""
    out = {}
    body = bodies()
    with pinned(CLIENT_CORES):
        for name, kind, concurrency, n in (("raw bars", "raw", 1, N), ("raw bars", "raw", 8, N_CONCURRENT),
                                           ("named features", "features", 1, N)):
            cpu_before = cpu_seconds(server.proc.pid)
            latencies, seconds = http_load(server.port, "/predict", body[kind], concurrency, n, WARMUP)
            # the server's own CPU time per request: what other work on the machine disturbs least
            cpu_ms = (cpu_seconds(server.proc.pid) - cpu_before) * 1000 / (n + WARMUP * concurrency)
            p50 = report(f"HTTP /predict, 1 instance, {name}, concurrency {concurrency}", latencies,
                         1.5 if (kind, concurrency) == ("raw", 1) else None)
            p99 = percentile(latencies, 99)
            out.update({f"{kind}{concurrency}_p50": p50, f"{kind}{concurrency}_p99": p99, f"{kind}{concurrency}_cpu": cpu_ms})
            extra = f"; {len(latencies) / seconds:.0f} req/s; p99/p50 {p99 / p50:.2f} (target <= 3)" if concurrency > 1 else ""
            print(f"{'':<48} server CPU {cpu_ms:.3f} ms per request{extra}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="a checkout of other code (e.g. a worktree of HEAD~1) to measure too")
    args = parser.parse_args()

    workdir, version = train_signal_model()

    models = workdir / "models"
    trees = {"now": Path(__file__).resolve().parents[1]}
    if args.baseline:
        trees = {"baseline": args.baseline.resolve(), **trees}
    servers = {}
    try:
        for label, root in trees.items():
            servers[label] = start_server(root, models)
        print(f"server on {cores_text(SERVER_CORES)}, load generator on {cores_text(CLIENT_CORES)}; one raw-bars instance of "
              f"{MODEL_BARS} bars is {len(bodies()['raw'])} bytes")
        # the checkouts take turns, ROUNDS times: a burst of other work on the machine hits both
        rounds: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
        for i in range(ROUNDS):
            for label, server in servers.items():
                print(f"-- {label} ({trees[label]}), round {i + 1} of {ROUNDS}")
                rounds[label].append(measure(server))
        with pinned(CLIENT_CORES), httpx.Client(base_url=servers["now"].url, timeout=60) as client:
            raw = json.loads(bodies()["raw"])  # what a client that builds its JSON every time (the trader, httpx) sees
            report("HTTP /predict, raw bars, httpx client json=...", time_calls(lambda: client.post("/predict", json=raw).raise_for_status(), N))
    finally:
        for server in servers.values():
            server.stop()
    best = {label: {key: min(r[key] for r in runs) for key in runs[0]} for label, runs in rounds.items()}
    print(f"best of {ROUNDS} rounds (ms):")
    for key in best["now"]:
        line = f"  {key:<14} now {best['now'][key]:8.3f}"
        if "baseline" in best:
            line += f"  baseline {best['baseline'][key]:8.3f}  baseline/now {best['baseline'][key] / best['now'][key]:5.1f}x"
        print(line)
    now = best["now"]
    tails = ", ".join(f"{r['raw8_p99'] / r['raw8_p50']:.2f}" for r in rounds["now"])
    print(f"targets: raw bars p50 at concurrency 1 {now['raw1_p50']:.2f} ms (<= 1.5); "
          f"p99/p50 at concurrency 8, each round: {tails} (<= 3)")
    report_feature_building({"bars": example_bars(MODEL_BARS)})

    from kryptobot.models.signal.runtime import SignalRuntime
    from kryptobot.settings import Settings
    from kryptobot.store import ModelStore

    store = ModelStore(models, "signal")
    model = SignalRuntime(Settings(models_dir=models)).load_version(store, version)
    row = np.random.default_rng(0).normal(size=(1, len(model.features) + 1)).astype(np.float32)
    onnx_ms = report("in-process ONNX Runtime predict_proba, 1 row", time_calls(lambda: model.predict_matrix(row), N))
    import joblib

    forest = joblib.load(store.verified_artifacts(version) / "forest.joblib")  # our own artifact, for the comparison only
    forest.set_params(n_jobs=1)
    named = pd.DataFrame(row, columns=forest.feature_names_in_)  # as it was fitted: no feature-name warning per call
    sk_ms = report("in-process scikit-learn predict_proba, 1 row", time_calls(lambda: forest.predict_proba(named), 100))
    agree = np.abs(model.predict_matrix(row) - forest.predict_proba(named)[:, 1]).max()
    print(f"ratios: sklearn/onnx {sk_ms / onnx_ms:.0f}x; HTTP raw bars/onnx {now['raw1_p50'] / onnx_ms:.0f}x; "
          f"max |onnx - sklearn| = {agree:.2e}")


if __name__ == "__main__":
    main()

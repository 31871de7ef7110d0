"""A model service that misbehaves on ``POST /predict`` (``MISBEHAVE``): what a
half-deployed, buggy, overloaded or half-dead service looks like to the trader, over real HTTP.

* a malformed 200 (``wrong_type``, ``missing_field``, ``not_json``, ``nan``);
* ``slow``: the answer after ``MISBEHAVE_SECONDS`` (default 60), nothing before;
* ``trickle``: a status line and headers at once, then one byte of a valid answer every
  ``MISBEHAVE_SECONDS`` (default 0.2): httpx's per-read timeout never fires;
* ``forecast``: a well-formed forecast at once (a stand-in forecast service whose calls
  can be counted).

``GET /model`` answers a well-formed active forecast version at once, so a trader gets as
far as ``/predict``; ``GET /calls`` counts the ``/predict`` requests received and the
answers still trickling (a client that gave up but left its connection open keeps one going).
"""
import asyncio
import json
import os
from datetime import datetime, timezone

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

BODIES = {
    "wrong_type": b'{"predictions": [{"probability": "high", "side": "buy", "features": {}}], "model_version": "signal-v1", "model_versions": {}}',
    "missing_field": b'{"predictions": [{"side": "buy"}], "model_version": "signal-v1", "model_versions": {}}',
    "not_json": b"<html>502 from a proxy, but with status 200</html>",
    "nan": b'{"predictions": [{"probability": NaN, "side": "buy", "features": {}}], "model_version": "signal-v1", "model_versions": {}}',
}
VERSION = "gru-v1"
MODEL = {"version": VERSION, "line": "gru", "active": True, "created_at": "2024-01-01T00:00:00+00:00",
         "params": {"forecast_horizon": 5, "sequence_length": 30}, "artifacts": {}}


def forecast_answer() -> bytes:
    path = {"model_version": VERSION, "horizon": 5, "price": [100.0] * 5, "lower": [99.0] * 5, "upper": [101.0] * 5,
            "trend": 0.0, "direction": "flat", "confidence": 0.5}
    prediction = {"symbol": None, "last_timestamp": datetime(2024, 1, 2, tzinfo=timezone.utc).isoformat(), "last_close": 100.0,
                  "coverage": 0.8, "combined": path, "models": {"gru": path}, "confidence_method": "stand-in",
                  "interval_method": "stand-in"}
    return json.dumps({"predictions": [prediction], "model_version": VERSION, "model_versions": {"gru": VERSION}}).encode()


def create_app() -> FastAPI:
    app = FastAPI()
    kind = os.environ["MISBEHAVE"]
    seconds = float(os.environ.get("MISBEHAVE_SECONDS", 60 if kind == "slow" else 0.2))
    calls = {"predict": 0, "trickling": 0}

    @app.get("/health/live")
    async def live():
        return {"status": "live"}

    @app.get("/model")
    async def model():
        return {"models": [MODEL]}

    @app.get("/calls")
    async def count():
        return calls

    @app.post("/predict")
    async def predict(request: Request):
        calls["predict"] += 1
        if kind in BODIES:
            return Response(BODIES[kind], media_type="application/json")
        body = forecast_answer()
        if kind == "slow":
            await asyncio.sleep(seconds)
        if kind == "trickle":
            async def drip():
                calls["trickling"] += 1
                try:
                    for i in range(len(body)):  # bounded: one byte at a time, then the end
                        if await request.is_disconnected():  # the client closed the connection
                            return
                        yield body[i : i + 1]
                        await asyncio.sleep(seconds)
                finally:
                    calls["trickling"] -= 1

            return StreamingResponse(drip(), media_type="application/json")
        return Response(body, media_type="application/json")

    return app

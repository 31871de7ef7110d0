"""A model service that answers 200 with a body its schema does not allow (``MISBEHAVE``):
what a half-deployed or buggy service looks like to the trader, over real HTTP."""
import os

from fastapi import FastAPI
from fastapi.responses import Response

BODIES = {
    "wrong_type": b'{"predictions": [{"probability": "high", "side": "buy", "features": {}}], "model_version": "signal-v1", "model_versions": {}}',
    "missing_field": b'{"predictions": [{"side": "buy"}], "model_version": "signal-v1", "model_versions": {}}',
    "not_json": b"<html>502 from a proxy, but with status 200</html>",
    "nan": b'{"predictions": [{"probability": NaN, "side": "buy", "features": {}}], "model_version": "signal-v1", "model_versions": {}}',
}


def create_app() -> FastAPI:
    app = FastAPI()
    body = BODIES[os.environ["MISBEHAVE"]]

    @app.get("/health/live")
    async def live():
        return {"status": "live"}

    @app.post("/predict")
    async def predict():
        return Response(body, media_type="application/json")

    return app

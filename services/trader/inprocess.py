"""A layer's trained versions in this process, behind :class:`ModelClient`'s interface.

A walk-forward fold scores its days with the calls a plain backtest sends the services
(``services.trader.backtest``): the same request bodies, validated with the runtime's own
request schemas, answered by the runtime's ``predict`` and parsed with the service's
response schema, as the HTTP route and the client would; only the HTTP is left out.
"""
from __future__ import annotations

from pydantic import ValidationError

from kryptobot.errors import InvalidInput
from kryptobot.runtime import ModelRuntime, ModelVersion
from kryptobot.schemas import PredictResponse
from services.framework.schemas import ModelInfo, ModelList
from services.trader.wire import PREDICTIONS


class InProcessClient:
    """``predict`` and ``model`` of one layer, over versions trained in this process."""

    def __init__(self, name: str, runtime: ModelRuntime, models: dict[str, ModelVersion]):
        self.name = name
        self.runtime = runtime
        self.models = models

    async def predict(self, body: dict, request_id: str | None = None) -> PredictResponse:
        runtime = self.runtime
        try:
            instances = [runtime.Instance.model_validate(i) for i in body["instances"]]
            options = None if runtime.PredictOptions is None else runtime.PredictOptions.model_validate(body.get("options") or {})
        except ValidationError as exc:
            raise InvalidInput(f"{self.name} rejected the request: {exc.errors()[0]['msg']}", field=self.name) from exc
        predictions = runtime.predict(self.models, instances, options)
        versions = {line: m.version for line, m in self.models.items()}
        return PredictResponse[PREDICTIONS[self.name]].model_validate(
            {"predictions": predictions, "model_version": "+".join(versions.values()), "model_versions": versions})

    async def model(self, request_id: str | None = None) -> ModelList:
        return ModelList(models=[ModelInfo.from_metadata(m.stored_metadata, active=True) for m in self.models.values()])

"""The one table of services: what the stack starts, the bootstrap trains, the CLI and the
trader call, and the deployment checks compare docker-compose.yml with.

Adding a model service is one package under ``kryptobot/models/`` plus one row here (see
``docs/adding-a-model-service.md``). Only data and HTTP: importing this loads no model code,
so every image of the project can read it.
"""
from __future__ import annotations

from dataclasses import dataclass

from pydantic import create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

HOST = "127.0.0.1"
PORT_BASE = 8000

_DATA = {"source": "synthetic", "symbols": ["SYNA", "SYNB"]}
_QUICK_DATA = {**_DATA, "start": "2018-01-01", "end": "2021-12-31"}
_FIRST = {"activate": True}  # see ServiceSpec


@dataclass(frozen=True)
class ServiceSpec:
    """One row of the table.

    ``first_training`` is the ``POST /train`` body a fresh deployment sends a model service
    that has no model (the service's Swagger example, trimmed so all four train on 2 cores in
    a few minutes); ``quick_training`` is the tiny one of tests and ``KRYPTOBOT_STACK_QUICK=1``.
    A service without them is not a model service. Both activate what they train whatever
    the promotion gate says (``"activate": true``; the verdict is still recorded): a fresh
    deployment needs a model to serve, and a few minutes of training on little data need not
    beat the naive baseline. Scheduled retraining sends the same bodies with ``"if_better"``.
    """

    name: str
    port_offset: int
    app: str  # "module:factory" that uvicorn serves
    first_training: dict | None = None
    quick_training: dict | None = None
    tensorflow: bool = False  # only these images install TensorFlow

    @property
    def is_model_service(self) -> bool:
        return self.first_training is not None

    @property
    def url_setting(self) -> str:
        """The settings field (and, upper-cased with ``KRYPTOBOT_``, the variable) of its URL."""
        return f"{self.name}_url"

    @property
    def url_env(self) -> str:
        return f"KRYPTOBOT_{self.url_setting.upper()}"

    def port(self, base: int = PORT_BASE) -> int:
        return base + self.port_offset

    def default_url(self, host: str = HOST, base: int = PORT_BASE) -> str:
        return f"http://{host}:{self.port(base)}"

    def training_body(self, quick: bool = False) -> dict:
        body = self.quick_training if quick else self.first_training
        if body is None:
            raise KeyError(f"{self.name} is not a model service: it trains nothing")
        return body


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("trader", 0, "services.trader.app:create_app"),
    ServiceSpec(
        "signal", 1, "services.signal.app:create_app",
        first_training={
            **_FIRST,
            "data": {**_DATA, "start": "2014-01-01", "end": "2022-12-31"},
            "model": {"n_estimators": 100, "max_depth": 6, "min_samples_leaf": 20},
        },
        quick_training={**_FIRST, "data": _QUICK_DATA, "model": {"n_estimators": 20, "max_depth": 4}, "evaluation": {"n_splits": 2}},
    ),
    ServiceSpec(
        "anomaly", 2, "services.anomaly.app:create_app", tensorflow=True,
        first_training={**_FIRST, "data": {**_DATA, "start": "2016-01-01", "end": "2023-12-31"}, "epochs": 12, "window": 20},
        quick_training={**_FIRST, "data": _QUICK_DATA, "epochs": 1, "window": 20, "units": 16},
    ),
    ServiceSpec(
        "ensemble", 3, "services.ensemble.app:create_app",
        first_training={
            **_FIRST,
            "data": {**_DATA, "start": "2014-01-01", "end": "2022-12-31"},
            "voting": "soft",
            "random_forest": {"n_estimators": 60},
            "gradient_boosting": {"n_estimators": 60},
            "ada_boost": {"n_estimators": 60},
        },
        quick_training={
            **_FIRST,
            "data": _QUICK_DATA,
            "random_forest": {"n_estimators": 10},
            "gradient_boosting": {"n_estimators": 10},
            "ada_boost": {"n_estimators": 10},
            "evaluation": {"n_splits": 2},
        },
    ),
    ServiceSpec(
        "forecast", 4, "services.forecast.app:create_app", tensorflow=True,
        # sequence_length and forecast_horizon come from config/forecasting_settings.json
        first_training={
            **_FIRST,
            "data": {**_DATA, "start": "2016-01-01", "end": "2023-12-31"},
            "model_types": ["lstm", "gru"],
            "epochs": 6,
            "units": 32,
        },
        quick_training={
            **_FIRST,
            "data": _QUICK_DATA, "model_types": ["gru"], "sequence_length": 20, "forecast_horizon": 5,
            "epochs": 1, "units": 8,
        },
    ),
)

BY_NAME: dict[str, ServiceSpec] = {s.name: s for s in SERVICES}
MODEL_SERVICES: tuple[str, ...] = tuple(s.name for s in SERVICES if s.is_model_service)


def spec(name: str) -> ServiceSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r}; the services are {list(BY_NAME)}") from None


class _UrlSettingsBase(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KRYPTOBOT_", extra="ignore")

    def url(self, name: str) -> str:
        return getattr(self, spec(name).url_setting)

    def urls(self, names: tuple[str, ...] | list[str] = MODEL_SERVICES) -> dict[str, str]:
        return {name: self.url(name) for name in names}


#: ``KRYPTOBOT_<NAME>_URL`` of every service in the table (default: this machine, the
#: table's ports). Built from the table so a new row needs no new settings field.
ServiceUrls = create_model(
    "ServiceUrls",
    __base__=_UrlSettingsBase,
    __doc__="Where each service of the table answers (``KRYPTOBOT_<NAME>_URL``).",
    **{s.url_setting: (str, s.default_url()) for s in SERVICES},
)

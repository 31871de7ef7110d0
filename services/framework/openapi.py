"""An OpenAPI that says how each operation fails, in the shape it really fails in.

FastAPI documents its own ``HTTPValidationError`` for 422 and nothing else, while every
error is answered as :class:`~services.framework.schemas.ErrorBody`
(:mod:`services.framework.errors`); a client generated from that spec mis-reads every error.
:func:`install_openapi` rewrites the spec once, when it is first asked for (so after every
route exists):

* 422 (FastAPI adds it to each operation with an input) gets the real error schema;
* what the shape of a route implies is added: 500 everywhere (the handler of unexpected
  errors), 400 and 413 with a request body (one FastAPI cannot decode, one above the size
  limit of :mod:`.limits`), 401 where the API key is required (its security scheme), 404
  with a path parameter (it names something that may not exist);
* what only the route knows (409, 503, a 404 of a query) it declares with
  :func:`error_responses`, in its decorator's ``responses=`` or with :func:`declare_responses`;
* any other 4xx/5xx a route lists with only a description gets the error schema too.

405 is not an operation's answer (the method is not one of the path's operations): the
error handler sends it with ``Allow``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from services.framework.schemas import ErrorBody

REF = "#/components/schemas/{model}"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
ERROR_DESCRIPTIONS = {
    400: "The body cannot be read as JSON text (e.g. bytes that are not UTF-8)",
    401: "Missing or wrong `X-API-Key` (checked only when `KRYPTOBOT_API_KEY` is set)",
    404: "Not found: `field` names the input that points at nothing",
    409: "Conflicts with the current state (e.g. a training job is still running)",
    413: "The body is larger than `KRYPTOBOT_MAX_BODY_BYTES`",
    422: "Invalid input: `field` names the first invalid input, `errors` lists each one",
    500: "Unexpected error: a bug, or a stored artifact that fails its hash check",
    503: "Not ready (no active model), or a service it depends on is unavailable",
    507: "The model store's disk is full: nothing was half written, the active model keeps serving",
}
DEFAULT_DESCRIPTION = "Error"


def error_responses(*statuses: int, model: type[BaseModel] = ErrorBody) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route that can also answer ``statuses`` (body: ``model``)."""
    return {s: {"model": model, "description": ERROR_DESCRIPTIONS.get(s, DEFAULT_DESCRIPTION)} for s in statuses}


def declare_responses(app: FastAPI, responses: Mapping[tuple[str, str], dict[int | str, dict[str, Any]]]) -> None:
    """Document ``responses[(method, path)]`` (e.g. from :func:`error_responses`) of routes
    written elsewhere, as their decorators' ``responses=`` would."""
    app.state.declared_responses.update(responses)


def install_openapi(app: FastAPI) -> None:
    app.state.declared_responses = {}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_error_responses(FastAPI.openapi(app), app.state.declared_responses)
        return app.openapi_schema

    app.openapi = openapi


def with_error_responses(spec: dict[str, Any],
                         declared: Mapping[tuple[str, str], dict[int | str, dict[str, Any]]] | None = None) -> dict[str, Any]:
    """``spec`` (FastAPI's) with every operation's error answers documented; see the module.

    ``declared``: more responses per ``(method, path)``, as in a route's ``responses=``.
    """
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # only FastAPI's 422 referred to them
        schemas.pop(name, None)
    declared = dict(declared or {})
    content = _json_content(ErrorBody, schemas)
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation["responses"]
            for status, response in declared.pop((method.upper(), path), {}).items():
                responses[str(status)] = _response(responses.get(str(status), {}), response, schemas)
            for status in _implied_statuses(operation):
                responses.setdefault(str(status), {"description": ERROR_DESCRIPTIONS[status]})
            if "422" in responses:
                responses["422"] = {"description": ERROR_DESCRIPTIONS[422], "content": content}
            for status, response in responses.items():
                if status[:1] in ("4", "5") and "content" not in response:
                    response["content"] = content
            operation["responses"] = dict(sorted(responses.items()))
    if declared:
        raise KeyError(f"responses declared for operations that do not exist: {sorted(declared)}")
    return spec


def _response(generated: dict[str, Any], declared: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's response merged with a ``responses=`` entry; a ``model`` becomes JSON content."""
    response = {**generated, **{k: v for k, v in declared.items() if k != "model"}}
    response.setdefault("description", DEFAULT_DESCRIPTION)
    if "model" in declared:
        response["content"] = {**_json_content(declared["model"], schemas), **response.get("content", {})}
    return response


def _json_content(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, Any]:
    """``application/json`` content of ``model``, its schemas added to the components."""
    schema = model.model_json_schema(ref_template=REF, mode="serialization")
    for name, definition in {**schema.pop("$defs", {}), model.__name__: schema}.items():
        schemas.setdefault(name, definition)
    return {"application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}}


def _implied_statuses(operation: dict[str, Any]) -> list[int]:
    statuses = [500]
    if "requestBody" in operation:
        statuses += [400, 413]
    if operation.get("security"):  # the API key (services.framework.auth) is its only scheme
        statuses.append(401)
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        statuses.append(404)
    return statuses

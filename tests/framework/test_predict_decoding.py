"""``/predict`` bodies are decoded by pydantic-core (``encoding.decode_json``), and answered
exactly as the ``json`` module's reading of them would be: NaN and Infinity literals,
integers of any size, UTF-16 and a byte-order mark, malformed JSON, bytes that are no text."""
from __future__ import annotations

import json

import httpx
import pytest

from services.framework.encoding import decode_json
from tests.framework.test_model_app import FACTORY, train

DOCUMENTS = [
    b'{"a": [1.5, -0.0, 1e400, -1e400, 2.5e-324, 123456789012345678901234567890]}',
    b'[NaN, Infinity, -Infinity]',
    b'{"a": 1, "a": 2}',
    b'"\\ud83d\\ude00 \\u00e9 \\/"',
    b'\xef\xbb\xbf{"bom": true}',
    '{"utf16": "é"}'.encode("utf-16"),
    b'"\\ud800"',  # a lone surrogate: json reads it, pydantic-core does not
    b' {"x": null} ',
]
BROKEN = [b'{"a": [1,]}', b'{"a": 1}x', b'"\xff"', b'"a\x01"', b"", b"[" * 3000 + b"]" * 3000]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_decodes_what_json_decodes_to_the_same_values(document):
    assert repr(decode_json(document)) == repr(json.loads(document))


@pytest.mark.parametrize("document", BROKEN)
def test_refuses_what_json_refuses_with_its_error(document):
    with pytest.raises(Exception) as expected:
        json.loads(document)
    with pytest.raises(type(expected.value)) as got:
        decode_json(document)
    assert str(got.value) == str(expected.value)


@pytest.fixture(scope="module")
def client(start_server):
    server = start_server(FACTORY)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert train(c, {"seed": 0})["state"] == "succeeded"
        yield c


def post(client, content: bytes, content_type: str = "application/json") -> httpx.Response:
    return client.post("/predict", content=content, headers={"Content-Type": content_type})


def test_what_only_the_json_module_reads_is_still_served(client):
    plain = post(client, b'{"instances": [{"x1": 1.0, "x2": 0.5}]}')
    assert plain.status_code == 200
    for content in (b'\xef\xbb\xbf{"instances": [{"x1": 1.0, "x2": 0.5}]}',
                    '{"instances": [{"x1": 1.0, "x2": 0.5}]}'.encode("utf-16")):
        resp = post(client, content)
        assert resp.status_code == 200, resp.text
        assert resp.json()["predictions"] == plain.json()["predictions"]
    big = post(client, b'{"instances": [{"x1": 100000000000000000000000000000, "x2": 0}]}')
    assert big.status_code == 200 and big.json()["predictions"][0]["label"] == 1


@pytest.mark.parametrize("literal, field", [(b"NaN", "x1"), (b"-Infinity", "x2"), (b"1e999", "x2")])
def test_non_finite_numbers_are_a_422_naming_the_value(client, literal, field):
    x1, x2 = (literal, b"0") if field == "x1" else (b"0", literal)
    resp = post(client, b'{"instances": [{"x1": %s, "x2": %s}]}' % (x1, x2))
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"] == "ValidationError" and body["field"] == f"instances[0].{field}"
    assert "finite" in body["detail"]


def test_malformed_json_and_undecodable_bytes(client):
    resp = post(client, b'{"instances": [}')
    assert resp.status_code == 422 and resp.json()["detail"].endswith("JSON decode error")
    resp = post(client, b'{"instances": [{"x1": "\xff"}]}')
    assert resp.status_code == 400 and resp.json()["error"] == "HTTPError"
    resp = post(client, b'{"instances": [{"x1": 1.0, "x2": 0.5}]}', "application/xml")  # not JSON: not decoded
    assert resp.status_code == 422 and resp.json()["field"] == "body"

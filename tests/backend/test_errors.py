"""Malformed payloads get a 4xx naming the field, never a 500; auth and CORS behave."""

import base64

import pytest

from backend.serving.app import create_app
from backend.serving.loading import load_model
from backend.serving.config import BackendConfig
from tests.backend.conftest import TEXT, task


@pytest.mark.parametrize("body, field", [
    ({}, "tasks"),
    ({"tasks": "x"}, "tasks"),
    ({"tasks": [1]}, "tasks[0]"),
    ({"tasks": [{"id": 1}]}, "tasks[0].data"),
    ({"tasks": [{"id": 1, "data": {"text": 5}}]}, "tasks[0].data.text"),
    ({"tasks": [task(mentions=[{"start": 13, "end": 999, "label": "SINTOMA"}])]}, "tasks[0].data.mentions[0]"),
    ({"tasks": [task(mentions=[{"start": "a", "end": 5, "label": "SINTOMA"}])]}, "tasks[0].data.mentions[0]"),
    ({"tasks": [task(mentions=[{"start": 13, "end": 19, "text": "tos", "label": "SINTOMA"}])]}, "does not match"),
    ({"tasks": [task(mentions=[{"start": 13, "end": 19}])]}, "tasks[0].data.mentions[0].label"),
    ({"tasks": [task(mentions="fiebre")]}, "tasks[0].data.mentions"),
    ({"tasks": [task()], "params": {"context": {"result": "x"}}}, "params.context.result"),
    ({"tasks": [task()], "label_config": "<View"}, "not valid XML"),
    ({"tasks": [task()], "params": []}, "params"),
])
def test_malformed_predict_is_a_400_naming_the_field(client, body, field):
    reply = client.post("/predict", json=body)
    assert reply.status_code == 400
    assert field in reply.get_json()["error"]


def test_non_json_body_is_a_400(client):
    reply = client.post("/predict", data="not json", content_type="application/json")
    assert reply.status_code == 400 and "JSON object" in reply.get_json()["error"]
    assert client.post("/webhook", json={"no": "action"}).status_code == 400


def test_huge_texts_and_bodies_are_refused(tmp_path):
    config = BackendConfig(data_dir=str(tmp_path), worker=False, max_text_chars=1000, max_body_mb=0.05)
    model, info = load_model(config)
    client = create_app(config, model, info).test_client()
    long_task = task(text=TEXT + " " * 2000)
    reply = client.post("/predict", json={"tasks": [long_task]})
    assert reply.status_code == 400 and "CLINLINKER_MAX_TEXT_CHARS" in reply.get_json()["error"]
    reply = client.post("/predict", json={"tasks": [task(text=TEXT + "x" * 100_000)]})
    assert reply.status_code == 413 and "CLINLINKER_MAX_BODY_MB" in reply.get_json()["error"]


def test_unknown_route_and_method_are_json_4xx(client):
    assert client.get("/nope").status_code == 404
    assert client.get("/predict").status_code == 405
    assert "error" in client.get("/nope").get_json()


@pytest.fixture
def auth_client(tmp_path):
    config = BackendConfig(data_dir=str(tmp_path), worker=False, auth_user="ls", auth_password="s3cret",
                           picker_token="tok")
    model, info = load_model(config)
    return create_app(config, model, info).test_client()


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_guards_every_endpoint(auth_client):
    for method, path in [("get", "/health"), ("post", "/setup"), ("post", "/predict"), ("post", "/webhook"),
                         ("get", "/metrics"), ("get", "/taxonomy?doc=x")]:
        assert getattr(auth_client, method)(path).status_code == 401, path
    assert auth_client.get("/health", headers=basic("ls", "wrong")).status_code == 401
    assert auth_client.get("/health", headers=basic("ls", "s3cret")).status_code == 200
    assert auth_client.get("/taxonomy?doc=x&token=tok").status_code == 200  # the browser's picker request
    assert auth_client.get("/taxonomy?doc=x&token=bad").status_code == 401


def test_cors_only_for_configured_origins(client):
    allowed = client.get("/taxonomy?doc=d1", headers={"Origin": "http://localhost:8080"})
    assert allowed.headers.get("Access-Control-Allow-Origin") == "http://localhost:8080"
    other = client.get("/taxonomy?doc=d1", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_config_from_env_validates_numbers_and_auth():
    from clinlinker.errors import ClinlinkerError

    assert BackendConfig.from_env({"CLINLINKER_TOP_K": "10"}).top_k == 10
    with pytest.raises(ClinlinkerError, match="CLINLINKER_TOP_K"):
        BackendConfig.from_env({"CLINLINKER_TOP_K": "ten"})
    with pytest.raises(ClinlinkerError, match="BASIC_AUTH"):
        BackendConfig.from_env({"CLINLINKER_BASIC_AUTH_USER": "x"})
    assert BackendConfig.from_env({"CLINLINKER_CORS_ORIGINS": "http://a, http://b"}).cors_origins == \
        ("http://a", "http://b")


def test_brackets_inside_texts_do_not_count_as_nesting(client):
    """Only real arrays and objects count towards the depth limit: a text may hold quotes and brackets."""
    import json

    text = TEXT + ' Nota: "' + "[" * 80 + '" y \\"' + "{" * 80
    body = json.dumps({"tasks": [task(text=text)]})
    assert '\\"' in body  # the text's quotes travel escaped
    reply = client.post("/predict", data=body, content_type="application/json")
    assert reply.status_code == 200, reply.get_json()
    deep = '{"tasks": ' + "[" * 70 + "]" * 70 + "}"
    assert client.post("/predict", data=deep, content_type="application/json").status_code == 400

"""Fuzzing every endpoint: hand-written hostile bodies (the ones that used to give 500s) and generated mutations of
the requests a real Label Studio 1.23 sends. No case may get a 5xx; every refusal says what is wrong."""

import base64
import copy
import json
import random

import pytest

from backend.serving.app import create_app
from backend.serving.loading import load_model
from backend.serving.config import BackendConfig
from tests.backend.conftest import capture, task

SEED = 20261127
GENERATED_PER_ENDPOINT = 75
POST_ENDPOINTS = ("/predict", "/webhook", "/setup", "/train", "/sync")
DEEP = "[" * 100_000 + "]" * 100_000
NASTY = [None, True, False, 0, -1, 2 ** 70, 1.5, -0.0, "", " ", "\ud800", "a\udfffb", "x" * 20_000, "9" * 400, [],
         {}, [None], [[["x"]]], {"a": {"b": {"c": None}}}, "NO_CODE", "0|1", "\u0000", "<script>", "../../etc/passwd",
         [{"id": 1}], {"id": None}, "2026-13-45T99:99:99Z", float("inf")]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def app(request, tmp_path_factory):
    """The suite runs on both stores of record: PostgreSQL refuses some text SQLite keeps (NUL characters)."""
    database_url = None
    if request.param == "postgresql":
        database_url = request.getfixturevalue("fuzz_postgres")
    config = BackendConfig(data_dir=str(tmp_path_factory.mktemp("fuzz") / "var"), worker=False, max_tasks=50,
                           max_spans=500, max_spans_per_task=200, database_url=database_url)
    model, info = load_model(config)
    yield create_app(config, model, info)
    info["store"].dispose()


@pytest.fixture(scope="module")
def fuzz_postgres(postgres_server):
    from tests.conftest import postgres_database

    with postgres_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def check(reply, case) -> None:
    assert reply.status_code < 500, (case, reply.status_code, reply.get_data(as_text=True)[:500])
    if reply.status_code >= 400 and reply.status_code not in (401, 404, 405):
        error = (reply.get_json(silent=True) or {}).get("error")
        assert isinstance(error, str) and error, (case, reply.get_data(as_text=True)[:300])


def paths(value, prefix=()):
    """Every path into a JSON value (for mutation)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value[:5]):
            yield from paths(item, prefix + (i,))


def mutate(body, rng: random.Random):
    body = json.loads(json.dumps(body))
    for _ in range(rng.randint(1, 3)):
        candidates = [p for p in paths(body) if p]
        if not candidates:
            return body
        path = rng.choice(candidates)
        parent = body
        for key in path[:-1]:
            parent = parent[key]
        choice = rng.random()
        if choice < 0.1 and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif choice < 0.2:
            parent[path[-1]] = json.loads("[" * 50 + "1" + "]" * 50)
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(NASTY))
    return body


def post_raw(client, path, data: bytes):
    return client.post(path, data=data, content_type="application/json")


def dumps(body) -> bytes:
    # allow_nan: Infinity is not JSON, but some clients send it; lone surrogates are written as \ud800 escapes
    return json.dumps(body, allow_nan=True).encode("ascii")


SEEDS = {
    "/predict": [capture("predict_request_batch.json"), capture("predict_request_interactive.json"),
                 {"tasks": [task()], "project": "3.1795651414"}],
    "/webhook": [capture("webhook_annotation_created.json"), capture("webhook_annotation_updated.json"),
                 capture("webhook_tasks_created.json")],
    "/setup": [capture("setup_request.json")],
    "/train": [{"project": 1}],
    "/sync": [{"project": "3"}],
}


@pytest.mark.parametrize("path", POST_ENDPOINTS)
def test_generated_mutations_of_real_requests(client, path):
    rng = random.Random(f"{SEED}{path}")
    statuses = []
    for i in range(GENERATED_PER_ENDPOINT):
        body = mutate(rng.choice(SEEDS[path]), rng)
        reply = post_raw(client, path, dumps(body))
        check(reply, (path, i))
        statuses.append(reply.status_code // 100)
    # the mutations reach both sides of the checks at the door: some are refused with a 4xx naming the field, and
    # some are accepted (a mutation of a value that does not matter): a fuzzer refused everywhere tests nothing
    # beyond the door (/train and /sync take one field, so every mutation of theirs is refused)
    assert statuses.count(4), {s: statuses.count(s) for s in set(statuses)}
    if path in ("/predict", "/webhook", "/setup"):
        assert statuses.count(2), {s: statuses.count(s) for s in set(statuses)}


RAW_BODIES = [b"", b"   ", b"null", b"[]", b"1", b'"text"', b"{", b"{'a': 1}", b"\xff\xfe\x00", b'{"a": NaN}',
              DEEP.encode(), b'{"tasks": ' + DEEP.encode() + b"}", b'{"tasks": "' + b"\\" * 1001 + b'"}',
              b'{"action": "\\ud800"}', b'{"\\ud800": 1}', b'{"tasks": [{"data": {"text": "\\udc00"}}]}',
              b"{" * 70 + b"}" * 70, b'{"a": "[[[[[[[["}' * 1]


@pytest.mark.parametrize("path", POST_ENDPOINTS)
@pytest.mark.parametrize("raw", RAW_BODIES, ids=range(len(RAW_BODIES)))
def test_raw_bodies(client, path, raw):
    reply = post_raw(client, path, raw)
    check(reply, (path, raw[:40]))
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        parsed = None
    # /train takes any body (Label Studio's button sends what it sends); /setup ignores fields it does not know
    if path != "/train" and not (path == "/setup" and isinstance(parsed, dict) and "\\ud800" not in raw.decode()):
        assert reply.status_code in (400, 409, 413)


def annotation_webhook(**annotation):
    body = capture("webhook_annotation_updated.json")
    body["annotation"].update(annotation)
    return body


HAND_WRITTEN = [
    ("/predict", {"tasks": [task(text="Paciente con fiebre\ud800 y dolor abdominal tras apendicectomía laparoscópica.")]}),
    ("/predict", {"tasks": [task(doc="\ud800")]}),
    ("/predict", {"tasks": [task()], "params": {"context": {"result": [{"id": "x", "type": "labels",
                                                                       "value": "a string"}]}}}),
    ("/predict", {"tasks": [task()], "params": {"context": {"result": [{"id": "x", "type": "labels", "value": 7}]}}}),
    ("/predict", {"tasks": [{"id": 1, "data": {"text": "fiebre"}, "annotations": [
        {"id": 1, "result": [], "updated_at": "2026-01-01"}, {"id": "b", "result": "x", "updated_at": "2026-01-01"},
        {"id": None, "result": [], "updated_at": "2026-01-01"}]}]}),  # mixed id types: the newest ("b") is read
    ("/predict", {"tasks": [{"id": 1, "data": {"text": "fiebre"}, "annotations": "not a list"}]}),
    ("/predict", {"tasks": [task()] * 51}),  # more tasks than allowed: 413
    ("/predict", {"tasks": [task(mentions=[{"start": 0, "end": 1, "label": "SINTOMA"}] * 201)]}),
    ("/predict", {"tasks": [task(mentions=[{"start": 13, "end": 19, "label": "SINTOMA"}] * 150)] * 4}),
    ("/predict", {"tasks": [task()], "project": {"id": 3}}),
    ("/webhook", annotation_webhook(result="a string")),
    ("/webhook", {**capture("webhook_annotation_updated.json"), "annotation": "not an object"}),
    ("/webhook", {**capture("webhook_annotation_updated.json"), "annotation": None}),
    ("/webhook", annotation_webhook(result=[{"id": "r", "type": "labels", "value": "x"}])),
    ("/webhook", annotation_webhook(result=[{"id": "r", "type": "labels", "value": {"start": "0", "end": 3}}])),
    ("/webhook", annotation_webhook(id=[1])),
    ("/webhook", annotation_webhook(id="x" * 100)),
    ("/webhook", annotation_webhook(updated_at={"a": 1})),
    ("/webhook", annotation_webhook(updated_at="2026-13-45T99:99:99Z")),
    ("/webhook", annotation_webhook(updated_at=1795651414)),
    ("/webhook", {**capture("webhook_annotation_updated.json"), "action": "SOMETHING_MADE_UP"}),
    ("/webhook", {**capture("webhook_annotation_updated.json"), "action": "x" * 10_000}),
    ("/webhook", {**capture("webhook_annotation_updated.json"), "project": None,
                  "annotation": {**capture("webhook_annotation_updated.json")["annotation"], "project": None}}),
    ("/webhook", {"action": "ANNOTATIONS_DELETED", "project": {"id": 3}, "annotations": "all"}),
    ("/webhook", {"action": "ANNOTATIONS_DELETED", "project": {"id": 3}, "annotations": [{"id": {"x": 1}}]}),
    ("/webhook", {"action": "ANNOTATIONS_CREATED", "project": {"id": 3}, "annotation": [], "task": []}),
    ("/webhook", {**capture("webhook_annotation_updated.json"), "task": {"id": 9, "data": "text"}}),
    ("/setup", {"project": "3.1795651414", "schema": 7}),
    ("/setup", {"project": [3], "schema": "<View/>"}),
    ("/setup", {"project": "3.1", "schema": "<View><Labels name='x'"}),
    ("/setup", {"project": "3.1", "hostname": "\ud800", "access_token": "t" * 5000}),
    ("/setup", {"project": "3.1", "hostname": "http://ls\u0000", "access_token": "t"}),
    ("/sync", {"project": "\u0000"}),
    ("/webhook", annotation_webhook(result=[{"id": "r\u0000", "type": "labels", "value": {"start": 0, "end": 3,
                                                                                      "labels": ["SINTOMA"]}}])),
    ("/predict", {"tasks": [task(doc="d\u0000")]}),
    ("/sync", {"project": "99"}),
    ("/sync", {}),
]


@pytest.mark.parametrize("path,body", HAND_WRITTEN, ids=range(len(HAND_WRITTEN)))
def test_hand_written_cases(client, path, body):
    reply = post_raw(client, path, dumps(body))
    check(reply, (path, str(body)[:80]))
    assert reply.status_code in (400, 413), (reply.status_code, reply.get_json())
    assert "internal" not in reply.get_json()["error"]


def test_a_refused_webhook_stores_nothing(app, client):
    store = app.extensions["clinlinker"].store
    before = store.counters()
    for body in [annotation_webhook(result="a string"), {"action": "NOT_AN_ACTION"}]:
        assert post_raw(client, "/webhook", dumps(body)).status_code == 400
    assert store.counters() == before


GET_QUERIES = ["/taxonomy", "/taxonomy?doc=", "/taxonomy?doc=%00", "/taxonomy?doc=d1&project=%00",
               "/taxonomy?doc=d1&path=%00", "/taxonomy?doc=%ED%A0%80", "/taxonomy?doc=d1&path=%ff",
               "/taxonomy?doc=d1&path=nothing", "/taxonomy?doc=" + "x" * 5000, "/taxonomy?doc=d1&project=a.b.c",
               "/taxonomy?doc=d1&project=" + "9" * 100, "/search?q=%00", "/search?q=fiebre&k=abc",
               "/search?q=fiebre&k=-5", "/search?q=fiebre&label=NOPE", "/search?q=" + "a" * 5000,
               "/search?q=%ED%A0%80", "/health", "/metrics", "/versions", "/", "/search?q=fiebre&project=%5B%5D"]


@pytest.mark.parametrize("url", GET_QUERIES, ids=range(len(GET_QUERIES)))
def test_get_endpoints(client, url):
    check(client.get(url), url)


def test_generated_queries(client):
    rng = random.Random(SEED)
    alphabet = ["%ED%A0%80", "%ff", "%00", "a", "ñ", "&", "=", "[", "9", "%20", "·t", "+"]
    for i in range(60):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        url = rng.choice(["/taxonomy?doc=d1&path=", "/taxonomy?doc=", "/search?q=", "/search?q=tos&k=",
                          "/search?q=tos&label=", "/taxonomy?doc=d1&project="]) + value
        check(client.get(url), (i, url))


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    config = BackendConfig(data_dir=str(tmp_path_factory.mktemp("auth") / "var"), worker=False,
                           auth_user="usuário", auth_password="contraseña", picker_token="tökén")
    model, info = load_model(config)
    return create_app(config, model, info).test_client()


@pytest.mark.parametrize("user,password,status", [("usuário", "contraseña", 200), ("usuario", "contraseña", 401),
                                                  ("ñ" * 300, "\u00ff", 401), ("", "", 401)])
def test_non_ascii_credentials(guarded, user, password, status):
    header = "Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8")).decode()
    assert guarded.get("/health", headers={"Authorization": header}).status_code == status


@pytest.mark.parametrize("token,status", [("tökén", 200), ("token", 401), ("%ED%A0%80", 401), ("\u00ff" * 50, 401)])
def test_non_ascii_picker_token(guarded, token, status):
    assert guarded.get("/taxonomy", query_string={"doc": "d1", "token": token}).status_code == status

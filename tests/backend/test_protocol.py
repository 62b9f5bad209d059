"""Contract tests: the requests a real Label Studio 1.23.2 sends, and what it needs back."""

from pathlib import Path

import pytest

from tests.backend.conftest import capture, task

CONFIGS = Path(__file__).resolve().parents[2] / "label_studio_config"


def test_health_says_which_engine_serves(client):
    for path in ("/", "/health"):
        health = client.get(path).get_json()
        assert health["status"] == "UP"
        assert health["engine"] == "lexical" and health["model"] == "char-ngrams"
        assert health["demo"] is True and health["concepts"] == 62
        assert health["model_version"].startswith("clinlinker-lexical-")


def test_setup_with_captured_body_returns_model_version(client):
    reply = client.post("/setup", json=capture("setup_request.json"))
    assert reply.status_code == 200
    assert reply.get_json()["model_version"] == client.get("/health").get_json()["model_version"]


def test_setup_refuses_a_config_without_spans(client):
    reply = client.post("/setup", json={"project": "1.1", "schema": "<View><Text name='t' value='$t'/></View>"})
    assert reply.status_code == 400
    assert "Labels" in reply.get_json()["error"]


def test_captured_batch_gets_one_result_per_task_in_order(client):
    body = capture("predict_request_batch.json")
    body["tasks"] = body["tasks"] * 3
    reply = client.post("/predict", json=body)
    assert reply.status_code == 200
    results = reply.get_json()["results"]
    assert len(results) == 3
    mentions = body["tasks"][0]["data"]["mentions"]
    for result in results:
        spans = [item for item in result["result"] if item["type"] == "labels"]
        assert [(s["value"]["start"], s["value"]["end"]) for s in spans] == [(m["start"], m["end"]) for m in mentions]
        assert isinstance(result["score"], float)


def test_each_span_gets_its_candidates_top1_preselected(client):
    reply = client.post("/predict", json={"tasks": [task()]}).get_json()["results"][0]
    by_region = {}
    for item in reply["result"]:
        by_region.setdefault(item["id"], {})[item["type"]] = item
    assert len(by_region) == 3
    tree = {node["value"]: node for node in client.get("/taxonomy?doc=d1").get_json()}
    for region in by_region.values():
        [[mention, leaf]] = region["taxonomy"]["value"]["taxonomy"]
        assert mention == f"{region['labels']['value']['text']} [{region['labels']['value']['start']}-" \
                          f"{region['labels']['value']['end']}] · {region['labels']['value']['labels'][0]}"
        children = tree[mention]["children"]
        leaves = [child["value"] for child in children]
        assert leaves[0] == leaf  # the pre-selected candidate is the first of the list
        codes = [v.split(" | ")[0] for v in leaves[:-1]]
        assert 3 <= len(codes) <= 25 and len(set(codes)) == len(codes)  # at most 25, only concepts with evidence
        assert leaves[-1].startswith("NO_CODE")
        assert "score" in children[0]["hint"] and children[0]["isLeaf"] is True
        assert region["choices"]["value"]["choices"] == ["EXACT"]
    assert by_region[next(iter(by_region))]["taxonomy"]["value"]["taxonomy"][0][1] == "386661006 | fiebre · hallazgo"
    spans = [item["score"] for item in reply["result"] if item["type"] == "taxonomy"]
    assert reply["score"] == pytest.approx(sum(spans) / len(spans), abs=1e-5)


def test_task_score_is_the_mean_certainty_of_its_spans(client, app):
    from clinlinker.search.candidates import certainty

    sure = task(1, "a", [{"start": 13, "end": 19, "label": "SINTOMA"}])
    unsure = task(2, "b", [{"start": 13, "end": 19, "label": "SINTOMA"}, {"start": 0, "end": 8, "label": "SINTOMA"}])
    first, second = client.post("/predict", json={"tasks": [sure, unsure]}).get_json()["results"]
    linker = app.extensions["clinlinker"].model.linker
    fiebre, paciente = (certainty(c) for c in linker.link(["fiebre", "Paciente"], 25))
    assert paciente < fiebre <= 1.0  # an exact term with a clear runner-up gap vs a word that is no concept
    assert first["score"] == pytest.approx(fiebre, abs=1e-5)
    assert second["score"] == pytest.approx((fiebre + paciente) / 2, abs=1e-5)


def test_captured_interactive_call_answers_only_the_new_region(client):
    body = capture("predict_request_interactive.json")
    reply = client.post("/predict", json=body)
    assert reply.status_code == 200
    [result] = reply.get_json()["results"]
    ids = {item["id"] for item in result["result"]}
    assert ids == {"pEKBopzB5R"}  # "tres días", drawn by hand; a2c4481ef0 already has a code
    # Label Studio replaces the drawn region with the answer's items: the answer is the whole region, label too
    drawn = next(r for r in body["params"]["context"]["result"] if r["id"] == "pEKBopzB5R")
    [labels] = [item for item in result["result"] if item["type"] == "labels"]
    assert labels["value"]["labels"] == drawn["value"]["labels"] and labels["from_name"] == drawn["from_name"]
    assert (labels["value"]["start"], labels["value"]["end"]) == (drawn["value"]["start"], drawn["value"]["end"])
    config_names = {item["from_name"] for item in result["result"]}
    assert config_names <= {"snomed", "code", drawn["from_name"]}


def test_spans_from_the_tasks_own_annotations(client):
    annotated = task(5, "ann", mentions=None)
    del annotated["data"]["mentions"]
    annotated["annotations"] = [{"id": 1, "was_cancelled": False, "updated_at": "2026-01-01", "result": [
        {"id": "r1", "from_name": "label", "to_name": "text", "type": "labels",
         "value": {"start": 43, "end": 71, "text": "apendicectomía laparoscópica", "labels": ["PROCEDIMIENTO"]}}]}]
    [result] = client.post("/predict", json={"tasks": [annotated]}).get_json()["results"]
    taxonomy = [item for item in result["result"] if item["type"] == "taxonomy"]
    assert [item["id"] for item in taxonomy] == ["r1"]
    assert taxonomy[0]["value"]["taxonomy"][0][1].startswith("6025007 |")


def test_other_labels_pass_through_untouched(client):
    t = task(mentions=[{"start": 0, "end": 8, "label": "PACIENTE"}, {"start": 13, "end": 19, "label": "SINTOMA"}])
    [result] = client.post("/predict", json={"tasks": [t]}).get_json()["results"]
    assert {item["value"]["text"] for item in result["result"]} == {"fiebre"}


def test_a_task_without_spans_gets_an_empty_prediction(client):
    t = {"id": 9, "data": {"text": "Sin menciones."}}
    [result] = client.post("/predict", json={"tasks": [t]}).get_json()["results"]
    assert result["result"] == [] and result["score"] == 0.0


def test_our_labeling_configs_are_understood(client):
    for path in sorted(CONFIGS.glob("*.xml")):
        body = {"tasks": [task()], "label_config": path.read_text(encoding="utf-8")}
        reply = client.post("/predict", json=body)
        assert reply.status_code == 200, path
        names = {(item["type"], item["from_name"]) for item in reply.get_json()["results"][0]["result"]}
        assert ("taxonomy", "snomed") in names, path
        assert client.post("/setup", json={"schema": body["label_config"]}).status_code == 200


def metric_values(client) -> dict:
    """{(name, labels...): value} from /metrics (Prometheus text format)."""
    from prometheus_client.parser import text_string_to_metric_families

    reply = client.get("/metrics")
    assert reply.status_code == 200 and reply.mimetype == "text/plain"
    return {(sample.name, *sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(reply.get_data(as_text=True)) for sample in family.samples}


def test_webhooks_are_stored_and_train_says_why_it_cannot(client, app):
    for name in ("webhook_annotation_created.json", "webhook_annotation_updated.json", "webhook_tasks_created.json"):
        reply = client.post("/webhook", json=capture(name))
        assert reply.status_code == 200
    assert reply.get_json()["status"] == "ignored"  # TASKS_CREATED: nothing to learn
    assert client.post("/train", json={"project": 1}).status_code == 409  # the demo's lexical engine cannot train
    values = metric_values(client)
    assert values[("clinlinker_webhooks_total", ("action", "ANNOTATION_UPDATED"), ("outcome", "applied"))] == 1
    assert values[("clinlinker_webhooks_total", ("action", "TASKS_CREATED"), ("outcome", "received"))] == 1
    assert not any(key[0] == "clinlinker_webhooks_total" and ("action", "START_TRAINING") in key for key in values)
    assert values[("clinlinker_store_up",)] == 1


def test_versions_and_metrics(client):
    client.post("/predict", json={"tasks": [task()]})
    assert client.get("/versions").get_json()["versions"] == [client.get("/health").get_json()["model_version"]]
    values = metric_values(client)
    assert values[("clinlinker_predict_requests_total",)] == 1 and values[("clinlinker_predict_tasks_total",)] == 1
    assert values[("clinlinker_predict_spans_total",)] == 3
    assert values[("clinlinker_predict_seconds_count",)] == 1


def test_search_over_the_whole_kb(client):
    found = client.get("/search?q=colecistectomia&k=5").get_json()["candidates"]
    assert found[0]["code"] in ("38102005", "45595009") and len(found) == 5
    by_code = client.get("/search?q=6025007").get_json()["candidates"]
    assert by_code[0]["code"] == "6025007"
    page = client.get("/search?q=tos", headers={"Accept": "text/html"})
    assert page.mimetype == "text/html" and "49727002" in page.get_data(as_text=True)


def test_taxonomy_for_an_unknown_document_explains_itself(client):
    [node, later] = client.get("/taxonomy?doc=never-seen").get_json()
    assert "Retrieve predictions" in node["value"]
    assert later["isLeaf"] is False and "después de abrir la tarea" in later["value"]  # spans the coder draws
    assert client.get("/taxonomy").status_code == 400

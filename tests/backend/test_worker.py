"""Webhook events are stored durably and turned into accepted links by the worker."""

import time

import pytest

from backend.app import create_app, load_model
from backend.config import BackendConfig
from backend.storage import RedisStore, SQLiteStore
from backend.worker import EventWorker
from tests.backend.conftest import capture
from tests.backend.test_export import TEXT, region


def annotation_event(action="ANNOTATION_CREATED", code="386661006", task_id=7, annotation_id=70):
    result = region("a", 13, 19, "SINTOMA", taxonomy=[["fiebre [13-19]", f"{code} | fiebre"]], relation="EXACT")
    return {"action": action, "project": {"id": 3},
            "task": {"id": task_id, "data": {"text": TEXT, "doc_id": "caso.txt"}},
            "annotation": {"id": annotation_id, "task": task_id, "project": 3, "was_cancelled": False,
                           "result": result}}


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path, redis_url):
    sqlite = SQLiteStore(tmp_path / "backend.sqlite3")
    if request.param == "sqlite":
        return sqlite
    return RedisStore(redis_url, sqlite, prefix=f"test{time.time_ns()}:", consumer="test")


def test_created_updated_deleted(store):
    worker = EventWorker(store)
    store.append_event("ANNOTATION_CREATED", annotation_event())
    assert worker.run_once() == 1
    [link] = store.accepted_links()
    assert (link["filename"], link["span"], link["code"], link["semantic_rel"]) == ("caso", "fiebre", "386661006",
                                                                                    "EXACT")
    store.append_event("ANNOTATION_UPDATED", annotation_event("ANNOTATION_UPDATED", code="22253000"))
    worker.run_once()
    assert [l["code"] for l in store.accepted_links()] == ["22253000"]  # corrected, not duplicated
    store.append_event("ANNOTATION_DELETED", {"action": "ANNOTATION_DELETED", "project": {"id": 3},
                                              "annotations": [{"id": 70, "task": 7}]})
    worker.run_once()
    assert store.accepted_count() == 0


def test_captured_webhooks_are_consumed(store):
    worker = EventWorker(store)
    for name in ("webhook_annotation_created.json", "webhook_annotation_updated.json", "webhook_tasks_created.json"):
        body = capture(name)
        store.append_event(body["action"], body)
    assert worker.run_once() == 3
    assert worker.run_once() == 0  # each event handled once
    assert store.accepted_count() == 1  # the updated annotation has one coded span; the created one is empty


def test_events_survive_a_restart_before_the_worker_runs(tmp_path):
    path = tmp_path / "backend.sqlite3"
    SQLiteStore(path).append_event("ANNOTATION_CREATED", annotation_event())
    # the process dies here; a new one opens the same store
    fresh = SQLiteStore(path)
    assert EventWorker(fresh).run_once() == 1
    assert fresh.accepted_count() == 1


def test_redis_outage_falls_back_to_sqlite(tmp_path):
    sqlite = SQLiteStore(tmp_path / "backend.sqlite3")
    store = RedisStore("redis://127.0.0.1:1/0", sqlite, prefix="down:")
    assert store.append_event("ANNOTATION_CREATED", annotation_event()).startswith("sqlite:")
    store.put_document("d", [{"node": "x [0-1]", "candidates": []}])
    assert store.get_document("d") == [{"node": "x [0-1]", "candidates": []}]
    assert EventWorker(store).run_once() == 1 and store.accepted_count() == 1


def test_webhook_through_the_app_reaches_the_accepted_links(tmp_path):
    config = BackendConfig(data_dir=str(tmp_path), worker=True)
    model, info = load_model(config)
    client = create_app(config, model, info).test_client()
    assert client.post("/webhook", json=annotation_event()).status_code == 200
    for _ in range(100):
        if client.get("/health").get_json()["accepted_links"] == 1:
            break
        time.sleep(0.05)
    assert client.get("/health").get_json()["accepted_links"] == 1
    client.application.extensions["clinlinker"]["worker"]["worker"].stop()


def test_event_counts_show_received_and_processed(store):
    worker = EventWorker(store)
    store.append_event("ANNOTATION_CREATED", annotation_event())
    store.append_event("ANNOTATION_CREATED", {"action": "ANNOTATION_CREATED", "annotation": "not an object"})
    assert store.event_counts()["ANNOTATION_CREATED"]["received"] == 2
    worker.run_once()
    counts = store.event_counts()["ANNOTATION_CREATED"]
    assert (counts["received"], counts["processed"], counts["failed"]) == (2, 2, 1)


def test_a_coded_span_without_label_is_reported_by_the_webhook_path(store, caplog):
    event = annotation_event()
    event["annotation"]["result"] = [item for item in event["annotation"]["result"] if item["type"] != "labels"]
    store.append_event("ANNOTATION_CREATED", event)
    assert EventWorker(store).run_once() == 1
    assert store.accepted_links() == []
    [record] = [r for r in caplog.records if "no label" in r.getMessage()]
    assert record.levelname == "WARNING" and "annotation 70 of project 3" in record.getMessage()
    assert "region a" in record.getMessage() and "386661006" in record.getMessage()


def coded_region(rid, start, end, label, code, origin):
    items = region(rid, start, end, label, taxonomy=[[f"{TEXT[start:end]} [{start}-{end}]", f"{code} | x"]])
    for item in items:
        item["origin"] = origin if item["type"] == "taxonomy" else "prediction"
    return items


def test_untouched_pre_annotations_are_stored_but_not_learned(store):
    event = annotation_event()
    event["annotation"]["result"] = (coded_region("a", 13, 19, "SINTOMA", "386661006", "prediction")
                                     + coded_region("b", 22, 37, "SINTOMA", "21522001", "prediction-changed")
                                     + coded_region("c", 43, 71, "PROCEDIMIENTO", "6025007", "manual"))
    store.append_event("ANNOTATION_CREATED", event)
    assert EventWorker(store).run_once() == 1
    assert {link["code"]: link["origin"] for link in store.accepted_links()} == {
        "386661006": "prediction", "21522001": "prediction-changed", "6025007": "manual"}
    assert sorted(code for _, code in store.learned_pairs()) == ["21522001", "6025007"]
    assert sorted(code for _, code in store.learned_pairs(untouched=True)) == ["21522001", "386661006", "6025007"]


def test_a_data_directory_from_before_origins_is_migrated(tmp_path):
    import sqlite3

    path = tmp_path / "backend.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accepted_links (project TEXT NOT NULL, task TEXT NOT NULL, region TEXT NOT NULL, "
                     "annotation TEXT, filename TEXT, label TEXT, start INTEGER, end INTEGER, span TEXT, code TEXT, "
                     "semantic_rel TEXT, updated REAL NOT NULL, PRIMARY KEY (project, task, region))")
        conn.execute("INSERT INTO accepted_links VALUES ('3', '7', 'a', '70', 'caso', 'SINTOMA', 13, 19, 'fiebre', "
                     "'386661006', 'EXACT', 0)")
    store = SQLiteStore(path)
    assert store.learned_pairs() == [("fiebre", "386661006")]  # origin not recorded: it was learned before too
    assert store.accepted_links()[0]["origin"] == ""

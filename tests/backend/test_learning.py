"""The review loop: accepted links become synonyms at once (in every process over the same store of record);
fine-tuning runs in the background and is hot-swapped in; failures and restarts never lose events or stop
serving."""

import shutil
import threading
import time

import pytest

from backend.serving.app import create_app
from backend.serving.loading import load_model
from backend.serving.config import BackendConfig
from backend.labelstudio.regions import NO_CODE_LEAF
from clinlinker.search.index import build_index, save_index
from tests.backend.test_export import TEXT, region

MENTION = {"start": 13, "end": 19, "label": "SINTOMA"}  # "fiebre"


def annotation_event(code_leaf, action="ANNOTATION_CREATED", task_id=7, annotation_id=70, updated_at=None,
                     project=3):
    result = region("a", 13, 19, "SINTOMA", taxonomy=[["fiebre [13-19]", code_leaf]], relation="EXACT")
    annotation = {"id": annotation_id, "task": task_id, "project": project, "was_cancelled": False, "result": result}
    if updated_at:
        annotation["updated_at"] = updated_at
    return {"action": action, "project": {"id": project},
            "task": {"id": task_id, "data": {"text": TEXT, "doc_id": "caso.txt"}}, "annotation": annotation}


def deleted_event(task_id=7, annotation_id=70):
    return {"action": "ANNOTATION_DELETED", "project": {"id": 3}, "annotations": [{"id": annotation_id,
                                                                                    "task": task_id}]}


class Backend:
    """One backend process (app + its store of record)."""

    def __init__(self, config):
        self.config = config
        self.model, self.info = load_model(config)
        self.client = create_app(config, self.model, self.info).test_client()

    def send(self, event):
        reply = self.client.post("/webhook", json=event)
        assert reply.status_code == 200, reply.get_json()
        return reply.get_json()

    def ranked(self, text=TEXT, mention=MENTION, project="3.1795651414"):
        reply = self.client.post("/predict", json={"project": project, "tasks": [
            {"id": 1, "data": {"text": text, "doc_id": "x", "mentions": [mention]}}]})
        assert reply.status_code == 200, reply.get_json()
        stored = self.info["store"].get_candidates(project.split(".")[0], "x")
        return [c["code"] for c in stored[0]["candidates"]], reply.get_json()

    def health(self):
        return self.client.get("/health").get_json()


@pytest.fixture
def config(tmp_path, database_url):
    return BackendConfig(data_dir=str(tmp_path / "var"), worker=False, database_url=database_url)


def leaf(backend, code):
    return f"{code} | {backend.model.linker.kb[code].preferred_term}"


def test_accepted_code_is_learned_used_and_shared(config):
    a = Backend(config)
    before, _ = a.ranked()
    assert len(before) >= 6
    target = before[5]  # the coder picks the 6th candidate
    b = Backend(config)  # a second backend process over the same store of record, already serving
    assert b.ranked()[0][0] == before[0]
    assert a.send(annotation_event(leaf(a, target)))["outcomes"] == {"applied": 1}  # stored before the answer
    assert a.health()["learned_terms"]["terms"] == 1  # /health shows it at once, before any prediction
    after, reply = a.ranked()
    assert after[0] == target and len(set(after)) == len(after) == len(before)
    assert b.ranked()[0][0] == target  # the other process applies the change on its next request
    assert b.ranked(project="4.1795651999")[0][0] == before[0]  # another Label Studio project learns its own
    # and the same wording elsewhere, in another case, with other case and accents
    text = "Refiere FIÉBRE desde ayer."
    assert b.ranked(text, {"start": 8, "end": 14, "label": "SINTOMA"})[0][0] == target


def test_correction_and_deletion_undo_the_synonym(config):
    a = Backend(config)
    before, _ = a.ranked()
    a.send(annotation_event(leaf(a, before[5]), updated_at="2026-11-25T10:00:00Z"))
    a.send(annotation_event(leaf(a, before[3]), action="ANNOTATION_UPDATED", updated_at="2026-11-25T10:05:00Z"))
    after, _ = a.ranked()
    assert after[0] == before[3] and after.index(before[5]) > 0
    # the first version again, arriving late (a retry, a second worker): older, so it changes nothing
    late = a.send(annotation_event(leaf(a, before[5]), updated_at="2026-11-25T10:00:00Z"))
    assert late["outcomes"] == {"stale": 1}
    assert a.ranked()[0][0] == before[3]
    a.send(deleted_event())
    assert a.ranked()[0] == before
    # after the deletion no version of it comes back
    assert a.send(annotation_event(leaf(a, before[5]), action="ANNOTATION_UPDATED",
                                   updated_at="2026-11-26T00:00:00Z"))["outcomes"] == {"gone": 1}
    assert a.ranked()[0] == before


def test_no_code_is_never_learned(config):
    a = Backend(config)
    before, _ = a.ranked()
    a.send(annotation_event(NO_CODE_LEAF))
    assert a.info["store"].accepted_count() == 1  # kept as an accepted NO_CODE link (exported)...
    assert a.ranked()[0] == before  # ...but no synonym
    assert a.health()["learned_terms"]["skipped"]["no_code"] == 1


def test_accepted_links_survive_a_restart(config):
    first = Backend(config)
    before, _ = first.ranked()
    first.send(annotation_event(leaf(first, before[4])))
    del first
    second = Backend(config)
    assert second.ranked()[0][0] == before[4]


def test_hot_swap_under_concurrent_predictions(tmp_path, dense_index, lexical_index):
    config = BackendConfig(data_dir=str(tmp_path / "var"), worker=False)
    a = Backend(config)
    linkers = {}
    from clinlinker.linking.linker import Linker

    # a mention the two engines answer differently at the top: the answer tells which model gave it
    text, mention = "Paciente con tos seca nocturna.", {"start": 13, "end": 30, "label": "SINTOMA"}
    for index in (lexical_index, dense_index):
        linker = Linker(index)
        linkers[a.model.swap(linker, None)] = [c.code for c in linker.link(["tos seca nocturna"], 25)[0]]
    assert len(linkers) == 2 and len({v[0] for v in linkers.values()}) == 2
    seen, errors, stop = [], [], threading.Event()

    def hammer():
        client = create_app(config, a.model, a.info).test_client()
        while not stop.is_set():
            reply = client.post("/predict", json={"tasks": [
                {"id": i, "data": {"text": text, "doc_id": f"d{i}", "mentions": [mention]}} for i in range(3)]})
            if reply.status_code != 200:
                errors.append(reply.get_json())
                continue
            body = reply.get_json()
            versions = {body["model_version"]} | {r["model_version"] for r in body["results"]}
            tops = {r["result"][1]["value"]["taxonomy"][0][1].split(" | ")[0] for r in body["results"]}
            seen.append((versions, tops))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    order = [lexical_index, dense_index] * 10
    for index in order:
        a.model.swap(Linker(index), None)
        time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(seen) > 20
    for versions, tops in seen:
        assert len(versions) == 1, versions  # one model per response
        [version] = versions
        assert tops == {linkers[version][0]}  # and its candidates are that model's
    assert {v for vs, _ in seen for v in vs} == set(linkers)


@pytest.fixture
def tiny_dense_index(tmp_path, tiny_model_dir, demo_kb):
    """A dense index whose model is a private copy (a test may break it)."""
    from clinlinker.encode.encoders import DenseEncoder

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    index = build_index(demo_kb, DenseEncoder(str(model_dir), pooling="cls", max_length=32))
    return save_index(index, tmp_path / "ix"), model_dir


def test_training_request_fine_tunes_and_hot_swaps(tmp_path, tiny_dense_index, redis_url):
    index_dir, _ = tiny_dense_index
    config = BackendConfig(index_dir=str(index_dir), data_dir=str(tmp_path / "var"), worker=False,
                           redis_url=redis_url, cache_prefix=f"t{time.time_ns()}:", train_max_steps=3)
    a = Backend(config)
    follower = Backend(config)  # another backend process
    old = a.health()["model_version"]
    before, _ = a.ranked()
    a.send(annotation_event(leaf(a, before[2])))
    assert a.client.post("/train", json={"project": 3}).status_code == 200
    a.info["retrainer"].wait(300)
    health = a.health()
    assert health["training"]["status"] == "done", health["training"]
    assert health["model_version"] != old and health["training"]["model_version"] == health["model_version"]
    assert a.ranked()[1]["results"][0]["model_version"] == health["model_version"]
    assert a.ranked()[0][0] == before[2]  # the learned synonym survives the swap
    follower.model.follow(force=True)
    for _ in range(200):
        if follower.health()["model_version"] == health["model_version"]:
            break
        time.sleep(0.05)
    assert follower.health()["model_version"] == health["model_version"]
    restarted = Backend(config)  # a restart serves the fine-tuned index again
    assert restarted.health()["model_version"] == health["model_version"]


def test_failed_training_leaves_the_old_model_serving(tmp_path, tiny_dense_index):
    index_dir, model_dir = tiny_dense_index
    config = BackendConfig(index_dir=str(index_dir), data_dir=str(tmp_path / "var"), worker=False,
                           train_max_steps=3)
    a = Backend(config)
    old = a.health()["model_version"]
    before, _ = a.ranked()
    for weights in model_dir.glob("*.safetensors"):
        weights.unlink()  # the base model's weights vanish: the training job cannot load it
    assert a.client.post("/train", json={}).status_code == 200
    a.info["retrainer"].wait(300)
    health = a.health()
    assert health["training"]["status"] == "failed"
    assert "retrain exited" in health["training"]["error"]
    assert health["model_version"] == old
    assert a.ranked()[0] == before


def test_training_request_trains_the_re_ranker_of_a_lexical_index_and_serves_it(tmp_path, demo_kb,
                                                                                tiny_cross_encoder):
    from clinlinker.rerank.cross_encoder import CrossEncoderReranker

    record = CrossEncoderReranker(str(tiny_cross_encoder), depth=10).describe()
    index_dir = save_index(build_index(demo_kb), tmp_path / "ix", reranker=record)
    config = BackendConfig(index_dir=str(index_dir), data_dir=str(tmp_path / "var"), worker=False,
                           train_max_steps=3, train_lr=1e-3)
    a = Backend(config)
    old = a.health()["model_version"]
    assert "-reranked-" in old
    assert a.health()["rerank_cache"]["backend"] == "memory"  # its scores, kept (Redis with REDIS_URL)
    before, _ = a.ranked()
    a.send(annotation_event(leaf(a, before[2])))
    assert a.client.post("/train", json={}).status_code == 200  # not 409: the re-ranker has weights to train
    a.info["retrainer"].wait(300)
    health = a.health()
    assert health["training"]["status"] == "done", health["training"]
    assert health["model_version"] != old and "-reranked-" in health["model_version"]
    served = a.model.linker.reranker
    assert served.name.endswith("/reranker") and served.name != str(tiny_cross_encoder)
    assert served.fingerprint != record["fingerprint"] and served.depth == 10
    assert a.ranked()[1]["results"][0]["model_version"] == health["model_version"]
    restarted = Backend(config)  # a restart serves the retrained re-ranker again
    assert restarted.health()["model_version"] == health["model_version"]
    assert restarted.model.linker.reranker.name == served.name
    pinned = Backend(BackendConfig(index_dir=str(index_dir), data_dir=str(tmp_path / "var2"), worker=False,
                                   reranker=str(tiny_cross_encoder)))
    assert pinned.client.post("/train", json={}).status_code == 409  # CLINLINKER_RERANKER is the operator's pick


def test_lexical_engine_says_training_is_unavailable(tmp_path):
    a = Backend(BackendConfig(data_dir=str(tmp_path / "var"), worker=False))
    reply = a.client.post("/train", json={})
    assert reply.status_code == 409 and "lexical" in reply.get_json()["error"]  # not a 200 that never runs
    training = a.health()["training"]
    assert training["available"] is False and "lexical" in training["reason"]


@pytest.mark.parametrize("learn_untouched", [False, True])
def test_an_untouched_pre_annotation_is_learned_only_when_configured(config, learn_untouched):
    config.learn_untouched = learn_untouched
    a = Backend(config)
    before, _ = a.ranked()
    event = annotation_event(leaf(a, before[3]))
    for item in event["annotation"]["result"]:
        item["origin"] = "prediction"  # the coder submitted without touching this region
    a.send(event)
    assert a.health()["accepted_links"] == 1  # stored either way: it is what the coder submitted
    assert (a.ranked()[0][0] == before[3]) is learn_untouched


def test_learn_untouched_setting():
    assert BackendConfig.from_env({}).learn_untouched is False
    assert BackendConfig.from_env({"CLINLINKER_LEARN_UNTOUCHED": "1"}).learn_untouched is True

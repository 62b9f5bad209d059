"""Faults with real processes: `clinlinker serve --workers 2` under concurrent webhooks, killed with SIGKILL mid-load,
its Redis frozen (SIGSTOP), killed and restarted empty, or down at start. Whatever happens, every webhook that got
a 200 is in the store of record at its newest version, and serving goes on."""

import http.client
import json
import os
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from backend.records.store import Store
from tests.servers import OwnRedis, Server, free_port

pytestmark = pytest.mark.faults

TEXT = "Paciente con fiebre y dolor abdominal tras apendicectomía laparoscópica."


@pytest.fixture
def server_factory(tmp_path):
    servers = []

    def make(tmp_path=tmp_path, **kwargs):
        server = Server(tmp_path, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def update(annotation: int, minute: int, code: str, project: int = 3) -> dict:
    result = [{"id": "r1", "from_name": "label", "to_name": "text", "type": "labels",
               "value": {"start": 13, "end": 19, "text": "fiebre", "labels": ["SINTOMA"]}},
              {"id": "r1", "from_name": "code", "to_name": "text", "type": "textarea",
               "value": {"start": 13, "end": 19, "text": [code]}}]
    return {"action": "ANNOTATION_UPDATED", "project": {"id": project},
            "task": {"id": annotation, "data": {"text": TEXT, "doc_id": f"caso{annotation}"}},
            "annotation": {"id": annotation, "task": annotation, "project": project, "result": result,
                           "updated_at": f"2026-11-25T10:{minute:02d}:00.000000Z"}}


def final_codes(tmp_path, database_url) -> dict:
    store = Store(database_url, tmp_path / "var")
    try:
        return {int(l["annotation"]): l["code"] for l in store.accepted_links()}
    finally:
        store.dispose()


def test_two_workers_racing_updates_keep_the_newest(tmp_path, server_factory, database_url):
    env = {"CLINLINKER_DATABASE_URL": database_url} if database_url else {}
    server = server_factory(workers=2, env=env).start()
    events = [update(a, m, f"{a}x{m}") for a in range(40) for m in range(25)]
    random.Random(11).shuffle(events)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda e: server.post("/webhook", e)[0], events))
    assert statuses.count(200) == len(events), {s: statuses.count(s) for s in set(statuses)}
    assert final_codes(tmp_path, database_url) == {a: f"{a}x24" for a in range(40)}  # none stale


def test_sigkill_under_load_loses_no_accepted_webhook(tmp_path, server_factory):
    server = server_factory(workers=2).start()
    accepted, stop = {}, threading.Event()
    lock = threading.Lock()

    def send(worker: int):
        minute = 0
        while not stop.is_set() and minute < 60:
            for a in range(worker * 10, worker * 10 + 10):
                try:
                    status, _ = server.post("/webhook", update(a, minute, f"{a}x{minute}"), timeout=5)
                except (urllib.error.URLError, OSError, http.client.HTTPException):
                    return  # the server is gone (a reply cut off by the kill is no acknowledgment either)
                if status == 200:
                    with lock:
                        accepted[a] = max(accepted.get(a, -1), minute)
            minute += 1

    threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    server.kill()  # SIGKILL to the master and both workers, mid-load
    stop.set()
    for t in threads:
        t.join()
    assert accepted, "no webhook was answered before the kill"
    codes = final_codes(tmp_path, None)
    for a, minute in accepted.items():  # every acknowledged version (or a newer one sent before the kill) is there
        assert a in codes and int(codes[a].split("x")[1]) >= minute
    restarted = server_factory(workers=1).start()
    assert restarted.get("/health")["accepted_links"] == len(codes)  # nothing pending, nothing to replay


@pytest.fixture
def own_redis(tmp_path):
    """A Redis server of this test alone (it will be frozen and killed)."""
    redis = OwnRedis(tmp_path)
    yield redis.url, redis.start
    redis.stop()


@pytest.fixture
def dense_index_dir(tmp_path, dense_index):
    from clinlinker.search.index import save_index

    return save_index(dense_index, tmp_path / "ix")


def predict_body(i: int) -> dict:
    return {"project": "3.1795651414", "tasks": [{"id": i, "data": {"text": TEXT, "doc_id": f"d{i}", "mentions": [
        {"start": 13, "end": 19, "label": "SINTOMA"}, {"start": 22, "end": 37, "label": "SINTOMA"}]}}]}


def test_redis_frozen_killed_and_restarted_empty_costs_nothing_but_speed(tmp_path, server_factory, own_redis,
                                                                         dense_index_dir):
    redis_url, start_redis = own_redis
    redis_proc = start_redis()
    server = server_factory(workers=2, env={"REDIS_URL": redis_url, "CLINLINKER_INDEX": str(dense_index_dir)}).start()
    statuses = []

    def load(first: int, n: int):
        for i in range(first, first + n):
            statuses.append(server.post("/webhook", update(i, 1, f"{i}x1"))[0])
            statuses.append(server.post("/predict", predict_body(i))[0])

    load(0, 10)
    os.kill(redis_proc.pid, signal.SIGSTOP)  # frozen: connections hang instead of failing
    load(10, 10)
    os.kill(redis_proc.pid, signal.SIGCONT)
    redis_proc.kill()  # then gone, and back empty
    redis_proc.wait()
    load(20, 10)
    start_redis()
    load(30, 10)
    assert statuses.count(200) == len(statuses) == 80
    assert final_codes(tmp_path, None) == {i: f"{i}x1" for i in range(40)}
    health = server.get("/health")
    assert health["accepted_links"] == 40 and health["store"]["available"] is True


def test_redis_down_at_start(tmp_path, server_factory, dense_index_dir):
    server = server_factory(workers=1, env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                                            "CLINLINKER_INDEX": str(dense_index_dir)}).start()
    assert server.post("/webhook", update(1, 1, "1x1"))[0] == 200
    status, body = server.post("/predict", predict_body(1))
    assert status == 200 and sum(item["type"] == "taxonomy" for item in body["results"][0]["result"]) == 2
    health = server.get("/health")
    assert health["accepted_links"] == 1
    assert health["status"] == "DEGRADED" and "cache" in health["degraded"]
    assert health["store"]["kind"] == "sqlite" and Path(health["store"]["location"]).is_absolute()


def test_the_rerankers_scores_go_to_redis_and_its_loss_costs_only_speed(tmp_path, server_factory, own_redis,
                                                                       dense_index, tiny_cross_encoder):
    """A re-ranked index served by a real process: the cross-encoder's scores are kept in Redis (clinlinker:rr:), so
    a task opened again reads none; with Redis killed /predict still answers the same lists and /health says why
    it is slower."""
    import redis as redis_client

    from clinlinker.search.index import save_index
    from clinlinker.rerank.cross_encoder import CrossEncoderReranker

    index_dir = save_index(dense_index, tmp_path / "ix-rr",
                           reranker=CrossEncoderReranker(str(tiny_cross_encoder), depth=10).describe())
    redis_url, start_redis = own_redis
    redis_proc = start_redis()
    server = server_factory(workers=1, env={"REDIS_URL": redis_url, "CLINLINKER_INDEX": str(index_dir)}).start()
    status, first = server.post("/predict", predict_body(1))
    assert status == 200
    client = redis_client.Redis.from_url(redis_url)
    stored = client.keys("clinlinker:rr:*")
    assert len(stored) >= 10  # two spans, depth 10: each (mention, term) pair once
    health = server.get("/health")
    assert health["rerank_cache"]["backend"] == "redis" and health["rerank_cache"]["misses"] == len(stored)
    def items(body):  # what the coder sees, without the regions' ids (new for every task)
        return [{k: v for k, v in item.items() if k != "id"} for item in body["results"][0]["result"]]

    assert items(server.post("/predict", predict_body(2))[1]) == items(first)
    assert server.get("/health")["rerank_cache"]["hits"] == len(stored)  # the same spans: nothing read again
    redis_proc.kill()
    redis_proc.wait()
    status, body = server.post("/predict", predict_body(3))
    assert status == 200 and items(body) == items(first)
    health = server.get("/health")
    assert health["status"] == "DEGRADED" and "re-ranker reads every pair again" in health["degraded"]["rerank_cache"]


def test_a_chunked_body_over_the_limit_is_a_413_and_no_control_socket_is_shared(tmp_path, server_factory):
    home = tmp_path / "home"
    home.mkdir()
    server = server_factory(workers=1, env={"CLINLINKER_MAX_BODY_MB": "0.01", "HOME": str(home)}).start()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    chunk = b'{"tasks": [' + b'{"id": 1},' * 1500

    def chunks():
        yield chunk
        yield b'{"id": 2}]}'

    connection.request("POST", "/predict", body=chunks(), headers={"Content-Type": "application/json"},
                       encode_chunked=True)
    reply = connection.getresponse()
    assert reply.status == 413 and "CLINLINKER_MAX_BODY_MB" in json.loads(reply.read())["error"]
    # gunicorn's control socket (one per user by default) would be taken over by a second server on the host
    assert not (home / ".gunicorn").exists()


def test_metrics_are_summed_over_the_workers(tmp_path, server_factory):
    from prometheus_client.parser import text_string_to_metric_families

    server = server_factory(workers=2).start()
    for i in range(12):
        assert server.post("/predict", predict_body(i))[0] == 200
        assert server.post("/webhook", update(i, 1, f"{i}x1"))[0] == 200

    def scrape():
        with urllib.request.urlopen(server.url + "/metrics", timeout=30) as reply:
            text = reply.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    for _ in range(6):  # whichever worker answers, the same totals
        values = scrape()
        assert values[("clinlinker_predict_requests_total", ())] == 12
        assert values[("clinlinker_predict_spans_total", ())] == 24
        assert values[("clinlinker_webhooks_total", (("action", "ANNOTATION_UPDATED"), ("outcome", "applied")))] == 12


FREEZE_SCRIPT = """
import os, signal, sys
from backend.records.store import Store
store = Store(sys.argv[1], sys.argv[2])
with store._write() as conn:  # a write under way: it holds the row every link-changing write takes
    store._incr(conn, "link_seq", 0)
    os.kill(os.getpid(), signal.SIGSTOP)  # frozen mid-transaction, as a stopped host or a long GC pause would be
print("resumed")
"""


def test_a_peer_frozen_mid_write_does_not_hold_up_the_others(tmp_path, postgres_url):
    """One process stops while its transaction holds the link-sequence row; another process's writes land while it
    is still stopped (the server ends the stalled session), and the stopped one's write, never acknowledged, is
    simply gone or retried, never half-done."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    store = Store(postgres_url, tmp_path / "var")
    frozen = subprocess.Popen([sys.executable, "-c", FREEZE_SCRIPT, postgres_url, str(tmp_path / "peer")], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while Path(f"/proc/{frozen.pid}/stat").read_text().split(") ")[1][0] != "T":
            assert frozen.poll() is None and time.time() < deadline, frozen.stderr.read() if frozen.poll() else "?"
            time.sleep(0.05)
        done = []
        writer = threading.Thread(target=lambda: done.append(store.apply_annotation(
            "3", "7", "70", updated_at="2026-11-25T10:00:00Z", body=None,
            links=[{"region": "r", "span": "fiebre", "code": "386661006", "label": "SINTOMA"}])))
        writer.start()
        writer.join(20)
        assert done and done[0].outcome == "applied", "a write waited on the frozen peer"
        assert Path(f"/proc/{frozen.pid}/stat").read_text().split(") ")[1][0] == "T"  # still frozen meanwhile
        assert [(l["annotation"], l["code"]) for l in store.accepted_links()] == [("70", "386661006")]
        assert store.changes_since(0) == [(1, "3", "fiebre", "386661006", None, 1)]
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
        frozen.wait(30)
        store.dispose()


def test_two_instances_on_one_postgresql_keep_deletions_final(tmp_path, server_factory, postgres_url):
    """Two `clinlinker serve` instances (own data directories, one PostgreSQL): versions and ids-only deletions of
    the same annotations sent to either, from several threads, in any order. No deleted annotation is served again;
    every other one ends at its newest version; both instances agree."""
    env = {"CLINLINKER_DATABASE_URL": postgres_url}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    servers = [server_factory(tmp_path=tmp_path / name, workers=2, env=env) for name in ("a", "b")]
    for server in servers:
        server.start()
    deleted = set(range(0, 40, 2))
    events = [update(a, m, f"{a}x{m}") for a in range(40) for m in range(6)]
    events += [{"action": "ANNOTATIONS_DELETED", "project": {"id": 3}, "annotations": [{"id": a}]} for a in deleted]
    random.Random(5).shuffle(events)
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda ie: servers[ie[0] % 2].post("/webhook", ie[1])[0], enumerate(events)))
    assert statuses.count(200) == len(events), {s: statuses.count(s) for s in set(statuses)}
    store = Store(postgres_url, tmp_path / "check")
    try:
        codes = {int(l["annotation"]): l["code"] for l in store.accepted_links()}
    finally:
        store.dispose()
    assert codes == {a: f"{a}x5" for a in range(40) if a not in deleted}
    assert servers[0].get("/health")["accepted_links"] == servers[1].get("/health")["accepted_links"] == 20


def test_one_instance_frozen_mid_burst_holds_up_no_webhook_of_the_other(tmp_path, server_factory, postgres_url):
    """Two instances on one PostgreSQL under a webhook burst; one is stopped (SIGSTOP, master and workers) three times
    for 2 s, whatever it was writing. Every webhook the other answers meanwhile takes under 1 s (a frozen
    transaction's locks go when the server ends its idle session; a lock wait gives up and is tried again rather
    than queue behind the stalled instance's own waiting writes), and nothing either acknowledged is lost."""
    env = {"CLINLINKER_DATABASE_URL": postgres_url}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    frozen, live = (server_factory(tmp_path=tmp_path / name, workers=2, env=env).start() for name in ("a", "b"))
    stop, lock, acked, timings = threading.Event(), threading.Lock(), {}, []

    def send(server, first, record):
        for minute in range(10_000):
            for a in range(first, first + 10):
                if stop.is_set():
                    return
                sent = time.monotonic()
                try:
                    status, _ = server.post("/webhook", update(a, minute % 60, f"{a}x{minute % 60}"), timeout=20)
                except (urllib.error.URLError, OSError, http.client.HTTPException):
                    status = None
                with lock:
                    if record:
                        timings.append((sent, time.monotonic() - sent, status))
                    if status == 200:
                        acked[a] = max(acked.get(a, -1), minute % 60)
            if minute % 60 == 59:
                return

    # the frozen instance gets more senders: it is then nearly always inside a write when it stops
    threads = [threading.Thread(target=send, args=(server, first + 10 * w, server is live))
               for server, first, senders in ((frozen, 1000, 8), (live, 2000, 3)) for w in range(senders)]
    for t in threads:
        t.start()
    freezes = []
    for _ in range(3):
        time.sleep(1.5)
        stopped_at = time.monotonic()
        os.killpg(frozen.proc.pid, signal.SIGSTOP)
        time.sleep(2)
        freezes.append((stopped_at, time.monotonic()))
        os.killpg(frozen.proc.pid, signal.SIGCONT)
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join()
    during = [(took, status) for sent, took, status in timings
              if any(start <= sent + took and sent <= end for start, end in freezes)]
    assert len(during) > 20 and all(status == 200 for _, status in during)
    assert max(took for took, _ in during) < 1.0, sorted(took for took, _ in during)[-5:]
    codes = final_codes(tmp_path / "a", postgres_url)
    assert all(a in codes and int(codes[a].split("x")[1]) >= minute for a, minute in acked.items())

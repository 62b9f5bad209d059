"""/predict latency of the real backend under gunicorn, with a real Redis: real clinical cases (MedProcNER
texts and gold spans from ../shared/data), cold vs warm embedding cache, a 100-task batch, interactive
single-span calls.

Engines: `dense` = a RoBERTa-base-sized encoder (random weights, built locally; ClinLinker-KB-GP's
architecture, so its speed) over the MedProcNER gazetteer; the index vectors are random unit vectors
(search costs the same; encoding 82k terms on 2 cores would take a quarter of an hour). `lexical` = the
char-ngrams engine over the same gazetteer.

    python bench/serving.py --engine dense --redis-url redis://127.0.0.1:6379/13

Cold = the case's embeddings are not in Redis; the memo of the knowledge base's answers (CLINLINKER_SEARCH_MEMO,
taken from the environment) still answers a wording an earlier case held, as it does for a team coding a corpus;
CLINLINKER_SEARCH_MEMO=0 measures without it (results file suffixed -memo-off).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np

from common import CACHE, DATA, ROOT, corpus_mentions, free_port, machine, roberta_base_random, save


def build_index(engine: str, index_type: str = "flat") -> Path:
    from clinlinker.kb.gazetteer import load_knowledge_base
    from clinlinker.search.index import DenseIndex, build_index as build, save_index

    out = CACHE / f"index-medprocner-{engine}-{index_type}"
    if (out / "manifest.json").exists():
        return out
    kb = load_knowledge_base([DATA / "gazetteers" / "medprocner_procedures_es.tsv"])
    if engine == "lexical":
        return save_index(build(kb), out)
    import faiss

    from clinlinker.encode.encoders import DenseEncoder

    encoder = DenseEncoder(str(roberta_base_random(CACHE / "roberta-base-random", corpus_mentions(20000))))
    vectors = np.random.default_rng(0).standard_normal((kb.n_terms, encoder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    if index_type == "flat":
        flat = faiss.IndexFlatIP(encoder.dim)
        flat.add(vectors)
        return save_index(DenseIndex(kb, encoder, flat), out)
    from reindex import GivenVectors

    built = DenseIndex.build(kb, GivenVectors(vectors, kb.term_texts), index_type=index_type)
    built.encoder = encoder
    return save_index(built, out)


def cases(n: int, spans_range=(13, 17)):
    from clinlinker.links import read_links

    by_doc = defaultdict(list)
    for link in read_links(DATA / "corpora" / "medprocner_train.tsv"):
        by_doc[link.filename].append(link)
    tasks = []
    for doc in sorted(by_doc):
        text = (DATA / "corpora" / "texts_train" / f"{doc}.txt").read_text(encoding="utf-8")
        mentions = [{"start": l.start, "end": l.end, "label": l.label} for l in by_doc[doc]
                    if text[l.start:l.end] == l.span]
        tasks.append({"id": len(tasks) + 1, "data": {"text": text, "doc_id": doc, "mentions": mentions}})
    fifteen = [t for t in tasks if spans_range[0] <= len(t["data"]["mentions"]) <= spans_range[1]][:n]
    return fifteen, tasks[:100]


def post(url: str, body: dict) -> float:
    data = json.dumps(body).encode()
    t0 = time.perf_counter()
    request = urllib.request.Request(url + "/predict", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        reply = json.loads(response.read())
    elapsed = time.perf_counter() - t0
    assert len(reply["results"]) == len(body["tasks"])
    return elapsed


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["dense", "lexical"], default="dense")
    parser.add_argument("--index-type", choices=["flat", "ivf", "hnsw", "sq8"], default="flat")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--index", help="serve this index directory instead (e.g. one that records a re-ranker); "
                        "--engine and --index-type are then ignored")
    args = parser.parse_args()

    index = Path(args.index) if args.index else build_index(args.engine, args.index_type if args.engine == "dense"
                                                            else "flat")
    port = free_port()
    prefix = f"bench{port}:"
    env = {**os.environ, "CLINLINKER_INDEX": str(index), "REDIS_URL": args.redis_url,
           "CLINLINKER_REDIS_PREFIX": prefix, "CLINLINKER_DATA_DIR": tempfile.mkdtemp(prefix="clinlinker-bench-"),
           "CLINLINKER_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "clinlinker.cli", "serve", "--host", "127.0.0.1", "--port",
                               str(port), "--threads", "4"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        health = json.loads(urllib.request.urlopen(url + "/health").read())
        print(f"gunicorn backend: {health['engine']} engine, model {health['model']}, {health['concepts']} concepts; "
              f"cache {health['cache'].get('backend')}; model_version {health['model_version']}")
        fifteen, hundred = cases(args.cases)
        spans = [len(t["data"]["mentions"]) for t in fifteen]
        post(url, {"tasks": [hundred[-1]]})  # first request of the process (lazy imports, worker thread)
        cold = [post(url, {"tasks": [t]}) for t in fifteen]
        warm = [post(url, {"tasks": [t]}) for t in fifteen for _ in range(2)]
        text = fifteen[0]["data"]["text"]
        m = fifteen[0]["data"]["mentions"][0]
        region = {"id": "new", "from_name": "label", "to_name": "text", "type": "labels",
                  "value": {"start": m["start"], "end": m["end"], "text": text[m["start"]:m["end"]],
                            "labels": [m["label"]]}}
        interactive = [post(url, {"tasks": [{"id": 1, "data": {"text": text, "doc_id": "i"}}],
                                  "params": {"context": {"result": [region]}}}) for _ in range(20)]
        batch_spans = sum(len(t["data"]["mentions"]) for t in hundred)
        batch_cold = post(url, {"tasks": hundred})
        batch_warm = post(url, {"tasks": hundred})
        after = json.loads(urllib.request.urlopen(url + "/health").read())  # /metrics is Prometheus text
    finally:
        server.terminate()
        server.wait(timeout=30)
        try:
            import redis

            client = redis.Redis.from_url(args.redis_url)
            for key in client.scan_iter(prefix + "*"):
                client.delete(key)
        except Exception:  # noqa: BLE001 - cleaning up is best effort
            pass

    result = {
        "machine": machine(), "engine": health["engine"], "model_version": health["model_version"],
        "index_type": args.index_type, "index": str(index),
        "case_spans_median": statistics.median(spans), "cases": len(fifteen),
        "single_case_cold_ms": {"p50": round(pct(cold, .5) * 1000, 1), "p95": round(pct(cold, .95) * 1000, 1)},
        "single_case_warm_ms": {"p50": round(pct(warm, .5) * 1000, 1), "p95": round(pct(warm, .95) * 1000, 1)},
        "interactive_single_span_ms": {"p50": round(pct(interactive, .5) * 1000, 1),
                                       "p95": round(pct(interactive, .95) * 1000, 1)},
        "batch_100_tasks": {"spans": batch_spans, "cold_s": round(batch_cold, 2), "warm_s": round(batch_warm, 2)},
        "cache": after.get("cache"), "rerank_cache": after.get("rerank_cache"),
        "search_memo": os.environ.get("CLINLINKER_SEARCH_MEMO", "default"),
    }
    print(f"{len(fifteen)} cases of {statistics.median(spans):.0f} spans (median):")
    print(f"  one case, cold cache: p50 {result['single_case_cold_ms']['p50']} ms, p95 "
          f"{result['single_case_cold_ms']['p95']} ms")
    print(f"  one case, warm cache: p50 {result['single_case_warm_ms']['p50']} ms, p95 "
          f"{result['single_case_warm_ms']['p95']} ms")
    print(f"  interactive single span: p50 {result['interactive_single_span_ms']['p50']} ms")
    print(f"  100-task batch ({batch_spans} spans): cold {batch_cold:.2f} s, warm {batch_warm:.2f} s")
    name = f"backend-{args.engine}" + (f"-{args.index_type}" if args.engine == "dense" else "")
    if args.index:
        name = f"backend-{index.name}"
    if os.environ.get("CLINLINKER_SEARCH_MEMO") == "0":
        name += "-memo-off"
    print("written", save(f"{name}.json", result))


if __name__ == "__main__":
    main()

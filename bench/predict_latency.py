"""Time the backend's /predict on real clinical cases from ../shared/data.

Runs the real app (Flask, in-process) on an index you built, e.g.:

    clinlinker index --gazetteer ../shared/data/gazetteers/medprocner_procedures_es.tsv --model char-ngrams --out ix
    python bench/predict_latency.py --index ix --corpus medprocner

Or, for what a dense model's serving costs without encoding a whole gazetteer with it first:

    python bench/predict_latency.py --model bench/.cache/quality-models/e5-small

builds (once, under bench/.cache) a hybrid over both gazetteers of ../shared/data at dense weight 0.9 whose mentions
are encoded by that model and whose 121,198 term vectors are random unit vectors: the search costs what it costs
with the model's own vectors (same count, same dimension), the candidates mean nothing.

Prints medians of: one case per request (the spans of one document), the same cases again (their embeddings
cached), and a 100-task batch (what Label Studio's "Retrieve predictions" sends), cold and warm.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.serving.app import create_app  # noqa: E402
from backend.serving.loading import load_model  # noqa: E402
from backend.serving.config import BackendConfig  # noqa: E402
from clinlinker.links import read_links  # noqa: E402


def tasks_from_corpus(data: Path, corpus: str, n: int) -> list[dict]:
    by_doc = defaultdict(list)
    for link in read_links(data / "corpora" / f"{corpus}_train.tsv"):
        by_doc[link.filename].append(link)
    tasks = []
    for doc in sorted(by_doc)[:n]:
        text = (data / "corpora" / "texts_train" / f"{doc}.txt").read_text(encoding="utf-8")
        mentions = [{"start": l.start, "end": l.end, "label": l.label} for l in by_doc[doc]
                    if text[l.start:l.end] == l.span]
        tasks.append({"id": len(tasks) + 1, "data": {"text": text, "doc_id": doc, "mentions": mentions}})
    return tasks


def served_speed_hybrid(model: Path, data: Path, index_type: str = "flat") -> Path:
    """A hybrid index over both gazetteers: `model` encodes mentions, random unit vectors stand for its terms'."""
    import numpy as np

    from clinlinker.encode.encoders import DenseEncoder
    from clinlinker.kb.gazetteer import load_knowledge_base
    from clinlinker.search.hybrid import HybridIndex
    from clinlinker.search.index import DenseIndex, LexicalIndex, save_index

    out = ROOT / "bench" / ".cache" / f"served-speed-hybrid-{model.name}-{index_type}"
    if (out / "manifest.json").exists():
        return out
    from reindex import GivenVectors  # bench/ is on the path of a bench script

    kb = load_knowledge_base([data / "gazetteers" / "snomed_es_public.tsv",
                              data / "gazetteers" / "medprocner_procedures_es.tsv"])
    encoder = DenseEncoder(str(model))
    vectors = np.random.default_rng(0).standard_normal((kb.n_terms, encoder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    dense = DenseIndex.build(kb, GivenVectors(vectors, kb.term_texts), index_type=index_type)
    dense.encoder = encoder
    return save_index(HybridIndex(dense, LexicalIndex.build(kb), weight=0.9), out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", help="the index to serve")
    parser.add_argument("--model", help="instead of --index: a served-speed hybrid with this dense model (see above)")
    parser.add_argument("--index-type", default="flat", choices=["flat", "hnsw", "ivf", "sq8"],
                        help="with --model: the dense part's index type (default: %(default)s)")
    parser.add_argument("--corpus", default="medprocner", choices=["medprocner", "distemist", "symptemist"])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--redis-url")
    parser.add_argument("--repeats", type=int, default=5, help="100-task batches timed (default: %(default)s)")
    parser.add_argument("--cases", type=int, default=20, help="single cases timed, cold then again (default: %(default)s)")
    parser.add_argument("--search-memo", type=int, default=BackendConfig.search_memo,
                        help="wordings memoized per process, CLINLINKER_SEARCH_MEMO (default: %(default)s; 0: off)")
    args = parser.parse_args()
    if bool(args.index) == bool(args.model):
        parser.error("give --index or --model")
    if args.model:
        args.index = str(served_speed_hybrid(Path(args.model), Path(args.data), args.index_type))

    config = BackendConfig(index_dir=args.index, redis_url=args.redis_url, worker=False, search_memo=args.search_memo,
                           data_dir=tempfile.mkdtemp(prefix="clinlinker-bench-"))
    started = time.perf_counter()
    model, info = load_model(config)
    client = create_app(config, model, info).test_client()
    print(f"load: {time.perf_counter() - started:.2f} s; engine {model.linker.index.engine}, "
          f"model {model.linker.describe()['model']}, {len(model.linker.kb)} concepts")
    tasks = tasks_from_corpus(Path(args.data), args.corpus, 100)
    spans = [len(t["data"]["mentions"]) for t in tasks]
    print(f"{len(tasks)} {args.corpus} documents, {sum(spans)} spans (median {statistics.median(spans)} per case)")

    def timed(body) -> float:
        t0 = time.perf_counter()
        reply = client.post("/predict", json=body)
        assert reply.status_code == 200, reply.get_json()
        return time.perf_counter() - t0

    singles = [timed({"tasks": [task]}) for task in tasks[: args.cases]]
    print(f"one case per request: median {statistics.median(singles) * 1000:.1f} ms, "
          f"max {max(singles) * 1000:.1f} ms over {len(singles)} cases")
    again = [timed({"tasks": [task]}) for task in tasks[: args.cases]]
    print(f"the same cases again (their embeddings cached): median {statistics.median(again) * 1000:.1f} ms, "
          f"max {max(again) * 1000:.1f} ms")
    batches = [timed({"tasks": tasks}) for _ in range(args.repeats)]
    print(f"100-task batch ({sum(spans)} spans): first {batches[0]:.2f} s, median {statistics.median(batches):.2f} s "
          f"({sum(spans) / statistics.median(batches):.0f} spans/s)")


if __name__ == "__main__":
    main()

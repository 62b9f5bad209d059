"""Time the backend's /predict on real clinical cases from ../shared/data.

Runs the real app (Flask, in-process) on an index you built, e.g.:

    clinlinker index --gazetteer ../shared/data/gazetteers/medprocner_procedures_es.tsv --model char-ngrams --out ix
    python bench/predict_latency.py --index ix --corpus medprocner

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True)
    parser.add_argument("--corpus", default="medprocner", choices=["medprocner", "distemist", "symptemist"])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--redis-url")
    parser.add_argument("--repeats", type=int, default=5, help="100-task batches timed (default: %(default)s)")
    parser.add_argument("--cases", type=int, default=20, help="single cases timed, cold then again (default: %(default)s)")
    args = parser.parse_args()

    config = BackendConfig(index_dir=args.index, redis_url=args.redis_url, worker=False,
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

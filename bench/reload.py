"""Reload time of a dense index the size of both shared gazetteers merged (121k terms, 768-d flat), in a
fresh process: what a backend restart costs. Vectors are random (reading them costs the same).

    python bench/reload.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys

import numpy as np

from common import CACHE, DATA, ROOT, corpus_mentions, machine, roberta_base_random, save

CHILD = """
import sys, time, json
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
from clinlinker.search import index as ix
t1 = time.perf_counter()
manifest = ix.read_manifest({path!r})
kb = ix._read_kb(__import__('pathlib').Path({path!r}), manifest)
t2 = time.perf_counter()
import faiss
f = faiss.read_index({path!r} + '/' + ix.FAISS_FILE)
t3 = time.perf_counter()
loaded = ix.load_index({path!r})
t4 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "manifest_and_concepts_s": t2 - t1, "faiss_read_s": t3 - t2,
                  "load_index_total_s": t4 - t3, "terms": loaded.kb.n_terms}}))
"""


def main() -> None:
    import faiss

    from clinlinker.encode.encoders import DenseEncoder
    from clinlinker.kb.gazetteer import load_knowledge_base
    from clinlinker.search.index import DenseIndex, save_index

    out = CACHE / "index-both-gazetteers-dense-flat"
    if not (out / "manifest.json").exists():
        kb = load_knowledge_base(sorted((DATA / "gazetteers").glob("*.tsv")))
        encoder = DenseEncoder(str(roberta_base_random(CACHE / "roberta-base-random", corpus_mentions(20000))))
        vectors = np.random.default_rng(0).standard_normal((kb.n_terms, encoder.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        flat = faiss.IndexFlatIP(encoder.dim)
        flat.add(vectors)
        save_index(DenseIndex(kb, encoder, flat), out)
    import json

    runs = []
    for _ in range(3):
        reply = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), path=str(out))],
                               capture_output=True, text=True, check=True)
        runs.append(json.loads(reply.stdout.strip().splitlines()[-1]))
    result = {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0] if key != "terms"}
    result["terms"] = runs[0]["terms"]
    print(f"{result['terms']} terms, 768-d flat: concept table {result['manifest_and_concepts_s']} s, Faiss file "
          f"{result['faiss_read_s']} s; load_index (index + concepts + loading and checking the model) "
          f"{result['load_index_total_s']} s")
    print("written", save("reload.json", {"machine": machine(), **result}))


if __name__ == "__main__":
    main()

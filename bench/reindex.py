"""A flat index's dense vectors put into another Faiss index type, without encoding the gazetteer again: to measure
what an approximate index (hnsw, ivf, sq8) costs in accuracy and gains in speed on the very same vectors.

    python bench/reindex.py IX --index-type hnsw --out IX-hnsw

IX is a dense or hybrid index built with `--index-type flat`; a hybrid keeps its lexical part, weight and method.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class GivenVectors:
    """Hands DenseIndex.build vectors already made for the terms (stored, or random stand-ins) instead of encoding
    them."""

    def __init__(self, vectors, texts):
        self.vectors, self.texts = vectors, texts

    def encode(self, texts, **_):
        if list(texts) != list(self.texts):
            raise ValueError("asked for other texts than the index's terms")
        return self.vectors


def reindex(source: Path, out: Path, index_type: str) -> Path:
    from clinlinker.search.hybrid import HybridIndex
    from clinlinker.search.index import DenseIndex, load_index, save_index

    index = load_index(source)
    dense = index.dense if index.engine == "hybrid" else index
    if dense.index_type != "flat" or dense._stored is None:
        raise SystemExit(f"{source}: the dense part is {dense.index_type}, not flat: its exact vectors are not kept")
    started = time.perf_counter()
    built = DenseIndex.build(dense.kb, GivenVectors(dense._stored, dense.kb.term_texts), index_type=index_type)
    built.encoder = dense.encoder
    print(f"{index_type} over {dense.kb.n_terms} vectors built in {time.perf_counter() - started:.1f} s")
    if index.engine == "hybrid":
        built = HybridIndex(built, index.lexical, method=index.method, weight=index.weight, depth=index.depth)
    serving = (index.manifest or {}).get("serving")
    return save_index(built, out, sources=(index.manifest or {}).get("sources"), serving=serving)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("--index-type", required=True, choices=["hnsw", "ivf", "sq8"])
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    print("written", reindex(args.index, args.out, args.index_type))


if __name__ == "__main__":
    main()

"""Index benchmark: build time and peak memory, reload time, search latency (single and batched),
and flat vs sq8 vs IVF vs HNSW with their recall@25 against flat.

Vectors: either real ones read from a flat dense index you built (`--vectors-from DIR`, e.g. the
MedProcNER gazetteer encoded by all-MiniLM-L6-v2), or synthetic clustered unit vectors of the size of
the shared gazetteers encoded by a 768-d model (`--synthetic N`, default 150,000). Encoding time is not
in these figures (bench/encoding.py measures it).

    python bench/index.py --synthetic 150000
    python bench/index.py --vectors-from ix-minilm
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine, save


def clustered(n: int, dim: int, clusters: int = 2000, noise: float = 0.35, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres: terms of one concept family sit together, as real ones do."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors-from", help="a flat dense index directory to read real vectors from")
    parser.add_argument("--synthetic", type=int, default=150_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--types", default="flat,sq8,ivf,hnsw", help="index types to measure")
    parser.add_argument("--out")
    args = parser.parse_args()

    import faiss

    from clinlinker.search import index as ix

    faiss.cvar.distance_compute_blas_threshold = ix.BLAS_THRESHOLD
    if args.vectors_from:
        flat = faiss.read_index(str(Path(args.vectors_from) / ix.FAISS_FILE))
        vectors = flat.reconstruct_n(0, flat.ntotal)
        source = f"real vectors from {args.vectors_from}"
    else:
        vectors = clustered(args.synthetic, args.dim)
        source = f"synthetic clustered unit vectors ({args.synthetic} x {args.dim})"
    n, dim = vectors.shape
    rng = np.random.default_rng(1)
    queries = vectors[rng.choice(n, args.queries, replace=False)] + 0.1 * rng.standard_normal(
        (args.queries, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    print(f"{source}: {n} terms, dim {dim}; {args.queries} queries; peak RSS so far {peak_rss_mb():.0f} MB")

    rows, truth = [], None
    tmp = Path(tempfile.mkdtemp(prefix="clinlinker-index-bench-"))
    for kind in args.types.split(","):
        before = peak_rss_mb()
        t0 = time.perf_counter()
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "sq8":
            index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
        elif kind == "ivf":
            nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
            index.nprobe = ix.IVF_NPROBE
        else:
            index = faiss.IndexHNSWFlat(dim, ix.HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ix.HNSW_EF_CONSTRUCTION
        index.add(vectors)
        build = time.perf_counter() - t0
        path = tmp / f"{kind}.faiss"
        faiss.write_index(index, str(path))
        reloads = []
        for _ in range(3):
            t0 = time.perf_counter()
            faiss.read_index(str(path))
            reloads.append(time.perf_counter() - t0)
        params = faiss.SearchParametersHNSW(efSearch=ix.HNSW_EF_SEARCH) if kind == "hnsw" else None
        single = []
        for q in queries[:64]:
            t0 = time.perf_counter()
            index.search(q[None, :], 100, params=params)
            single.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _, found = index.search(queries, 100, params=params)
        batched = (time.perf_counter() - t0) / len(queries)
        if truth is None:
            truth = found
        recall = np.mean([len(set(a[:25]) & set(b[:25])) / 25 for a, b in zip(found, truth)])
        row = {"index": kind, "build_s": round(build, 2), "peak_rss_mb": round(max(peak_rss_mb(), before), 0),
               "file_mb": round(path.stat().st_size / 2**20, 1), "reload_s": round(statistics.median(reloads), 3),
               "single_query_ms_p50": round(statistics.median(single) * 1000, 2),
               "batched_query_ms": round(batched * 1000, 3), "recall_at_25_vs_flat": round(float(recall), 4)}
        rows.append(row)
        print(f"{kind:5s} build {build:6.1f} s  file {row['file_mb']:7.1f} MB  reload {row['reload_s']:.3f} s  "
              f"single {row['single_query_ms_p50']:7.2f} ms  batched {row['batched_query_ms']:6.3f} ms/query  "
              f"recall@25 {recall:.4f}")
        del index
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"peak RSS {peak_rss_mb():.0f} MB (vectors alone: {vectors.nbytes / 2**20:.0f} MB)")
    name = args.out or ("index-real.json" if args.vectors_from else f"index-synthetic-{n}x{dim}.json")
    print("written", save(name, {"machine": machine(), "source": source, "terms": n, "dim": dim,
                                 "queries": args.queries, "rows": rows}))


if __name__ == "__main__":
    main()

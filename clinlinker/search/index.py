"""Indexes over all gazetteer terms, saved as a directory and searched for k distinct concepts.

Two engines share one interface (`search(mentions, k) -> list[list[Candidate]]`):
- DenseIndex: bi-encoder vectors in Faiss, inner product on L2-normalised vectors (= cosine).
- LexicalIndex: char n-gram TF-IDF, exact cosine by a sparse matrix product.

An index directory holds the engine's data, `concepts.json` (the term -> concept table and the
hierarchy) and `manifest.json` (what built it). Loading checks the manifest against the
encoder in use and refuses a mismatch: vectors from two models are not comparable.

One file of ~570 lines: both engines, saving and loading share the manifest and its checks; split, the halves
would import each other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from clinlinker import __version__
from clinlinker.search.candidates import Candidate, code_ranks, rank_concepts, sorted_hits
from clinlinker.errors import ClinlinkerError, IndexLoadError, IndexMismatchError
from clinlinker.kb.knowledge_base import Concept, KnowledgeBase
from clinlinker.search.lexical import LEXICAL_MODEL, CharNgramEncoder, sparse_product

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CONCEPTS = "concepts.json"
FAISS_FILE = "terms.faiss"
NGRAM_MATRIX = "terms_ngrams.npz"
IDF_FILE = "idf.npy"
INDEX_TYPES = ("flat", "hnsw", "sq8", "ivf")
DEFAULT_TOP_K = 25
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 256  # recall@25 0.995 on real MiniLM vectors of the MedProcNER gazetteer (128: 0.985)
IVF_NPROBE = 128  # of 4*sqrt(N) cells: recall@25 0.98 on real vectors (32: 0.92); bench/index.py
# Faiss answers batches under this many queries with a slow non-BLAS loop (default 20); one BLAS call is
# faster from a single query up on these CPUs (bench/index.py measures it).
BLAS_THRESHOLD = 1
# faiss's float32 similarities of unit vectors err by far less than this: a term scored more than this below the
# k-th concept cannot enter the top k when rescored exactly (`_stored_vectors`)
RESCORE_MARGIN = 1e-4
# a Faiss search of fewer multiply-adds (queries x terms x dimension) than this runs on one thread: a /predict case
# against a small gazetteer takes ~0.2 ms either way, but its OpenMP threads wait ~10 ms for the cores while the
# encoder's threads (ONNX Runtime's) still spin after a forward pass (bench/annotate.py small-search)
SMALL_SEARCH = 2e7


class _IndexBase:
    engine = ""

    def __init__(self, kb: KnowledgeBase, encoder, index_type: str):
        self.kb = kb
        self.encoder = encoder
        self.index_type = index_type
        self.term_concept = np.asarray(kb.term_concept, dtype=np.int64)
        # a concept's first term is its preferred term (KnowledgeBase keeps that order)
        self.term_preferred = np.r_[True, self.term_concept[1:] != self.term_concept[:-1]] \
            if len(self.term_concept) else np.zeros(0, dtype=bool)
        self.code_rank = code_ranks([concept.code for concept in kb.concepts])
        self.manifest: dict = {}

    def _rank(self, term_ids, scores, k: int, allowed=None):
        return rank_concepts(term_ids, scores, self.term_concept, k, preferred=self.term_preferred, allowed=allowed,
                             code_rank=self.code_rank)

    def search(self, mentions: Sequence[str], k: int = DEFAULT_TOP_K, allowed=None) -> list[list[Candidate]]:
        """At most k distinct concepts per mention, best first. allowed: optional boolean mask over concepts (the
        label's part of the knowledge base)."""
        return [self._candidates(*hits) for hits in self.hits(mentions, k, allowed=allowed)]

    def _candidates(self, concept_ids, term_ids, scores) -> list[Candidate]:
        return [Candidate.of(self.kb, self.kb.concepts[int(cid)], matched_term=self.kb.term_texts[int(tid)],
                             score=score, rank=rank, evidence=self.engine)
                for rank, (cid, tid, score) in enumerate(zip(concept_ids, term_ids, scores), start=1)]

    @property
    def term_encoder(self):
        """What encodes wordings searched beside the index (a project's learned terms) on its scores' scale."""
        return self.encoder

    def describe(self) -> dict:
        return {"engine": self.engine, "index_type": self.index_type, "concepts": len(self.kb),
                "terms": self.kb.n_terms, **{k: v for k, v in self.encoder.describe().items() if k != "engine"}}


class DenseIndex(_IndexBase):
    engine = "dense"

    def __init__(self, kb, encoder, faiss_index, index_type: str = "flat"):
        import faiss

        super().__init__(kb, encoder, index_type)
        self.faiss_index = faiss_index
        faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD
        self._stored = _stored_vectors(faiss_index)

    @classmethod
    def build(cls, kb: KnowledgeBase, encoder, index_type: str = "flat") -> "DenseIndex":
        import faiss

        if index_type not in INDEX_TYPES:
            raise ValueError(f"index type must be one of {INDEX_TYPES}, got {index_type!r}")
        vectors = encoder.encode(kb.term_texts)
        dim = vectors.shape[1]
        if index_type == "flat":
            index = faiss.IndexFlatIP(dim)
        elif index_type == "hnsw":
            index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index.hnsw.efSearch = HNSW_EF_SEARCH
        elif index_type == "sq8":
            index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
        else:  # ivf: k-means cells, a query visits the IVF_NPROBE nearest ones
            nlist = max(1, min(int(4 * np.sqrt(len(vectors))), len(vectors) // 39))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(vectors)
            index.nprobe = min(nlist, IVF_NPROBE)
        index.add(vectors)
        return cls(kb, encoder, index, index_type)

    def _faiss_search(self, vectors: np.ndarray, depth: int):
        import faiss

        if len(vectors) * self.faiss_index.ntotal * self.faiss_index.d < SMALL_SEARCH:
            threads = faiss.omp_get_max_threads()  # per calling thread in OpenMP: other requests keep theirs
            faiss.omp_set_num_threads(1)
            try:
                return self._faiss_search_threads(vectors, depth)
            finally:
                faiss.omp_set_num_threads(threads)
        return self._faiss_search_threads(vectors, depth)

    def _faiss_search_threads(self, vectors: np.ndarray, depth: int):
        import faiss

        if self.index_type == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, depth))
            return self.faiss_index.search(vectors, depth, params=params)
        if self.index_type == "ivf":
            # the deepening search's last pass (depth = every term) visits every cell
            nprobe = self.faiss_index.nlist if depth >= self.faiss_index.ntotal else self.faiss_index.nprobe
            params = faiss.SearchParametersIVF(nprobe=nprobe)
            return self.faiss_index.search(vectors, depth, params=params)
        return self.faiss_index.search(vectors, depth)

    def hits(self, mentions: Sequence[str], k: int = DEFAULT_TOP_K, allowed=None) -> list[tuple]:
        """Per mention, its best concepts as arrays (concept ids, term ids, scores), best first: what `search` makes
        candidates of (a hybrid fuses these, and makes candidates of its own k only)."""
        if not len(mentions):
            return []
        return self.vector_hits(self.encoder.encode(list(mentions)), k, allowed=allowed)

    def search_vectors(self, vectors: np.ndarray, k: int = DEFAULT_TOP_K, allowed=None) -> list[list[Candidate]]:
        return [self._candidates(*hits) for hits in self.vector_hits(vectors, k, allowed=allowed)]

    def vector_hits(self, vectors: np.ndarray, k: int = DEFAULT_TOP_K, allowed=None) -> list[tuple]:
        """Exactly min(k, allowed concepts) distinct concepts per row: search deeper until enough codes are found."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        total = self.faiss_index.ntotal
        k = min(k, len(self.kb) if allowed is None else int(np.count_nonzero(allowed)))
        results: list[tuple | None] = [None] * len(vectors)
        if k < 1:
            empty = np.zeros(0, dtype=np.int64)
            return [(empty, empty, np.zeros(0, dtype=np.float32)) for _ in range(len(vectors))]
        pending = np.arange(len(vectors))
        share = 1.0 if allowed is None else max(np.count_nonzero(allowed) / max(len(allowed), 1), 1e-3)
        depth = min(total, int(max(4 * k, 64) / share))  # a narrow label part needs a deeper first search
        while len(pending):
            scores, ids = self._faiss_search(vectors[pending], depth)
            short = []
            for row, row_scores, row_ids in zip(pending, scores, ids):
                valid = row_ids >= 0
                row_ids, row_scores = row_ids[valid], row_scores[valid]
                cids, tids, sc = self._rank(row_ids, row_scores, k, allowed)
                if len(cids) < k and depth < total:
                    short.append(row)
                    continue
                if self._stored is not None and len(sc):  # exact similarities, whatever shared the faiss call:
                    # of the terms that can still be among the k concepts (faiss's error is far below the margin)
                    near = row_scores >= (sc[-1] - RESCORE_MARGIN if len(cids) >= k else -np.inf)
                    row_ids = row_ids[near]
                    exact = self._stored[row_ids].astype(np.float64) @ vectors[row].astype(np.float64)
                    cids, tids, sc = self._rank(row_ids, exact.astype(np.float32), k, allowed)
                results[row] = (cids, tids, sc)
            pending = np.asarray(short, dtype=np.int64)
            depth = min(total, depth * 4)
        return results  # type: ignore[return-value]

    def save_data(self, directory: Path) -> None:
        import faiss

        faiss.write_index(self.faiss_index, str(directory / FAISS_FILE))

    @classmethod
    def load_data(cls, directory: Path, manifest: dict, kb: KnowledgeBase, encoder) -> "DenseIndex":
        import faiss

        path = directory / FAISS_FILE
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise IndexLoadError(f"{path}: corrupt or truncated Faiss file ({str(exc).splitlines()[0]}); "
                                 "rebuild the index with `clinlinker index`") from None
        if index.ntotal != kb.n_terms or index.d != manifest.get("dim"):
            raise IndexLoadError(f"{path}: holds {index.ntotal} vectors of dimension {index.d}, the manifest says "
                                 f"{kb.n_terms} of dimension {manifest.get('dim')}; rebuild the index")
        return cls(kb, encoder, index, manifest["index_type"])


def _stored_vectors(faiss_index):
    """The term vectors a flat or HNSW index stores (a view, no copy), else None (sq8 and ivf store them coded).

    Faiss's BLAS product gives a query's similarities with differences in the last bits (~1e-8) depending on how
    many queries share the call: near-tied concepts could then swap places between /predict (one case) and
    `annotate` (a shard of cases). The candidates faiss finds are rescored one query at a time in float64 from these
    vectors, so a mention's list depends on the mention alone."""
    import faiss

    flat = faiss_index
    if isinstance(flat, faiss.IndexHNSW):
        flat = faiss.downcast_index(flat.storage)
    if not isinstance(flat, faiss.IndexFlat) or flat.ntotal == 0:
        return None
    return faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)


class LexicalIndex(_IndexBase):
    engine = "lexical"
    CHUNK = 256  # queries per sparse product: bounds the memory of the score matrix

    def __init__(self, kb, encoder: CharNgramEncoder, matrix, index_type: str = "flat"):
        super().__init__(kb, encoder, index_type)
        self.matrix = matrix.tocsr()  # terms x features
        self._by_feature = self.matrix.T.tocsr()  # features x terms: a query row times this = its scores
        self._parts: dict[bytes, tuple] = {}  # routing mask's digest -> how to search only its terms (see _part)
        self._parts_lock = threading.Lock()

    @classmethod
    def build(cls, kb: KnowledgeBase, encoder: CharNgramEncoder | None = None, index_type: str = "flat"):
        if index_type != "flat":
            log.warning("the lexical engine always searches exactly; index type %r ignored", index_type)
        encoder = encoder or CharNgramEncoder()
        if encoder.idf is None:
            encoder.fit(kb.term_texts)
        return cls(kb, encoder, encoder.encode(kb.term_texts), "flat")

    def hits(self, mentions: Sequence[str], k: int = DEFAULT_TOP_K, allowed=None) -> list[tuple]:
        """Concepts sharing character n-grams with each mention, best first, as arrays (concept ids, term ids,
        scores): at most k, fewer when fewer match (no filler). allowed: optional boolean mask over concepts (the
        label's part of the knowledge base)."""
        k = min(k, len(self.kb))
        by_feature, columns, check = self._part(allowed)
        out: list[tuple] = []
        for start in range(0, len(mentions), self.CHUNK):
            scores = sparse_product(self.encoder.encode(list(mentions[start:start + self.CHUNK])), by_feature)
            if len(scores.data) and scores.data.min() <= 0:  # TF-IDF weights are positive: never, in practice
                scores.data[scores.data < 0] = 0
                scores.eliminate_zeros()
            indices = scores.indices if columns is None else columns[scores.indices]
            for row in range(scores.shape[0]):
                lo, hi = scores.indptr[row], scores.indptr[row + 1]
                out.append(self._row_candidates(indices[lo:hi], scores.data[lo:hi], k, check))
        return out

    # A label's part of the knowledge base (a routing mask over concepts) is searched the cheapest exact way. All
    # terms: no filter. At most PART_COPY of the terms: the product is restricted to the part's terms (a copy of
    # those columns, built once per mask), so a small part costs a small product. More: the whole product, and only
    # a mention's best hits (sorted_hits' cut) are filtered, unless they hold fewer than k of the part's concepts. A
    # concept's rank depends on its own terms only, so k concepts found above the cut are the part's top k.
    PART_COPY = 0.6
    PARTS_KEPT = 16

    def _part(self, allowed):
        """(features x terms matrix, its columns' term ids or None, a concept mask to filter with or None)."""
        if allowed is None:
            return self._by_feature, None, None
        mask = np.asarray(allowed, dtype=bool)
        key = hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=16).digest()  # equal masks share a part
        part = self._parts.get(key)
        if part is None:
            allowed_terms = mask[self.term_concept]
            share = allowed_terms.mean() if len(allowed_terms) else 1.0
            if share == 1.0:
                part = (self._by_feature, None, None)
            elif share <= self.PART_COPY:
                columns = np.flatnonzero(allowed_terms).astype(np.int32)
                part = (self._by_feature[:, columns].tocsr(), columns, None)
            else:
                part = (self._by_feature, None, mask.copy())
            with self._parts_lock:
                if len(self._parts) >= self.PARTS_KEPT:  # masks are a few per label routing; never grow unbounded
                    self._parts.pop(next(iter(self._parts)))
                self._parts[key] = part
        return part

    def _row_candidates(self, term_ids: np.ndarray, scores: np.ndarray, k: int, check=None):
        """One mention's best k distinct concepts from its term hits: (concept ids, term ids, scores); with `check`
        (a concept mask), of the concepts it allows only."""
        ids, sc = sorted_hits(term_ids, scores, limit=8 * k)
        if check is not None:
            keep = check[self.term_concept[ids]]
            found = self._rank(ids[keep], sc[keep], k)
            if len(found[0]) == k or len(ids) == len(term_ids):
                return found  # k allowed concepts above the cut outrank every allowed concept under it
            keep = check[self.term_concept[term_ids]]
            term_ids, scores = term_ids[keep], scores[keep]
            ids, sc = sorted_hits(term_ids, scores, limit=8 * k)
        found = self._rank(ids, sc, k)
        if len(found[0]) < k and len(term_ids) > len(ids):
            found = self._rank(term_ids, scores, k)
        return found

    def save_data(self, directory: Path) -> None:
        import scipy.sparse as sp

        sp.save_npz(directory / NGRAM_MATRIX, self.matrix, compressed=False)
        np.save(directory / IDF_FILE, self.encoder.idf)

    @classmethod
    def load_data(cls, directory: Path, manifest: dict, kb: KnowledgeBase, encoder=None) -> "LexicalIndex":
        import scipy.sparse as sp

        try:
            matrix = sp.load_npz(directory / NGRAM_MATRIX)
            idf = np.load(directory / IDF_FILE, allow_pickle=False)
        except Exception as exc:  # zipfile/numpy raise many types on truncated files
            raise IndexLoadError(f"{directory}: corrupt lexical index data ({type(exc).__name__}: {exc}); "
                                 "rebuild the index with `clinlinker index`") from None
        params = manifest.get("encoder", {})
        encoder = CharNgramEncoder(ngram_range=tuple(params.get("ngram_range", (3, 3))),
                                   n_features=params.get("n_features", 1 << 20), idf=idf)
        if matrix.shape != (kb.n_terms, encoder.n_features) or idf.shape != (encoder.n_features,):
            raise IndexLoadError(f"{directory}: lexical matrix {matrix.shape} does not match the manifest "
                                 f"({kb.n_terms} terms, {encoder.n_features} features); rebuild the index")
        return cls(kb, encoder, matrix, "flat")


ENGINES = {"dense": DenseIndex, "lexical": LexicalIndex}


# --- building -----------------------------------------------------------------------------------

def build_index(kb: KnowledgeBase, encoder=None, *, index_type: str = "flat", hybrid: dict | None = None):
    """Build the index for `encoder` (a DenseEncoder) or, with encoder=None, the lexical engine.

    hybrid: {"method": ..., "weight": ...} to build both engines and fuse them (needs a dense encoder).
    """
    if hybrid is not None:
        from clinlinker.search.hybrid import HybridIndex

        if encoder is None or isinstance(encoder, CharNgramEncoder):
            raise ClinlinkerError("a hybrid index needs a dense model (--model) beside the lexical engine")
        return HybridIndex(build_index(kb, encoder, index_type=index_type), build_index(kb), **hybrid)
    start = time.perf_counter()
    if encoder is None or isinstance(encoder, CharNgramEncoder):
        index = LexicalIndex.build(kb, encoder, index_type)
    else:
        index = DenseIndex.build(kb, encoder, index_type)
    log.info("built %s index (%s) over %d terms of %d concepts in %.1f s", index.engine, index.index_type,
             kb.n_terms, len(kb), time.perf_counter() - start)
    return index


def save_index(index, out_dir, *, sources: dict | None = None, reranker: dict | None = None,
               serving: dict | None = None) -> Path:
    """Write the index directory atomically: a half-written directory is never left under `out_dir`.

    `sources` describes the input files (path, sha256, rows) for the manifest; `reranker` the second stage loaded
    with the index (a CrossEncoderReranker's describe()); `serving` the linker's settings the backend follows
    (e.g. {"abbreviations": true}).
    """
    if index.engine == "hybrid":
        return _save_hybrid(index, Path(out_dir), sources, reranker, serving)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ClinlinkerError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise ClinlinkerError(f"{out} is a non-empty directory that is not a clinlinker index; "
                              "choose another --out (nothing was overwritten)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        index.save_data(tmp)
        kb = index.kb
        with open(tmp / CONCEPTS, "w", encoding="utf-8") as handle:
            json.dump({"concepts": [[c.code, list(c.semantic_tags), list(c.terms)] for c in kb.concepts],
                       "parents": {code: list(ps) for code, ps in kb.parent_map().items()}},
                      handle, ensure_ascii=False, separators=(",", ":"))
        manifest = {
            "format_version": FORMAT_VERSION,
            "engine": index.engine,
            "index_type": index.index_type,
            "model": index.encoder.name,
            "model_path": _resolved(index.encoder.name),
            "fingerprint": index.encoder.fingerprint,
            "pooling": getattr(index.encoder, "pooling", None),
            **({"prefix": index.encoder.prefix} if getattr(index.encoder, "prefix", None) else {}),
            **({"model_source": index.encoder.source} if getattr(index.encoder, "source", None) else {}),
            **({"encoded_on": index.encoder.encoded_on} if getattr(index.encoder, "encoded_on", None) else {}),
            "max_length": getattr(index.encoder, "max_length", None),
            "precision": getattr(index.encoder, "precision", None),
            **({"precision_choice": index.encoder.precision_choice}
               if getattr(index.encoder, "precision_choice", None) else {}),
            "dim": getattr(index.encoder, "dim", None),
            "encoder": index.encoder.params if index.engine == "lexical" else {},
            "concepts": len(kb),
            "terms": kb.n_terms,
            "hierarchy_edges": len(kb.hierarchy_edges()),
            "load_report": vars(kb.report).copy() if kb.report else {},
            "sources": sources or {},
            **({"reranker": reranker} if reranker else {}),
            **({"serving": serving} if serving else {}),
            "files": {p.name: p.stat().st_size for p in sorted(tmp.iterdir())},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": _versions(),
        }
        with open(tmp / MANIFEST, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, ensure_ascii=False)
        os.chmod(tmp, 0o755)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    index.manifest = manifest
    return out


def _save_hybrid(index, out: Path, sources, reranker=None, serving=None) -> Path:
    """A hybrid index is a directory holding a dense and a lexical index, and a manifest saying how to fuse."""
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise ClinlinkerError(f"{out} is a non-empty directory that is not a clinlinker index; "
                              "choose another --out (nothing was overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # an interrupted rebuild leaves no manifest: never half an index
    save_index(index.dense, out / "dense", sources=sources)
    save_index(index.lexical, out / "lexical", sources=sources)
    dense = read_manifest(out / "dense")  # what a reader of this manifest wants to know of the model, said here too
    manifest = {"format_version": FORMAT_VERSION, "engine": "hybrid", "method": index.method,
                "weight": index.weight, "depth": index.depth, "parts": ["dense", "lexical"],
                **{key: dense[key] for key in ("model", "model_path", "fingerprint", "pooling", "prefix",
                                               "model_source", "max_length",
                                               "precision", "precision_choice", "dim", "index_type", "concepts",
                                               "terms", "hierarchy_edges") if key in dense},
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "versions": _versions(),
                **({"reranker": reranker} if reranker else {}), **({"serving": serving} if serving else {})}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    index.manifest = {**index.dense.manifest, **manifest}
    return out


def _resolved(name: str) -> str | None:
    return str(Path(name).resolve()) if name != LEXICAL_MODEL and Path(name).is_dir() else None


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"clinlinker": __version__, "python": platform.python_version()}
    for package in ("numpy", "faiss-cpu", "faiss-gpu", "torch", "transformers", "scipy", "scikit-learn"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            pass
    return versions


# --- loading ------------------------------------------------------------------------------------

def model_source(manifest: dict) -> str:
    """The model a dense index was built with: its local directory when it still exists, else its name/hub id."""
    path = manifest.get("model_path")
    return path if path and Path(path).is_dir() else manifest["model"]


def read_manifest(directory) -> dict:
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise IndexLoadError(f"{directory}: no such index directory; build one with `clinlinker index`")
    if not path.is_file():
        raise IndexLoadError(f"{directory}: not a clinlinker index (no {MANIFEST}); build one with `clinlinker index`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IndexLoadError(f"{path}: corrupt manifest ({exc}); rebuild the index") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexLoadError(f"{path}: index format {manifest.get('format_version')!r}, this clinlinker reads "
                             f"format {FORMAT_VERSION}; rebuild the index with this version")
    for name, size in manifest.get("files", {}).items():
        file = directory / name
        if not file.is_file():
            raise IndexLoadError(f"{directory}: missing {name}; the index is incomplete, rebuild it")
        if file.stat().st_size != size:
            raise IndexLoadError(f"{file}: {file.stat().st_size} bytes, the manifest says {size}: "
                                 "truncated or modified; rebuild the index")
    return manifest


def _read_kb(directory: Path, manifest: dict) -> KnowledgeBase:
    path = directory / CONCEPTS
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        # tags: a list (the union of the sources), or one string in indexes written before tags were merged
        concepts = [Concept(code=code, preferred_term=terms[0], semantic_tags=tags, terms=tuple(terms))
                    for code, tags, terms in data["concepts"]]
        parents = {code: tuple(ps) for code, ps in data.get("parents", {}).items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise IndexLoadError(f"{path}: corrupt concept table ({type(exc).__name__}); rebuild the index") from None
    kb = KnowledgeBase(concepts, parents=parents)
    if len(kb) != manifest.get("concepts") or kb.n_terms != manifest.get("terms"):
        raise IndexLoadError(f"{path}: {len(kb)} concepts / {kb.n_terms} terms, the manifest says "
                             f"{manifest.get('concepts')} / {manifest.get('terms')}; rebuild the index")
    return kb


def load_index(directory, *, encoder=None, model: str | None = None, cache=None, device: str | None = None,
               batch_size: int = 32, runtime: str | None = None):
    """Load an index directory and the encoder it needs.

    encoder: an already loaded encoder to use (checked against the manifest);
    model: a model id or path to load instead of the manifest's (checked too);
    cache: an embedding cache (LRUCache / RedisCache) wrapped around a dense encoder;
    runtime: the dense encoder's runtime, torch or onnx (default: torch; clinlinker/encode/onnx_runtime.py).
    """
    directory = Path(directory)
    start = time.perf_counter()
    manifest = read_manifest(directory)
    engine = manifest.get("engine")
    if engine == "hybrid":
        from clinlinker.search.hybrid import HybridIndex

        dense = load_index(directory / "dense", encoder=encoder, model=model, cache=cache, device=device,
                           batch_size=batch_size, runtime=runtime)
        # the lexical half shares the dense half's concept table: read it once
        lexical = LexicalIndex.load_data(directory / "lexical", read_manifest(directory / "lexical"), dense.kb)
        index = HybridIndex(dense, lexical, method=manifest.get("method", "interpolate"),
                            weight=float(manifest.get("weight", 0.5)), depth=int(manifest.get("depth", 100)))
        index.manifest = {**dense.manifest, **manifest}
        return index
    if engine not in ENGINES:
        raise IndexLoadError(f"{directory / MANIFEST}: unknown engine {engine!r}")
    if engine == "lexical":
        wanted = getattr(encoder, "name", None) or model
        if wanted and wanted != LEXICAL_MODEL:
            raise IndexMismatchError(f"{directory} is a lexical (char-ngrams) index but the model in use is "
                                     f"{wanted!r}; build a dense index with `clinlinker index --model {wanted}` "
                                     "or use --model char-ngrams")
        kb = _read_kb(directory, manifest)
        index = LexicalIndex.load_data(directory, manifest, kb)
    else:
        if model == LEXICAL_MODEL or isinstance(encoder, CharNgramEncoder):
            raise IndexMismatchError(f"{directory} is a dense index built with {manifest['model']!r}; "
                                     "for the lexical engine build one with `clinlinker index --model char-ngrams`")
        if encoder is None:
            from clinlinker.encode.encoders import DenseEncoder

            encoder = DenseEncoder(model or model_source(manifest), pooling=manifest["pooling"],
                                   prefix=manifest.get("prefix", ""),
                                   max_length=manifest["max_length"], device=device, batch_size=batch_size,
                                   precision=manifest.get("precision") or "fp32", runtime=runtime or "torch")
        if encoder.fingerprint != manifest.get("fingerprint"):
            raise IndexMismatchError(
                f"{directory} was built with model {manifest['model']!r} (pooling {manifest['pooling']}, "
                f"max_length {manifest['max_length']}, fingerprint {str(manifest.get('fingerprint'))[:12]}), "
                f"but the encoder in use is {encoder.name!r} (pooling {encoder.pooling}, max_length "
                f"{encoder.max_length}, fingerprint {encoder.fingerprint[:12]}): their vectors are not comparable. "
                "Rebuild the index with this model (`clinlinker index --model ...`) or use the index's model.")
        kb = _read_kb(directory, manifest)
        if cache is not None:
            from clinlinker.encode.cache import CachedEncoder

            encoder = CachedEncoder(encoder, cache)
        index = DenseIndex.load_data(directory, manifest, kb, encoder)
    index.manifest = manifest
    log.info("loaded %s index %s (%d concepts, %d terms) in %.2f s", engine, directory, len(index.kb),
             index.kb.n_terms, time.perf_counter() - start)
    return index

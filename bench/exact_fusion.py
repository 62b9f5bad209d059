"""A variant of the hybrid's fusion, measured as served and not kept (docs/quality.md, levers not kept): a concept that one
engine lists in its first `depth` and the other does not is scored exactly on the other (its terms' best dense
cosine, or char n-gram cosine) instead of getting that engine's floor (its last listed score).

    python bench/exact_fusion.py --index DENSE_DIR --lexical-index LEXICAL_DIR --weight 0.7 --name NAME

Runs bench/served.py's `linked` (the backend's own path: learned terms, acronyms, each mention's document) with
HybridIndex.search replaced by the exact variant for this process only; recorded as NAME in bench/results/served.json.
"""

from __future__ import annotations

import argparse
import numpy as np

import served
from clinlinker.search import hybrid


def _concept_terms(index) -> tuple[np.ndarray, np.ndarray]:
    """Each concept's first and past-last term id (a concept's terms are contiguous)."""
    ids = np.arange(len(index.kb.concepts))
    return np.searchsorted(index.dense.term_concept, ids), np.searchsorted(index.dense.term_concept, ids, "right")


def exact_search(self, mentions, k=25, allowed=None):
    """HybridIndex.search, each list completed with the concepts only the other list holds, scored exactly; then the
    hybrid's own fusion (`_fuse_ranked`), which then never falls back to a floor. The added entries keep the rank a
    missing concept has there (one past the list), so ties break as before."""
    if not hasattr(self, "_terms"):
        self._terms = _concept_terms(self)
    first, last = self._terms
    depth = max(self.depth, k)
    dense_vectors = self.dense.encoder.encode(list(mentions))
    lexical_vectors = self.lexical.encoder.encode(list(mentions))

    def dense_score(row, cid):
        terms = self.dense._stored[first[cid]:last[cid]].astype(np.float64)
        return float((terms @ dense_vectors[row].astype(np.float64)).max())

    def lexical_score(row, cid):
        return float((self.lexical.matrix[first[cid]:last[cid]] @ lexical_vectors[row].T).toarray().max())

    def completed(listed: dict, other: dict, score, row) -> dict:
        past = len(listed) + 1
        return {**listed, **{cid: (past, score(row, cid), tid) for cid, (_, _, tid) in other.items()
                             if cid not in listed}}

    out = []
    for row, (dense, lexical) in enumerate(zip(self.dense.vector_hits(dense_vectors, depth, allowed=allowed),
                                               self.lexical.hits(mentions, depth, allowed=allowed))):
        dense, lexical = hybrid._ranked(*dense), hybrid._ranked(*lexical)
        out.append(self._fuse_ranked(completed(dense, lexical, dense_score, row),
                                     completed(lexical, dense, lexical_score, row), k))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", required=True, help="the dense index (built with --hybrid none)")
    p.add_argument("--lexical-index", required=True)
    p.add_argument("--weight", type=float, default=hybrid.DEFAULT_WEIGHT)
    p.add_argument("--name", required=True)
    args = p.parse_args()
    hybrid.HybridIndex.search = exact_search
    served.linked(args.index, args.name, lexical_index=args.lexical_index, weight=args.weight)


if __name__ == "__main__":
    main()

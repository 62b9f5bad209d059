"""A variant of the hybrid's fusion, measured as served and not kept (docs/quality.md, levers not kept): a concept that one
engine lists in its first `depth` and the other does not is scored exactly on the other (its terms' best dense
cosine, or char n-gram cosine) instead of getting that engine's floor (its last listed score).

    python bench/exact_fusion.py --index DENSE_DIR --lexical-index LEXICAL_DIR --weight 0.7 --name NAME

Runs bench/served.py's `linked` (the backend's own path: learned terms, acronyms, each mention's document) with
HybridIndex.search replaced by the exact variant for this process only; recorded as NAME in bench/results/served.json.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

import served
from clinlinker.search import hybrid


def _concept_terms(index) -> tuple[dict, np.ndarray, np.ndarray]:
    """code -> concept id, and each concept's first and past-last term id (a concept's terms are contiguous)."""
    ids = np.arange(len(index.kb.concepts))
    return ({c.code: i for i, c in enumerate(index.kb.concepts)},
            np.searchsorted(index.dense.term_concept, ids), np.searchsorted(index.dense.term_concept, ids, "right"))


def exact_search(self, mentions, k=25, allowed=None):
    """HybridIndex.search, each list completed with the concepts only the other list holds, scored exactly; then the
    hybrid's own fusion (`_fuse`), which then never falls back to a floor. The added entries keep the rank a missing
    concept has there (one past the list), so ties break as before."""
    if not hasattr(self, "_terms"):
        self._terms = _concept_terms(self)
    concept_id, first, last = self._terms
    depth = max(self.depth, k)
    dense_vectors = self.dense.encoder.encode(list(mentions))
    lexical_vectors = self.lexical.encoder.encode(list(mentions))

    def dense_score(row, code):
        cid = concept_id[code]
        terms = self.dense._stored[first[cid]:last[cid]].astype(np.float64)
        return float((terms @ dense_vectors[row].astype(np.float64)).max())

    def lexical_score(row, code):
        cid = concept_id[code]
        return float((self.lexical.matrix[first[cid]:last[cid]] @ lexical_vectors[row].T).toarray().max())

    def completed(listed, other, score, row):
        held = {c.code for c in listed}
        return listed + [replace(c, score=score(row, c.code), rank=len(listed) + 1) for c in other
                         if c.code not in held]

    out = []
    for row, (dense, lexical) in enumerate(zip(self.dense.search_vectors(dense_vectors, depth, allowed=allowed),
                                               self.lexical.search(mentions, depth, allowed=allowed))):
        out.append(self._fuse(completed(dense, lexical, dense_score, row),
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

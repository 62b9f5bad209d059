"""A variant of the hybrid's fusion, measured as served and not kept (docs/quality.md, session 16): a concept that one
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
from clinlinker.search.candidates import Candidate


def _concept_terms(index) -> tuple[dict, np.ndarray, np.ndarray]:
    """code -> concept id, and each concept's first and past-last term id (a concept's terms are contiguous)."""
    ids = np.arange(len(index.kb.concepts))
    return ({c.code: i for i, c in enumerate(index.kb.concepts)},
            np.searchsorted(index.dense.term_concept, ids), np.searchsorted(index.dense.term_concept, ids, "right"))


def exact_search(self, mentions, k=25, allowed=None):
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

    out = []
    for row, (dense, lexical) in enumerate(zip(self.dense.search_vectors(dense_vectors, depth, allowed=allowed),
                                               self.lexical.search(mentions, depth, allowed=allowed))):
        by_d, by_l = {c.code: c for c in dense}, {c.code: c for c in lexical}
        scored = []
        for code in set(by_d) | set(by_l):
            sd = by_d[code].score if code in by_d else dense_score(row, code)
            sl = by_l[code].score if code in by_l else lexical_score(row, code)
            best = min(by_d[code].rank if code in by_d else len(dense) + 1,
                       by_l[code].rank if code in by_l else len(lexical) + 1)
            scored.append((round(self.weight * sd + (1 - self.weight) * sl, 6), best, code))
        scored.sort(key=lambda item: (-item[0], item[1], item[2]))
        listed = []
        for rank, (score, _, code) in enumerate(scored[:k], start=1):
            source = by_d.get(code) or by_l[code]
            listed.append(Candidate(code=code, preferred_term=source.preferred_term, matched_term=source.matched_term,
                                    semantic_tag=source.semantic_tag, score=score, rank=rank, evidence="hybrid",
                                    parents=source.parents))
        out.append(listed)
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

"""Hybrid ranking: the lexical (char n-gram) and dense candidate lists fused into one list of distinct concepts.

Two fusions: `interpolate` (weight x dense cosine + (1 - weight) x lexical cosine; a concept missing from one
list gets that list's lowest score) and `rrf` (reciprocal rank fusion, weighted, constant 60). Each part is
searched `depth` concepts deep. The weight should be tuned on a development split (the quality report does);
a hybrid that is worse than the better of its parts should not be served.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from clinlinker.search.candidates import Candidate

METHODS = ("interpolate", "rrf")
RRF_K = 60
# The dense side's weight `clinlinker index --model M` fuses with by default: the best on the quality split's tune
# part as the backend serves (learned terms on), with a fine-tuned MiniLM (docs/quality.md, "As served")
DEFAULT_WEIGHT = 0.7


class HybridIndex:
    engine = "hybrid"

    def __init__(self, dense, lexical, *, method: str = "interpolate", weight: float = 0.5, depth: int = 100):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if not 0.0 <= weight <= 1.0:
            raise ValueError("weight must be between 0 and 1")
        if [c.code for c in dense.kb.concepts] != [c.code for c in lexical.kb.concepts]:
            raise ValueError("the dense and lexical indexes were built from different knowledge bases")
        self.dense, self.lexical = dense, lexical
        self.method, self.weight, self.depth = method, weight, depth
        self.kb = dense.kb
        self.encoder = dense.encoder
        self.index_type = dense.index_type
        self.manifest: dict = {}

    @property
    def term_encoder(self):
        """What scores wordings searched beside the index (a project's learned terms) on this hybrid's scale: for
        `interpolate`, its two encoders at its weight; `rrf` has no similarity scale, so its dense encoder."""
        return InterpolatedEncoder(self) if self.method == "interpolate" else self.dense.encoder

    def search(self, mentions: Sequence[str], k: int = 25, allowed=None) -> list[list[Candidate]]:
        """allowed: optional boolean mask over concepts (the label's part of the knowledge base), for both parts."""
        depth = max(self.depth, k)
        return [self._fuse(d, l, k) for d, l in zip(self.dense.hits(mentions, depth, allowed=allowed),
                                                      self.lexical.hits(mentions, depth, allowed=allowed))]

    def _fuse(self, dense_hits: tuple, lexical_hits: tuple, k: int) -> list[Candidate]:
        """Each part's hits (concept ids, term ids, scores; best first) -> the k best fused candidates. Only those k
        become Candidate objects: a part's `depth` concepts are fused as numbers."""
        return self._fuse_ranked(_ranked(*dense_hits), _ranked(*lexical_hits), k)

    def _fuse_ranked(self, dense: dict, lexical: dict, k: int) -> list[Candidate]:
        """The fusion of two parts' lists as `_ranked` gives them (concept id -> (rank, score, term id), best first)."""
        concepts = self.kb.concepts
        return [Candidate.of(self.kb, concepts[c], matched_term=self.kb.term_texts[(dense.get(c) or lexical[c])[2]],
                             score=score, rank=rank, evidence="hybrid")
                for rank, (c, score) in enumerate(fused_order(dense, lexical, self.method, self.weight, k,
                                                              lambda c: concepts[c].code), start=1)]

    def fuse_candidates(self, dense: list[Candidate], lexical: list[Candidate], k: int) -> list[Candidate]:
        """The same fusion of two candidate lists (the quality benches' cached lists)."""
        by_code_d, by_code_l = {c.code: c for c in dense}, {c.code: c for c in lexical}
        ranked_d = {c.code: (c.rank, c.score, None) for c in dense}
        ranked_l = {c.code: (c.rank, c.score, None) for c in lexical}
        out = []
        for rank, (code, score) in enumerate(fused_order(ranked_d, ranked_l, self.method, self.weight, k, str),
                                             start=1):
            source = by_code_d.get(code) or by_code_l[code]
            out.append(Candidate(code=code, preferred_term=source.preferred_term, matched_term=source.matched_term,
                                 semantic_tag=source.semantic_tag, score=score, rank=rank, evidence="hybrid",
                                 parents=source.parents))
        return out

    def describe(self) -> dict:
        dense = self.dense.describe()
        return {**dense, "engine": "hybrid", "method": self.method, "weight": self.weight,
                "learned_similarity": "interpolated" if self.method == "interpolate" else "dense",
                "lexical": {k: v for k, v in self.lexical.describe().items() if k != "fingerprint"}}


def fused_order(dense: dict, lexical: dict, method: str, weight: float, k: int, code_of) -> list[tuple]:
    """The fusion itself: two parts' lists (key -> (rank, score, ...), best first) -> the k best (key, fused score),
    scores at 6 decimals; ties: the better of the two ranks, then the code (`code_of(key)`); never set order."""
    unranked_d, unranked_l = len(dense) + 1, len(lexical) + 1  # the rank of a concept the part did not list
    w = weight
    if method == "rrf":
        def fused(c):
            rd = dense[c][0] if c in dense else unranked_d
            rl = lexical[c][0] if c in lexical else unranked_l
            return w / (RRF_K + rd) + (1 - w) / (RRF_K + rl)
    else:
        floor_d = _last_score(dense)
        floor_l = _last_score(lexical)

        def fused(c):
            sd = dense[c][1] if c in dense else floor_d
            sl = lexical[c][1] if c in lexical else floor_l
            return w * sd + (1 - w) * sl
    scored = sorted((-round(fused(c), 6),
                     min(dense[c][0] if c in dense else unranked_d, lexical[c][0] if c in lexical else unranked_l),
                     code_of(c), c) for c in dense.keys() | lexical.keys())[:k]
    return [(c, -score) for score, _, _, c in scored]


def _ranked(concept_ids, term_ids, scores) -> dict:
    """concept id -> (rank from 1, score at the 6 decimals a candidate shows, term id), in rank order."""
    return {c: (rank, round(s, 6), t) for rank, (c, t, s) in enumerate(zip(
        np.asarray(concept_ids).tolist(), np.asarray(term_ids).tolist(), np.asarray(scores, dtype=np.float64).tolist()),
        start=1)}


def _last_score(ranked: dict) -> float:
    return ranked[next(reversed(ranked))][1] if ranked else 0.0


class InterpolatedEncoder:
    """The interpolation's similarity for wordings outside the index: weight x dense cosine + (1 - weight) x lexical
    cosine, as the hybrid scores its own terms. A learned wording scored by the dense cosine alone would be on
    another scale than the fused scores it competes with (dense cosines run higher than char n-gram ones), and
    merely similar accepted wordings would push out the gazetteer's better matches.
    Read by LearnedTerms as `parts`, at search time (the hybrid's encoders and weight as they are then)."""

    def __init__(self, hybrid: HybridIndex):
        self.hybrid = hybrid

    @property
    def parts(self) -> tuple:
        # always both, even at weight 0 or 1: the vector blocks encoded under one weight line up with the parts read
        # under another
        h = self.hybrid
        return ((h.dense.encoder, h.weight), (h.lexical.encoder, 1.0 - h.weight))

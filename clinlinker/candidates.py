"""Candidates: the ranked, distinct concepts proposed for one mention."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Candidate:
    code: str
    preferred_term: str
    matched_term: str  # the gazetteer term that scored best for this concept
    semantic_tag: str
    score: float  # cosine similarity in [-1, 1]
    rank: int  # 1-based

    def to_dict(self) -> dict:
        return asdict(self)


def top_distinct(term_ids: np.ndarray, scores: np.ndarray, term_concept: np.ndarray, k: int):
    """From term hits sorted by descending score, keep each concept's best term; return the first k.

    Returns (concept_ids, term_ids, scores) arrays of length <= k, best first.
    """
    concepts = term_concept[term_ids]
    _, first = np.unique(concepts, return_index=True)
    first.sort()
    first = first[:k]
    return concepts[first], term_ids[first], scores[first]


def sorted_hits(term_ids: np.ndarray, scores: np.ndarray, limit: int | None = None):
    """Sort term hits by descending score (ties by term id, for stable results); optionally only the best `limit`."""
    if limit is not None and limit < len(scores):
        part = np.argpartition(-scores, limit - 1)[:limit]
        term_ids, scores = term_ids[part], scores[part]
    order = np.lexsort((term_ids, -scores))
    return term_ids[order], scores[order]

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


def certainty(candidates) -> float:
    """How sure the top-1 is, in [0, 1]: the mean of its score and its margin over the runner-up.

    Chosen on the tune split (bench/quality.py calibration): it separates right from wrong top-1s better
    than the top-1 score or the margin alone (docs/quality.md has the calibration table).
    """
    if not candidates:
        return 0.0
    first = candidates[0].score
    second = candidates[1].score if len(candidates) > 1 else 0.0
    return round(float(min(1.0, max(0.0, (2 * first - second) / 2))), 6)

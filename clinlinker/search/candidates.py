"""Candidates: the ranked, distinct concepts proposed for one mention, and how term hits become them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# What put a candidate in the list. Similarity evidence comes from an engine; `hierarchy` marks a concept
# related (parent, child, sibling) to a better candidate, listed only when similarity found fewer than k.
EVIDENCE = ("lexical", "dense", "hybrid", "learned", "hierarchy")


@dataclass(frozen=True)
class Candidate:
    code: str
    preferred_term: str
    matched_term: str  # the term (gazetteer or accepted wording) that scored best for this concept
    semantic_tag: str  # the concept's tags as one string; '' when unknown
    score: float  # cosine similarity in [-1, 1] (0 for hierarchy neighbours: they have no similarity of their own)
    rank: int  # 1-based
    evidence: str = ""  # one of EVIDENCE
    parents: tuple[tuple[str, str], ...] = ()  # (code, preferred term) of its is-a parents, when known
    via: str = ""  # hierarchy neighbours: how they relate to a better candidate, e.g. "parent of 6025007"

    @classmethod
    def of(cls, kb, concept, *, matched_term: str, score: float, rank: int, evidence: str, via: str = ""):
        """A candidate for a concept of `kb`, with its tags and parents as the knowledge base says."""
        return cls(code=concept.code, preferred_term=concept.preferred_term, matched_term=matched_term,
                   semantic_tag=concept.semantic_tag, score=round(float(score), 6), rank=rank, evidence=evidence,
                   parents=kb.parent_terms(concept.code), via=via)

    def at_rank(self, rank: int) -> "Candidate":
        """The same candidate at another rank (a plain copy: cheaper than dataclasses.replace, which reruns
        __init__; lists are re-ranked on every prediction)."""
        if rank == self.rank:
            return self
        out = object.__new__(Candidate)
        out.__dict__.update(self.__dict__, rank=rank)
        return out

    def to_dict(self) -> dict:
        return {"code": self.code, "preferred_term": self.preferred_term, "matched_term": self.matched_term,
                "semantic_tag": self.semantic_tag, "score": self.score, "rank": self.rank, "evidence": self.evidence,
                "parents": [{"code": code, "term": term} for code, term in self.parents], "via": self.via}

    def describe(self) -> str:
        """One line a coder reads: '6025007 | apendicectomía laparoscópica · procedure · ⊂ 80146002 apendicectomía'."""
        return " · ".join([f"{self.code} | {self.preferred_term}"] + context_parts(self.semantic_tag, self.parents))


def context_parts(semantic_tag: str, parents) -> list[str]:
    """The tag and the parents of a concept as display fragments (shared by the CLI, /search and the picker)."""
    parts = [semantic_tag] if semantic_tag else []
    parts += [f"⊂ {code} {term}".rstrip() for code, term in parents]
    return parts


def rank_concepts(term_ids: np.ndarray, scores: np.ndarray, term_concept: np.ndarray, k: int, *,
                  preferred: np.ndarray, allowed: np.ndarray | None = None, code_rank: np.ndarray | None = None):
    """Term hits -> the best k distinct concepts, deterministic and fair on ties.

    A concept scores its best term. Equal scores (compared at 6 decimals, what a user sees) are ordered by:
    the concept with more of its terms at that score, then the one whose best term is its preferred term,
    then the code: never by gazetteer file order. `preferred[t]` says whether term t is its concept's
    preferred term; `allowed[c]` (optional) keeps only the concepts of the label's part of the knowledge base;
    `code_rank[c]` is the place of concept c's code in code order (`code_ranks`; the last tie-break; default: the
    concept number).

    Returns (concept_ids, term_ids, scores) arrays of length <= k, best first.
    """
    term_ids = np.asarray(term_ids, dtype=np.int64)
    scores = np.round(np.asarray(scores, dtype=np.float64), 6)
    concepts = term_concept[term_ids]
    if allowed is not None and len(concepts):
        keep = allowed[concepts]
        term_ids, scores, concepts = term_ids[keep], scores[keep], concepts[keep]
    if not len(concepts):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.float32)
    is_pref = preferred[term_ids]
    # each concept's best term: highest score, the preferred term among equals, then the lowest term id
    order = np.lexsort((term_ids, ~is_pref, -scores, concepts))
    uniq, first, inverse = np.unique(concepts[order], return_index=True, return_inverse=True)
    best = order[first]
    c_scores, c_terms, c_pref = scores[best], term_ids[best], is_pref[best]
    # how many of its terms reach the concept's best score
    counts = np.bincount(inverse, weights=scores[order] == c_scores[inverse], minlength=len(uniq))
    tie_code = uniq if code_rank is None else code_rank[uniq]
    pick = np.lexsort((tie_code, ~c_pref, -counts, -c_scores))[:k]
    return uniq[pick], c_terms[pick], c_scores[pick].astype(np.float32)


def code_ranks(codes) -> np.ndarray:
    """Each code's place in code order (numeric SCTIDs by value): computed once per index, read by every search."""
    keys = [_code_key(code) for code in codes]
    ranks = np.empty(len(keys), dtype=np.int64)
    ranks[sorted(range(len(keys)), key=keys.__getitem__)] = np.arange(len(keys))
    return ranks


def _code_key(code: str):
    return (0, int(code), "") if code.isdigit() else (1, 0, code)


def sorted_hits(term_ids: np.ndarray, scores: np.ndarray, limit: int | None = None):
    """Sort term hits by descending score (ties by term id, for stable results); optionally only the best `limit`
    and every hit tied with the last of them (a tie at the cut must not be decided by position)."""
    if limit is not None and limit < len(scores):
        floor = np.partition(scores, len(scores) - limit)[len(scores) - limit]  # the limit-th best score
        part = np.flatnonzero(scores >= floor)
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

"""Learned terms: the wordings coders linked to a concept, searched beside the index.

Every accepted link (mention text -> code) makes the mention a synonym of that concept. At search time
- a mention whose folded wording (case, accents and spaces ignored) was accepted before gets the accepted
  concept(s) first, most often accepted first, with score 1.0;
- a mention close to a learned wording lifts that concept to the similarity of the two, on the index's own scale
  (the index's `term_encoder`: its encoder, or for a hybrid both of its encoders interpolated with its weight), so a
  learned term counts like a gazetteer term.

The layer follows the accepted links incrementally (`apply` adds and removes (mention, code) pairs; only the new
wordings are encoded), so a corrected or removed link stops counting at once and a new one costs what it adds,
however many were learned before; `replace` starts again from a full list. NO_CODE, composite (A+B) and codes outside the knowledge base never become synonyms;
they are counted in `skipped`. The layer holds no vectors on disk: it is encoded with the encoder of the
index it serves (the embedding cache makes that cheap), so it can never mix two models.

    >>> learned = LearnedTerms(index.kb, index.term_encoder).replace([("IAM", "22298006")])
    >>> learned.merge(["iam"], index.search(["iam"], 25), 25)[0][0].code
    '22298006'
"""

from __future__ import annotations

import threading
from typing import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from clinlinker.linking.abbreviations import may_hold_acronym
from clinlinker.search.candidates import Candidate
from clinlinker.search.lexical import sparse_product
from clinlinker.text import fold

NO_CODE = "NO_CODE"


class LearnedTerms:
    CONSOLIDATE_AFTER = 16  # vector blocks (one per apply) merged into one past this many

    def __init__(self, kb, encoder=None):
        self.kb = kb
        # None: exact wording only. An encoder with `parts` ((encoder, weight), ...), like a hybrid's term_encoder,
        # scores a wording by the weighted sum of its parts' similarities (one vector block per part)
        self.encoder = encoder
        self.skipped = dict.fromkeys(("no_code", "composite", "unknown_code", "empty"), 0)
        self._lock = threading.Lock()
        self._counts: dict = {}  # (folded wording, code) -> accepted links
        self._wording: dict = {}  # (folded wording, code) -> the first wording seen
        self._row: dict = {}  # (folded wording, code) -> row of its vector (rows are never reused for another)
        self._terms: list[str] = []
        self._codes: list[str] = []
        self._concepts = np.zeros(0, dtype=np.int64)  # row -> the knowledge base's number of its concept
        # per wording, tuples of strings and ints, never lists or sets: the garbage collector stops tracking such
        # tuples, so 100k accepted wordings do not lengthen every full collection (a pause some request pays)
        self._exact: dict = {}  # folded wording -> ((code, count, wording), ...), most accepted first
        self._by_key: dict = {}  # folded wording -> (codes accepted for it, ...)
        # the live (wording, code) pairs that may hold an acronym, kept as links change: what the abbreviation lever
        # reads (a few hundred, not every wording); acronym_version moves when they change
        self._acronym_pairs: dict = {}
        self.acronym_version = 0
        # what searches read, swapped whole: (exact, codes, terms, alive mask, vector blocks, rows)
        self._state = (self._exact, self._codes, self._terms, np.zeros(0, dtype=bool), (), 0, self._concepts)

    def __len__(self) -> int:
        return int(self._state[3].sum())

    def replace(self, links: Iterable[tuple[str, str]]) -> "LearnedTerms":
        """Start again from (mention text, code) pairs: the accepted links as they stand now."""
        with self._lock:
            self.skipped = dict.fromkeys(self.skipped, 0)
            self._counts, self._wording, self._row, self._terms, self._codes = {}, {}, {}, [], []
            self._concepts = np.zeros(0, dtype=np.int64)
            self._exact, self._by_key = {}, {}
            self._acronym_pairs = {}
            self.acronym_version += 1
            self._state = (self._exact, self._codes, self._terms, np.zeros(0, dtype=bool), (), 0, self._concepts)
        return self.apply((text, code, 1) for text, code in links)

    def apply(self, changes: Iterable[tuple[str, str, int]]) -> "LearnedTerms":
        """Add (delta > 0) or remove (delta < 0) accepted links (mention text, code, delta)."""
        with self._lock:
            touched = set()
            for text, code, delta in changes:
                code = (code or "").strip()
                text = " ".join(str(text or "").split())
                reason = ("empty" if not text else "no_code" if code == NO_CODE else "composite" if "+" in code
                          else "unknown_code" if code not in self.kb else None)
                if reason:
                    self.skipped[reason] = max(0, self.skipped[reason] + delta)
                    continue
                pair = (fold(text), code)
                count = self._counts.get(pair, 0) + delta
                if count > 0:
                    self._counts[pair] = count
                    self._wording.setdefault(pair, text)
                    known = self._by_key.get(pair[0], ())
                    if code not in known:
                        self._by_key[pair[0]] = known + (code,)
                else:
                    self._counts.pop(pair, None)
                touched.add(pair)
            if not touched:
                return self
            changed = False
            for pair in touched:
                keep = pair in self._counts and may_hold_acronym(self._wording[pair])
                if keep and pair not in self._acronym_pairs:
                    self._acronym_pairs[pair] = self._wording[pair]
                    changed = True
                elif not keep and self._acronym_pairs.pop(pair, None) is not None:
                    changed = True
            if changed:
                self.acronym_version += 1
            exact, codes, terms, alive, blocks, rows, _ = self._state
            fresh = [pair for pair in sorted(touched) if pair in self._counts and pair not in self._row]
            for pair in fresh:
                self._row[pair] = len(self._terms)
                self._terms.append(self._wording[pair])
                self._codes.append(pair[1])
            if fresh:
                self._concepts = np.concatenate([self._concepts, np.fromiter(
                    (self.kb.index_of(code) for _, code in fresh), dtype=np.int64, count=len(fresh))])
            alive = np.concatenate([alive, np.zeros(len(fresh), dtype=bool)]) if fresh else alive.copy()
            for pair in touched:
                if pair in self._row:
                    alive[self._row[pair]] = pair in self._counts
            blocks = list(blocks)
            if fresh and self.encoder is not None:
                # kept transposed (one column per wording): a search multiplies without converting anything
                words = [self._wording[pair] for pair in fresh]
                blocks.append(tuple(_transposed(encoder.encode(words)) for encoder, _ in _parts(self.encoder)))
                if len(blocks) > self.CONSOLIDATE_AFTER:
                    blocks = [tuple(_stack([block[p] for block in blocks]) for p in range(len(blocks[0])))]
            for key in {key for key, _ in touched}:
                entries = self._entries(key)
                if entries:
                    self._exact[key] = entries
                else:
                    self._exact.pop(key, None)
            self._state = (self._exact, self._codes, self._terms, alive, tuple(blocks), len(self._terms),
                           self._concepts)
        return self

    def _entries(self, key: str) -> tuple[tuple[str, int, str], ...]:
        """The codes accepted for one folded wording, most accepted first."""
        return tuple(sorted(((code, self._counts[(key, code)], self._wording[(key, code)])
                             for code in self._by_key.get(key, ()) if (key, code) in self._counts),
                            key=lambda e: (-e[1], e[0])))

    def merge(self, mentions: Sequence[str], found: Sequence[list[Candidate]], k: int,
              allowed=None) -> list[list[Candidate]]:
        """The index's candidate lists with the learned terms folded in (same order as `mentions`).

        allowed: an optional boolean mask over concepts (the mentions' label's part of the knowledge base).
        A wording coders accepted before is the coders' own decision and always comes first; a merely similar
        learned wording lifts only concepts of the allowed part. At equal scores a learned wording goes before a
        gazetteer term, then the index's own order. Only the most similar learned wordings are looked at: as many
        as it takes to find k concepts (no further one could enter the list).
        """
        exact, codes, terms, alive, blocks, rows, concepts = self._state
        if not rows or not alive.any():
            return [list(c) for c in found]
        similar = None
        if blocks:
            parts = _parts(self.encoder)
            similar = _similarities([encoder.encode(list(mentions)) for encoder, _ in parts],
                                    [weight for _, weight in parts], blocks, alive)
        out = []
        for i, (mention, cands) in enumerate(zip(mentions, found)):
            wording = {code: text for code, _, text in exact.get(fold(mention), [])}
            lifted = []
            if similar is not None:
                rows_i, values_i = similar[i]
                if len(cands) >= k:  # a full list: only a learned wording at least as similar as its last can enter
                    enters = values_i >= min(c.score for c in cands) - 1e-6
                    rows_i, values_i = rows_i[enters], values_i[enters]
                skip = np.fromiter((self.kb.index_of(code) for code in wording), dtype=np.int64, count=len(wording))
                lifted = _most_similar(rows_i, values_i, concepts, k, skip=skip, allowed=allowed)
            if not wording and not lifted:
                out.append(list(cands))
                continue
            # (score, from the index?, index rank, matched wording): Candidates are built for the k kept only
            best = {c.code: (c.score, c.evidence != "learned", c.rank, None) for c in cands}
            by_code = {c.code: c for c in cands}
            if lifted:
                for j, value in lifted:
                    score = round(min(1.0, value), 6)
                    code = codes[j]
                    if code not in best or best[code][0] <= score:  # a tie goes to the learned wording
                        best[code] = (score, False, by_code[code].rank if code in by_code else 0, terms[j])
            order = list(wording) + sorted((c for c in best if c not in wording),
                                           key=lambda c: (-best[c][0], best[c][1], best[c][2], c))
            kept = []
            for rank, code in enumerate(order[:k], start=1):
                if code in wording:
                    kept.append(self._candidate(code, wording[code], 1.0, rank))
                elif best[code][3] is not None:
                    kept.append(self._candidate(code, best[code][3], best[code][0], rank))
                else:
                    kept.append(by_code[code].at_rank(rank))
            out.append(kept)
        return out

    def _candidate(self, code: str, matched: str, score: float, rank: int) -> Candidate:
        return Candidate.of(self.kb, self.kb[code], matched_term=matched, score=min(1.0, score), rank=rank,
                            evidence="learned")

    def acronym_pairs(self) -> list[tuple[str, str]]:
        """(wording, code) of the live learned terms that may hold an acronym (abbreviations.may_hold_acronym)."""
        return [(wording, code) for (_, code), wording in list(self._acronym_pairs.items())]

    def describe(self) -> dict:
        exact = self._state[0]
        return {"terms": len(self), "wordings": len(exact), "skipped": dict(self.skipped)}


def _parts(encoder) -> tuple:
    """(encoder, weight) pairs whose weighted similarities make a learned wording's similarity."""
    parts = getattr(encoder, "parts", None)
    return tuple(parts) if parts else ((encoder, 1.0),)


def _transposed(vectors):
    return vectors.T.tocsr() if sp.issparse(vectors) else np.ascontiguousarray(vectors.T)


def _stack(blocks):
    return sp.hstack(blocks, format="csr") if sp.issparse(blocks[0]) else np.hstack(blocks)


def _product(queries, block):
    return sparse_product(queries, block) if sp.issparse(block) and sp.issparse(queries) else queries @ block


def _similarities(queries: list, weights: list, blocks, alive) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each query, (rows, similarities) of the live learned wordings it shares anything with.

    queries: the mentions encoded by each part; blocks: per block of wordings, one matrix per part (transposed)."""
    if len(weights) > 1:
        return _weighted_similarities(queries, weights, blocks, alive)
    queries = queries[0]
    per_query = [([], []) for _ in range(queries.shape[0])]
    offset = 0
    for (block,) in blocks:
        part = _product(queries, block)
        width = block.shape[1]
        if sp.issparse(part):
            part = part.tocsr()
            for i in range(part.shape[0]):
                lo, hi = part.indptr[i], part.indptr[i + 1]
                per_query[i][0].append(part.indices[lo:hi] + offset)
                per_query[i][1].append(part.data[lo:hi])
        else:
            part = np.asarray(part)
            for i in range(part.shape[0]):
                per_query[i][0].append(np.arange(offset, offset + width))
                per_query[i][1].append(part[i])
        offset += width
    out = []
    for rows, values in per_query:
        rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        values = np.concatenate(values) if values else np.zeros(0, dtype=np.float32)
        keep = (values > 0) & alive[rows]
        out.append((rows[keep], values[keep]))
    return out


def _weighted_similarities(queries: list, weights: list, blocks, alive) -> list[tuple[np.ndarray, np.ndarray]]:
    """_similarities for several parts: the weighted sum of each part's similarities (a hybrid's interpolation)."""
    n_queries = queries[0].shape[0]
    columns = []
    for block in blocks:
        total = np.zeros((n_queries, block[0].shape[1]))
        for q, matrix, weight in zip(queries, block, weights):
            part = _product(q, matrix)
            total += weight * (part.toarray() if sp.issparse(part) else np.asarray(part)).astype(np.float64)
        columns.append(total)
    scores = np.hstack(columns) if len(columns) > 1 else columns[0]
    out = []
    for i in range(n_queries):
        rows = np.flatnonzero((scores[i] > 0) & alive[:scores.shape[1]])
        out.append((rows, scores[i, rows]))
    return out


def _most_similar(rows: np.ndarray, values: np.ndarray, concepts: np.ndarray, k: int, *, skip: np.ndarray,
                  allowed) -> list[tuple[int, float]]:
    """(row, similarity) of the best learned wording of each of the k concepts most similar to one mention (and of
    those tied with the k-th), most similar first, the older wording on ties: concepts in `skip` and outside
    `allowed` (a mask over the knowledge base's concepts) left out. A concept further down could not enter a list
    of k."""
    keep = np.ones(rows.shape[0], dtype=bool)
    if allowed is not None:
        keep &= allowed[concepts[rows]]
    if skip.shape[0]:
        keep &= ~np.isin(concepts[rows], skip)
    rows, values = rows[keep], values[keep]
    n = rows.shape[0]
    if not n:
        return []
    take = min(n, max(8 * k, 64))
    while True:
        top = np.argpartition(-values, take - 1)[:take] if take < n else np.arange(n)
        top = top[np.lexsort((rows[top], -values[top]))]  # most similar first, then the older wording
        _, first = np.unique(concepts[rows[top]], return_index=True)  # each concept's best wording
        chosen = top[np.sort(first)]
        if chosen.shape[0] >= k:
            # the k-th concept's similarity; concepts tied with it are kept too (the final order breaks ties)
            cutoff = values[chosen[k - 1]] - 1e-6
            if take >= n or values[top[-1]] < cutoff:  # none left out could reach the cutoff
                chosen = chosen[values[chosen] >= cutoff]
                return list(zip(rows[chosen].tolist(), values[chosen].tolist()))
        elif take >= n:
            return list(zip(rows[chosen].tolist(), values[chosen].tolist()))
        take = min(n, take * 4)

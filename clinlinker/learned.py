"""Learned terms: the wordings coders linked to a concept, searched beside the index.

Every accepted link (mention text -> code) makes the mention a synonym of that concept. At search time
- a mention whose folded wording (case, accents and spaces ignored) was accepted before gets the accepted
  concept(s) first, most often accepted first, with score 1.0;
- a mention close to a learned wording lifts that concept to the similarity of the two (same encoder as the
  index, so a learned term counts like a gazetteer term).

The layer is rebuilt from the full list of accepted links (`replace`), so a corrected or removed link
stops counting at once. NO_CODE, composite (A+B) and codes outside the knowledge base never become synonyms;
they are counted in `skipped`. The layer holds no vectors on disk: it is encoded with the encoder of the
index it serves (the embedding cache makes that cheap), so it can never mix two models.

    >>> learned = LearnedTerms(index.kb, index.encoder).replace([("IAM", "22298006")])
    >>> learned.merge(["iam"], index.search(["iam"], 25), 25)[0][0].code
    '22298006'
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace as dc_replace
from typing import Iterable, Sequence

import numpy as np

from clinlinker.candidates import Candidate
from clinlinker.text import fold

NO_CODE = "NO_CODE"


class LearnedTerms:
    def __init__(self, kb, encoder=None):
        self.kb = kb
        self.encoder = encoder  # None: exact wording only
        self.skipped = {"no_code": 0, "composite": 0, "unknown_code": 0, "empty": 0}
        self._lock = threading.Lock()
        # one immutable snapshot, swapped whole: searches never see half an update
        self._state = ({}, [], [], None)  # exact: fold -> [(code, count, wording)], terms, codes, vectors

    def __len__(self) -> int:
        return len(self._state[1])

    def replace(self, links: Iterable[tuple[str, str]]) -> "LearnedTerms":
        """Rebuild from (mention text, code) pairs: the accepted links as they stand now."""
        skipped = dict.fromkeys(self.skipped, 0)
        counts: Counter = Counter()
        wording: dict = {}
        for text, code in links:
            code = (code or "").strip()
            text = " ".join(str(text or "").split())
            if not text:
                skipped["empty"] += 1
            elif code == NO_CODE:
                skipped["no_code"] += 1
            elif "+" in code:
                skipped["composite"] += 1
            elif code not in self.kb:
                skipped["unknown_code"] += 1
            else:
                key = fold(text)
                counts[(key, code)] += 1
                wording.setdefault((key, code), text)
        exact: dict = {}
        for (key, code), n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
            exact.setdefault(key, []).append((code, n, wording[(key, code)]))
        terms = [wording[key_code] for key_code in sorted(counts)]
        codes = [code for _, code in sorted(counts)]
        vectors = None
        if terms and self.encoder is not None:
            vectors = self.encoder.encode(terms)
        with self._lock:
            self._state = (exact, terms, codes, vectors)
            self.skipped = skipped
        return self

    def merge(self, mentions: Sequence[str], found: Sequence[list[Candidate]], k: int,
              allowed=None) -> list[list[Candidate]]:
        """The index's candidate lists with the learned terms folded in (same order as `mentions`).

        allowed: an optional boolean mask over concepts (the mentions' label's part of the knowledge base).
        A wording coders accepted before is the coders' own decision and always comes first; a merely similar
        learned wording lifts only concepts of the allowed part. At equal scores a learned wording goes before a
        gazetteer term, then the index's own order.
        """
        exact, terms, codes, vectors = self._state
        if not terms:
            return [list(c) for c in found]
        sims = None
        if vectors is not None:
            queries = self.encoder.encode(list(mentions))
            sims = queries @ vectors.T
            sims = sims.toarray() if hasattr(sims, "toarray") else np.asarray(sims)
        out = []
        for i, (mention, cands) in enumerate(zip(mentions, found)):
            best = {c.code: c for c in cands}
            index_rank = {c.code: c.rank for c in cands}
            accepted = exact.get(fold(mention), [])
            for code, _, text in accepted:
                best[code] = self._candidate(code, text, 1.0)
            firsts = [code for code, _, _ in accepted]
            if sims is not None:
                for j in np.flatnonzero(sims[i] > 0):
                    score = round(min(1.0, float(sims[i, j])), 6)
                    code = codes[j]
                    if code in firsts or (allowed is not None and not allowed[self.kb.index_of(code)]):
                        continue
                    if code not in best or best[code].score <= score:
                        best[code] = self._candidate(code, terms[j], score)
            order = firsts + sorted((c for c in best if c not in firsts),
                                    key=lambda c: (-best[c].score, best[c].evidence != "learned",
                                                   index_rank.get(c, 0), c))
            out.append([dc_replace(best[code], rank=rank) for rank, code in enumerate(order[:k], start=1)])
        return out

    def _candidate(self, code: str, matched: str, score: float) -> Candidate:
        return Candidate.of(self.kb, self.kb[code], matched_term=matched, score=min(1.0, score), rank=0,
                            evidence="learned")

    def describe(self) -> dict:
        exact, terms, _, _ = self._state
        return {"terms": len(terms), "wordings": len(exact), "skipped": dict(self.skipped)}

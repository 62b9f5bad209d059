"""The linker: mentions in, k distinct candidate concepts out, whatever engine serves."""

from __future__ import annotations

from typing import Sequence

from clinlinker.candidates import Candidate
from clinlinker.errors import ClinlinkerError
from clinlinker.index import DEFAULT_TOP_K, load_index


class Linker:
    """Wraps a loaded index (dense or lexical) with input checks and a default k.

    >>> linker = Linker.from_directory("ix")
    >>> linker.link(["apendicectomía laparoscópica"])[0][0].code
    '6025007'
    """

    def __init__(self, index, *, top_k: int = DEFAULT_TOP_K, learned=None):
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        self.index = index
        self.top_k = top_k
        self.learned = learned  # a LearnedTerms layer (accepted wordings), searched beside the index

    def learn(self, links) -> "Linker":
        """Make (mention text, code) pairs synonyms of their concepts; replaces what was learned before."""
        from clinlinker.learned import LearnedTerms

        if self.learned is None:
            self.learned = LearnedTerms(self.index.kb, self.index.encoder)
        self.learned.replace(links)
        return self

    @classmethod
    def from_directory(cls, directory, *, model: str | None = None, redis_url: str | None = None,
                       cache=None, top_k: int = DEFAULT_TOP_K, **kwargs) -> "Linker":
        if cache is None and redis_url:
            from clinlinker.cache import RedisCache

            cache = RedisCache(redis_url)
        return cls(load_index(directory, model=model, cache=cache, **kwargs), top_k=top_k)

    @property
    def kb(self):
        return self.index.kb

    def link(self, mentions: Sequence[str], k: int | None = None) -> list[list[Candidate]]:
        """Candidates for each mention, best first: exactly min(k, concepts) distinct codes each."""
        k = self.top_k if k is None else k
        if k < 1:
            raise ClinlinkerError(f"k must be at least 1, got {k}")
        cleaned = []
        for i, mention in enumerate(mentions):
            if not isinstance(mention, str):
                raise ClinlinkerError(f"mention {i + 1} is a {type(mention).__name__}, not text")
            text = " ".join(mention.split())
            if not text:
                raise ClinlinkerError(f"mention {i + 1} is empty")
            cleaned.append(text)
        if not cleaned:
            return []
        unique = list(dict.fromkeys(cleaned))
        results = self.index.search(unique, k)
        if self.learned is not None and len(self.learned):
            results = self.learned.merge(unique, results, k)
        found = dict(zip(unique, results))
        return [found[text] for text in cleaned]

    def describe(self) -> dict:
        out = {**self.index.describe(), "top_k": self.top_k}
        if self.learned is not None:
            out["learned"] = self.learned.describe()
        return out

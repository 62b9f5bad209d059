"""The lexical engine: TF-IDF over accent- and case-folded character n-grams.

In the spirit of scispaCy's candidate generator (char 3-grams, TF-IDF, cosine), but the
search is exact (a sparse matrix product) instead of approximate, and the vocabulary is
hashed so the encoder is fully described by its parameters plus one idf vector: no pickles.
It needs no model weights, which makes it the offline engine (`--model char-ngrams`).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize

from clinlinker.text import fold

LEXICAL_MODEL = "char-ngrams"


class CharNgramEncoder:
    """Sparse TF-IDF vectors of character n-grams; rows L2-normalised (so dot product = cosine)."""

    kind = "lexical"

    def __init__(self, *, ngram_range: tuple[int, int] = (3, 3), n_features: int = 1 << 20,
                 idf: np.ndarray | None = None):
        self.name = LEXICAL_MODEL
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self.n_features = int(n_features)
        self._hasher = HashingVectorizer(analyzer="char_wb", ngram_range=self.ngram_range,
                                         n_features=self.n_features, preprocessor=fold,
                                         alternate_sign=False, norm=None, dtype=np.float32)
        self.idf = idf

    def fit(self, terms: Sequence[str]) -> "CharNgramEncoder":
        """Compute smoothed idf from the gazetteer terms (as sklearn's TfidfTransformer does)."""
        counts = self._hasher.transform(terms)
        df = np.bincount(counts.indices, minlength=self.n_features).astype(np.float64)
        n = counts.shape[0]
        self.idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
        return self

    def encode(self, texts: Sequence[str]) -> sp.csr_matrix:
        if self.idf is None:
            raise RuntimeError("CharNgramEncoder.fit must be called before encode")
        counts = self._hasher.transform(list(texts)).tocsr()
        counts.data *= self.idf[counts.indices]
        return normalize(counts, norm="l2", copy=False).astype(np.float32)

    @property
    def params(self) -> dict:
        return {"ngram_range": list(self.ngram_range), "n_features": self.n_features, "analyzer": "char_wb",
                "fold": "lower+nfkd-strip-accents"}

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(repr(sorted(self.params.items())).encode())
        if self.idf is not None:
            digest.update(self.idf.tobytes())
        return digest.hexdigest()

    def describe(self) -> dict:
        return {"engine": "lexical", "model": self.name, **self.params, "fingerprint": self.fingerprint}

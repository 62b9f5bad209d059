"""The lexical engine: TF-IDF over accent- and case-folded character n-grams.

In the spirit of scispaCy's candidate generator (char 3-grams, TF-IDF, cosine), but the
search is exact (a sparse matrix product) instead of approximate, and the vocabulary is
hashed so the encoder is fully described by its parameters plus one idf vector: no pickles.
It needs no model weights, which makes it the offline engine (`--model char-ngrams`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from clinlinker.text import fold

LEXICAL_MODEL = "char-ngrams"
_WHITE_SPACES = re.compile(r"\s\s+")


def char_wb_ngrams(text: str, ngram_range: tuple[int, int]) -> list[str]:
    """The character n-grams of each word of a folded text, padded with a space on each side; a word shorter than n
    counts once. The same n-grams as scikit-learn's `analyzer="char_wb"` (tests/clinlinker/search/test_lexical.py
    checks it), without importing scikit-learn: its import (SciPy's stats, pandas) was a second of every backend
    start."""
    low, high = ngram_range
    grams = []
    append = grams.append
    for word in _WHITE_SPACES.sub(" ", fold(text)).split():
        word = f" {word} "
        length = len(word)
        for n in range(low, high + 1):
            offset = 0
            append(word[:n])
            while offset + n < length:
                offset += 1
                append(word[offset:offset + n])
            if offset == 0:
                break
    return grams


class CharNgramEncoder:
    """Sparse TF-IDF vectors of character n-grams; rows L2-normalised (so dot product = cosine)."""

    kind = "lexical"

    def __init__(self, *, ngram_range: tuple[int, int] = (3, 3), n_features: int = 1 << 20,
                 idf: np.ndarray | None = None):
        self.name = LEXICAL_MODEL
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self.n_features = int(n_features)
        self.idf = idf

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Hashed n-gram counts (texts x n_features, float32): each n-gram's MurmurHash3 (seed 0, signed 32 bits),
        its absolute value modulo n_features, as scikit-learn's HashingVectorizer(alternate_sign=False) hashes."""
        import mmh3

        indices, indptr = [], [0]
        for text in texts:
            indices.extend(abs(mmh3.hash(gram, 0)) % self.n_features for gram in char_wb_ngrams(text, self.ngram_range))
            indptr.append(len(indices))
        matrix = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), np.asarray(indices, dtype=np.int32),
                                np.asarray(indptr, dtype=np.int64)), shape=(len(texts), self.n_features))
        matrix.sum_duplicates()
        return matrix

    def fit(self, terms: Sequence[str]) -> "CharNgramEncoder":
        """Compute smoothed idf from the gazetteer terms (as sklearn's TfidfTransformer does)."""
        counts = self.counts(terms)
        df = np.bincount(counts.indices, minlength=self.n_features).astype(np.float64)
        n = counts.shape[0]
        self.idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
        return self

    def ngrams(self, text: str) -> set[str]:
        """The character n-grams this engine matches a text on (folded, per word, padded with spaces)."""
        return set(char_wb_ngrams(text, self.ngram_range))

    def encode(self, texts: Sequence[str]) -> sp.csr_matrix:
        if self.idf is None:
            raise RuntimeError("CharNgramEncoder.fit must be called before encode")
        counts = self.counts(list(texts))
        counts.data *= self.idf[counts.indices]
        # rows L2-normalised as scikit-learn's normalize() does it: float32 squares summed in float64, each value
        # divided by the row's norm in float64 (the vectors of indexes built with it, to the last bit)
        rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        squares = (counts.data * counts.data).astype(np.float64)
        norms = np.sqrt(np.bincount(rows, weights=squares, minlength=counts.shape[0]))
        counts.data = (counts.data.astype(np.float64) / norms[rows]).astype(np.float32)
        return counts

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


def sparse_product(queries, by_feature, rows_per_call: int = 4):
    """queries (CSR) @ by_feature (CSR, features x terms): scipy's own kernel, called in one pass. scipy's `@` first
    counts the product's entries exactly (a pass as long as the product itself: a third of a 15-span request on
    MedProcNER's gazetteer, bench/concurrency.py); the posting lengths give a bound instead, and the kernel fills
    what it finds. The same entries in the same order (tests/clinlinker/search/test_index.py checks it against `@`);
    `@` itself where the private kernel is missing or the types differ.

    The kernel holds the GIL: it runs `rows_per_call` queries at a time (~2 ms), so that a webhook or a picker
    request of the same worker process is not kept waiting behind a whole request's product."""
    queries = queries.tocsr()
    try:
        from scipy.sparse._sparsetools import csr_matmat
    except ImportError:  # a scipy without it
        return (queries @ by_feature).tocsr()
    index = by_feature.indices.dtype
    if queries.data.dtype != by_feature.data.dtype or by_feature.indptr.dtype != index:
        return (queries @ by_feature).tocsr()
    rows, cols = queries.shape[0], by_feature.shape[1]
    features = queries.indices
    lengths = by_feature.indptr[features + 1] - by_feature.indptr[features]  # each query feature's postings
    ends = np.concatenate(([0], np.cumsum(lengths, dtype=np.int64)))
    bounds = np.minimum(ends[queries.indptr[1:]] - ends[queries.indptr[:-1]], cols)
    if int(bounds.sum()) >= np.iinfo(index).max:
        return (queries @ by_feature).tocsr()
    q_indptr = queries.indptr.astype(index, copy=False)
    q_indices, q_data = features.astype(index, copy=False), queries.data
    indptr = np.zeros(rows + 1, dtype=index)
    indices = np.empty(int(bounds.sum()), dtype=index)
    data = np.empty(len(indices), dtype=by_feature.data.dtype)
    filled = 0
    for lo in range(0, rows, rows_per_call):
        hi = min(rows, lo + rows_per_call)
        first, last = q_indptr[lo], q_indptr[hi]
        block = np.empty(hi - lo + 1, dtype=index)
        csr_matmat(hi - lo, cols, q_indptr[lo:hi + 1] - first, q_indices[first:last], q_data[first:last],
                   by_feature.indptr, by_feature.indices, by_feature.data, block, indices[filled:], data[filled:])
        indptr[lo + 1:hi + 1] = block[1:] + filled
        filled += int(block[-1])
    return sp.csr_matrix((data[:filled], indices[:filled], indptr), shape=(rows, cols))

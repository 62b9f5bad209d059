"""The lexical engine hashes character n-grams exactly as scikit-learn's HashingVectorizer(analyzer="char_wb") and
normalises rows as its normalize() does, without importing scikit-learn (a second of every backend start): the
vectors of indexes built before are the vectors it computes now, to the last bit."""

import numpy as np
import pytest

from clinlinker.search.lexical import CharNgramEncoder
from clinlinker.text import fold
from tests.conftest import DEMO_GAZETTEER

TRICKY = ["", " ", "a", "ab", "abc", "  doble   espacio\tcon\ttab\n", "ÁÉÍÓÚ ñ Ü", "x" * 300, "😀 emoji", "T.A.C.",
          "5-HT3", "dolor  abdominal", "Ca 19.9", "ß ǅ ﬁ", "\u00a0espacio duro"]


@pytest.fixture(scope="module")
def texts():
    rows = DEMO_GAZETTEER.read_text(encoding="utf-8").splitlines()[1:]
    return [row.split("\t")[2] for row in rows] + TRICKY


def test_counts_and_vectors_are_scikit_learns_to_the_last_bit(texts):
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.preprocessing import normalize

    hasher = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 3), n_features=1 << 20, preprocessor=fold,
                               alternate_sign=False, norm=None, dtype=np.float32)
    expected = hasher.transform(texts).tocsr()
    encoder = CharNgramEncoder()
    counts = encoder.counts(texts)
    for part in ("indptr", "indices", "data"):
        assert np.array_equal(getattr(counts, part), getattr(expected, part)), part
    encoder.fit(texts)
    weighted = expected.copy()
    weighted.data *= encoder.idf[weighted.indices]
    expected_vectors = normalize(weighted, norm="l2", copy=False).astype(np.float32)
    vectors = encoder.encode(texts)
    assert np.array_equal(vectors.indices, expected_vectors.indices)
    assert np.array_equal(vectors.data, expected_vectors.data)  # not close: equal
    analyzer = hasher.build_analyzer()
    for text in texts:
        assert encoder.ngrams(text) == set(analyzer(text)), text


def test_an_empty_text_is_a_zero_row_and_leaves_the_others_alone():
    encoder = CharNgramEncoder().fit(["fiebre", "tos seca"])
    vectors = encoder.encode(["", "fiebre", "   "])
    assert vectors[0].nnz == 0 and vectors[2].nnz == 0
    assert np.isclose((vectors[1].multiply(vectors[1])).sum(), 1.0)


def test_the_engine_imports_no_scikit_learn():
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys; from clinlinker.search.lexical import CharNgramEncoder; "
            "CharNgramEncoder().fit(['fiebre']).encode(['fiebre alta']); print('sklearn' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True).stdout.strip() \
        == "False"

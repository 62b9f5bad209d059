import pytest

from clinlinker.linking.learned import LearnedTerms
from clinlinker.linking.linker import Linker


@pytest.fixture(params=["lexical", "dense"])
def linker(request, lexical_index, dense_index):
    return Linker(lexical_index if request.param == "lexical" else dense_index)


def _other_code(linker, mention):
    """A concept the index does NOT rank first for `mention`: what a coder would correct it to."""
    ranked = linker.link([mention], 25)[0]
    return ranked[-1].code, ranked[0].code


def test_accepted_wording_ranks_its_concept_first(linker):
    mention = "molestias al tragar"
    target, first_before = _other_code(linker, mention)
    n = len(linker.link([mention], 25)[0])  # 25 dense; the lexical engine lists only concepts sharing n-grams
    assert target != first_before and n >= 10
    linker.learn([(mention, target)])
    for variant in (mention, "  Molestias AL   tragar ", "molestías al tragar"):  # case, accents, spaces
        top = linker.link([variant], 25)[0]
        assert top[0].code == target and top[0].score == 1.0
        assert top[0].matched_term == mention
        assert len({c.code for c in top}) == len(top) == n and [c.rank for c in top] == list(range(1, n + 1))


def test_correction_and_removal_undo_the_synonym(linker):
    mention = "molestias al tragar"
    target, first_before = _other_code(linker, mention)
    linker.learn([(mention, target)])
    assert linker.link([mention])[0][0].code == target
    other = linker.link([mention], 25)[0][5].code
    linker.learn([(mention, other)])  # the coder changed the link
    top = linker.link([mention], 25)[0]
    assert top[0].code == other and target not in [c.code for c in top[:1]]
    linker.learn([])  # the annotation was deleted
    assert linker.link([mention])[0][0].code == first_before


def test_no_code_composite_and_unknown_codes_never_become_synonyms(linker):
    mention = "molestias al tragar"
    before = [c.code for c in linker.link([mention])[0]]
    linker.learn([(mention, "NO_CODE"), (mention, "22298006+NO_CODE"), (mention, "999999999"), ("  ", "22298006")])
    assert len(linker.learned) == 0
    assert linker.learned.skipped == {"no_code": 1, "composite": 1, "unknown_code": 1, "empty": 1}
    assert [c.code for c in linker.link([mention])[0]] == before


def test_most_accepted_code_of_a_wording_comes_first(lexical_index):
    linker = Linker(lexical_index)
    codes = [c.code for c in lexical_index.search(["dolor"], 25)[0]]
    a, b = codes[3], codes[7]
    linker.learn([("dolor", a), ("dolor", b), ("Dolor", b)])
    top = [c.code for c in linker.link(["dolor"], 25)[0]]
    assert top[:2] == [b, a]


def test_a_similar_wording_is_lifted_by_the_learned_term(lexical_index):
    linker = Linker(lexical_index)
    mention = "disfagia a solidos de larga evolucion"
    ranked = [c.code for c in linker.link([mention], 25)[0]]
    target = ranked[-1]
    linker.learn([("disfagia a solidos de larga evolucion progresiva", target)])
    after = linker.link([mention], 25)[0]
    assert [c.code for c in after].index(target) < ranked.index(target)
    assert after[[c.code for c in after].index(target)].matched_term.endswith("progresiva")


def test_learned_layer_follows_the_encoder_of_its_index(dense_index):
    learned = LearnedTerms(dense_index.kb, dense_index.encoder).replace([("fiebre alta", "386661006")])
    assert learned.describe()["terms"] == 1
    [merged] = learned.merge(["fiebre alta"], dense_index.search(["fiebre alta"], 10), 10)
    assert merged[0].code == "386661006" and len(merged) == 10


class _DenseOf:
    """The lexical encoder's vectors as dense float64 arrays: the dense code path, with values that do not depend
    on how wordings are batched (a transformer's do, in the last float32 digit)."""

    def __init__(self, encoder):
        self.encoder = encoder

    def encode(self, texts):
        return self.encoder.encode(texts).toarray().astype("float64")


class _Parts:
    """Two encoders interpolated (a hybrid's term_encoder): a sparse one and a dense one with other n-grams."""

    def __init__(self, lexical_encoder, weight=0.7):
        from clinlinker.search.lexical import CharNgramEncoder

        other = CharNgramEncoder(ngram_range=(2, 4), n_features=1 << 12)
        other.fit(["dolor fiebre tos seca abdominal torácico cefalea disnea"])
        self.parts = ((lexical_encoder, weight), (_DenseOf(other), 1.0 - weight))


def _similarity(encoder, mention: str, wording: str) -> float:
    """One mention against one wording: the dot product, or for an encoder with parts the weighted sum of its parts'."""
    if hasattr(encoder, "parts"):
        return sum(weight * _similarity(part, mention, wording) for part, weight in encoder.parts)
    value = encoder.encode([mention]) @ encoder.encode([wording]).T
    return float(value.toarray()[0, 0] if hasattr(value, "toarray") else value[0, 0])


def _reference_merge(learned_links, index, encoder, mentions, k, allowed):
    """What merge must return, computed the slow way: every live learned wording scored against every mention."""
    from clinlinker.text import fold

    counts, first_wording = {}, {}
    for text, code, delta in learned_links:
        key = (fold(" ".join(text.split())), code)
        counts[key] = counts.get(key, 0) + delta
        first_wording.setdefault(key, " ".join(text.split()))
    live = [key for key, n in counts.items() if n > 0]
    found = index.search(mentions, k, allowed=allowed)
    out = []
    for mention, cands in zip(mentions, found):
        firsts = [code for code, _ in sorted(((code, counts[(key, code)]) for key, code in live if key == fold(mention)),
                                             key=lambda e: (-e[1], e[0]))]
        best = {c.code: (c.score, 1, c.rank) for c in cands}
        index_rank = {c.code: c.rank for c in cands}
        for key, code in live:
            if code in firsts or (allowed is not None and not allowed[index.kb.index_of(code)]):
                continue
            value = _similarity(encoder, mention, first_wording[(key, code)])
            score = round(min(1.0, value), 6)
            if value > 0 and (code not in best or best[code][0] <= score):
                best[code] = (score, 0, index_rank.get(code, 0))
        rest = sorted((c for c in best if c not in firsts), key=lambda c: (-best[c][0], best[c][1], best[c][2], c))
        out.append(([(code, 1.0) for code in firsts] + [(code, best[code][0]) for code in rest])[:k])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("vectors", ["sparse", "dense", "parts"])
def test_merge_equals_scoring_every_learned_wording(vectors, lexical_index):
    """The fast merge (only wordings that can enter a list of k looked at, vectors in blocks, removals masked)
    gives what scoring every live learned wording against every mention gives, ties included."""
    import random

    import numpy as np

    index = lexical_index
    encoder = {"sparse": lambda: index.encoder, "dense": lambda: _DenseOf(index.encoder),
               "parts": lambda: _Parts(index.encoder)}[vectors]()
    rng = random.Random(7)
    codes = [c.code for c in index.kb.concepts]
    words = "dolor fiebre tos seca abdominal torácico apendicectomía laparoscópica cefalea tensional disnea".split()
    links = []
    learned = LearnedTerms(index.kb, encoder)
    for _ in range(20):  # several applies: several vector blocks (consolidated past 16), some links removed again
        batch = [(" ".join(rng.sample(words, rng.randint(1, 3))), rng.choice(codes), 1) for _ in range(15)]
        batch += [(text, code, -1) for text, code, delta in rng.sample(links, min(len(links), 3)) if delta > 0]
        links += batch
        learned.apply(batch)
    mentions = [" ".join(rng.sample(words, rng.randint(1, 3))) for _ in range(25)] + [links[0][0]]
    allowed = np.array([rng.random() < 0.7 for _ in range(len(index.kb))])
    for k, mask in ((5, None), (25, None), (10, allowed)):
        merged = learned.merge(mentions, index.search(mentions, k, allowed=mask), k, allowed=mask)
        expected = _reference_merge(links, index, encoder, mentions, k, mask)
        assert [[(c.code, c.score) for c in cands] for cands in merged] == expected
        assert all([c.rank for c in cands] == list(range(1, len(cands) + 1)) for cands in merged)


def test_a_hybrids_learned_wording_is_scored_on_the_hybrids_scale(lexical_index, dense_index):
    """A learned wording similar to the mention competes with the hybrid's fused scores at the same interpolation
    (weight x dense cosine + (1 - weight) x lexical cosine), not at its dense cosine alone, which runs higher."""
    import numpy as np

    from clinlinker.search.hybrid import HybridIndex

    hybrid = HybridIndex(dense_index, lexical_index, weight=0.7)
    linker = Linker(hybrid)
    mention, wording = "disfagia a solidos de larga evolucion", "disfagia a solidos de larga evolucion de la tos"
    target = linker.link([mention], 25)[0][-1].code
    linker.learn([(wording, target)])
    lifted = next(c for c in linker.link([mention], 25)[0] if c.code == target)
    assert lifted.evidence == "learned" and lifted.matched_term == wording

    def cosine(encoder):
        a, b = (encoder.encode([text]) for text in (mention, wording))
        a, b = (v.toarray() if hasattr(v, "toarray") else np.asarray(v) for v in (a, b))
        return float((a @ b.T)[0, 0])

    dense, lexical = cosine(dense_index.encoder), cosine(lexical_index.encoder)
    assert abs(dense - lexical) > 0.01  # the two scales differ: the test can tell them apart
    assert lifted.score == pytest.approx(round(0.7 * dense + 0.3 * lexical, 6), abs=2e-6)


def test_accepted_wordings_leave_the_garbage_collector_nothing_to_walk(lexical_index):
    """A full collection walks every tracked object and some request pays for it: 100k accepted wordings held as
    lists and sets made it 3x longer (bench/gc_pause.py). Tuples of strings and ints are left untracked."""
    import gc

    codes = [c.code for c in lexical_index.kb.concepts]
    LearnedTerms(lexical_index.kb, lexical_index.encoder).replace([("calentamiento", codes[0])])  # lazy imports
    gc.collect()
    before = len(gc.get_objects())
    learned = LearnedTerms(lexical_index.kb, lexical_index.encoder).replace(
        (f"dolor número {i} de la zona {i % 97}", codes[i % len(codes)]) for i in range(5000))
    learned.apply([("dolor número 3 de la zona 3", codes[1], 1), ("dolor número 4 de la zona 4", codes[4], -1)])
    gc.collect()
    assert len(gc.get_objects()) - before < 1000  # a few hundred of numpy and scipy, however many wordings (not 2 each)
    # and what it holds is still right: a wording accepted for two codes lists both, the removed one is gone
    assert {code for code, _, _ in learned._exact["dolor numero 3 de la zona 3"]} == {codes[3], codes[1]}
    assert "dolor numero 4 de la zona 4" not in learned._exact

import pytest

from clinlinker.learned import LearnedTerms
from clinlinker.linker import Linker


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

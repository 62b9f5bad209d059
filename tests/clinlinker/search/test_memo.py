"""The memo of the index's answers: the lists a linker serves are the ones it computes without it, in every engine,
label part and learned state; a repeat does not search the index again; it is bounded; the garbage collector does
not walk what it keeps."""

import gc

import pytest

from clinlinker.kb.routing import LabelRouting
from clinlinker.linking.learned import LearnedTerms
from clinlinker.linking.linker import Linker
from clinlinker.search.hybrid import HybridIndex
from clinlinker.search.memo import SearchMemo

MENTIONS = ["apendicectomia", "fiebre alta", "TAC abdominal", "dolor abdominal", "apendicectomía laparoscópica",
            "infarto", "fiebre alta"]
LABELS = ["PROCEDIMIENTO", "SINTOMA", "PROCEDIMIENTO", "SINTOMA", "PROCEDIMIENTO", "ENFERMEDAD", "ENFERMEDAD"]
CONTEXT = "Se realizó una tomografía axial computarizada (TAC) abdominal."


class Counting:
    """A real index that counts the wordings it is asked to search."""

    def __init__(self, index):
        self.index, self.searched = index, []

    def search(self, texts, k, allowed=None):
        self.searched += list(texts)
        return self.index.search(texts, k, allowed=allowed)

    def __getattr__(self, name):
        return getattr(self.index, name)


def as_rows(lists):
    return [[(c.code, c.score, c.rank, c.evidence, c.matched_term, c.via) for c in cands] for cands in lists]


@pytest.fixture(params=["lexical", "dense", "hybrid"])
def index(request, dense_index, lexical_index):
    return {"lexical": lexical_index, "dense": dense_index,
            "hybrid": HybridIndex(dense_index, lexical_index, weight=0.7)}[request.param]


def test_served_lists_are_the_unmemoized_ones_and_a_repeat_searches_nothing(index):
    routing = LabelRouting.default()
    plain = Linker(index, routing=routing, memo=0)
    counted = Counting(index)
    memo = Linker(counted, routing=routing)
    contexts = [CONTEXT] * len(MENTIONS)
    expected = as_rows(plain.link(MENTIONS, labels=LABELS, contexts=contexts))
    assert as_rows(memo.link(MENTIONS, labels=LABELS, contexts=contexts)) == expected
    first = list(counted.searched)
    assert "tomografía axial computarizada abdominal" in first  # the case's own acronym, spelled out, memoized too
    assert as_rows(memo.link(MENTIONS, labels=LABELS, contexts=contexts)) == expected
    assert counted.searched == first  # nothing searched again
    assert memo.memo.hits == len(first) and memo.memo.misses == len(first)
    # the same wording in another label's part is another answer
    other = as_rows(plain.link(["fiebre alta"], labels=["PROCEDIMIENTO"]))
    assert as_rows(memo.link(["fiebre alta"], labels=["PROCEDIMIENTO"])) == other
    assert counted.searched[len(first):] == ["fiebre alta"]


def test_what_a_project_learned_after_a_search_is_served_on_the_next(lexical_index):
    linker = Linker(lexical_index, routing=LabelRouting.default())
    before = linker.link(["dolor de barriga"], labels=["SINTOMA"])[0]
    assert before[0].code != "21522001"
    learned = LearnedTerms(lexical_index.kb, lexical_index.term_encoder)
    learned.replace([("dolor de barriga", "21522001")])
    after = linker.link(["dolor de barriga"], labels=["SINTOMA"], learned=learned)[0]
    assert (after[0].code, after[0].evidence) == ("21522001", "learned")
    assert linker.memo.hits == 1  # the index's own answer came from the memo, the learned wording on top of it
    assert [c.code for c in linker.link(["dolor de barriga"], labels=["SINTOMA"])[0]] == [c.code for c in before]


def test_a_caller_changing_its_list_changes_no_later_answer(lexical_index):
    memo = SearchMemo()
    first = memo.search(lexical_index, ["fiebre"], 5, None)
    expected = as_rows(first)
    first[0].clear()
    first[0].append("something else")
    assert as_rows(memo.search(lexical_index, ["fiebre"], 5, None)) == expected


def test_the_memo_keeps_the_most_recently_used_wordings_up_to_its_size(lexical_index):
    memo = SearchMemo(2)
    memo.search(lexical_index, ["fiebre", "tos"], 5, None)
    memo.search(lexical_index, ["fiebre"], 5, None)  # fiebre used last: tos goes first
    memo.search(lexical_index, ["disnea"], 5, None)
    assert len(memo) == 2 and (memo.hits, memo.misses) == (1, 3)
    memo.search(lexical_index, ["fiebre", "disnea"], 5, None)
    assert (memo.hits, memo.misses) == (3, 3)
    memo.search(lexical_index, ["tos"], 5, None)
    assert memo.misses == 4
    with pytest.raises(ValueError):
        SearchMemo(-1)


def test_what_the_memo_keeps_is_not_walked_by_the_collector(lexical_index, demo_kb):
    memo = SearchMemo()
    memo.search(lexical_index, ["apendicectomía", "fiebre alta", "dolor abdominal"], 10, None)
    gc.collect()  # keys (tuples of strings and numbers) are untracked when the collector first meets them
    assert len(memo) == 3
    assert not any(gc.is_tracked(key) or gc.is_tracked(kept) for key, kept in memo._lists.items())
    again = memo.search(lexical_index, ["fiebre alta"], 10, None)[0]  # and what it serves are Candidates again
    assert as_rows([again]) == as_rows(lexical_index.search(["fiebre alta"], 10))
    assert again[0].to_dict()["parents"] == [{"code": code, "term": term} for code, term in demo_kb.parent_terms(
        again[0].code)]

"""Checks on the real gazetteers and corpora in ../shared/data (skipped when absent)."""

import pytest

from clinlinker.evaluate.metrics import evaluate_links
from clinlinker.kb.gazetteer import load_knowledge_base
from clinlinker.search.index import build_index
from clinlinker.linking.linker import Linker
from clinlinker.links import read_links


@pytest.fixture(scope="module")
def procedures_linker(request):
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "gazetteers" / "medprocner_procedures_es.tsv"
    if not path.is_file():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return Linker(build_index(load_knowledge_base([path])))


def test_real_gazetteers_and_hierarchy_load(shared_data):
    kb = load_knowledge_base(sorted((shared_data / "gazetteers").glob("*.tsv")),
                             shared_data / "hierarchy" / "snomed_isa_parents.tsv")
    assert len(kb) > 70_000
    assert kb.report.duplicate_rows > 0  # the two files overlap: merged and counted
    assert kb.has_hierarchy


def test_laparoscopic_appendectomy_is_found(procedures_linker):
    [candidates] = procedures_linker.link(["apendicectomía laparoscópica"], 25)
    assert len({c.code for c in candidates}) == 25
    assert "6025007" in [c.code for c in candidates]  # Laparoscopic appendectomy


def test_medprocner_lexical_accuracy_is_sane(procedures_linker, shared_data):
    gold = read_links(shared_data / "corpora" / "medprocner_train.tsv")[:800]
    candidates = procedures_linker.link([g.span for g in gold], 25)
    report = evaluate_links(gold, [[c.code for c in cs] for cs in candidates], known_codes=procedures_linker.kb)
    # Top-k accuracy must grow with k and be far above chance among ~60k concepts.
    accs = [report["cleaned"][f"acc@{k}"] for k in (1, 5, 10, 25)]
    assert accs == sorted(accs)
    assert accs[0] > 0.2 and accs[-1] > 0.45
    assert report["in_kb"]["acc@25"] >= report["cleaned"]["acc@25"]


@pytest.fixture(scope="module")
def merged_linker():
    """Both shared gazetteers and the hierarchy in one KB: the setting where labels matter."""
    from clinlinker.kb.routing import LabelRouting
    from tests.conftest import SHARED_DATA

    gazetteers = sorted((SHARED_DATA / "gazetteers").glob("*.tsv"))
    if not gazetteers:
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    kb = load_knowledge_base(gazetteers, SHARED_DATA / "hierarchy" / "snomed_isa_parents.tsv")
    return Linker(build_index(kb), routing=LabelRouting.default())


def test_merged_gazetteers_keep_the_procedure_tag(merged_linker):
    assert "procedure" in merged_linker.kb["6025007"].semantic_tags  # was '' (the public file's empty tag won)
    assert merged_linker.kb.report.multi_tag_concepts > 0


def test_real_spans_get_concepts_of_their_label(merged_linker):
    kb = merged_linker.kb
    procedures = {"procedure", "regime/therapy"}
    fever, appendicitis = merged_linker.link(["fiebre", "apendicitis aguda"], 25, labels=["SINTOMA", "ENFERMEDAD"])
    surgery, = merged_linker.link(["apendicectomía laparoscópica"], 25, labels=["PROCEDIMIENTO"])
    for cands in (fever, appendicitis):
        assert len(cands) == 25 and not [c.code for c in cands if set(kb[c.code].semantic_tags) & procedures]
    assert len(surgery) == 25 and surgery[0].code == "6025007"
    assert all(set(kb[c.code].semantic_tags) & procedures or not kb[c.code].semantic_tags for c in surgery)
    assert all(c.score > 0 or c.evidence == "hierarchy" for cands in (fever, appendicitis, surgery) for c in cands)


def test_acronyms_of_real_mentions_are_spelled_out_and_found(procedures_linker, shared_data):
    """The abbreviation lever on the real procedures gazetteer and MedProcNER's accepted wordings."""
    from clinlinker.linking.abbreviations import Abbreviations, definitions
    from clinlinker.linking.learned import LearnedTerms

    kb = procedures_linker.kb
    assert "resonancia magnética nuclear" in Abbreviations.from_kb(kb).forms["RMN"]
    links = read_links(shared_data / "corpora" / "medprocner_train.tsv")
    defined = [d for link in links for d in definitions(link.span)]
    assert len(defined) >= 20 and ("RTU", "resección transuretral") in defined
    off = Linker(procedures_linker.index, abbreviations=False)
    found = procedures_linker.link(["T.A.C."], 25, labels=["PROCEDIMIENTO"])[0]  # the gazetteer's own acronym
    assert found[0].code == "77477000" and found[0].via.startswith("TAC = ")
    assert "77477000" not in [c.code for c in off.link(["T.A.C."], 25, labels=["PROCEDIMIENTO"])[0]]
    # long forms the accepted wordings define: "resección transuretral (RTU) ..." spells out "R.T.U. vesical"
    learned = LearnedTerms(kb, procedures_linker.index.encoder).replace(
        (l.span, l.code) for l in links if l.is_clean and "RTU" in l.span)
    found = procedures_linker.link(["R.T.U. vesical"], 25, labels=["PROCEDIMIENTO"], learned=learned)[0]
    assert found[0].via.startswith("RTU = ") and found[0].score > 0.8
    assert not any(c.via for c in off.link(["R.T.U. vesical"], 25, labels=["PROCEDIMIENTO"], learned=learned)[0])

"""The abbreviation lever: acronyms read from mentions, their long forms from the knowledge base and accepted links,
and the linker searching spelled-out variants."""

import pytest

from clinlinker.kb.knowledge_base import KnowledgeBase
from clinlinker.errors import ClinlinkerError
from clinlinker.linking.abbreviations import (Abbreviations, acronym_tokens, definitions, definitions_after,
                                              document_forms, long_form, normalize)
from clinlinker.linking.learned import LearnedTerms
from clinlinker.linking.linker import Linker
from clinlinker.search.index import build_index


@pytest.mark.parametrize("token, acronym", [("TAC", "TAC"), ("T.A.C.", "TAC"), ("r.t.u.", "RTU"), ("AINEs", "AINE"),
                                            ("HTLV", "HTLV"), ("Mx", None), ("tac", None), ("Dolor", None),
                                            ("A", None), ("ABCDEFGH", None)])
def test_normalize(token, acronym):
    assert normalize(token) == acronym


def test_acronym_tokens_skip_shouted_words():
    assert acronym_tokens("retirada de catéter de DP") == [("DP", "DP")]
    assert acronym_tokens("T.A.C. craneal") == [("T.A.C.", "TAC")]
    assert acronym_tokens("DOLOR ABDOMINAL") == []  # words written in capitals are not acronyms
    assert acronym_tokens("DOLOR EN FID") == [("FID", "FID")]  # ... but a short token among them still is
    assert acronym_tokens("HTLV-I") == [("HTLV", "HTLV")]


def test_definitions_schwartz_hearst():
    assert definitions("resección transuretral (RTU) de la lesión") == [("RTU", "resección transuretral")]
    assert definitions("tomografía axial computerizada (TAC) craneal") == [("TAC", "tomografía axial computerizada")]
    assert definitions("dieta con Hidratos de Carbono (HC) simples") == [("HC", "Hidratos de Carbono")]
    assert definitions("tomografía abdominal (TC) contrastada") == []  # the letters do not spell it
    assert long_form("", "TAC") is None


def test_long_forms_from_the_knowledge_base_and_from_accepted_links():
    kb = KnowledgeBase.from_rows([
        ("1", "resonancia magnética nuclear", "procedimiento", True), ("1", "RMN", "procedimiento", False),
        ("2", "medición de alanina aminotransferasa (ALT)", "procedimiento", True),
        ("3", "diálisis peritoneal", "procedimiento", True)])
    from_kb = Abbreviations.from_kb(kb)
    assert dict(from_kb.forms["RMN"]) == {"resonancia magnética nuclear": 1}
    assert dict(from_kb.forms["ALT"]) == {"alanina aminotransferasa": 1}
    assert "DP" not in from_kb.forms
    learned = from_kb.with_links([("DP", "3"), ("catéter de diálisis peritoneal (DP)", "3"), ("XYZ", "unknown")], kb)
    assert learned.forms["DP"]["diálisis peritoneal"] == 4  # an accepted link counts twice a gazetteer term
    assert "DP" not in from_kb.forms  # a copy: the knowledge base's own table is left alone
    assert learned.variants("retirada de catéter de DP") == [
        ("retirada de catéter de diálisis peritoneal", "DP", "diálisis peritoneal")]
    assert learned.variants("diálisis peritoneal (DP) nocturna") == []  # the mention defines it itself
    assert learned.variants("R.M.N. de rodilla") == [("resonancia magnética nuclear de rodilla", "RMN",
                                                      "resonancia magnética nuclear")]


@pytest.fixture(scope="module")
def procedures():
    return KnowledgeBase.from_rows([
        ("77477000", "tomografía computarizada", "procedimiento", True),
        ("77477000", "TAC", "procedimiento", False),
        ("303653007", "tomografía computarizada de cabeza", "procedimiento", True),
        ("71192002", "diálisis peritoneal", "procedimiento", True),
        ("118620004", "taquicardia", "trastorno", True),
        ("55560002", "tacto rectal", "procedimiento", True),
        ("90000001", "catéter venoso central", "procedimiento", True)])


def test_linker_finds_the_concept_of_a_spelled_out_acronym(procedures):
    index = build_index(procedures)
    on, off = Linker(index, abbreviations=True), Linker(index, abbreviations=False)
    alone = on.link(["T.A.C."], 5)[0]
    assert alone[0].code == "77477000" and alone[0].via == "TAC = tomografía computarizada"
    assert "77477000" not in [c.code for c in off.link(["T.A.C."], 5)[0]]  # "t.a.c." shares no 3-gram with it
    found = on.link(["T.A.C. de cabeza"], 5)[0]
    before = {c.code: c.score for c in off.link(["T.A.C. de cabeza"], 5)[0]}
    assert found[0].code == "303653007" and found[0].score > before["303653007"] + 0.2
    assert [c.rank for c in found] == list(range(1, len(found) + 1)) and len({c.code for c in found}) == len(found)
    # the long forms the project's accepted links teach: DP -> diálisis peritoneal, for this linker's searches
    learned = LearnedTerms(procedures, index.encoder).replace([("diálisis peritoneal (DP)", "71192002")])
    assert "71192002" not in [c.code for c in on.link(["catéter de DP"], 5)[0]]
    assert on.link(["catéter de DP"], 5, learned=learned)[0][0].code == "71192002"
    assert off.link(["catéter de DP"], 5, learned=learned)[0][0].code != "71192002"
    learned.apply([("diálisis peritoneal (DP)", "71192002", -1)])  # the link removed: its long form goes too
    assert "71192002" not in [c.code for c in on.link(["catéter de DP"], 5, learned=learned)[0]]
    # a mention without acronyms is searched exactly as before
    assert [(c.code, c.score) for c in on.link(["tacto rectal"], 5)[0]] == \
        [(c.code, c.score) for c in off.link(["tacto rectal"], 5)[0]]


def test_a_document_defines_its_acronyms_either_way_round():
    text = ("Se midió la presión intraocular (PIO), con FO (fondo de ojo) normal. La PIO era de 20 mmHg. "
            "Una TC (sin contraste) y otra vez la presión intraocular (PIO alta).")
    assert document_forms(text) == {"PIO": "presión intraocular", "FO": "fondo de ojo"}  # the first one wins
    assert definitions_after("RM (resonancia magnética) de rodilla") == [("RM", "resonancia magnética")]
    assert definitions_after("TC (sin contraste)") == []  # the parenthesis does not spell it
    assert document_forms("sin acrónimos aquí") == {} and document_forms(None) == {}


def test_the_documents_long_form_is_tried_first():
    known = Abbreviations({"PIO": {"prueba de imagen oftálmica": 5, "presión intraocular": 1}})
    assert [form for _, _, form in known.variants("PIO alta")] == ["prueba de imagen oftálmica", "presión intraocular"]
    assert [form for _, _, form in known.variants("PIO alta", local={"PIO": "presión intraocular"})] == \
        ["presión intraocular", "prueba de imagen oftálmica"]
    assert [form for _, _, form in Abbreviations().variants("FO", local={"FO": "fondo de ojo"})] == ["fondo de ojo"]
    assert Abbreviations().variants("PIO (presión intraocular)", local={"PIO": "otra cosa"}) == []


def test_linker_spells_out_what_the_mentions_document_defines(procedures):
    index = build_index(procedures)
    on, off = Linker(index, abbreviations=True), Linker(index, abbreviations=False)
    document = "Se colocó un catéter de diálisis peritoneal (DP) sin incidencias. A los 3 meses, retirada del DP."
    # nothing in the knowledge base or the links says what DP is: only this document does
    assert "71192002" not in [c.code for c in on.link(["retirada del DP"], 5)[0]]
    found = on.link(["retirada del DP", "retirada del DP", "DP"], 5, contexts=[document, None, document])
    assert found[0][0].code == "71192002" and found[0][0].via == "DP = diálisis peritoneal"
    assert "71192002" not in [c.code for c in found[1]]  # the same words from a document that does not define it
    assert found[2][0].code == "71192002"
    assert off.link(["retirada del DP"], 5, contexts=[document])[0][0].code != "71192002"  # the lever is off
    # a mention without acronyms is searched exactly as without its document
    assert [(c.code, c.score) for c in on.link(["tacto rectal"], 5, contexts=[document])[0]] == \
        [(c.code, c.score) for c in on.link(["tacto rectal"], 5)[0]]
    with pytest.raises(ClinlinkerError, match="2 mentions but 1 contexts"):
        on.link(["DP", "TAC"], 5, contexts=[document])

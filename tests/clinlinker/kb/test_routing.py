"""Label routing: each span label is served from its part of the knowledge base; tags merged across sources."""

import json

import numpy as np
import pytest

from clinlinker.kb.gazetteer import load_knowledge_base
from clinlinker.search.hybrid import HybridIndex
from clinlinker.search.index import build_index, load_index, save_index
from clinlinker.kb.knowledge_base import Concept, KnowledgeBase
from clinlinker.linking.linker import Linker
from clinlinker.kb.routing import LabelRouting, RoutingError, routing_from_setting

HEADER = "code\tlanguage\tterm\tsemantic_tag\tmainterm\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def routing():
    return LabelRouting.default()


@pytest.fixture(params=["lexical", "dense", "hybrid"])
def routed(request, dense_index, lexical_index, routing):
    index = {"lexical": lexical_index, "dense": dense_index,
             "hybrid": HybridIndex(dense_index, lexical_index)}[request.param]
    return Linker(index, routing=routing)


# --- tags: the union of the sources ---------------------------------------------------------------

def test_merging_gazetteers_keeps_every_tag_and_an_empty_tag_means_unknown(tmp_path):
    public = write(tmp_path, "public.tsv", HEADER + "6025007\tes\tapendicectomía laparoscópica\t\t1\n"
                                                    "22298006\tes\tinfarto de miocardio\ttrastorno\t1\n")
    procedures = write(tmp_path, "proc.tsv", HEADER + "6025007\tes\tapendicectomía laparoscópica\tprocedure\t1\n"
                                                      "22298006\tes\tinfarto miocárdico\tdisorder\t0\n"
                                                      "999\tes\tsin etiqueta\t\t1\n")
    kb = load_knowledge_base([public, procedures])
    assert kb["6025007"].semantic_tags == ("procedure",)  # was '' (the public file's empty tag won)
    assert kb["22298006"].semantic_tags == ("trastorno", "disorder")
    assert kb["22298006"].semantic_tag == "trastorno, disorder"
    assert kb["999"].semantic_tags == ()
    assert (kb.report.multi_tag_concepts, kb.report.untagged_concepts) == (1, 1)


def test_tags_survive_save_and_load_and_old_single_tag_indexes_still_load(tmp_path, demo_kb):
    kb = KnowledgeBase([Concept("1", "uno", ("disorder", "trastorno"), ("uno",)), Concept("2", "dos", "", ("dos",))])
    save_index(build_index(kb), tmp_path / "ix")
    loaded = load_index(tmp_path / "ix")
    assert loaded.kb["1"].semantic_tags == ("disorder", "trastorno") and loaded.kb["2"].semantic_tags == ()
    concepts = tmp_path / "ix" / "concepts.json"  # written before tags were merged: one string per concept
    concepts.write_text(concepts.read_text().replace('["disorder","trastorno"]', '"disorder"').replace('[]', '""'))
    manifest = tmp_path / "ix" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["files"]["concepts.json"] = concepts.stat().st_size
    manifest.write_text(json.dumps(data))
    old = load_index(tmp_path / "ix")
    assert old.kb["1"].semantic_tags == ("disorder",) and old.kb["2"].semantic_tags == ()


# --- the routing file ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("[labels.SINTOMA\ntags = 1", "not a valid TOML file"),
    ("[labels.SINTOMA]\ntags = 'hallazgo'", "labels.SINTOMA.tags must be a list"),
    ("[labels.SINTOMA]\ntagz = ['hallazgo']", "unknown key(s) ['tagz']"),
    ("[labels.SINTOMA]\ntags = ['x']\nuntagged = 'no'", "labels.SINTOMA.untagged must be one of"),
    ("[labels.SINTOMA]\n", "names neither tags nor roots"),
    ("[untagged]\npolicy = 'maybe'\n", "untagged.policy must be one of"),
    ("[label.SINTOMA]\ntags = ['x']\n", "unknown section(s) ['label']"),
])
def test_a_bad_routing_file_says_what_and_where(tmp_path, text, message):
    path = write(tmp_path, "routing.toml", text)
    with pytest.raises(RoutingError) as info:
        LabelRouting.load(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_routing_settings(tmp_path):
    assert set(routing_from_setting(None).parts) == {"ENFERMEDAD", "SINTOMA", "PROCEDIMIENTO"}
    assert routing_from_setting("none").parts == {}
    with pytest.raises(RoutingError, match="no such label routing file"):
        routing_from_setting(str(tmp_path / "missing.toml"))


def kb_with_hierarchy():
    concepts = [Concept("P", "procedimiento raíz", "procedure", ("procedimiento raíz",)),
                Concept("P1", "apendicectomía", "", ("apendicectomía",)),  # untagged, child of a procedure
                Concept("D", "trastorno raíz", "Trastorno", ("trastorno raíz",)),
                Concept("D1", "apendicitis", "", ("apendicitis",)),  # untagged, child of a disorder
                Concept("U", "sin nada", "", ("sin nada",)),  # untagged, no hierarchy
                Concept("R", "régimen", "régimen/tratamiento", ("régimen",))]
    return KnowledgeBase(concepts, parents={"P1": ("P",), "D1": ("X",), "X": ("D",)})


def test_masks_match_tags_accent_and_case_blind_and_inherit_through_the_hierarchy():
    kb = kb_with_hierarchy()
    routing = LabelRouting.from_dict({"labels": {"PROC": {"tags": ["procedure", "Regimen/Tratamiento"]},
                                                 "DIS": {"tags": ["trastorno"]}}})
    masks = {label: {c.code for c, m in zip(kb.concepts, mask) if m} for label, mask in routing.masks(kb).items()}
    # P1 inherits "procedure" from P; D1 inherits "Trastorno" through X (not in the KB); U stays unknown: allowed
    assert masks == {"PROC": {"P", "P1", "U", "R"}, "DIS": {"D", "D1", "U"}}
    deny = LabelRouting.from_dict({"untagged": {"policy": "deny", "inherit": False},
                                   "labels": {"PROC": {"tags": ["procedure"]}}})
    assert {c.code for c, m in zip(kb.concepts, deny.masks(kb)["PROC"]) if m} == {"P"}
    per_label = LabelRouting.from_dict({"untagged": {"inherit": False},  # U, P1, D1 untagged: allowed but for PROC
                                        "labels": {"PROC": {"tags": ["procedure"], "untagged": "deny"},
                                                   "DIS": {"tags": ["trastorno"]}}}).masks(kb)
    assert {c.code for c, m in zip(kb.concepts, per_label["PROC"]) if m} == {"P"}
    assert {c.code for c, m in zip(kb.concepts, per_label["DIS"]) if m} == {"D", "P1", "D1", "U"}
    roots = LabelRouting.from_dict({"untagged": {"policy": "deny"}, "labels": {"DIS": {"roots": ["X"]}}})
    assert {c.code for c, m in zip(kb.concepts, roots.masks(kb)["DIS"]) if m} == {"D1"}


# --- candidates of a routed label ---------------------------------------------------------------

def test_each_label_gets_only_concepts_of_its_part(routed, demo_kb, routing):
    tags = {label: {t.casefold() for t in part.tags} for label, part in routing.parts.items()}
    mentions = ["apendicitis aguda", "fiebre", "apendicectomía", "dolor abdominal"]
    for label in ("ENFERMEDAD", "SINTOMA", "PROCEDIMIENTO"):
        for cands in routed.link(mentions, 25, labels=[label] * len(mentions)):
            assert cands and all(set(t.casefold() for t in demo_kb[c.code].semantic_tags) & tags[label]
                                 for c in cands), (label, [(c.code, c.semantic_tag) for c in cands])


def test_the_same_wording_under_two_labels_gets_two_lists(routed, demo_kb):
    disease, procedure = routed.link(["apendicitis aguda", "apendicitis aguda"], 25,
                                     labels=["ENFERMEDAD", "PROCEDIMIENTO"])
    assert {demo_kb[c.code].semantic_tag for c in procedure} == {"procedimiento"}
    assert {demo_kb[c.code].semantic_tag for c in disease} <= {"trastorno", "hallazgo"}
    if routed.index.engine == "lexical":  # the tiny test encoder has random weights: its order means nothing
        assert disease[0].code == "85189001"
        assert procedure[0].code == "80146002"  # apendicectomía, not the disease


def test_a_label_outside_the_routing_or_no_label_searches_the_whole_kb(routed):
    whole = routed.link(["fiebre"], 25)[0]
    assert [c.code for c in routed.link(["fiebre"], 25, labels=["OTRO"])[0]] == [c.code for c in whole]
    assert any(c.semantic_tag == "procedimiento" for c in whole)


def test_the_filter_returns_k_concepts_of_the_part_whenever_it_has_them(dense_index, demo_kb, routing, tiny_encoder,
                                                                         tmp_path):
    allowed = routing.masks(demo_kb)["PROCEDIMIENTO"]
    assert 5 < allowed.sum() < 25
    for index_type in ("flat", "hnsw", "ivf"):
        index = dense_index if index_type == "flat" else build_index(demo_kb, tiny_encoder, index_type=index_type)
        [five] = index.search(["fiebre alta"], 5, allowed=allowed)
        [every] = index.search(["fiebre alta"], 25, allowed=allowed)
        assert len(five) == 5 and len(every) == allowed.sum()  # all of the part: fewer only because it is small
        assert {c.code for c in every} == {c.code for c, a in zip(demo_kb.concepts, allowed) if a}


def test_learned_wordings_come_first_whatever_the_label_but_similar_ones_stay_in_the_part(lexical_index, routing):
    linker = Linker(lexical_index, routing=routing).learn([("dolor de barriga", "21522001")])  # dolor abdominal
    [exact] = linker.link(["dolor de barriga"], 25, labels=["PROCEDIMIENTO"])
    assert exact[0].code == "21522001" and exact[0].evidence == "learned"  # the coders' own decision
    [similar] = linker.link(["dolores de barriga"], 25, labels=["PROCEDIMIENTO"])
    assert "21522001" not in [c.code for c in similar]


# --- no filler: similarity first, then hierarchy neighbours, else a shorter list ---------------

def test_a_short_list_is_completed_by_hierarchy_neighbours_marked_as_such(lexical_index, demo_kb, routing):
    linker = Linker(lexical_index, routing=routing)
    [cands] = linker.link(["fiebre"], 25, labels=["SINTOMA"])
    similar = [c for c in cands if c.evidence == "lexical"]
    neighbours = [c for c in cands if c.evidence == "hierarchy"]
    assert similar and neighbours and cands == similar + neighbours
    assert len(cands) < 25 and len({c.code for c in cands}) == len(cands)
    hits = {c.code for c in similar[:5]}
    for c in neighbours:
        relation, _, of = c.via.partition(" of ")
        assert of in hits and c.score == 0.0
        assert {"parent": of in demo_kb.children(c.code), "child": c.code in demo_kb.children(of),
                "sibling": bool(set(demo_kb.parents(c.code)) & set(demo_kb.parents(of)))}[relation]
    assert Linker(lexical_index, routing=routing, hierarchy_fill=False).link(["fiebre"], 25, labels=["SINTOMA"])[0] \
        == similar


def test_nothing_similar_means_an_empty_list_not_filler(lexical_index, routing):
    assert Linker(lexical_index, routing=routing).link(["zzzz"], 25, labels=["SINTOMA"]) == [[]]


# --- fair, deterministic ties -------------------------------------------------------------------

def tie_kb(reverse: bool):
    concepts = [Concept("111", "hipertensión arterial", "trastorno", ("hipertensión arterial", "HTA")),
                Concept("222", "HTA", "trastorno", ("HTA",)),
                Concept("333", "tensión alta", "trastorno", ("tensión alta", "HTA", "hta"))]
    return KnowledgeBase(concepts[::-1] if reverse else concepts)


@pytest.mark.parametrize("reverse", [False, True])
def test_ties_never_go_to_file_order(reverse):
    index = build_index(tie_kb(reverse))
    [cands] = index.search(["HTA"], 3)
    assert [c.score for c in cands] == [1.0, 1.0, 1.0]
    # more terms at the top score first ("HTA" and "hta" fold alike), then the concept whose matched term is
    # its preferred term, then the code
    assert [c.code for c in cands] == ["333", "222", "111"]


@pytest.mark.parametrize("reverse", [False, True])
def test_an_accepted_wording_beats_a_gazetteer_term_with_the_same_score(reverse):
    linker = Linker(build_index(tie_kb(reverse))).learn([("HTA", "111")])
    assert linker.link(["HTA"], 3)[0][0].code == "111"


# --- what a coder sees beside each candidate ----------------------------------------------------

def test_candidates_carry_tag_and_parents(lexical_index):
    [cands] = Linker(lexical_index).link(["apendicectomía laparoscópica"], 3)
    assert cands[0].parents == (("80146002", "apendicectomía"),)
    assert cands[0].describe() == "6025007 | apendicectomía laparoscópica · procedimiento · ⊂ 80146002 apendicectomía"
    assert cands[0].to_dict()["parents"] == [{"code": "80146002", "term": "apendicectomía"}]


def test_masks_are_computed_once_per_linker(lexical_index, routing):
    linker = Linker(lexical_index, routing=routing)
    assert isinstance(linker.allowed("SINTOMA"), np.ndarray) and linker.allowed("SINTOMA") is linker.allowed("SINTOMA")
    assert linker.describe()["routing"]["concepts_per_label"]["PROCEDIMIENTO"] == int(linker.allowed(
        "PROCEDIMIENTO").sum())

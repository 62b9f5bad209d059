"""Curation of a Label Studio project with overlap: agreement figures against a hand computation, adjudication,
the assistant's effect, the report, and bad exports (tests/curation_fixture.py holds the project)."""

import json

import pytest

from backend.labelstudio.curation import adjudicate, assistant_effect, read_curation, report_html
from clinlinker.evaluate.agreement import Coded, Coding, agreement, cohen_kappa, fleiss_kappa, same_family
from clinlinker.cli import main
from clinlinker.links import read_links
from tests import curation_fixture as fx

ANA, LUIS, MARTA = fx.USERS[1], fx.USERS[2], fx.USERS[3]


@pytest.fixture
def curation(demo_kb):
    return read_curation(fx.export(), users=fx.USERS, kb=demo_kb)


def test_kappas_against_textbook_values():
    # Cohen: 10 items, observed 7/10; a says Y 5 times, b 6 times: chance (5*6 + 5*4)/100 = 0.5 -> 0.4
    a = list("YYYYYNNNNN")
    b = list("YYYYNYNNNY")
    assert cohen_kappa(a, b) == pytest.approx(0.4, abs=1e-6)
    assert cohen_kappa(list("YYNN"), list("YYNN")) == 1.0
    assert cohen_kappa(list("YYY"), list("YYY")) is None  # one category: chance agreement is certain
    # Fleiss (Wikipedia's worked example, 10 items x 14 raters, 5 categories): 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    items = [[c for c, n in enumerate(row) for _ in range(n)] for row in table]
    assert fleiss_kappa(items) == pytest.approx(0.2099, abs=1e-4)
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 2], [1, 2, 3]])


def test_concept_family_through_the_hierarchy(demo_kb):
    assert same_family("44054006", "73211009", demo_kb)  # diabetes mellitus tipo 2 is-a diabetes mellitus
    assert same_family("73211009", "44054006", demo_kb)
    assert not same_family("44054006", "46635009", demo_kb)  # siblings are not parent and child
    assert same_family("6025007+21522001", "22253000+80146002", demo_kb)  # part by part, in any order
    assert not same_family("85189001", "85189001+9209005", demo_kb)
    assert not same_family("44054006", "73211009")  # no knowledge base: exact only


def test_agreement_matches_the_hand_computation(curation, demo_kb):
    coded = curation.coded()
    figures = agreement(coded, kb=demo_kb)
    pairs = {(p["a"], p["b"]): p for p in figures["pairs"]}
    al = pairs[(ANA, LUIS)]
    # ana 8 spans (3+3+2), luis 7 (3+2+2) over caso1-3; 7 share offsets, 6 also the label (Tos: S vs E)
    assert (al["documents"], al["spans_a"], al["spans_b"]) == (3, 8, 7)
    assert al["span_f1"] == pytest.approx(14 / 15, abs=1e-6) and al["span_label_f1"] == pytest.approx(12 / 15, abs=1e-6)
    assert al["label_agreement"] == pytest.approx(6 / 7, abs=1e-6)
    assert al["label_kappa"] == pytest.approx(23 / 30, abs=1e-6)  # p_o 6/7, p_e 19/49
    # codes on the 6 spans: 2 exact (fiebre, apendicectomía), 2 more parent/child (diabetes, dolor abdominal)
    assert al["code_compared"] == 6
    assert al["code_exact"] == pytest.approx(2 / 6, abs=1e-6) and al["code_family"] == pytest.approx(4 / 6, abs=1e-6)
    assert al["code_kappa"] == pytest.approx(10 / 34, abs=1e-6)  # p_o 12/36, p_e 2/36
    am, lm = pairs[(ANA, MARTA)], pairs[(LUIS, MARTA)]
    assert (am["span_f1"], am["code_exact"], am["code_kappa"]) == (1.0, 1.0, 1.0)
    assert lm["span_f1"] == pytest.approx(0.8) and lm["code_exact"] == 0.5
    assert lm["code_kappa"] == pytest.approx(1 / 3, abs=1e-6)
    enf = figures["labels"]["ENFERMEDAD"]
    assert (enf["spans_a"], enf["spans_b"], enf["code_compared"]) == (4, 5, 4)
    assert enf["span_f1"] == pytest.approx(8 / 9, abs=1e-6)
    assert (enf["code_exact"], enf["code_family"]) == (0.25, 0.5)
    # Fleiss over caso2 (3 coders; 2 spans all marked): P = (1 + 1/3)/2, Pe = 7/18 -> 5/11
    assert figures["fleiss_code_kappa"] == {"3": {"items": 2, "kappa": pytest.approx(5 / 11, abs=1e-6)}}
    kinds = sorted((d["doc"], d["span"], d["kind"]) for d in figures["disagreements"])
    assert kinds == [("caso1", "Dolor abdominal", "code"), ("caso1", "diabetes mellitus tipo 2", "code"),
                     ("caso2", "apendicitis aguda", "code"), ("caso2", "náuseas", "span"),
                     ("caso3", "Tos", "label"), ("caso3", "disnea", "code")]
    nauseas = next(d for d in figures["disagreements"] if d["span"] == "náuseas")
    assert nauseas["codings"] == {ANA: {"label": "SINTOMA", "code": "422587007"}, LUIS: None,
                                  MARTA: {"label": "SINTOMA", "code": "422587007"}}


def test_bad_exports_are_reported_with_task_and_region(curation):
    counts = curation.counts
    assert (counts["tasks"], counts["annotations"], counts["cancelled"], counts["drafts"], counts["relations"]) == (
        5, 8, 1, 1, 1)
    problems = [str(p) for p in curation.problems]
    assert any(p.startswith("task 4:") and "no text" in p for p in problems)
    assert any(p.startswith("task 5, region caso5-m1-1:") and "'mareo'" in p and "no code" in p for p in problems)
    assert any(p.startswith("task 5, region caso5-m1-2:") and "999999999" in p and "not in the knowledge base" in p
               for p in problems)
    assert len(problems) == 3
    ana5 = next(a for a in curation.annotations if a.doc == "caso5")
    assert [l["code"] for l in ana5.links] == ["38341003"]  # what could be read is kept; nothing guessed


def test_adjudication_policies(curation):
    gold = adjudicate(curation, "majority")
    by_doc = {}
    for link in gold["links"]:
        by_doc.setdefault(link.filename, []).append((link.span, link.code))
    # caso1: two coders, only fiebre agreed; caso2: marta's ground truth; caso3: nothing agreed; caso5: one coder
    assert by_doc == {"caso1": [("fiebre", "386661006")],
                      "caso2": [("apendicectomía laparoscópica", "6025007"), ("apendicitis aguda", "85189001"),
                                ("náuseas", "422587007")],
                      "caso5": [("hipertensión", "38341003")]}
    assert sorted((u["doc"], u["span"]) for u in gold["unresolved"]) == [
        ("caso1", "Dolor abdominal"), ("caso1", "diabetes mellitus tipo 2"), ("caso3", "Tos"), ("caso3", "disnea")]
    sources = {d["doc"]: d["source"] for d in gold["decisions"]}
    assert sources == {"caso1": "majority of 2", "caso2": "ground truth", "caso3": "majority of 2",
                       "caso5": "only annotation"}
    newest = adjudicate(curation, "newest")
    assert {l.code for l in newest["links"] if l.filename == "caso1"} == {"73211009", "386661006", "22253000"}  # luis
    assert not newest["unresolved"]
    named = adjudicate(curation, f"coder:{ANA}")
    assert [l.code for l in named["links"] if l.filename == "caso3"] == ["49727002", "NO_CODE"]
    assert [l.code for l in named["links"] if l.filename == "caso2"] == ["6025007", "85189001", "422587007"]  # truth wins
    with pytest.raises(Exception, match="unknown adjudication policy"):
        adjudicate(curation, "loudest")


def test_assistant_effect(curation, lexical_index):
    from clinlinker.linking.linker import Linker

    gold = adjudicate(curation, "majority")["links"]
    effect = assistant_effect(curation, gold=gold)
    # ana kept every pre-selected top-1 (6 predicted spans + hipertensión); luis changed 3 of his 4 predicted spans
    assert effect["by_coder"][ANA] == {"spans": 9, "top-1": 7, "not compared": 2}
    assert effect["by_coder"][LUIS] == {"spans": 7, "top-1": 2, "not top-1": 3, "not compared": 2}
    o = effect["overrides"]
    assert (o["high (>= 0.8)"]["spans"], o["high (>= 0.8)"]["overridden"]) == (7, 1)
    assert (o["medium (0.5-0.8)"]["spans"], o["medium (0.5-0.8)"]["overridden"]) == (4, 1)
    assert (o["low (< 0.5)"]["spans"], o["low (< 0.5)"]["overridden"]) == (4, 1)
    # luis's composite for apendicitis aguda is judged against marta's ground truth: a wrong override
    assert (o["medium (0.5-0.8)"]["overrides_judged"], o["medium (0.5-0.8)"]["overrides_right"]) == (1, 0)
    timing = {(t["group"], t["coder"]): t["median"] for t in effect["seconds_per_span"]}
    # per span: ana 10 (caso1), 15 (caso2), 20 (caso5: one span kept); luis 20, 20; marta 30 -> median 20
    assert timing[("with a prediction", "all")] == 20.0
    assert timing[("without a prediction", "all")] == 22.5  # caso3: ana 40/2, luis 50/2
    assert timing[("with a prediction", ANA)] == 15.0
    # with an index, the changed codes are placed in the candidate list as the index gives it
    ranked = assistant_effect(curation, linker=Linker(lexical_index))
    assert "not top-1" not in ranked["by_coder"][LUIS]
    assert sum(ranked["by_coder"][LUIS].get(b, 0) for b in ("top 2-5", "top 6-25", "outside the list")) == 3


def test_assistant_effect_searches_each_span_with_its_own_case(lexical_index):
    """The ranks of changed codes come from the list the backend served: the span searched with its task's text, so
    an acronym its case defines is spelled out there and only there."""
    from backend.labelstudio.curation import Annotation, Curation
    from clinlinker.linking.linker import Linker

    def coded(task, coder):
        return Annotation(task=task, doc=f"caso{task}", id=task, coder=coder, ground_truth=False, created_at="",
                          updated_at="", lead_time=None, from_prediction=True,
                          links=[{"start": 0, "end": 2, "label": "SINTOMA", "code": "21522001", "span": "DA"}],
                          predicted={(0, 2): ("85189001", 0.4)})

    texts = {1: "DA desde ayer: dolor abdominal (DA) que cede con analgesia.", 2: "DA sin más."}
    curation = Curation([coded(1, ANA), coded(2, LUIS)], [], {}, texts)
    ranked = assistant_effect(curation, linker=Linker(lexical_index))
    assert ranked["by_coder"][ANA] == {"spans": 1, "top 2-5": 1}  # dolor abdominal, read from its own case
    assert ranked["by_coder"][LUIS] == {"spans": 1, "outside the list": 1}  # the same words, no definition


def test_curate_command_writes_gold_disagreements_report_and_json(tmp_path, lexical_index, capsys):
    from clinlinker.search.index import save_index

    source = tmp_path / "export.json"
    source.write_text(json.dumps(fx.export(), ensure_ascii=False), encoding="utf-8")
    index = save_index(lexical_index, tmp_path / "ix")
    out = {name: tmp_path / name for name in ("gold.tsv", "disagreements.tsv", "report.html", "figures.json")}
    argv = ["curate", "--input", str(source), "--index", str(index), "--gold", str(out["gold.tsv"]),
            "--disagreements", str(out["disagreements.tsv"]), "--report", str(out["report.html"]),
            "--json", str(out["figures.json"])]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "8 annotations of 5 tasks by 3 coder(s); 3 problem(s)" in err and "6 disagreement(s)" in err
    assert "task 5, region caso5-m1-2" in err
    assert len(read_links(out["gold.tsv"])) == 5
    rows = out["disagreements.tsv"].read_text(encoding="utf-8").splitlines()
    assert rows[0].split("\t") == ["task", "filename", "start", "end", "span", "kind", "codings"]
    assert len(rows) == 7 and any("\tnáuseas\tspan\t" in r and "user 2: (not marked)" in r for r in rows)
    figures = json.loads(out["figures.json"].read_text(encoding="utf-8"))
    assert figures["agreement"]["overall"]["code_compared"] == 6 + 3 + 2
    page = out["report.html"].read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.count("<img") >= 3 and "Disagreements (6)" in page
    assert main(argv + ["--strict"]) == 1  # problems were reported
    assert main(["curate", "--input", str(source), "--review-tab"]) == 2  # a tab needs the live project


def test_agreement_of_one_coder_and_of_empty_annotations():
    figures = agreement([Coded("d", "a", [Coding(0, 3, "SINTOMA", "1")])])
    assert figures["pairs"] == [] and figures["overall"]["code_compared"] == 0 and figures["disagreements"] == []
    # a coder who marked nothing disagrees on every span of the other
    figures = agreement([Coded("d", "a", [Coding(0, 3, "SINTOMA", "1")]), Coded("d", "b", [])])
    assert figures["overall"]["span_f1"] == 0.0 and [d["kind"] for d in figures["disagreements"]] == ["span"]


def test_report_escapes_what_coders_wrote(curation):
    curation.problems[0].message = "<script>alert(1)</script>"
    page = report_html("t", curation, agreement(curation.coded()), assistant_effect(curation),
                       adjudicate(curation))
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_unreadable_annotations_are_reported_not_guessed():
    tasks = fx.export()[:1]
    tasks[0]["annotations"][0]["result"] = "not a list"
    tasks[0]["annotations"][1]["result"][0]["value"]["start"] = "13"
    tasks.append({"id": 77, "annotations": "oops", "data": {"text": "x"}})
    tasks.append("not a task")
    curation = read_curation(tasks)
    problems = [str(p) for p in curation.problems]
    assert problems == ["task 1: annotation 101: result: expected a list of result items, got str; not used",
                        "task 1: annotation 102: result[0].value.start: expected an integer offset; not used",
                        "task 77: annotations: expected a list", "task #3: not a task object"]
    assert curation.annotations == [] and curation.counts["cancelled"] == 1

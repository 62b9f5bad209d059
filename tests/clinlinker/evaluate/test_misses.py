"""Where the misses are: each miss gets one cause, in the documented order (docs/quality.md)."""

import numpy as np

from clinlinker.evaluate.misses import CAUSES, classify_misses, summarize, write_misses
from clinlinker.kb.knowledge_base import KnowledgeBase
from clinlinker.links import Link


def _link(span, code, label="PROCEDIMIENTO"):
    return Link("doc1", "T1", label, 0, len(span), span, code)


def test_each_cause_in_order(tmp_path):
    kb = KnowledgeBase.from_rows([
        ("1", "apendicectomía", "procedimiento", True), ("2", "apendicectomía laparoscópica", "procedimiento", True),
        ("3", "tomografía computarizada", "procedimiento", True), ("4", "fiebre", "hallazgo", True),
        ("5", "gastrostomía", "procedimiento", True), ("6", "biopsia hepática", "procedimiento", True),
        ("7", "biopsia renal", "procedimiento", True)], parents={"2": ("1",)})
    procedures = np.array([c.code != "4" for c in kb.concepts])
    allowed = lambda label: procedures if label == "PROCEDIMIENTO" else None  # noqa: E731
    gold = [_link("cirugía", "999"),  # not in the knowledge base
            _link("fiebre alta", "4"),  # in it, outside the procedures' part
            _link("T.A.C.", "3"),  # an acronym (dotted)
            _link("apendicectomía por laparoscopia", "2"),  # its parent is listed instead
            _link("PEG", "5") if False else _link("ostomía del estómago", "5"),  # no 3-gram with gastrostomía?
            _link("biopsia de hígado", "6"),  # shares n-grams, outranked
            _link("biopsia renal", "7"),  # found: not a miss
            _link("lo que sea", "NO_CODE")]  # not scored
    lists = [["1"], ["1"], ["1"], ["1", "6"], ["1"], ["7"], ["7"], ["1"]]
    misses = classify_misses(gold, lists, kb, k=25, allowed=allowed)
    causes = [m.cause for m in misses]
    assert causes[:4] == ["not_in_kb", "outside_label", "abbreviation", "relative_listed"]
    assert misses[3].relative == "parent 1 at 1"
    assert causes[4] == "outranked"  # "ostomía" shares "tom", "omí"... with "gastrostomía": a close wording
    assert causes[5] == "outranked" and len(misses) == 6
    # no shared 3-gram at all
    alone = classify_misses([_link("PEGx", "5"), _link("sonda nasal", "5")], [["1"], ["1"]], kb)
    assert [m.cause for m in alone] == ["outranked" if False else "no_shared_ngram"] * 2
    # without the routing masks or a hierarchy those causes are never given
    plain = classify_misses(gold, lists, KnowledgeBase(list(kb.concepts)), k=25)
    assert "outside_label" not in [m.cause for m in plain] and "relative_listed" not in [m.cause for m in plain]
    summary = summarize(misses, scored=7)
    assert set(summary["by_cause"]) == set(CAUSES) and summary["misses"] == 6
    assert summary["by_cause"]["abbreviation"]["examples"][0]["mention"] == "T.A.C."
    assert abs(sum(r["share_of_misses"] for r in summary["by_cause"].values()) - 1) < 1e-3
    out = tmp_path / "misses.tsv"
    write_misses(misses, out, kb)
    rows = out.read_text(encoding="utf-8").splitlines()
    assert rows[0].split("\t")[7] == "cause" and len(rows) == 7
    assert rows[3].split("\t")[4:8] == ["T.A.C.", "3", "tomografía computarizada", "abbreviation"]

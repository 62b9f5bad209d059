import pytest

from clinlinker.errors import InputFileError
from clinlinker.evaluate.metrics import evaluate_links, format_report
from clinlinker.links import Link, read_links, write_links


def link(code, label="PROCEDIMIENTO", span="x"):
    return Link("doc", "T1", label, 0, len(span), span, code, "EXACT")


def test_top_k_accuracy_on_each_subset():
    gold = [link("A"), link("B"), link("C", "SINTOMA"), link("NO_CODE"), link("A+B"), link("Z")]
    predicted = [["A", "X"], ["X", "Y", "B"], ["X"] * 0 + ["Q", "R", "S", "T", "U", "C"], ["A"], ["A", "B"],
                 ["A"]]
    report = evaluate_links(gold, predicted, known_codes={"A", "B", "C"}, ks=[1, 5])
    assert report["cleaned"] == {"n": 4, "acc@1": 0.25, "hits@1": 1, "acc@5": 0.5, "hits@5": 2}
    assert report["all"]["n"] == 6 and report["all"]["hits@5"] == 2  # NO_CODE and A+B are misses
    assert report["in_kb"]["n"] == 3 and report["in_kb"]["hits@5"] == 2  # Z is not in the KB
    assert report["by_label"]["SINTOMA"] == {"n": 1, "acc@1": 0.0, "hits@1": 0, "acc@5": 0.0, "hits@5": 0}
    assert report["counts"] == {"rows": 6, "no_code": 1, "composite": 1}
    table = format_report(report)
    assert "cleaned" in table and "label=SINTOMA" in table and "top-5" in table


def test_lengths_must_agree():
    with pytest.raises(ValueError):
        evaluate_links([link("A")], [])


def test_links_roundtrip_and_validation(tmp_path):
    links = [Link("doc1", "T1", "ENFERMEDAD", 5, 16, "apendicitis", "74400008", "EXACT"),
             Link("doc1", "T2", "SINTOMA", 20, 25, "fiebre", "NO_CODE", ""),
             Link("doc2", "T1", "PROCEDIMIENTO", 0, 3, "TAC", "77477000+399208008", "EXACT")]
    path = tmp_path / "links.tsv"
    write_links(links, path)
    assert [(l.filename, l.code, l.start, l.end) for l in read_links(path)] == \
        [(l.filename, l.code, l.start, l.end) for l in links]
    bad = tmp_path / "bad.tsv"
    bad.write_text(path.read_text().replace("\t5\t16\t", "\t5\tdieciséis\t"))
    with pytest.raises(InputFileError, match=r"bad.tsv:2: off0/off1 must be integers"):
        read_links(bad)
    bad.write_text(path.read_text().replace("\t5\t16\t", "\t16\t5\t"))
    with pytest.raises(InputFileError, match=r"bad.tsv:2: bad offsets"):
        read_links(bad)

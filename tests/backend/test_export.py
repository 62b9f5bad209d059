import json

import pytest

from backend.labelstudio.export import export_tasks, read_export
from clinlinker.cli import main
from clinlinker.errors import InputFileError
from clinlinker.links import read_links
from tests.backend.conftest import CAPTURES

TEXT = "Paciente con fiebre y dolor abdominal tras apendicectomía laparoscópica."


def region(rid, start, end, label, *, taxonomy=None, typed=None, relation=None, text=None):
    text = TEXT[start:end] if text is None else text
    value = {"start": start, "end": end, "text": text}
    items = [{"id": rid, "from_name": "label", "to_name": "text", "type": "labels",
              "value": {**value, "labels": [label]}}]
    if taxonomy is not None:
        items.append({"id": rid, "from_name": "snomed", "to_name": "text", "type": "taxonomy",
                      "value": {**value, "taxonomy": taxonomy}})
    if typed is not None:
        items.append({"id": rid, "from_name": "code", "to_name": "text", "type": "textarea",
                      "value": {**value, "text": [typed]}})
    if relation is not None:
        items.append({"id": rid, "from_name": "semantic_rel", "to_name": "text", "type": "choices",
                      "value": {**value, "choices": [relation]}})
    return items


def exported_task(result, *, annotations=None, predictions=None, task_id=1, doc="caso-1.txt"):
    annotations = annotations if annotations is not None else [
        {"id": 10, "was_cancelled": False, "updated_at": "2026-11-20T10:00:00Z", "result": result}]
    return {"id": task_id, "data": {"text": TEXT, "doc_id": doc}, "annotations": annotations,
            "predictions": predictions or []}


def test_captured_export_gives_one_row_per_span_typed_code_first():
    links, problems, _ = export_tasks(read_export(CAPTURES / "export_JSON_task.json"))
    assert problems == []
    assert [(l.filename, l.mark, l.label, l.start, l.end, l.code) for l in links] == [
        ("caso1", "T1", "ENFERMEDAD", 24, 48, "999999999"),
        ("caso1", "T2", "SINTOMA", 63, 69, "100166299"),
        ("caso1", "T3", "SINTOMA", 72, 79, "100831495")]


def test_taxonomy_pick_composite_and_no_code():
    result = (region("a", 13, 19, "SINTOMA", taxonomy=[["fiebre [13-19]", "386661006 | fiebre"]], relation="EXACT")
              + region("b", 43, 71, "PROCEDIMIENTO",
                       taxonomy=[["apendicectomía laparoscópica [43-71]", "6025007 | apendicectomía laparoscópica"],
                                 ["apendicectomía laparoscópica [43-71]", "80146002 | apendicectomía"]])
              + region("c", 22, 37, "SINTOMA", taxonomy=[["dolor abdominal [22-37]", "NO_CODE | sin código"]])
              + region("d", 0, 8, "ENFERMEDAD", typed="433775002 + NO_CODE"))
    links, problems, _ = export_tasks([exported_task(result)])
    assert problems == []
    assert [(l.start, l.code, l.semantic_rel) for l in links] == [
        (0, "433775002+NO_CODE", "COMPOSITE"), (13, "386661006", "EXACT"), (22, "NO_CODE", ""),
        (43, "6025007+80146002", "COMPOSITE")]
    assert [l.mark for l in links] == ["T1", "T2", "T3", "T4"]


def test_a_tick_is_checked_by_the_offsets_of_its_mention_node():
    old_style = region("a", 13, 19, "SINTOMA", taxonomy=[["fiebre [13-19]", "386661006 | fiebre"]])  # no label shown
    new_style = region("b", 22, 37, "SINTOMA", taxonomy=[["dolor abdominal [22-37] · SINTOMA", "21522001 | dolor"]])
    elsewhere = region("c", 43, 71, "PROCEDIMIENTO", taxonomy=[["fiebre [13-19] · SINTOMA", "386661006 | fiebre"]])
    links, problems, _ = export_tasks([exported_task(old_style + new_style + elsewhere)])
    assert [link.code for link in links] == ["386661006", "21522001"]
    assert all("region c" in str(p) for p in problems) and any("another mention" in str(p) for p in problems)


def test_wrong_mention_and_missing_code_are_reported_not_guessed():
    result = (region("a", 13, 19, "SINTOMA", taxonomy=[["dolor abdominal [22-37]", "21522001 | dolor abdominal"]])
              + region("b", 22, 37, "SINTOMA"))
    links, problems, _ = export_tasks([exported_task(result)])
    assert links == []
    messages = [str(p) for p in problems]
    assert any("region a" in m and "another mention" in m for m in messages)
    assert any("region b" in m and "has no code" in m for m in messages)


def test_a_coded_span_without_label_is_reported_and_strict_fails(tmp_path, capsys):
    # what Label Studio saved for a span drawn with Auto-Annotation on, whose label the answer dropped
    unlabelled = [item for item in region("c", 43, 71, "PROCEDIMIENTO", taxonomy=[[
        "apendicectomía laparoscópica [43-71]", "6025007 | apendicectomía laparoscópica"]]) if item["type"] != "labels"]
    result = region("a", 13, 19, "SINTOMA", taxonomy=[["fiebre [13-19]", "386661006 | fiebre"]]) + unlabelled
    links, problems, _ = export_tasks([exported_task(result)])
    assert [link.code for link in links] == ["386661006"]
    [problem] = problems
    assert "region c" in str(problem) and "6025007" in str(problem) and "no label" in str(problem)
    export = tmp_path / "export.json"
    export.write_text(json.dumps([exported_task(result)]), encoding="utf-8")
    assert main(["export", "--input", str(export), "--out", str(tmp_path / "a.tsv"), "--strict"]) == 1
    assert "region c" in capsys.readouterr().err


def test_export_counts_how_each_code_was_given(tmp_path, capsys):
    result = region("a", 13, 19, "SINTOMA", taxonomy=[["fiebre [13-19]", "386661006 | fiebre"]]) + \
        region("b", 22, 37, "SINTOMA", taxonomy=[["dolor abdominal [22-37]", "21522001 | dolor abdominal"]]) + \
        region("c", 43, 71, "PROCEDIMIENTO", typed="6025007")
    origins = {"a": "prediction", "b": "prediction-changed", "c": "manual"}
    for item in result:
        item["origin"] = origins[item["id"]]
    links, problems, agreement = export_tasks([exported_task(result)])
    assert not problems and agreement.origins == {"prediction": 1, "prediction-changed": 1, "manual": 1}
    export = tmp_path / "export.json"
    export.write_text(json.dumps([exported_task(result)]), encoding="utf-8")
    assert main(["export", "--input", str(export), "--out", str(tmp_path / "a.tsv")]) == 0
    err = capsys.readouterr().err
    assert "1 pre-annotations left untouched" in err and "1 changed by the coder" in err and "1 coded by hand" in err


def test_latest_non_cancelled_annotation_wins():
    old = {"id": 1, "was_cancelled": False, "updated_at": "2026-11-01T00:00:00Z",
           "result": region("a", 13, 19, "SINTOMA", typed="111")}
    new = {"id": 2, "was_cancelled": False, "updated_at": "2026-11-02T00:00:00Z",
           "result": region("a", 13, 19, "SINTOMA", typed="222")}
    skipped = {"id": 3, "was_cancelled": True, "updated_at": "2026-11-03T00:00:00Z",
               "result": region("a", 13, 19, "SINTOMA", typed="333")}
    links, _, _ = export_tasks([exported_task(None, annotations=[old, skipped, new])])
    assert [l.code for l in links] == ["222"]
    assert export_tasks([exported_task(None, annotations=[skipped])])[0] == []


def test_agreement_with_the_preselected_top1():
    prediction = {"id": 5, "created_at": "2026-11-01",
                  "result": region("a", 13, 19, "SINTOMA", taxonomy=[["fiebre [13-19]", "386661006 | fiebre"]])
                  + region("b", 22, 37, "SINTOMA", taxonomy=[["dolor abdominal [22-37]", "21522001 | x"]])}
    result = (region("a", 13, 19, "SINTOMA", taxonomy=[["fiebre [13-19]", "386661006 | fiebre"]])
              + region("b", 22, 37, "SINTOMA", taxonomy=[["dolor abdominal [22-37]", "22253000 | dolor"]]))
    _, _, agreement = export_tasks([exported_task(result, predictions=[prediction])])
    assert (agreement.compared, agreement.kept_top1) == (2, 1)


def test_export_cli_writes_a_tsv_that_evaluate_reads(tmp_path, capsys):
    result = region("a", 13, 19, "SINTOMA", taxonomy=[["fiebre [13-19]", "386661006 | fiebre"]]) + \
        region("b", 22, 37, "SINTOMA")
    export = tmp_path / "export.json"
    export.write_text(json.dumps([exported_task(result)]), encoding="utf-8")
    out = tmp_path / "accepted.tsv"
    assert main(["export", "--input", str(export), "--out", str(out)]) == 0
    assert "1 region(s) reported" in capsys.readouterr().err
    [link] = read_links(out)
    assert (link.filename, link.span, link.code) == ("caso-1", "fiebre", "386661006")
    assert main(["export", "--input", str(export), "--out", str(out), "--strict"]) == 1


def test_bad_export_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{\n  oops", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"bad.json:2: not valid JSON"):
        read_export(bad)

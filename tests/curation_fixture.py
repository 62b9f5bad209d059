"""A Label Studio 1.23 full JSON export of a small curation project, written by hand (codes of the demo gazetteer):
three coders with overlap, a ground-truth mark, a cancelled annotation, a draft, a relation, a composite code,
NO_CODE, a task without text, a region without a code and a code outside the knowledge base.

The figures the tests assert were computed by hand from this table (tests/backend/test_curation.py says how).

    caso1  ana:   diabetes mellitus tipo 2 E 44054006 | fiebre S 386661006 | Dolor abdominal S 21522001
           luis:  diabetes mellitus tipo 2 E 73211009 | fiebre S 386661006 | Dolor abdominal S 22253000
           (+ a cancelled annotation by marta, a draft)
    caso2  ana:   apendicectomía laparoscópica P 6025007 | apendicitis aguda E 85189001 | náuseas S 422587007
           luis:  apendicectomía laparoscópica P 6025007 | apendicitis aguda E 85189001+9209005 (typed)
           marta: the same as ana, marked ground truth, with a relation
    caso3  ana:   Tos S 49727002 | disnea S NO_CODE (typed)      (no prediction: coded by hand)
           luis:  Tos E 49727002 | disnea S 267036007
    caso4  no text
    caso5  ana:   hipertensión E 38341003 | mareo S (no code) | síncope S 999999999 (typed; not in the knowledge base)
"""

from __future__ import annotations

import copy

from backend.labelstudio.regions import candidate_leaf, mention_node

TERMS = {"44054006": "diabetes mellitus tipo 2", "73211009": "diabetes mellitus", "386661006": "fiebre",
         "21522001": "dolor abdominal", "22253000": "dolor", "6025007": "apendicectomía laparoscópica",
         "85189001": "apendicitis aguda", "422587007": "náuseas", "49727002": "tos", "267036007": "disnea",
         "38341003": "hipertensión arterial"}
USERS = {1: "ana@example.org", 2: "luis@example.org", 3: "marta@example.org"}

TEXTS = {
    "caso1": "Paciente con diabetes mellitus tipo 2 y fiebre alta. Dolor abdominal difuso.",
    "caso2": "Se realiza apendicectomía laparoscópica por apendicitis aguda con náuseas.",
    "caso3": "Tos y disnea de esfuerzo.",
    "caso5": "Antecedente de hipertensión; refiere mareo y síncope.",
}
# span text -> label, per document (offsets found in the text)
# (coder, code, how): how = "pick" (taxonomy), "typed" (code TextArea); None code: no code given
CODINGS = {
    "caso1": {1: [("diabetes mellitus tipo 2", "ENFERMEDAD", "44054006", "pick"),
                  ("fiebre", "SINTOMA", "386661006", "pick"),
                  ("Dolor abdominal", "SINTOMA", "21522001", "pick")],
              2: [("diabetes mellitus tipo 2", "ENFERMEDAD", "73211009", "pick"),
                  ("fiebre", "SINTOMA", "386661006", "pick"),
                  ("Dolor abdominal", "SINTOMA", "22253000", "pick")]},
    "caso2": {1: [("apendicectomía laparoscópica", "PROCEDIMIENTO", "6025007", "pick"),
                  ("apendicitis aguda", "ENFERMEDAD", "85189001", "pick"),
                  ("náuseas", "SINTOMA", "422587007", "pick")],
              2: [("apendicectomía laparoscópica", "PROCEDIMIENTO", "6025007", "pick"),
                  ("apendicitis aguda", "ENFERMEDAD", "85189001+9209005", "typed")],
              3: [("apendicectomía laparoscópica", "PROCEDIMIENTO", "6025007", "pick"),
                  ("apendicitis aguda", "ENFERMEDAD", "85189001", "pick"),
                  ("náuseas", "SINTOMA", "422587007", "pick")]},
    "caso3": {1: [("Tos", "SINTOMA", "49727002", "pick"), ("disnea", "SINTOMA", "NO_CODE", "typed")],
              2: [("Tos", "ENFERMEDAD", "49727002", "pick"), ("disnea", "SINTOMA", "267036007", "pick")]},
    "caso5": {1: [("hipertensión", "ENFERMEDAD", "38341003", "pick"), ("mareo", "SINTOMA", None, "pick"),
                  ("síncope", "SINTOMA", "999999999", "typed")]},
}
# the pre-annotation: span -> (top-1 code, certainty); caso3 has none
PREDICTED = {
    "caso1": {"diabetes mellitus tipo 2": ("44054006", 0.9), "fiebre": ("386661006", 0.85),
              "Dolor abdominal": ("21522001", 0.4)},
    "caso2": {"apendicectomía laparoscópica": ("6025007", 0.95), "apendicitis aguda": ("85189001", 0.6),
              "náuseas": ("422587007", 0.3)},
    "caso5": {"hipertensión": ("38341003", 0.7)},
}
LEAD_TIME = {("caso1", 1): 30.0, ("caso1", 2): 60.0, ("caso2", 1): 45.0, ("caso2", 2): 40.0, ("caso2", 3): 90.0,
             ("caso3", 1): 40.0, ("caso3", 2): 50.0, ("caso5", 1): 20.0}
LABELS = {"diabetes mellitus tipo 2": "ENFERMEDAD"}


def _offsets(doc: str, span: str) -> tuple[int, int]:
    start = TEXTS[doc].index(span)
    return start, start + len(span)


def region_items(doc: str, span: str, label: str, code: str | None, how: str, region_id: str, origin: str,
                 predicted_code: str | None = None) -> list[dict]:
    """The result items of one coded span, as Label Studio stores them for clinlinker's labeling config."""
    start, end = _offsets(doc, span)
    value = {"start": start, "end": end, "text": span}
    items = [{"id": region_id, "from_name": "label", "to_name": "text", "type": "labels", "origin": origin,
              "value": {**value, "labels": [label]}}]
    if code is None:
        return items
    if how == "typed":
        items.append({"id": region_id, "from_name": "code", "to_name": "text", "type": "textarea", "origin": origin,
                      "value": {**value, "text": [code]}})
    else:
        leaf = candidate_leaf(code, TERMS.get(code, code))
        items.append({"id": region_id, "from_name": "snomed", "to_name": "text", "type": "taxonomy",
                      "origin": "prediction" if predicted_code == code else origin,
                      "value": {**value, "taxonomy": [[mention_node(span, start, end, label), leaf]]}})
    return items


def prediction_result(doc: str) -> tuple[list[dict], float]:
    """A prediction as clinlinker's backend makes it: the label and the pre-selected top-1 of each span, scored."""
    result = []
    for i, (span, (code, certainty)) in enumerate(PREDICTED.get(doc, {}).items()):
        label = next(c[1] for coder in CODINGS[doc].values() for c in coder if c[0] == span)
        start, end = _offsets(doc, span)
        value = {"start": start, "end": end, "text": span}
        rid = f"{doc}-p{i}"
        result.append({"id": rid, "from_name": "label", "to_name": "text", "type": "labels", "score": certainty,
                       "value": {**value, "labels": [label]}})
        result.append({"id": rid, "from_name": "snomed", "to_name": "text", "type": "taxonomy", "score": certainty,
                       "value": {**value, "taxonomy": [[mention_node(span, start, end, label),
                                                        candidate_leaf(code, TERMS.get(code, code))]]}})
    scores = [c for _, c in PREDICTED.get(doc, {}).values()]
    return result, round(sum(scores) / len(scores), 6) if scores else 0.0


def annotation_result(doc: str, coder: int) -> list[dict]:
    predicted = PREDICTED.get(doc, {})
    result = []
    for i, (span, label, code, how) in enumerate(CODINGS[doc][coder]):
        top = predicted.get(span, (None, None))[0]
        origin = "prediction" if top is not None and top == code else "prediction-changed" if top else "manual"
        rid = f"{doc}-p{list(predicted).index(span)}" if span in predicted else f"{doc}-m{coder}-{i}"
        result += region_items(doc, span, label, code, how, rid, origin, top)
    return result


def export() -> list[dict]:
    """The project's full JSON export."""
    tasks = []
    annotation_id, prediction_id = 100, 500
    for task_id, doc in enumerate(["caso1", "caso2", "caso3", "caso4", "caso5"], start=1):
        data = {"text": TEXTS[doc], "doc_id": f"{doc}.txt"} if doc in TEXTS else {"doc_id": doc}
        task = {"id": task_id, "data": data, "annotations": [], "drafts": [], "predictions": [], "project": 9}
        if doc in PREDICTED:
            prediction_id += 1
            result, score = prediction_result(doc)
            task["predictions"].append({"id": prediction_id, "model_version": "clinlinker-fixture", "score": score,
                                        "result": result, "created_at": "2026-11-20T09:00:00Z"})
        for n, coder in enumerate(CODINGS.get(doc, {})):
            annotation_id += 1
            result = annotation_result(doc, coder)
            if doc == "caso2" and coder == 3:  # marta's adjudicated annotation carries a relation
                result.append({"type": "relation", "from_id": "caso2-p0", "to_id": "caso2-p1", "direction": "right",
                               "labels": []})
            task["annotations"].append({
                "id": annotation_id, "completed_by": coder, "result": result, "was_cancelled": False,
                "ground_truth": doc == "caso2" and coder == 3, "lead_time": LEAD_TIME[(doc, coder)],
                "created_at": f"2026-11-2{1 + n}T10:00:00Z", "updated_at": f"2026-11-2{1 + n}T10:05:00Z",
                "parent_prediction": prediction_id if doc in PREDICTED else None, "task": task_id, "project": 9})
        if doc == "caso1":
            annotation_id += 1
            task["annotations"].append({"id": annotation_id, "completed_by": 3, "result": annotation_result(doc, 1),
                                        "was_cancelled": True, "ground_truth": False, "lead_time": 5.0,
                                        "created_at": "2026-11-24T10:00:00Z", "updated_at": "2026-11-24T10:00:00Z",
                                        "task": task_id, "project": 9})
            task["drafts"].append({"id": 7, "user": "marta@example.org", "result": annotation_result(doc, 2)})
        tasks.append(task)
    return copy.deepcopy(tasks)

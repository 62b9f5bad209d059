"""What candidates a span gets from the backend: its label's part of the knowledge base, no filler, and the tag
and parents beside each candidate in the picker and on /search."""

import time

import pytest

from backend.serving.app import create_app
from backend.serving.loading import load_model
from backend.serving.config import BackendConfig
from backend.labelstudio.export import export_tasks
from clinlinker.errors import ClinlinkerError
from tests.backend.conftest import task
from tests.backend.test_export import region

TEXT = "Apendicitis aguda; se realiza apendicectomía laparoscópica. Fiebre."
SPANS = [{"start": 0, "end": 17, "label": "ENFERMEDAD"}, {"start": 30, "end": 58, "label": "PROCEDIMIENTO"},
         {"start": 60, "end": 66, "label": "SINTOMA"}]
ALLOWED = {"ENFERMEDAD": {"trastorno", "hallazgo"}, "SINTOMA": {"trastorno", "hallazgo"},
           "PROCEDIMIENTO": {"procedimiento"}}


def tree(client, doc="d1"):
    return {node["value"]: node for node in client.get(f"/taxonomy?doc={doc}").get_json()}


def test_each_span_is_served_from_its_labels_part_of_the_kb(client, app):
    kb = app.extensions["clinlinker"].model.linker.kb
    reply = client.post("/predict", json={"tasks": [task(text=TEXT, mentions=SPANS)]})
    assert reply.status_code == 200
    nodes = tree(client)
    for span in SPANS:
        node = nodes[f"{TEXT[span['start']:span['end']]} [{span['start']}-{span['end']}] · {span['label']}"]
        codes = [leaf["value"].split(" | ")[0] for leaf in node["children"][:-1]]
        assert codes and all(set(kb[c].semantic_tags) <= ALLOWED[span["label"]] for c in codes), span
        assert node["hint"].startswith(span["label"])
    assert nodes["Apendicitis aguda [0-17] · ENFERMEDAD"]["children"][0]["value"].startswith("85189001 | apendicitis aguda")


def test_picker_leaves_show_tag_and_parent_and_the_export_still_reads_the_code(client):
    reply = client.post("/predict", json={"tasks": [task(text=TEXT, mentions=SPANS)]}).get_json()
    top = [i for i in reply["results"][0]["result"] if i["type"] == "taxonomy"][1]["value"]["taxonomy"][0]
    assert top == ["apendicectomía laparoscópica [30-58] · PROCEDIMIENTO",
                   "6025007 | apendicectomía laparoscópica · procedimiento · ⊂ 80146002 apendicectomía"]
    leaves = tree(client)[top[0]]["children"]
    assert leaves[0]["value"] == top[1]
    # the parent is in the list too: the coder sees which of the two is the more specific
    assert any(leaf["value"].startswith("80146002 | apendicectomía · procedimiento · ⊂ ") for leaf in leaves)
    # a coder ticking such a leaf exports its code
    done = {"id": 1, "data": {"text": TEXT, "doc_id": "d1"}, "annotations": [{"id": 5, "result": region(
        "r", 30, 58, "PROCEDIMIENTO", taxonomy=[top], text=TEXT[30:58])}]}
    links, problems, _ = export_tasks([done])
    assert not problems and [link.code for link in links] == ["6025007"]


def test_a_short_list_says_why_and_hierarchy_neighbours_say_what_they_are(client):
    client.post("/predict", json={"tasks": [task(text=TEXT, mentions=SPANS)]})
    node = tree(client)["Fiebre [60-66] · SINTOMA"]
    assert len(node["children"]) - 1 < 25 and "candidatos con evidencia (de 25)" in node["hint"]
    hints = [leaf["hint"] for leaf in node["children"][:-1]]
    assert "parecido de letras" in hints[0]
    assert any("por jerarquía" in h for h in hints)
    assert all("score 0.000" not in h or "por jerarquía" in h for h in hints)  # no concept without evidence


def test_search_by_label_shows_the_matched_synonym_and_parents(client):
    everything = client.get("/search?q=apendicitis&k=25").get_json()["candidates"]
    procedures = client.get("/search?q=apendicitis&k=25&label=PROCEDIMIENTO").get_json()
    assert {c["semantic_tag"] for c in everything} > {"procedimiento"}
    assert procedures["label"] == "PROCEDIMIENTO" and {c["semantic_tag"] for c in procedures["candidates"]} == \
        {"procedimiento"}
    page = client.get("/search?q=extirpación laparoscópica del apéndice&label=PROCEDIMIENTO",
                      headers={"Accept": "text/html"}).get_data(as_text=True)
    assert "«extirpación laparoscópica del apéndice»" in page  # the synonym that matched
    assert "⊂ <code>80146002</code> apendicectomía" in page
    assert "<option value=\"PROCEDIMIENTO\" selected>" in page and "Otro código SNOMED" not in page
    bad = client.get("/search?q=fiebre&label=NOPE")
    assert bad.status_code == 400 and "label" in bad.get_json()["error"]


def test_routing_is_part_of_the_model_version_and_health(tmp_path):
    def version(routing):
        config = BackendConfig(data_dir=str(tmp_path / routing), worker=False, routing=routing)
        model, info = load_model(config)
        health = create_app(config, model, info).test_client().get("/health").get_json()
        return health["model_version"], health["routing"]

    (routed, routing), (whole, nothing) = version("default"), version("none")
    assert routed != whole
    assert routing["concepts_per_label"]["PROCEDIMIENTO"] < 62 and nothing["concepts_per_label"] == {}


def test_a_bad_routing_file_stops_the_start_with_where(tmp_path):
    bad = tmp_path / "routing.toml"
    bad.write_text("[labels.SINTOMA]\ntags = 'hallazgo'\n", encoding="utf-8")
    with pytest.raises(ClinlinkerError, match="routing.toml: labels.SINTOMA.tags must be a list"):
        load_model(BackendConfig(data_dir=str(tmp_path / "var"), worker=False, routing=str(bad)))


def test_the_candidate_list_is_cacheable_and_revalidated(client):
    client.post("/predict", json={"tasks": [task(text=TEXT, mentions=SPANS[:1])]})
    first = client.get("/taxonomy?doc=d1")
    etag = first.headers["ETag"]
    assert first.status_code == 200 and "max-age=" in first.headers["Cache-Control"]
    again = client.get("/taxonomy?doc=d1", headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.get_data()
    client.post("/predict", json={"tasks": [task(text=TEXT, mentions=SPANS)]})  # more mentions: a new list
    changed = client.get("/taxonomy?doc=d1", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag and len(changed.get_json()) == 3 + 1


def test_an_interactive_call_with_nothing_to_code_answers_at_once(client, app):
    model = app.extensions["clinlinker"].model
    calls = []
    model.sync_learned = lambda *a, **k: calls.append("sync")  # the work a call with nothing to code must skip
    coded = [{"id": "r", "type": "labels", "from_name": "label", "to_name": "text",
              "value": {"start": 0, "end": 17, "text": TEXT[:17], "labels": ["ENFERMEDAD"]}},
             {"id": "r", "type": "taxonomy", "from_name": "snomed", "to_name": "text",
              "value": {"start": 0, "end": 17, "text": TEXT[:17], "taxonomy": [["x", "85189001 | y"]]}}]
    reply = client.post("/predict", json={"tasks": [task(text=TEXT, mentions=SPANS)],
                                          "params": {"context": {"result": coded}}})
    assert reply.status_code == 200 and reply.get_json()["results"][0]["result"] == [] and calls == []


def test_mentions_drawn_after_the_task_opened_come_through_the_lazy_node(client):
    client.post("/predict", json={"tasks": [task(text=TEXT, mentions=SPANS[:2])]})
    opened = client.get("/taxonomy?doc=d1").get_json()  # what the browser loaded when the task opened
    later = opened[-1]
    assert [n["value"].split(" [")[0] for n in opened[:-1]] == ["Apendicitis aguda", "apendicectomía laparoscópica"]
    assert later["isLeaf"] is False and "children" not in later
    assert client.get("/taxonomy", query_string={"doc": "d1", "path": later["value"]}).get_json()[:-1] == []
    time.sleep(0.01)
    # the coder draws "Fiebre": Label Studio's interactive call
    drawn = [{"id": "new", "type": "labels", "from_name": "label", "to_name": "text",
              "value": {"start": 60, "end": 66, "text": "Fiebre", "labels": ["SINTOMA"]}, "origin": "manual"}]
    assert client.post("/predict", json={"tasks": [task(text=TEXT, mentions=None)],
                                         "params": {"context": {"result": drawn}}}).status_code == 200
    # opening the lazy node (Label Studio sends its value as `path`) lists the new mention with its candidates
    fresh = client.get("/taxonomy", query_string={"doc": "d1", "path": later["value"]}).get_json()
    [mention, again] = fresh
    assert mention["value"] == "Fiebre [60-66] · SINTOMA" and mention["children"][0]["value"].startswith("386661006 | fiebre")
    assert again["isLeaf"] is False and again["value"] != later["value"]  # for the mentions drawn after this one
    assert client.get("/taxonomy", query_string={"doc": "d1", "path": again["value"]}).get_json()[:-1] == []
    bad = client.get("/taxonomy", query_string={"doc": "d1", "path": "Fiebre [60-66] · SINTOMA"})
    assert bad.status_code == 400 and "path" in bad.get_json()["error"]
    # a candidate ticked there is exported for its own mention
    leaf = mention["children"][1]["value"]
    done = {"id": 1, "data": {"text": TEXT, "doc_id": "d1"}, "annotations": [{"id": 5, "result": region(
        "new", 60, 66, "SINTOMA", taxonomy=[[later["value"], mention["value"], leaf]], text="Fiebre")}]}
    links, problems, _ = export_tasks([done])
    assert not problems and [link.code for link in links] == [leaf.split(" | ")[0]]


def test_train_on_the_lexical_engine_says_it_cannot(client):
    reply = client.post("/train", json={"project": 1})
    assert reply.status_code == 409
    assert "no model to fine-tune" in reply.get_json()["error"]


def test_ls_project_puts_the_picker_token_in_the_labeling_config():
    import xml.etree.ElementTree as ET

    from backend.labelstudio.project import label_config

    root = ET.fromstring(label_config("all", "https://backend.example:9090", picker_token="s3cr t"))
    assert root.find(".//Taxonomy").get("apiUrl") == "https://backend.example:9090/taxonomy?doc=$doc_id&token=s3cr%20t"
    assert 'href="https://backend.example:9090/search?token=s3cr%20t"' in root.find(".//HyperText").get("value")
    plain = ET.fromstring(label_config("all", "https://backend.example:9090"))
    assert plain.find(".//Taxonomy").get("apiUrl") == "https://backend.example:9090/taxonomy?doc=$doc_id"


def test_the_search_page_keeps_the_token_on_its_own_searches(tmp_path):
    config = BackendConfig(data_dir=str(tmp_path / "var"), worker=False, auth_user="u", auth_password="p",
                           picker_token="t0k")
    model, info = load_model(config)
    client = create_app(config, model, info).test_client()
    assert client.get("/search?q=tos", headers={"Accept": "text/html"}).status_code == 401
    page = client.get("/search?q=tos&token=t0k", headers={"Accept": "text/html"}).get_data(as_text=True)
    assert '<input type=hidden name=token value="t0k">' in page and "49727002" in page


def test_a_dotted_acronym_finds_its_concept_and_the_hint_says_how(client):
    text = "Se solicita T.A.C. urgente."
    spans = [{"start": 12, "end": 18, "label": "PROCEDIMIENTO"}]
    health = client.get("/health").get_json()
    assert health["serving"]["abbreviations"] is True and health["serving"]["code_prior"] is False
    reply = client.post("/predict", json={"tasks": [task(text=text, mentions=spans)]})
    assert reply.status_code == 200
    leaves = tree(client)["T.A.C. [12-18] · PROCEDIMIENTO"]["children"][:-1]
    assert leaves[0]["value"].startswith("77477000 | tomografía computarizada")
    assert "(TAC = " in leaves[0]["hint"]  # the long form that found it, e.g. "TAC = escáner"


def test_an_acronym_the_case_defines_is_read_as_the_case_defines_it(client):
    text = "Registro electrocardiográfico (RE) basal normal. Tras el esfuerzo se repite el RE."
    at = text.rindex("RE")
    spans = [{"start": at, "end": at + 2, "label": "PROCEDIMIENTO"}]
    reply = client.post("/predict", json={"tasks": [task(text=text, mentions=spans, doc="d-re")]})
    assert reply.status_code == 200
    leaves = tree(client, "d-re")[f"RE [{at}-{at + 2}] · PROCEDIMIENTO"]["children"][:-1]
    assert leaves[0]["value"].startswith("29303009 | electrocardiograma")
    assert "(RE = Registro electrocardiográfico)" in leaves[0]["hint"]
    # the same span in a case that does not define it: nothing says what RE is
    other = "Tras el esfuerzo se repite el RE."
    spans = [{"start": other.index("RE"), "end": other.index("RE") + 2, "label": "PROCEDIMIENTO"}]
    client.post("/predict", json={"tasks": [task(text=other, mentions=spans, doc="d-other")]})
    leaves = tree(client, "d-other")[f"RE [{spans[0]['start']}-{spans[0]['end']}] · PROCEDIMIENTO"]["children"][:-1]
    assert "RE = " not in " ".join(leaf["hint"] for leaf in leaves)

"""End to end against a real Label Studio 1.23.2: project from our config, tasks, predictions through
Label Studio, an annotation that picks a non-top-1 candidate, the webhook, export, conversion, evaluation."""

import json
import time

import pytest

from clinlinker.cli import main
from clinlinker.links import read_links
from tests.e2e.conftest import CORPUS, ROOT, TOKEN

pytestmark = pytest.mark.e2e


def tasks_of(api, project):
    return api("GET", f"/api/tasks?project={project}&fields=all&page_size=1000")["tasks"]


def regions(result):
    by_id = {}
    for item in result:
        by_id.setdefault(item["id"], {})[item["type"]] = item
    return by_id


@pytest.fixture(scope="module")
def project(label_studio, backend, capsysbinary_module=None):
    argv = ["ls-project", "--url", label_studio["url"], "--token", TOKEN, "--backend", backend["url"],
            "--links", str(CORPUS / "links.tsv"), "--texts", str(CORPUS / "texts"), "--title", "e2e"]
    assert main(argv) == 0
    projects = label_studio["api"]("GET", "/api/projects?page_size=100")["results"]
    return max(p["id"] for p in projects if p["title"] == "e2e")


def test_our_labeling_configs_are_accepted_by_label_studio(label_studio):
    api = label_studio["api"]
    for path in sorted((ROOT / "label_studio_config").glob("*.xml")):
        created = api("POST", "/api/projects", {"title": f"config {path.stem}",
                                                "label_config": path.read_text(encoding="utf-8")})
        assert created["id"] and "Taxonomy" in created["label_config"], path.name


def test_ls_project_imports_tasks_with_predictions_and_connects_the_backend(label_studio, backend, project):
    api = label_studio["api"]
    tasks = tasks_of(api, project)
    assert len(tasks) == 3
    for task in tasks:
        [prediction] = task["predictions"]
        assert prediction["model_version"].startswith("clinlinker-lexical-")
        spans = [r for r in regions(prediction["result"]).values() if "labels" in r]
        assert len(spans) == len(task["data"]["mentions"])
        assert all("taxonomy" in r for r in spans)
    [ml] = api("GET", f"/api/ml?project={project}")
    assert ml["url"] == backend["url"] and ml["is_interactive"] is True
    hooks = api("GET", f"/api/webhooks?project={project}")
    assert any(h["url"] == backend["url"] + "/webhook" for h in hooks)
    # the project's picker lists its own candidates: the project id is in the labeling config's URL
    config = api("GET", f"/api/projects/{project}")["label_config"]
    assert f"/taxonomy?doc=$doc_id&amp;project={project}" in config or \
        f"/taxonomy?doc=$doc_id&project={project}" in config


def test_doctor_checks_the_live_project(label_studio, backend, project, tmp_path, capsys):
    argv = ["doctor", "--data-dir", str(tmp_path / "var"), "--ls-url", label_studio["url"], "--ls-token", TOKEN,
            "--project", str(project), "--backend-url", backend["url"]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for check in ("label studio", "labeling config", "webhook", "ml backend"):
        assert f"ok    {check}" in out, out
    assert main([*argv[:-4], "--ls-token", "wrong-token", "--project", str(project)]) == 1
    assert "FAIL  label studio" in capsys.readouterr().out


def test_retrieve_predictions_through_label_studio(label_studio, backend, project):
    api = label_studio["api"]
    text = (CORPUS / "texts" / "caso-02.txt").read_text(encoding="utf-8")
    api("POST", f"/api/projects/{project}/import", [{"text": text, "doc_id": f"copia-{i}", "mentions": [
        {"start": text.index("fiebre"), "end": text.index("fiebre") + 6, "label": "SINTOMA"},
        {"start": text.index("vómitos"), "end": text.index("vómitos") + 7, "label": "SINTOMA"}]} for i in range(40)])
    started = time.perf_counter()
    api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
        {"selectedItems": {"all": True, "excluded": []}})
    elapsed = time.perf_counter() - started
    copies = [t for t in tasks_of(api, project) if t["data"]["doc_id"].startswith("copia-")]
    assert len(copies) == 40
    for task in copies:
        [prediction] = task["predictions"]
        spans = regions(prediction["result"])
        assert len(spans) == 2
        picked = [r["taxonomy"]["value"]["taxonomy"][0][1] for r in spans.values()]
        assert picked[0].startswith("386661006 |") and picked[1].startswith("422400008 |")
    # the picker lists up to 25 distinct candidates with evidence (+ NO_CODE) for each mention of that document
    tree = backend["api"]("GET", "/taxonomy?doc=copia-0")
    assert len(tree) == 2 + 1 and "children" not in tree[-1]  # + the lazy node of mentions drawn later
    for node in tree[:-1]:
        codes = [leaf["value"].split(" | ")[0] for leaf in node["children"]]
        assert 5 <= len(codes) - 1 <= 25 and len(set(codes[:-1])) == len(codes) - 1 and codes[-1] == "NO_CODE"
    assert elapsed < 60


def test_annotation_with_a_non_top1_candidate_is_exported_and_evaluated(label_studio, backend, project,
                                                                        lexical_index_dir, tmp_path, capsys):
    api = label_studio["api"]
    task = next(t for t in tasks_of(api, project) if t["data"]["doc_id"] == "caso-02")
    prediction = task["predictions"][0]["result"]
    span = next(r for r in regions(prediction).values() if r["labels"]["value"]["text"] == "apendicitis aguda")
    node = span["taxonomy"]["value"]["taxonomy"][0][0]
    tree = {n["value"]: n for n in backend["api"]("GET", "/taxonomy?doc=caso-02")}
    third = tree[node]["children"][2]["value"]  # the coder picks the third candidate
    value = {k: span["labels"]["value"][k] for k in ("start", "end", "text")}
    result = [dict(span["labels"], origin="manual"),
              {"id": span["labels"]["id"], "from_name": "snomed", "to_name": "text", "type": "taxonomy",
               "value": {**value, "taxonomy": [[node, third]]}},
              {"id": span["labels"]["id"], "from_name": "semantic_rel", "to_name": "text", "type": "choices",
               "value": {**value, "choices": ["NARROW"]}}]
    before = backend["api"]("GET", "/health")["accepted_links"]
    api("POST", f"/api/tasks/{task['id']}/annotations", {"result": result, "was_cancelled": False})

    # the webhook reached the backend and its worker kept the accepted link
    for _ in range(100):
        if backend["api"]("GET", "/health")["accepted_links"] > before:
            break
        time.sleep(0.1)
    assert backend["api"]("GET", "/health")["accepted_links"] == before + 1

    out = tmp_path / "accepted.tsv"
    assert main(["export", "--url", label_studio["url"], "--token", TOKEN, "--project", str(project),
                 "--out", str(out)]) == 0
    assert "kept the pre-selected top-1 in 0 of 1" in capsys.readouterr().err
    [link] = read_links(out)
    assert (link.filename, link.label, link.start, link.end, link.span) == (
        "caso-02", "ENFERMEDAD", value["start"], value["end"], "apendicitis aguda")
    assert link.code == third.split(" | ")[0] and link.semantic_rel == "NARROW"

    report = tmp_path / "report.json"
    assert main(["evaluate", "--index", str(lexical_index_dir), "--gold", str(out), "--json", str(report)]) == 0
    accuracy = json.loads(report.read_text())["cleaned"]
    assert (accuracy["hits@1"], accuracy["hits@5"]) == (0, 1)  # agreement: the coder did not keep the top-1

    # POST /sync: the backend pulls the project from Label Studio with the address and token /setup gave it
    report = backend["api"]("POST", "/sync", {"project": project})
    assert report["annotations"] >= 1 and report["removed"] == 0 and report["refused"] == []
    assert report["added"] == 0 and report["changed"] == 0  # the webhook had already brought everything

    # the backend lost its store (a new data directory): a resync from Label Studio brings the link back
    fresh = tmp_path / "fresh-var"
    assert main(["sync", "--url", label_studio["url"], "--token", TOKEN, "--project", str(project),
                 "--data-dir", str(fresh)]) == 0
    synced = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert synced["added"] >= 1 and synced["removed"] == 0 and synced["refused"] == 0
    from backend.records.store import Store

    [again] = [l for l in Store(None, fresh).accepted_links() if l["span"] == "apendicitis aguda"]
    assert again["code"] == link.code and again["project"] == str(project)
    # a second sync finds nothing to change
    assert main(["sync", "--url", label_studio["url"], "--token", TOKEN, "--project", str(project),
                 "--data-dir", str(fresh)]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["added"] == 0 and second["changed"] == 0 and second["unchanged"] == synced["annotations"]


def test_a_personal_access_token_made_in_label_studio_is_exchanged_and_refreshed(label_studio):
    """A personal access token created in the real Label Studio (a JWT refresh token): the client exchanges it for an
    access token, and when Label Studio refuses that access token (as it does once it expires) exchanges it again,
    once, and the call goes through."""
    from backend.labelstudio.api import LabelStudio, LabelStudioError

    created = label_studio["api"]("POST", "/api/token/", {})
    personal = created.get("token") or created.get("refresh")
    assert personal and personal.count(".") == 2, created  # a JWT, not a legacy token
    client = LabelStudio(label_studio["url"], personal)
    user = client.whoami()
    assert user["username"] or user["email"]
    first = client._access
    assert first and first != personal  # what went on the wire was an access token, exchanged for the personal one
    client._access = first[:-8] + "AAAAAAAA"  # a signature Label Studio refuses (401), as it does an expired token
    assert client.whoami()["id"] == user["id"]  # exchanged again, once
    assert client._access not in (first[:-8] + "AAAAAAAA", None)
    revoked = label_studio["api"]("POST", "/api/token/blacklist/", {"refresh": personal})
    assert revoked is None
    client._access = None
    with pytest.raises(LabelStudioError) as refused:  # a revoked token is said so, not retried forever
        client.whoami()
    assert refused.value.status == 401

"""Curation against a real Label Studio 1.23.2: two users code the same tasks (one keeps the pre-selected codes,
the other changes some), and `clinlinker curate --url` computes from the live project the figures the fixture
export gives (tests/curation_fixture.py, hand-computed in tests/backend/test_curation.py); the review tab it adds
shows exactly the tasks in disagreement; the report opens in a real browser."""

import json

import pytest

from backend.labelstudio.curation import read_curation
from backend.labelstudio.project import label_config
from clinlinker.evaluate.agreement import agreement
from clinlinker.cli import main
from tests import curation_fixture as fx
from tests.e2e.conftest import TOKEN, USER
from tests.e2e.test_browser import browser  # noqa: F401 - the module's Chromium

pytestmark = pytest.mark.e2e

DOCS = ["caso1", "caso2", "caso3"]  # the tasks ana and luis both coded


def test_two_coders_in_label_studio_give_the_fixture_figures(label_studio, browser, tmp_path, capsys):  # noqa: F811
    api = label_studio["api"]
    xml = label_config("all", "http://localhost:9")  # the picker's backend is not needed to code through the API
    project = api("POST", "/api/projects", {"title": "curation e2e", "label_config": xml})["id"]
    tasks = []
    for doc in DOCS:
        task = {"data": {"text": fx.TEXTS[doc], "doc_id": f"{doc}.txt"}}
        if doc in fx.PREDICTED:
            result, score = fx.prediction_result(doc)
            task["predictions"] = [{"result": result, "score": score, "model_version": "clinlinker-fixture"}]
        tasks.append(task)
    api("POST", f"/api/projects/{project}/import", tasks)
    luis = api("POST", "/api/users/", {"email": "luis@example.org", "username": "luis@example.org"})["id"]
    live = {t["data"]["doc_id"][:-4]: t for t in api("GET", f"/api/tasks?project={project}&fields=all")["tasks"]}
    for doc in DOCS:
        task = live[doc]
        for coder, completed_by in ((1, None), (2, luis)):  # ana is Label Studio's admin (the token's user)
            body = {"result": fx.annotation_result(doc, coder), "lead_time": fx.LEAD_TIME[(doc, coder)],
                    "was_cancelled": False}
            if task["predictions"]:
                body["parent_prediction"] = task["predictions"][0]["id"] if isinstance(
                    task["predictions"][0], dict) else task["predictions"][0]
            if completed_by:
                body["completed_by"] = completed_by
            api("POST", f"/api/tasks/{task['id']}/annotations", body)

    out = tmp_path / "figures.json"
    report = tmp_path / "report.html"
    assert main(["curate", "--url", label_studio["url"], "--token", TOKEN, "--project", str(project),
                 "--json", str(out), "--report", str(report), "--review-tab"]) == 0
    err = capsys.readouterr().err
    assert "6 annotations of 3 tasks by 2 coder(s); 0 problem(s)" in err and "review tab with 3 task(s)" in err
    figures = json.loads(out.read_text(encoding="utf-8"))

    # the same figures from the fixture export, ana and luis on the same three documents
    expected_curation = read_curation(fx.export(), users=fx.USERS)
    coded = [c for c in expected_curation.coded() if c.doc in DOCS and c.coder != fx.USERS[3]]
    expected = agreement(coded)
    [pair] = figures["agreement"]["pairs"]
    assert (pair["a"], pair["b"]) == (USER, "luis@example.org")
    assert {k: v for k, v in pair.items() if k not in ("a", "b")} == {
        k: v for k, v in expected["pairs"][0].items() if k not in ("a", "b")}
    assert pair["span_f1"] == pytest.approx(14 / 15, abs=1e-6) and pair["code_kappa"] == pytest.approx(10 / 34, abs=1e-6)
    assert len(figures["agreement"]["disagreements"]) == len(expected["disagreements"]) == 6
    effect = figures["assistant"]["by_coder"]
    assert effect[USER] == {"spans": 8, "top-1": 6, "not compared": 2}  # ana kept every pre-selected code
    assert effect["luis@example.org"] == {"spans": 7, "top-1": 2, "not top-1": 3, "not compared": 2}

    # the review tab shows exactly the three tasks in disagreement
    views = [v for v in api("GET", f"/api/dm/views?project={project}") if v["data"]["title"].startswith("clinlinker")]
    assert len(views) == 1
    shown = api("GET", f"/api/tasks?project={project}&view={views[0]['id']}")["tasks"]
    assert sorted(t["id"] for t in shown) == sorted(live[d]["id"] for d in DOCS)

    # the report, opened in a real browser: its tables and plots render
    page = browser.new_page()
    try:
        page.goto(report.as_uri())
        assert page.title() == f"Curation report: project {project}"
        assert page.locator("table").count() >= 8
        images = page.locator("img")
        assert images.count() >= 3
        assert all(page.evaluate("(i) => i.naturalWidth > 100", images.nth(i).element_handle())
                   for i in range(images.count()))
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    finally:
        page.close()

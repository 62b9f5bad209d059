"""What a coder sees: a real Chromium opens a task, selects a span and opens its candidate list."""

import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD, USER
from tests.e2e.test_label_studio import project, tasks_of  # noqa: F401 - the shared module fixture

CHROMIUM = os.environ.get("CLINLINKER_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not Path(CHROMIUM).exists() or shutil.which("playwright") is None and not _has_playwright():
        message = f"Chromium ({CHROMIUM}) or Playwright's Python package missing (.ci/run installs both)"
        if os.environ.get("CLINLINKER_REQUIRE_E2E") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, args=FLAGS,
                                                       headless=True, viewport={"width": 1500, "height": 1000})
        yield context
        context.close()


def _has_playwright() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return True


def test_coder_opens_the_candidate_list_of_a_span(label_studio, backend, project, browser, tmp_path):  # noqa: F811
    task = next(t for t in tasks_of(label_studio["api"], project) if t["data"]["doc_id"] == "caso-02")
    page = browser.new_page()
    picker_requests = []
    page.on("request", lambda r: picker_requests.append(r.url) if "/taxonomy" in r.url else None)
    page.goto(label_studio["url"] + "/user/login")
    page.fill("input[name=email]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    page.goto(f"{label_studio['url']}/projects/{project}/data?tab=1&task={task['id']}")
    page.locator(".htx-highlight", has_text="apendicitis aguda").first.click(timeout=60_000)

    # the picker: the pre-selected top-1 under this mention, shown as "mention / code | preferred term"
    selected = page.locator(".ant-select-selection-item", has_text="apendicitis aguda [").first
    selected.wait_for(timeout=30_000)
    assert "85189001 | apendicitis aguda" in selected.inner_text()
    selected.click()
    node = page.locator(".ant-select-tree-treenode", has_text="apendicitis aguda [").first
    node.locator(".ant-select-tree-switcher").click()
    page.wait_for_timeout(500)
    leaves = page.locator(".ant-select-tree-list-holder .ant-select-tree-treenode")
    texts = [leaves.nth(i).inner_text() for i in range(leaves.count())]
    assert any(t.startswith("85189001 | apendicitis aguda") for t in texts)
    # beside each code its semantic tag and parent: the coder sees which candidate is the more specific
    assert "85189001 | apendicitis aguda · trastorno · ⊂ 74400008 apendicitis" in texts
    assert any(t.startswith("74400008 | apendicitis · trastorno") for t in texts)
    # an ENFERMEDAD span is served from disorders and findings: no procedure in its list
    assert not [t for t in texts if "procedimiento" in t]
    assert all(url.startswith(backend["url"] + "/taxonomy?doc=caso-02") for url in picker_requests)
    assert picker_requests, "the browser never asked the backend for the candidate list"

    # the whole-KB search, next to the code box (HyperText may render in its own frame)
    links = [frame.locator("a", has_text="Buscar en todo el catálogo") for frame in page.frames]
    hrefs = [link.first.get_attribute("href") for link in links if link.count()]
    assert hrefs == [backend["url"] + "/search"]

    shot = Path(os.environ.get("CLINLINKER_SCREENSHOT", tmp_path / "labeling.png"))
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

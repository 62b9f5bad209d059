"""The house by stage: what docs/architecture.md promises of the layout holds in the code."""

import importlib.util
import re

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("architecture", ROOT / "docs" / "architecture.py")
architecture = importlib.util.module_from_spec(spec)
spec.loader.exec_module(architecture)


def test_no_module_imports_itself_back_through_others():
    assert architecture.cycles(architecture.graph()) == []


def test_imports_point_down_the_stages_and_the_library_never_imports_the_adapter():
    assert architecture.upward(architecture.graph()) == []


def test_the_rules_can_fail():
    edges = {"clinlinker.kb.gazetteer": {"clinlinker.search.index", "backend.records.store"},
             "clinlinker.search.index": {"clinlinker.kb.gazetteer"}}
    assert architecture.cycles(edges) == [["clinlinker.kb.gazetteer", "clinlinker.search.index"]]
    assert len(architecture.upward(edges)) == 2
    backend = {"backend.records.store": {"backend.serving.model"}, "backend.serving.model": {"backend.records.store"},
               "backend.loose": set()}
    assert architecture.upward(backend) == [
        "backend.loose: a backend/ module outside its packages (" + ", ".join(architecture.BACKEND) + ")",
        "backend.records.store -> backend.serving.model (backend.records is below backend.serving)"]


def test_the_committed_picture_is_the_one_the_code_draws():
    text = architecture.DOC.read_text(encoding="utf-8")
    drawn = architecture.picture(architecture.graph())
    assert f"{architecture.BEGIN}\n{drawn}\n{architecture.END}" in text, "run python docs/architecture.py"


def test_every_source_file_is_short_or_says_why():
    for path in [*(ROOT / "clinlinker").rglob("*.py"), *(ROOT / "backend").rglob("*.py")]:
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) <= 600, f"{path.relative_to(ROOT)}: {len(lines)} lines"
        if len(lines) > 500:
            opening = "\n".join(lines[:30]).lower()
            assert "one file" in opening, f"{path.relative_to(ROOT)}: {len(lines)} lines and no reason said"


def test_the_library_is_packages_by_stage_each_saying_what_it_owns():
    stages = [s.split(".", 1)[1] for s in architecture.STAGES if "." in s]
    assert len(stages) >= 4
    for name in stages:
        init = ROOT / "clinlinker" / name / "__init__.py"
        assert init.is_file(), name
        assert re.match(r'"""\S', init.read_text(encoding="utf-8")), f"{name}/__init__.py says nothing"


def test_the_architecture_page_names_only_functions_that_exist():
    text = architecture.DOC.read_text(encoding="utf-8")
    for path, name in re.findall(r"`((?:clinlinker|backend)/[\w/]+\.py)` `(?:\w+\.)?(\w+)`", text):
        assert re.search(rf"def {name}\b|class {name}\b", (ROOT / path).read_text(encoding="utf-8")), (path, name)


def test_the_backend_is_packages_by_role_each_saying_what_it_owns():
    assert [p.name for p in (ROOT / "backend").glob("*.py")] == ["__init__.py"]
    for layer in architecture.BACKEND:
        init = ROOT / layer.replace(".", "/") / "__init__.py"
        assert init.is_file(), layer
        assert re.match(r'"""\S', init.read_text(encoding="utf-8")), f"{layer}/__init__.py says nothing"

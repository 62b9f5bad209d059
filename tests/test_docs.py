"""The docs say what the code does: the reference is generated from it, every setting the code reads is in it, and
the project speaks of the product, never of the sessions or issue numbers it was built in."""

import importlib.util
import re
import subprocess

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("reference", ROOT / "docs" / "reference.py")
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)


def test_the_reference_is_what_the_code_says():
    assert reference.render() == (ROOT / "docs" / "reference.md").read_text(encoding="utf-8"), \
        "run python docs/reference.py"


def test_every_setting_the_code_reads_is_in_the_reference():
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    code = "\n".join(p.read_text(encoding="utf-8") for folder in ("clinlinker", "backend")
                     for p in (ROOT / folder).rglob("*.py"))
    read = set(re.findall(r'"((?:CLINLINKER|HF_HUB)_[A-Z_]+|REDIS_URL)"', code))
    documented = set(re.findall(r"(?:CLINLINKER|HF_HUB)_[A-Z_]+|REDIS_URL", text))
    # a row may name a family: `CLINLINKER_HOST / _PORT / _WORKERS / _THREADS`
    for family in re.findall(r"`(CLINLINKER_[A-Z]+)((?: / _[A-Z_]+)+)`", text):
        documented |= {"CLINLINKER" + suffix.strip() for suffix in family[1].split("/") if suffix.strip()}
    assert read <= documented, sorted(read - documented)


def test_the_reference_documents_every_command_the_cli_has():
    import sys

    out = subprocess.run([sys.executable, "-m", "clinlinker.cli", "--help"], cwd=ROOT, capture_output=True,
                         text=True).stdout
    documented = set(re.findall(r"^### clinlinker (\S+)$", (ROOT / "docs" / "reference.md").read_text(), re.M))
    listed = set(re.findall(r"^    ([a-z][a-z-]+)\s", out, re.M))  # `clinlinker --help` lists one per line
    assert listed and listed == documented


def test_the_project_names_no_session_and_no_issue_number():
    """Code, docs, bench and tests speak of the product: what a work session or an issue number was means nothing to
    a user (git keeps the history)."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    pattern = re.compile(r"\b(?:issues?|sessions?) #?\d+|\b(?:this|last|previous|earlier|a later) session\b"
                         r"|\bissue-\d+", re.I)
    found = []
    for name in listed:
        path = ROOT / name
        if path.suffix in (".png", ".jpg", ".bin", ".safetensors") or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        found += [f"{name}:{i}: {m.group(0)}" for i, line in enumerate(text.splitlines(), 1)
                  for m in pattern.finditer(line)]
    assert not found, found[:20]

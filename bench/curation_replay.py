"""A curation project replayed from a shared-task corpus, and its report (docs/curation.md).

Builds a Label Studio full JSON export of N documents of a training split, each pre-annotated by clinlinker (the
top-1 of a lexical index of the given gazetteer and its certainty, as the backend sends them) and coded by two
simulated coders:

- coder A gives the corpus' gold code of every span (what a careful coder does);
- coder B keeps the pre-selected top-1 when its certainty is at least --trust (automation bias, on purpose), else
  gives the gold code, and misses --miss of the spans;
- a share (--adjudicated) of the documents carries coder A's annotation as Label Studio's ground truth.

Then runs `clinlinker curate` on it (report, figures) and, with --screenshot, opens the report in Chromium and saves
the top of its agreement and assistant sections (aggregate figures only: the corpus' spans and codes stay out of the
repository). The coders are simulated and no coding time is invented: the report's time table stays empty.

    python bench/curation_replay.py --corpus ../shared/data/corpora/symptemist_train.tsv \\
        --gazetteer ../shared/data/gazetteers/snomed_es_public.tsv --docs 80 --out /tmp/replay --screenshot docs
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.labelstudio.regions import candidate_leaf, mention_node  # noqa: E402
from clinlinker.search.candidates import certainty  # noqa: E402
from clinlinker.links import read_links  # noqa: E402

CODER_A, CODER_B = "coder-a@replay", "coder-b@replay"


def items(rid, link, code, term, origin, score=None):
    value = {"start": link.start, "end": link.end, "text": link.span}
    label = {"id": rid, "from_name": "label", "to_name": "text", "type": "labels", "origin": origin,
             "value": {**value, "labels": [link.label]}}
    pick = {"id": rid, "from_name": "snomed", "to_name": "text", "type": "taxonomy", "origin": origin,
            "value": {**value, "taxonomy": [[mention_node(link.span, link.start, link.end, link.label),
                                             candidate_leaf(code, term)]]}}
    if score is not None:
        label["score"] = pick["score"] = score
    return [label, pick]


def build_export(links, texts: Path, linker, *, docs: int, trust: float, miss: float, adjudicated: float, seed: int):
    by_doc = defaultdict(list)
    for link in links:
        if "+" not in link.code and link.code != "NO_CODE" and link.code in linker.kb:
            by_doc[link.filename].append(link)
    rng = random.Random(seed)
    chosen = sorted(d for d in by_doc if (texts / f"{d}.txt").is_file())[:docs]
    spans = [l for d in chosen for l in by_doc[d]]
    lists = linker.link([l.span for l in spans], 25, labels=[l.label for l in spans])
    predicted = {(l.filename, l.start, l.end): (cands[0], certainty(cands)) for l, cands in zip(spans, lists) if cands}
    kb = linker.kb
    tasks = []
    for task_id, doc in enumerate(chosen, start=1):
        text = (texts / f"{doc}.txt").read_text(encoding="utf-8")
        prediction, a_result, b_result = [], [], []
        for i, link in enumerate(sorted(by_doc[doc], key=lambda l: (l.start, l.end))):
            rid = f"t{task_id}r{i}"
            top, sure = predicted.get((doc, link.start, link.end), (None, None))
            if top is not None:
                prediction += items(rid, link, top.code, top.preferred_term, None, sure)
            gold_origin = "prediction" if top is not None and top.code == link.code else "prediction-changed"
            a_result += items(rid, link, link.code, kb[link.code].preferred_term, gold_origin)
            if rng.random() < miss:
                continue
            if top is not None and sure >= trust:
                b_result += items(rid, link, top.code, top.preferred_term, "prediction")
            else:
                b_result += items(rid, link, link.code, kb[link.code].preferred_term, gold_origin)
        truth = rng.random() < adjudicated
        day = f"2026-11-{10 + task_id * 10 // max(1, len(chosen)):02d}"
        tasks.append({"id": task_id, "data": {"text": text, "doc_id": f"{doc}.txt"}, "drafts": [],
                      "predictions": [{"id": 1000 + task_id, "result": prediction, "model_version": "replay"}],
                      "annotations": [
                          {"id": 2 * task_id, "completed_by": {"id": 1, "email": CODER_A}, "result": a_result,
                           "was_cancelled": False, "ground_truth": truth, "lead_time": None,
                           "created_at": f"{day}T10:00:00Z", "updated_at": f"{day}T10:00:00Z",
                           "parent_prediction": 1000 + task_id},
                          {"id": 2 * task_id + 1, "completed_by": {"id": 2, "email": CODER_B}, "result": b_result,
                           "was_cancelled": False, "ground_truth": False, "lead_time": None,
                           "created_at": f"{day}T11:00:00Z", "updated_at": f"{day}T11:00:00Z",
                           "parent_prediction": 1000 + task_id}]})
    return tasks


def screenshot(report: Path, out_dir: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]
    shots = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("CLINLINKER_CHROMIUM", "/usr/bin/chromium"),
                                    args=flags, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 1100})
        page.goto(report.resolve().as_uri())
        for name, heading in (("curation-agreement.png", "Agreement between coders"),
                              ("curation-assistant.png", "What the assistant is worth")):
            top = page.locator(f"h2:has-text('{heading}')").bounding_box()["y"]
            path = out_dir / name
            page.screenshot(path=str(path), full_page=True,
                            clip={"x": 0, "y": max(0, top - 10), "width": 1200, "height": 1000})
            shots.append(path)
        browser.close()
    return shots


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=True, help="a linking TSV of a training split")
    parser.add_argument("--texts", default=str(ROOT.parent / "shared" / "data" / "corpora" / "texts_train"))
    parser.add_argument("--gazetteer", required=True, nargs="+")
    parser.add_argument("--hierarchy", help="is-a edges (code<TAB>parent) for agreement within a concept's family")
    parser.add_argument("--docs", type=int, default=80)
    parser.add_argument("--trust", type=float, default=0.6, help="coder B keeps top-1s at least this certain")
    parser.add_argument("--miss", type=float, default=0.05, help="share of spans coder B does not mark")
    parser.add_argument("--adjudicated", type=float, default=0.25, help="share of documents with a ground truth")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", required=True, help="folder for the export, the report and the figures")
    parser.add_argument("--screenshot", metavar="DIR", help="save the report's two sections as PNG here")
    args = parser.parse_args(argv)

    from clinlinker.cli import main as cli
    from clinlinker.kb.gazetteer import load_knowledge_base
    from clinlinker.search.index import build_index, save_index
    from clinlinker.linking.linker import Linker

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    index_dir = Path(tempfile.mkdtemp(prefix="replay-ix-")) / "ix"
    save_index(build_index(load_knowledge_base(args.gazetteer, args.hierarchy)), index_dir)
    linker = Linker.from_directory(index_dir)
    tasks = build_export(read_links(args.corpus), Path(args.texts), linker, docs=args.docs, trust=args.trust,
                         miss=args.miss, adjudicated=args.adjudicated, seed=args.seed)
    export = out / "replay-export.json"
    export.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    report, figures = out / "report.html", out / "figures.json"
    code = cli(["curate", "--input", str(export), "--index", str(index_dir), "--report", str(report),
                "--json", str(figures), "--gold", str(out / "gold.tsv"),
                "--disagreements", str(out / "disagreements.tsv")])
    data = json.loads(figures.read_text(encoding="utf-8"))
    o = data["agreement"]["overall"]
    print(f"{len(tasks)} documents, {o['spans_a']} / {o['spans_b']} spans; span F1 {o['span_f1']}; codes compared "
          f"{o['code_compared']}: exact {o['code_exact']}, family {o['code_family']}, kappa {o['code_kappa']}")
    for band, f in data["assistant"]["overrides"].items():
        print(f"certainty {band}: {f['spans']} spans, override rate {f['override_rate']}, kept but gold differs "
              f"{f['kept_but_gold_differs']} of {f['kept_judged']}")
    for coder, f in data["assistant"]["by_coder"].items():
        print(coder, f)
    if args.screenshot:
        for path in screenshot(report, Path(args.screenshot)):
            print("screenshot", path)
    return code


if __name__ == "__main__":
    sys.exit(main())

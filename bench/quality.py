"""Quality report: accuracy of each system on a fixed document-level split of the three corpora.

Split (seed 13, by document): 20 % of each corpus's documents -> dev (reported, never tuned on); the rest ->
train, itself split 80/20 into fit (what training may use: accepted links) and tune (where hybrid weights and
anything else are chosen). Every system is scored on dev mentions, cleaned (no NO_CODE or composite rows):
all of them, those whose gold code is in the KB, and unseen codes (gold code absent from the train part's links).

    python bench/quality.py split                         # bench/.cache/split/{corpus}_{train,dev,fit,tune}.tsv
    python bench/quality.py eval --index DIR --name NAME  # candidate lists of dev+tune mentions, cached; scores
    python bench/quality.py hybrid --dense NAME --lexical lexical --name hybrid   # weight tuned on tune, scored on dev
    python bench/quality.py calibration --name hybrid     # which score says "top-1 is wrong" (tune), table (dev)
    python bench/quality.py report                        # markdown table + docs/quality.png

bench/quality.sh runs the whole chain (training included) as it was run for docs/quality.md.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

from common import CACHE, DATA, RESULTS, ROOT, save

CORPORA = ("distemist", "symptemist", "medprocner")
SPLIT = CACHE / "split"
LISTS = CACHE / "quality"
DEV_FRACTION = 0.2
TUNE_FRACTION = 0.2  # of the train part's documents
SEED = 13
DEPTH = 100  # candidates kept per mention: what a hybrid fuses
KS = tuple(range(1, 26))
RESULT_FILE = "quality.json"


def _split_docs(links, fraction, seed):
    docs = sorted({link.filename for link in links})
    random.Random(seed).shuffle(docs)
    return set(docs[: int(len(docs) * fraction)])


def split() -> None:
    from clinlinker.links import read_links, write_links

    SPLIT.mkdir(parents=True, exist_ok=True)
    for corpus in CORPORA:
        links = read_links(DATA / "corpora" / f"{corpus}_train.tsv")
        dev_docs = _split_docs(links, DEV_FRACTION, SEED)
        train = [link for link in links if link.filename not in dev_docs]
        tune_docs = _split_docs(train, TUNE_FRACTION, SEED + 1)
        parts = {"train": train, "dev": [link for link in links if link.filename in dev_docs],
                 "fit": [link for link in train if link.filename not in tune_docs],
                 "tune": [link for link in train if link.filename in tune_docs]}
        for name, rows in parts.items():
            write_links(rows, SPLIT / f"{corpus}_{name}.tsv")
        print(corpus, ", ".join(f"{name} {len({l.filename for l in rows})} docs / {len(rows)} links"
                                for name, rows in parts.items()))


def _gold(corpus: str, part: str):
    from clinlinker.links import read_links

    if not (SPLIT / "medprocner_dev.tsv").exists():
        split()
    return [link for link in read_links(SPLIT / f"{corpus}_{part}.tsv") if link.is_clean]


def candidate_lists(index_dir: str, name: str) -> dict:
    """Top-DEPTH (code, score) per dev and tune mention, computed once per system and cached."""
    from clinlinker.linking.linker import Linker

    path = LISTS / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    linker = Linker.from_directory(index_dir)
    out = {"index": str(index_dir), "describe": {k: v for k, v in linker.describe().items() if k != "fingerprint"},
           "kb_codes": sorted(c.code for c in linker.kb.concepts), "lists": {}}
    for corpus in CORPORA:
        for part in ("dev", "tune"):
            gold = _gold(corpus, part)
            found = linker.link([link.span for link in gold], DEPTH)
            out["lists"][f"{corpus}_{part}"] = [[[c.code, round(c.score, 5)] for c in cands] for cands in found]
    LISTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def score(lists: dict, kb_codes: set, part: str = "dev") -> dict:
    from clinlinker.evaluate.metrics import evaluate_links

    report = {}
    for corpus in CORPORA:
        gold = _gold(corpus, part)
        seen = {link.code for link in _gold(corpus, "train")}
        codes = [[c for c, _ in cands[:25]] for cands in lists[f"{corpus}_{part}"]]
        result = evaluate_links(gold, codes, known_codes=kb_codes, ks=KS)
        unseen = [(link, c) for link, c in zip(gold, codes) if link.code not in seen]
        unseen_report = evaluate_links([l for l, _ in unseen], [c for _, c in unseen], ks=KS)
        report[corpus] = {"all": result["cleaned"], "in_kb": result["in_kb"], "unseen": unseen_report["cleaned"]}
    return report


def _print(name: str, report: dict) -> None:
    for corpus, r in report.items():
        print(f"{name:14s} {corpus:10s} all n={r['all']['n']:5d} top-1/5/25 {r['all']['acc@1']:.3f} "
              f"{r['all']['acc@5']:.3f} {r['all']['acc@25']:.3f} | in-KB n={r['in_kb']['n']:5d} "
              f"{r['in_kb']['acc@1']:.3f} {r['in_kb']['acc@5']:.3f} {r['in_kb']['acc@25']:.3f} | unseen "
              f"n={r['unseen']['n']:5d} {r['unseen']['acc@1'] or 0:.3f}")


def _record(name: str, entry: dict) -> None:
    path = RESULTS / RESULT_FILE
    data = json.loads(path.read_text()) if path.exists() else {
        "split": {"seed": SEED, "dev_fraction": DEV_FRACTION, "tune_fraction_of_train": TUNE_FRACTION},
        "systems": {}}
    data["systems"][name] = entry
    print("written", save(RESULT_FILE, data))


def evaluate(index_dir: str, name: str) -> None:
    lists = candidate_lists(index_dir, name)
    report = score(lists["lists"], set(lists["kb_codes"]))
    _print(name, report)
    manifest = {}
    model = Path(lists["describe"].get("model") or "-")
    if (model / "clinlinker_training.json").exists():
        training = json.loads((model / "clinlinker_training.json").read_text())
        manifest = {k: training[k] for k in ("steps", "pairs", "pair_counts", "loss_before", "loss_after", "seconds")
                    if k in training}
        manifest["hyperparameters"] = training.get("hyperparameters")
    _record(name, {"index": lists["describe"], "training": manifest, "dev": report})


def fuse(dense: list, lexical: list, method: str, weight: float, k: int = 25) -> list:
    """The same fusion as clinlinker.search.hybrid.HybridIndex, on cached (code, score) lists."""
    from clinlinker.search.candidates import Candidate
    from clinlinker.search.hybrid import HybridIndex

    hybrid = HybridIndex.__new__(HybridIndex)
    hybrid.method, hybrid.weight = method, weight

    def cands(rows):
        return [Candidate(code, "", "", "", score, rank) for rank, (code, score) in enumerate(rows, start=1)]

    return [[c.code, c.score] for c in hybrid.fuse_candidates(cands(dense), cands(lexical), k)]


def hybrid(dense_names: list[str], lexical_name: str, name: str) -> None:
    """Fuse the best dense system (on tune) with the lexical one; method and weight chosen on tune; dev scored."""
    lexical = json.loads((LISTS / f"{lexical_name}.json").read_text())
    kb_codes = set(lexical["kb_codes"])

    def objective(report):  # mean over corpora of top-1 + top-25 (all mentions)
        return sum(r["all"]["acc@1"] + r["all"]["acc@25"] for r in report.values()) / len(report)

    denses = {n: json.loads((LISTS / f"{n}.json").read_text()) for n in dense_names}
    for n, d in denses.items():
        if set(d["kb_codes"]) != kb_codes:
            raise SystemExit(f"{n} and {lexical_name} were built over different knowledge bases")
    tune_of = {n: round(objective(score(d["lists"], kb_codes, "tune")), 4) for n, d in denses.items()}
    dense_name = max(tune_of, key=tune_of.get)
    print(f"dense systems on tune, mean(top-1 + top-25): {tune_of}; fused: {dense_name}")
    dense = denses[dense_name]

    def fused_lists(method, weight, parts=("tune",)):
        return {f"{c}_{part}": [fuse(d, l, method, weight) for d, l in zip(dense["lists"][f"{c}_{part}"],
                                                                           lexical["lists"][f"{c}_{part}"])]
                for c in CORPORA for part in parts}

    grid = [("interpolate", w / 10) for w in range(1, 10)] + [("rrf", w / 10) for w in range(2, 9)]
    tuning = []
    for method, weight in grid:
        value = objective(score(fused_lists(method, weight), kb_codes, "tune"))
        tuning.append({"method": method, "weight": weight, "objective": round(value, 4)})
        print(f"tune {method:11s} weight {weight:.1f}: mean(top-1 + top-25) {value:.4f}")
    best = max(tuning, key=lambda t: t["objective"])
    print(f"chosen on tune: {best}")
    lists = fused_lists(best["method"], best["weight"], ("tune", "dev"))
    (LISTS / f"{name}-fused.json").write_text(json.dumps({"lists": lists}))
    report = score(lists, kb_codes)
    _print(name, report)
    parts = {n: score(d["lists"], kb_codes) for n, d in ((dense_name, dense), (lexical_name, lexical))}
    never_worse = {c: {k: report[c]["all"][f"acc@{k}"] >= max(p[c]["all"][f"acc@{k}"] for p in parts.values())
                       for k in (1, 25)} for c in CORPORA}
    print("never worse than the better part (top-1, top-25) per dev corpus:", never_worse)
    _record(name, {"parts": [dense_name, lexical_name], "dense_tune_objective": tune_of, "method": best["method"],
                   "weight": best["weight"], "tuning": tuning, "never_worse_than_parts": never_worse, "dev": report})


def report() -> None:
    data = json.loads((RESULTS / RESULT_FILE).read_text())
    systems = data["systems"]
    lines = ["| system | " + " | ".join(f"{c} top-1/5/25" for c in CORPORA) + " |",
             "|---|" + "---|" * len(CORPORA)]
    for subset, title in (("all", "all dev mentions (cleaned)"), ("in_kb", "gold code in the KB"),
                          ("unseen", "unseen codes (not in train links)")):
        lines.append(f"| **{title}** | " + " | ".join(
            f"n={next(iter(systems.values()))['dev'][c][subset]['n']}" for c in CORPORA) + " |")
        for name, entry in systems.items():
            cells = [entry["dev"][c][subset] for c in CORPORA]
            lines.append(f"| {name} | " + " | ".join(f"{r['acc@1']:.3f} / {r['acc@5']:.3f} / {r['acc@25']:.3f}"
                                                     for r in cells) + " |")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=False)
    for ax, corpus in zip(axes, CORPORA):
        for name, entry in systems.items():
            r = entry["dev"][corpus]["all"]
            ax.plot(KS, [r[f"acc@{k}"] for k in KS], label=name, marker="." if "hybrid" in name else None)
        ax.set_title(f"{corpus} dev (n={entry['dev'][corpus]['all']['n']})")
        ax.set_xlabel("k")
        ax.set_ylabel("accuracy@k (all cleaned mentions)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out = ROOT / "docs" / "quality.png"
    fig.savefig(out, dpi=110)
    print("plot written to", out)


MEASURES = {
    "top1": lambda s: s[0],
    "margin": lambda s: s[0] - (s[1] if len(s) > 1 else 0.0),
    "(top1+margin)/2": lambda s: (2 * s[0] - (s[1] if len(s) > 1 else 0.0)) / 2,
}


def calibration(name: str) -> None:
    """Which per-mention score best separates right from wrong top-1s (AUROC on tune); its table on dev."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    lists = json.loads((LISTS / f"{name}.json").read_text())["lists"] if (LISTS / f"{name}.json").exists() \
        else None
    if lists is None:  # a hybrid: its fused lists were saved by `hybrid`
        lists = json.loads((LISTS / f"{name}-fused.json").read_text())["lists"]

    def rows(part):
        out = []
        for corpus in CORPORA:
            gold = _gold(corpus, part)
            docs = [link.filename for link in gold]
            for link, cands, doc in zip(gold, lists[f"{corpus}_{part}"], docs):
                scores = [s for _, s in cands[:2]]
                out.append((corpus, doc, bool(cands) and cands[0][0] == link.code, scores))
        return out

    tune, dev = rows("tune"), rows("dev")
    auroc = {}
    for measure, fn in MEASURES.items():
        per = []
        for corpus in CORPORA:
            sub = [(ok, fn(s)) for c, _, ok, s in tune if c == corpus]
            per.append(roc_auc_score([ok for ok, _ in sub], [v for _, v in sub]))
        auroc[measure] = round(float(np.mean(per)), 4)
        print(f"tune AUROC (top-1 right vs wrong), {measure:12s}: {auroc[measure]:.4f} (mean of the corpora)")
    best = max(auroc, key=auroc.get)
    fn = MEASURES[best]
    values = np.array([fn(s) for _, _, _, s in dev])
    right = np.array([ok for _, _, ok, _ in dev])
    edges = np.quantile(values, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    table = []
    for i in range(5):
        lo, hi = edges[i], edges[i + 1]
        mask = (values >= lo) & ((values <= hi) if i == 4 else (values < hi))
        table.append({"from": round(float(lo), 3), "to": round(float(hi), 3), "n": int(mask.sum()),
                      "top1_accuracy": round(float(right[mask].mean()), 3) if mask.any() else None})
        print(f"dev {best} in [{lo:.3f}, {hi:.3f}{']' if i == 4 else ')'}: n={mask.sum():5d} top-1 accuracy "
              f"{right[mask].mean():.3f}")
    dev_auroc = round(float(roc_auc_score(right, values)), 4)
    # task level: how to pool the spans' scores so that low-scored tasks are those with most wrong top-1s
    from scipy.stats import spearmanr

    def tasks(part_rows, pool):
        by_doc = defaultdict(list)
        for corpus, doc, ok, sc in part_rows:
            by_doc[(corpus, doc)].append((ok, fn(sc)))
        score = np.array([pool([v for _, v in m]) for m in by_doc.values()])
        acc = np.array([np.mean([ok for ok, _ in m]) for m in by_doc.values()])
        return score, acc

    pools = {"min": min, "mean": np.mean}
    rho = {p: round(float(spearmanr(*tasks(tune, f)).statistic), 4) for p, f in pools.items()}
    pool = max(rho, key=rho.get)
    print(f"tune Spearman(task score, task top-1 accuracy): {rho}; chosen pooling: {pool}")
    task_score, task_acc = tasks(dev, pools[pool])
    low = task_score <= np.quantile(task_score, 0.25)
    dev_rho = round(float(spearmanr(task_score, task_acc).statistic), 4)
    print(f"dev AUROC of {best}: {dev_auroc}; task level ({pool}): Spearman {dev_rho}; tasks in the lowest quarter "
          f"of task score: top-1 accuracy {task_acc[low].mean():.3f} vs {task_acc[~low].mean():.3f} for the rest "
          f"({len(task_score)} tasks)")
    data = json.loads((RESULTS / RESULT_FILE).read_text())
    data.setdefault("calibration", {})[name] = {
        "tune_auroc": auroc, "chosen": best, "dev_auroc": dev_auroc, "dev_bins": table,
        "tasks": {"n": len(task_score), "tune_spearman": rho, "pooling": pool, "dev_spearman": dev_rho,
                  "lowest_quarter_top1": round(float(task_acc[low].mean()), 3),
                  "rest_top1": round(float(task_acc[~low].mean()), 3)}}
    print("written", save(RESULT_FILE, data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("split")
    p = sub.add_parser("eval")
    p.add_argument("--index", required=True)
    p.add_argument("--name", required=True)
    p = sub.add_parser("hybrid")
    p.add_argument("--dense", action="append", required=True, help="dense systems; the best on tune is fused")
    p.add_argument("--lexical", required=True)
    p.add_argument("--name", required=True)
    p = sub.add_parser("calibration")
    p.add_argument("--name", required=True)
    sub.add_parser("report")
    args = parser.parse_args()
    if args.command == "split":
        split()
    elif args.command == "eval":
        evaluate(args.index, args.name)
    elif args.command == "hybrid":
        hybrid(args.dense, args.lexical, args.name)
    elif args.command == "calibration":
        calibration(args.name)
    else:
        report()


if __name__ == "__main__":
    main()

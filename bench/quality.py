"""Quality report groundwork (issue 4): a fixed document-level train/dev split of the three training corpora,
and top-1/5/25 accuracy of any index on the dev mentions (all, and those whose gold code is in the KB), plus
unseen-code accuracy (gold code absent from the train part's links).

    python bench/quality.py split                      # writes bench/.cache/split/{corpus}_{train,dev}.tsv
    python bench/quality.py eval --index ix --name lexical [--index ix2 --name minilm ...]

Never tune on what you report: tune on a part of `train`, report on `dev`.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict

from common import CACHE, DATA, RESULTS, save

CORPORA = ("distemist", "symptemist", "medprocner")
SPLIT = CACHE / "split"
DEV_FRACTION = 0.2
SEED = 13


def split() -> None:
    from clinlinker.links import read_links, write_links

    SPLIT.mkdir(parents=True, exist_ok=True)
    for corpus in CORPORA:
        links = read_links(DATA / "corpora" / f"{corpus}_train.tsv")
        docs = sorted({l.filename for l in links})
        random.Random(SEED).shuffle(docs)
        dev_docs = set(docs[: int(len(docs) * DEV_FRACTION)])
        write_links([l for l in links if l.filename not in dev_docs], SPLIT / f"{corpus}_train.tsv")
        write_links([l for l in links if l.filename in dev_docs], SPLIT / f"{corpus}_dev.tsv")
        print(f"{corpus}: {len(docs) - len(dev_docs)} train / {len(dev_docs)} dev documents")


def evaluate(indexes: list[str], names: list[str]) -> None:
    from clinlinker.evaluation import evaluate_links
    from clinlinker.linker import Linker
    from clinlinker.links import read_links

    if not (SPLIT / "medprocner_dev.tsv").exists():
        split()
    report = defaultdict(dict)
    for directory, name in zip(indexes, names):
        linker = Linker.from_directory(directory)
        for corpus in CORPORA:
            dev = [l for l in read_links(SPLIT / f"{corpus}_dev.tsv") if l.is_clean]
            seen = {l.code for l in read_links(SPLIT / f"{corpus}_train.tsv")}
            codes = [[c.code for c in cands] for cands in linker.link([l.span for l in dev], 25)]
            result = evaluate_links(dev, codes, known_codes=linker.kb, ks=(1, 5, 25))
            unseen = [(l, c) for l, c in zip(dev, codes) if l.code not in seen]
            unseen_report = evaluate_links([l for l, _ in unseen], [c for _, c in unseen], ks=(1, 5, 25))
            report[name][corpus] = {"all": result["cleaned"], "in_kb": result["in_kb"],
                                    "unseen": unseen_report["cleaned"]}
            r = report[name][corpus]
            print(f"{name:12s} {corpus:10s} all n={r['all']['n']:5d} top-1/5/25 {r['all']['acc@1']:.3f} "
                  f"{r['all']['acc@5']:.3f} {r['all']['acc@25']:.3f} | in-KB n={r['in_kb']['n']:5d} "
                  f"{r['in_kb']['acc@1']:.3f} {r['in_kb']['acc@5']:.3f} {r['in_kb']['acc@25']:.3f} | unseen "
                  f"n={r['unseen']['n']:5d} {r['unseen']['acc@1'] or 0:.3f}")
    print("written", save(f"quality-{'-'.join(names)}.json", {"split": {"seed": SEED, "dev_fraction": DEV_FRACTION},
                                           "systems": report}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("split")
    p = sub.add_parser("eval")
    p.add_argument("--index", action="append", required=True)
    p.add_argument("--name", action="append", required=True)
    args = parser.parse_args()
    if args.command == "split":
        split()
    else:
        if len(args.index) != len(args.name):
            parser.error("give one --name per --index")
        evaluate(args.index, args.name)


if __name__ == "__main__":
    main()

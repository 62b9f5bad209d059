"""Quality as the backend serves it: every system with the learned terms of the training links, the
hybrid weight, a code prior and the re-ranker measured over them, and where the misses are.

The backend always serves a project's learned terms (the wordings its coders accepted come first), so a system is
judged here as served: its per-label first stage, then the learned terms of the links a team would have accepted
before: for a **dev** mention, the train part's links of its corpus (one project per corpus, as one team codes one
label); for a **tune** mention, the fit part's only (tune's own links are what is being predicted). Same split, subsets
and scoring as bench/quality.py; every choice (hybrid weight, prior weight and guard) is made on tune.

    python bench/served.py lists --index DIR --name NAME        # per-label first stage (bench/rerank.py's lists)
    python bench/served.py linked --index DIR --name NAME [--no-abbreviations] [--no-documents]  # the backend's path
    python bench/served.py fuse --dense NAME --lexical NAME --name NAME   # hybrid: weight chosen on tune AS SERVED
    python bench/served.py served --name NAME                  # NAME-served: the learned terms merged in
    python bench/served.py prior --name NAME                    # a code prior over NAME-served, tuned on tune
    python bench/served.py misses --name NAME                   # the top-25 misses of NAME-served by cause (dev)
    python bench/served.py curve --index DIR --name NAME [--docs-from heldout|train]  # top-1/25 vs documents coded
    python bench/served.py report                               # markdown tables from bench/results/served.json

The lists are kept in bench/.cache/rerank/ in bench/rerank.py's format, so `bench/rerank.py eval --name
NAME-served --reranker DIR` measures a re-ranker as served (it trains on NAME's fit lists).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from common import RESULTS, save

sys.path.insert(0, str(Path(__file__).parent))
import quality  # noqa: E402
import rerank  # noqa: E402

RESULT_FILE = "served.json"
LEARNED_FROM = {"tune": "fit", "dev": "train"}  # which links are a part's learned terms


def _record(section: str, name: str, entry: dict) -> None:
    path = RESULTS / RESULT_FILE
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault(section, {})[name] = entry
    print("written", save(RESULT_FILE, data))


def _linker(index_dir: str):
    from clinlinker.encode.cache import make_cache
    from clinlinker.kb.routing import LabelRouting
    from clinlinker.linking.linker import Linker
    from clinlinker.search.index import load_index

    return Linker(load_index(index_dir, cache=make_cache(None)), routing=LabelRouting.default())


def _rows(cands) -> list:
    return [[c.code, round(float(c.score), 6), c.matched_term, c.evidence] for c in cands]


def _save_lists(name: str, index_dir: str, lists: dict, **extra) -> None:
    rerank.LISTS.mkdir(parents=True, exist_ok=True)
    (rerank.LISTS / f"{name}.json").write_text(json.dumps({"index": str(index_dir), "lists": lists, **extra},
                                                          ensure_ascii=False))
    print("written", rerank.LISTS / f"{name}.json")


def serve_lists(linker, cands: dict, parts=("tune", "dev"), depth: int = rerank.DEPTH) -> dict:
    """First-stage candidate lists (bench/rerank.py's Candidates per corpus_part) as the backend serves them:
    the corpus's learned terms merged in (Linker.link's order: search, learned terms, hierarchy fill)."""
    from clinlinker.linking.learned import LearnedTerms

    out = {}
    for corpus in quality.CORPORA:
        for part in parts:
            learned = LearnedTerms(linker.kb, linker.index.term_encoder).replace(
                (link.span, link.code) for link in quality._gold(corpus, LEARNED_FROM[part]))
            gold = quality._gold(corpus, part)
            rows = cands[f"{corpus}_{part}"]
            served = [None] * len(gold)
            for label in dict.fromkeys(link.label for link in gold):
                at = [i for i, link in enumerate(gold) if link.label == label]
                allowed = linker.allowed(label)
                merged = learned.merge([" ".join(gold[i].span.split()) for i in at], [rows[i] for i in at], depth,
                                       allowed=allowed)
                for i, found in zip(at, merged):
                    if linker.kb.has_hierarchy and len(found) < 25:
                        found = linker._fill(found, 25, allowed)
                    served[i] = found
            out[f"{corpus}_{part}"] = served
    return out


def served(name: str, encoder_index: str | None = None) -> None:
    data = json.loads((rerank.LISTS / f"{name}.json").read_text())
    index_dir = encoder_index or data["index"]
    linker = _linker(index_dir)
    _, cands = rerank._load(name)
    started = time.perf_counter()
    out = serve_lists(linker, cands)
    lists = {key: [_rows(r) for r in rows] for key, rows in out.items()}
    lists.update({f"{c}_fit": data["lists"][f"{c}_fit"] for c in quality.CORPORA})  # a re-ranker trains on these
    _save_lists(f"{name}-served", index_dir, lists, first_stage=name,
                learned_from={p: f"the corpus's {src} part's links" for p, src in LEARNED_FROM.items()})
    kb_codes = {c.code for c in linker.kb.concepts}
    plain = rerank._score({k: v for k, v in cands.items() if k.endswith("_dev")}, kb_codes, "dev")
    report = rerank._score({k: v for k, v in out.items() if k.endswith("_dev")}, kb_codes, "dev")
    tune = rerank._score({k: v for k, v in out.items() if k.endswith("_tune")}, kb_codes, "tune")
    quality._print(name, plain)
    quality._print(f"{name}-served", report)
    print(f"({time.perf_counter() - started:.1f} s)")
    _record("systems", name, {"index": index_dir, "first_stage": plain, "served": report,
                              "served_tune_objective": round(rerank.objective(tune), 5)})


def _documents(gold) -> list[str]:
    """Each link's document (the texts of the training split), as the backend reads a task's text."""
    from common import DATA

    from clinlinker.links import read_documents

    return read_documents(gold, DATA / "corpora" / "texts_train")


def linked(index_dir: str, name: str, *, lexical_index: str | None = None, weight: float | None = None,
           abbreviations: bool = True, learned_dense: bool = False, documents: bool = True) -> None:
    """Lists of tune and dev mentions through the backend's own path (Linker.link with the corpus's learned terms
    and each mention's document), for levers that act inside the search (the abbreviation expansion, from the
    knowledge base, the links and, unless documents is False, what the document defines); a hybrid of two indexes
    with --lexical-index. Written as NAME-served (fit: NAME's first-stage lists, for a re-ranker to train on)."""
    from clinlinker.encode.cache import make_cache
    from clinlinker.kb.routing import LabelRouting
    from clinlinker.linking.learned import LearnedTerms
    from clinlinker.linking.linker import Linker
    from clinlinker.search.hybrid import HybridIndex
    from clinlinker.search.index import load_index

    index = load_index(index_dir, cache=make_cache(None))
    if lexical_index:
        index = HybridIndex(index, load_index(lexical_index), method="interpolate", weight=weight)
    linker = Linker(index, routing=LabelRouting.default(), abbreviations=abbreviations)
    started = time.perf_counter()
    out = {}
    for corpus in quality.CORPORA:
        for part in ("tune", "dev"):
            encoder = index.dense.encoder if learned_dense and lexical_index else index.term_encoder
            learned = LearnedTerms(linker.kb, encoder).replace(
                (link.span, link.code) for link in quality._gold(corpus, LEARNED_FROM[part]))
            gold = quality._gold(corpus, part)
            found = linker.link([link.span for link in gold], rerank.DEPTH, labels=[link.label for link in gold],
                                learned=learned, contexts=_documents(gold) if documents else None)
            out[f"{corpus}_{part}"] = found
    seconds = time.perf_counter() - started
    fit_from = rerank.LISTS / f"{name}.json"
    lists = {key: [_rows(r) for r in rows] for key, rows in out.items()}
    if fit_from.exists():
        lists.update({k: v for k, v in json.loads(fit_from.read_text())["lists"].items() if k.endswith("_fit")})
    _save_lists(f"{name}-served", index_dir, lists, first_stage=name, abbreviations=abbreviations,
                documents=documents,
                learned_from={p: f"the corpus's {src} part's links" for p, src in LEARNED_FROM.items()})
    kb_codes = {c.code for c in linker.kb.concepts}
    report = rerank._score({k: v for k, v in out.items() if k.endswith("_dev")}, kb_codes, "dev")
    tune = rerank._score({k: v for k, v in out.items() if k.endswith("_tune")}, kb_codes, "tune")
    quality._print(f"{name}-served", report)
    print(f"tune objective {rerank.objective(tune):.5f} ({seconds:.1f} s)")
    _record("linked", name, {"index": index_dir, "lexical_index": lexical_index, "weight": weight,
                             "abbreviations": abbreviations, "documents": documents, "served": report,
                             "learned_similarity": "dense" if learned_dense and lexical_index else "index",
                             "served_tune_objective": round(rerank.objective(tune), 5), "seconds": round(seconds, 1)})


def curve(index_dir: str, name: str, *, lexical_index: str | None = None, weight: float = 0.5,
          docs_from: str = "heldout", corpus: str = "medprocner", batch: int = 10, seed: int = 7) -> None:
    """Top-1 and top-25 of the next batch of documents against documents coded before it: bench/review_loop.py's
    replay (same arrival order, seed 7) offline, through Linker.link with the learned terms of every link accepted
    so far. docs_from: "train" (all of the corpus's training documents; fair for the lexical engine only, as the
    fine-tuned models saw the fit part's links), "heldout" (the tune and dev documents: no model saw their links)."""
    from clinlinker.encode.cache import make_cache
    from clinlinker.kb.routing import LabelRouting
    from clinlinker.linking.learned import LearnedTerms
    from clinlinker.linking.linker import Linker
    from clinlinker.search.hybrid import HybridIndex
    from clinlinker.search.index import load_index
    from review_loop import documents

    index = load_index(index_dir, cache=make_cache(None))
    if lexical_index:
        index = HybridIndex(index, load_index(lexical_index), method="interpolate", weight=weight)
    linker = Linker(index, routing=LabelRouting.default())
    keep = None if docs_from == "train" else {link.filename for part in ("tune", "dev")
                                              for link in quality._gold(corpus, part)}
    docs = [(text, [l for l in links if l.is_clean]) for name, text, links in documents(corpus, seed)
            if keep is None or name in keep]
    learned = LearnedTerms(linker.kb, index.term_encoder)
    points = []
    for start in range(0, len(docs), batch):
        gold = [link for _, links in docs[start:start + batch] for link in links]
        texts = [text for text, links in docs[start:start + batch] for _ in links]
        found = linker.link([l.span for l in gold], 25, labels=[l.label for l in gold], learned=learned,
                            contexts=texts)
        ranks = [next((i for i, c in enumerate(cands, 1) if c.code == l.code), None) for l, cands in zip(gold, found)]
        point = {"coded_docs": start, "mentions": len(gold),
                 "top1": round(sum(r == 1 for r in ranks) / len(gold), 4),
                 "top25": round(sum(r is not None for r in ranks) / len(gold), 4)}
        points.append(point)
        print(point, flush=True)
        learned.apply((l.span, l.code, 1) for l in gold)  # the batch coded: its links are accepted
    _record("curves", f"{name}@{docs_from}", {"index": index_dir, "lexical_index": lexical_index,
                                             "weight": weight if lexical_index else None, "corpus": corpus,
                                             "batch_docs": batch, "seed": seed, "points": points})


def fuse(dense: str, lexical: str, name: str, weights=tuple(w / 10 for w in range(1, 10)),
         learned_dense: bool = False) -> None:
    """The hybrid of two first stages, its interpolation weight chosen on tune as served (learned terms on)."""
    from clinlinker.search.hybrid import HybridIndex

    from clinlinker.encode.cache import make_cache
    from clinlinker.kb.routing import LabelRouting
    from clinlinker.linking.linker import Linker
    from clinlinker.search.index import load_index

    d_data = json.loads((rerank.LISTS / f"{dense}.json").read_text())
    l_data = json.loads((rerank.LISTS / f"{lexical}.json").read_text())
    _, d = rerank._load(dense)
    _, lx = rerank._load(lexical)
    # the learned terms are scored as the backend scores them: on the hybrid's scale at each weight (its
    # term_encoder), or with learned_dense by the dense encoder alone (how the backend scored them before)
    dense_index = load_index(d_data["index"], cache=make_cache(None))
    hybrid = HybridIndex(dense_index, load_index(l_data["index"]), method="interpolate")
    linker = Linker(dense_index if learned_dense else hybrid, routing=LabelRouting.default())
    kb_codes = {c.code for c in linker.kb.concepts}

    def fused(weight, parts):
        hybrid.weight = weight
        return {f"{c}_{p}": [hybrid.fuse_candidates(a, b, rerank.DEPTH)
                             for a, b in zip(d[f"{c}_{p}"], lx[f"{c}_{p}"])]
                for c in quality.CORPORA for p in parts}

    tuning = []
    for weight in weights:
        plain = fused(weight, ("tune",))
        as_served = serve_lists(linker, plain, parts=("tune",))
        served_report = rerank._score(as_served, kb_codes, "tune")
        row = {"weight": weight, "first_stage": round(rerank.objective(rerank._score(plain, kb_codes, "tune")), 5),
               "served": round(rerank.objective(served_report), 5),
               # each corpus's top-1 + top-25 as served: would a weight per label pay?
               "served_per_corpus": {c: round(r["all"]["acc@1"] + r["all"]["acc@25"], 5)
                                     for c, r in served_report.items()}}
        tuning.append(row)
        print(f"tune weight {weight:.1f}: objective first stage {row['first_stage']:.4f}, as served "
              f"{row['served']:.4f} {row['served_per_corpus']}", flush=True)
    best = max(tuning, key=lambda r: r["served"])
    print(f"chosen on tune as served: weight {best['weight']} (first stage alone would choose "
          f"{max(tuning, key=lambda r: r['first_stage'])['weight']})")
    lists = fused(best["weight"], rerank.PARTS)
    _save_lists(name, d_data["index"], {k: [_rows(r) for r in v] for k, v in lists.items()}, parts=[dense, lexical],
                method="interpolate", weight=best["weight"], tuning=tuning, learned_dense=learned_dense)
    _record("hybrids", name, {"parts": [dense, lexical], "method": "interpolate", "weight": best["weight"],
                              "learned_similarity": "dense" if learned_dense else "interpolated", "tuning": tuning})


def _counts(corpus: str, part: str, kb) -> dict:
    from collections import Counter

    return Counter(link.code for link in quality._gold(corpus, LEARNED_FROM[part]) if link.code in kb)


def with_prior(rows, counts: dict, weight: float, depth: int, guard: str) -> list:
    """A list re-ordered by score + weight x log(1 + count) / log(1 + max count) over its first `depth`; guard
    "exact": the wordings coders accepted before (learned, score 1) stay first."""
    top = math.log1p(max(counts.values())) if counts else 1.0
    head = rows[:depth]
    keep = [c for c in head if guard == "exact" and c.evidence == "learned" and c.score >= 1.0 - 1e-9]
    rest = [c for c in head if c not in keep]
    rest.sort(key=lambda c: (-(c.score + weight * math.log1p(counts.get(c.code, 0)) / top), c.rank))
    return keep + rest


def prior(name: str, weights=(0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5), depths=(25, 50),
          guards=("none", "exact")) -> None:
    """The code prior (how often the project's coders accepted each code) over the as-served lists of NAME."""
    kb, cands = rerank._load(f"{name}-served")
    kb_codes = {c.code for c in kb.concepts}
    counts = {(c, p): _counts(c, p, kb) for c in quality.CORPORA for p in ("tune", "dev")}

    def ordered(part, weight, depth, guard):
        return {f"{c}_{part}": [with_prior(rows, counts[(c, part)], weight, depth, guard)
                                for rows in cands[f"{c}_{part}"]] for c in quality.CORPORA}

    tune = {}
    for weight in weights:
        for depth in depths:
            for guard in guards:
                tune[(weight, depth, guard)] = round(rerank.objective(
                    rerank._score(ordered("tune", weight, depth, guard), kb_codes, "tune")), 5)
                print(f"tune: weight {weight} depth {depth} guard {guard}: objective {tune[(weight, depth, guard)]}",
                      flush=True)
    best = max(tune, key=lambda key: (tune[key], -key[0], -key[1]))
    base = rerank._score(ordered("dev", 0.0, 25, "none"), kb_codes, "dev")
    report = rerank._score(ordered("dev", *best), kb_codes, "dev")
    quality._print(f"{name}-served", base)
    quality._print(f"+prior {best}", report)
    fixed = {}
    for weight in (0.05, 0.1, 0.2):  # the dev figures of other weights, for the README's "why not" (not chosen here)
        fixed[str(weight)] = rerank._score(ordered("dev", weight, best[1], best[2]), kb_codes, "dev")
        quality._print(f"+prior w={weight}", fixed[str(weight)])
    _record("priors", name, {"tune": {" ".join(map(str, k)): v for k, v in tune.items()},
                             "chosen": {"weight": best[0], "depth": best[1], "guard": best[2]},
                             "served": base, "with_prior": report, "dev_at_weights": fixed})


def misses(name: str, corpora=quality.CORPORA) -> None:
    from clinlinker.evaluate.misses import classify_misses, format_summary, summarize, write_misses

    data = json.loads((rerank.LISTS / f"{name}-served.json").read_text())
    linker = _linker(data["index"])
    out = {}
    for corpus in corpora:
        gold = quality._gold(corpus, "dev")
        codes = [[row[0] for row in rows] for rows in data["lists"][f"{corpus}_dev"]]
        found = classify_misses(gold, codes, linker.kb, k=25, allowed=linker.allowed)
        out[corpus] = summarize(found, len(gold))
        write_misses(found, rerank.LISTS / f"misses-{name}-{corpus}.tsv", linker.kb)
        print(f"== {corpus} ({name} as served, dev, top-25)")
        print(format_summary(out[corpus]))
    _record("misses", name, out)


def report() -> None:
    from clinlinker.evaluate.misses import CAUSE_TEXT

    data = json.loads((RESULTS / RESULT_FILE).read_text())
    cells = lambda r: f"{r['acc@1']:.3f} / {r['acc@5']:.3f} / {r['acc@25']:.3f}"  # noqa: E731
    print("| system | " + " | ".join(quality.CORPORA) + " | unseen top-1 |\n|---|---|---|---|---|")
    for name, entry in data.get("systems", {}).items():
        for kind in ("first_stage", "served"):
            r = entry[kind]
            print(f"| {name}{' **as served**' if kind == 'served' else ''} | "
                  + " | ".join(cells(r[c]["all"]) for c in quality.CORPORA) + " | "
                  + " / ".join(f"{r[c]['unseen']['acc@1']:.3f}" for c in quality.CORPORA) + " |")
    for name, corpora in data.get("misses", {}).items():
        print(f"\nMisses of {name} as served (dev, top-25):\n\n| cause | "
              + " | ".join(f"{c} (n={corpora[c]['misses']} of {corpora[c]['scored']})" for c in corpora)
              + " |\n|---|" + "---|" * len(corpora))
        for cause, text in CAUSE_TEXT.items():
            print(f"| {text} | " + " | ".join(f"{corpora[c]['by_cause'][cause]['n']} "
                                              f"({corpora[c]['by_cause'][cause]['share_of_misses']:.0%})"
                                              for c in corpora) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("lists")
    p.add_argument("--index", required=True)
    p.add_argument("--name", required=True)
    p = sub.add_parser("linked")
    p.add_argument("--index", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--lexical-index", help="fuse with this lexical index (a hybrid), at --weight")
    p.add_argument("--weight", type=float, default=0.5)
    p.add_argument("--no-abbreviations", action="store_true")
    p.add_argument("--no-documents", action="store_true",
                   help="without each mention's document (the acronyms it defines are not read)")
    p.add_argument("--learned-dense", action="store_true",
                   help="a hybrid's learned terms scored by the dense encoder alone (the backend before the fix)")
    p = sub.add_parser("curve")
    p.add_argument("--index", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--lexical-index")
    p.add_argument("--weight", type=float, default=0.5)
    p.add_argument("--docs-from", choices=["train", "heldout"], default="heldout")
    p.add_argument("--batch", type=int, default=10)
    p = sub.add_parser("fuse")
    p.add_argument("--dense", required=True)
    p.add_argument("--lexical", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--learned-dense", action="store_true",
                   help="the learned terms scored by the dense encoder alone (the backend before the fix)")
    p = sub.add_parser("served")
    p.add_argument("--name", required=True)
    p.add_argument("--encoder-index", help="the index whose encoder encodes the learned terms (default: the lists')")
    for command in ("prior", "misses"):
        sub.add_parser(command).add_argument("--name", required=True)
    sub.add_parser("report")
    args = parser.parse_args()
    if args.command == "lists":
        rerank.lists(args.index, args.name)
    elif args.command == "linked":
        linked(args.index, args.name, lexical_index=args.lexical_index, weight=args.weight,
               abbreviations=not args.no_abbreviations, learned_dense=args.learned_dense,
               documents=not args.no_documents)
    elif args.command == "curve":
        curve(args.index, args.name, lexical_index=args.lexical_index, weight=args.weight, docs_from=args.docs_from,
              batch=args.batch)
    elif args.command == "fuse":
        fuse(args.dense, args.lexical, args.name, learned_dense=args.learned_dense)
    elif args.command == "served":
        served(args.name, args.encoder_index)
    elif args.command == "prior":
        prior(args.name)
    elif args.command == "misses":
        misses(args.name)
    else:
        report()


if __name__ == "__main__":
    main()

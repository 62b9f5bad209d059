"""Label routing study: candidates served from the label's part of the knowledge base, on the merged KB.

Same split and subsets as bench/quality.py (dev reported, tune for choices, fit never scored). For each engine
(lexical, dense, hybrid of the two) and each routing setting, candidate lists of the dev and tune mentions are
computed once with the mention's own label and cached; then:

- top-1/5/25 on all cleaned dev mentions, on those whose gold code is in the KB, and on unseen codes;
- ties: mentions whose gold code has exactly the top score but is not ranked first;
- short lists: lists with fewer than 25 candidates, and why (the label's part is smaller than 25, or fewer
  concepts have evidence); lists holding a concept without evidence (a score-0 filler of the old lexical engine);
- the routing variant is chosen on tune (mean over corpora of top-1 + top-25), then reported on dev.

    python bench/routing.py lists --index DIR --name lexical --routing default   # cache one system's lists
    python bench/routing.py import-before --name lexical --lists OLD.json         # lists made by the old code
    python bench/routing.py report --dense minilm-0shot   # tables + bench/results/routing-minilm-0shot.json

bench/routing.sh runs the whole study as it was run for docs/quality.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import CACHE, ROOT, save
from quality import CORPORA, DEPTH, _gold, fuse, score

LISTS = CACHE / "routing"
K = 25
VARIANTS = ROOT / "bench" / "routing_variants"


def routing_of(setting: str):
    from clinlinker.kb.routing import routing_from_setting

    path = VARIANTS / f"{setting}.toml"
    return routing_from_setting(str(path) if path.exists() else setting)


def lists(index_dir: str, name: str, setting: str) -> Path:
    """Top-DEPTH [code, score, evidence] per dev and tune mention, searched with the mention's label."""
    from clinlinker.linking.linker import Linker

    path = LISTS / f"{name}@{setting}.json"
    if path.exists():
        return path
    routing = routing_of(setting)
    linker = Linker.from_directory(index_dir, routing=routing)
    out = {"index": str(index_dir), "routing": linker.describe()["routing"],
           "kb_codes": sorted(c.code for c in linker.kb.concepts), "lists": {}}
    for corpus in CORPORA:
        for part in ("dev", "tune"):
            gold = _gold(corpus, part)
            found = linker.link([link.span for link in gold], DEPTH, labels=[link.label for link in gold])
            out["lists"][f"{corpus}_{part}"] = [[[c.code, round(c.score, 5), c.evidence] for c in cands]
                                                for cands in found]
    LISTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    print("written", path)
    return path


def import_before(name: str, old_lists: str) -> None:
    """Lists computed by the code before label routing (bench/quality.py of that commit): no labels used."""
    data = json.loads(Path(old_lists).read_text())
    for key, rows in data["lists"].items():
        data["lists"][key] = [[[code, s, "before"] for code, s in cands] for cands in rows]
    data["routing"] = {"source": "(before: one index for every label, score-0 filler, ties in file order)"}
    LISTS.mkdir(parents=True, exist_ok=True)
    (LISTS / f"{name}@before.json").write_text(json.dumps(data))
    print("imported", old_lists, "as", f"{name}@before")


def _load(name: str, setting: str) -> dict:
    return json.loads((LISTS / f"{name}@{setting}.json").read_text())


def _two(rows):
    return [[c[0], c[1]] for c in rows]


def _plain(system: dict) -> dict:
    return {key: [_two(c) for c in rows] for key, rows in system["lists"].items()}


def _objective(report: dict) -> float:
    return sum(r["all"]["acc@1"] + r["all"]["acc@25"] for r in report.values()) / len(report)


def hybrid_lists(dense: dict, lexical: dict, parts=("tune", "dev")) -> tuple[dict, dict]:
    """Fuse with the method and weight that score best on tune (as bench/quality.py hybrid does)."""
    kb_codes = set(lexical["kb_codes"])
    grid = [("interpolate", w / 10) for w in range(1, 10)] + [("rrf", w / 10) for w in range(2, 9)]

    def fused(method, weight, which):
        return {f"{c}_{p}": [fuse(_two(d), _two(l), method, weight, DEPTH)
                             for d, l in zip(dense["lists"][f"{c}_{p}"], lexical["lists"][f"{c}_{p}"])]
                for c in CORPORA for p in which}

    best = max(grid, key=lambda mw: _objective(score(fused(*mw, ("tune",)), kb_codes, "tune")))
    return fused(*best, parts), {"method": best[0], "weight": best[1]}


def diagnostics(plain: dict, evidence: dict | None, part: str = "dev") -> dict:
    """Ties lost, short lists and lists holding a concept without evidence, per corpus."""
    out = {}
    for corpus in CORPORA:
        gold = _gold(corpus, part)
        rows = plain[f"{corpus}_{part}"]
        ev_rows = evidence[f"{corpus}_{part}"] if evidence else [None] * len(rows)
        tied_lost = short = filler = hier = 0
        for link, cands, ev in zip(gold, rows, ev_rows):
            top = cands[:K]
            codes = [c for c, _ in top]
            if top and link.code in codes and codes.index(link.code) > 0 and \
                    [s for c, s in top if c == link.code][0] == top[0][1]:
                tied_lost += 1
            short += len(top) < K
            kinds = [e for _, _, e in ev[:K]] if ev else []
            if kinds and kinds[0] == "before":
                filler += any(s == 0.0 for _, s in top)
            hier += "hierarchy" in kinds
        n = len(gold)
        out[corpus] = {"n": n, "gold_tied_at_top_not_first": tied_lost, "short_lists": short,
                       "short_share": round(short / n, 4), "lists_with_filler": filler,
                       "lists_with_hierarchy_neighbours": hier}
    return out


def report(settings: list[str], dense: str = "minilm-0shot") -> None:
    engines = ("lexical", dense)
    systems = {}
    for setting in ["before", "none"] + settings:
        parts = {}
        for engine in engines:
            if (LISTS / f"{engine}@{setting}.json").exists():
                parts[engine] = _load(engine, setting)
        if len(parts) < len(engines):
            print(f"skipping {setting}: lists missing for {sorted(set(engines) - set(parts))}")
            continue
        for engine, data in parts.items():
            systems[f"{engine}@{setting}"] = {"plain": _plain(data), "evidence": data["lists"],
                                              "kb_codes": set(data["kb_codes"]), "routing": data.get("routing")}
        fused, choice = hybrid_lists(*(parts[e] for e in engines))
        systems[f"hybrid@{setting}"] = {"plain": fused, "evidence": None, "kb_codes": set(parts[engines[0]]["kb_codes"]),
                                        "routing": parts[engines[0]].get("routing"), "fusion": choice}
    results = {}
    for name, s in systems.items():
        tune = score(s["plain"], s["kb_codes"], "tune")
        dev = score(s["plain"], s["kb_codes"], "dev")
        results[name] = {"tune_objective": round(_objective(tune), 4), "dev": dev,
                         "diagnostics": diagnostics(s["plain"], s["evidence"]), "fusion": s.get("fusion"),
                         "routing": s["routing"]}
    chosen = {}
    for engine in list(engines) + ["hybrid"]:
        candidates = {n: r["tune_objective"] for n, r in results.items()
                      if n.startswith(engine + "@") and n.split("@")[1] in settings}
        if candidates:
            chosen[engine] = max(candidates, key=candidates.get)
            print(f"{engine}: tune objective per routing variant {candidates}; chosen {chosen[engine]}")
    print(table(results))
    save(f"routing-{dense}.json", {"k": K, "settings": ["before", "none"] + settings, "chosen_on_tune": chosen,
                                   "systems": results})


def table(results: dict) -> str:
    lines = []
    for subset, title in (("all", "all cleaned dev mentions"), ("in_kb", "gold code in the KB"),
                          ("unseen", "unseen codes")):
        lines += [f"\n{title}: top-1 / top-5 / top-25", "| system | " + " | ".join(CORPORA) + " |",
                  "|---|" + "---|" * len(CORPORA)]
        first = next(iter(results.values()))
        lines.append("| n | " + " | ".join(str(first["dev"][c][subset]["n"]) for c in CORPORA) + " |")
        for name, r in results.items():
            lines.append(f"| {name} | " + " | ".join(
                f"{r['dev'][c][subset]['acc@1'] or 0:.3f} / {r['dev'][c][subset]['acc@5'] or 0:.3f} / "
                f"{r['dev'][c][subset]['acc@25'] or 0:.3f}" for c in CORPORA) + " |")
    lines += ["\ndiagnostics (dev): gold tied at the top score but not first | lists shorter than 25 | lists with a "
              "score-0 filler | lists completed by hierarchy neighbours", "| system | " + " | ".join(CORPORA) + " |",
              "|---|" + "---|" * len(CORPORA)]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{d['gold_tied_at_top_not_first']} / {d['short_lists']} ({d['short_share']:.1%}) / "
            f"{d['lists_with_filler']} / {d['lists_with_hierarchy_neighbours']}"
            for d in (r["diagnostics"][c] for c in CORPORA)) + " |")
    return "\n".join(lines)


def markdown() -> str:
    """The tables of docs/quality.md's label-routing section, from bench/results/routing-*.json."""
    from common import RESULTS

    studies = {dense: json.loads((RESULTS / f"routing-{dense}.json").read_text())["systems"]
               for dense in ("minilm-ft-links", "minilm-0shot") if (RESULTS / f"routing-{dense}.json").exists()}
    rows = []  # (label, result) once each: lexical appears in both studies
    for dense, systems in studies.items():
        for engine in ("lexical", dense, "hybrid"):
            if engine == "lexical" and rows:
                continue
            shown = engine if engine != "hybrid" else f"hybrid (lexical + {dense})"
            for setting, title in (("before", "before"), ("none", "no labels, fair ties, no filler"),
                                   ("default", "**per label**")):
                rows.append((f"{shown}: {title}", systems[f"{engine}@{setting}"]))
    out = []
    first = rows[0][1]["dev"]
    for subset, title in (("all", "All cleaned dev mentions"), ("in_kb", "Gold code in the KB"),
                          ("unseen", "Unseen codes (not in the train part's links)")):
        out += [f"{title}, top-1 / top-5 / top-25:", "",
                "| system | " + " | ".join(f"{c} (n={first[c][subset]['n']})" for c in CORPORA) + " |",
                "|---|" + "---|" * len(CORPORA)]
        for name, r in rows:
            out.append(f"| {name} | " + " | ".join(
                f"{r['dev'][c][subset]['acc@1'] or 0:.3f} / {r['dev'][c][subset]['acc@5'] or 0:.3f} / "
                f"{r['dev'][c][subset]['acc@25'] or 0:.3f}" for c in CORPORA) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("lists")
    p.add_argument("--index", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--routing", default="default", help="default, none, a variant in bench/routing_variants, or a "
                                                         "TOML file")
    p = sub.add_parser("import-before")
    p.add_argument("--name", required=True)
    p.add_argument("--lists", required=True)
    sub.add_parser("markdown", help="print the tables of docs/quality.md from bench/results/routing-*.json")
    p = sub.add_parser("report")
    p.add_argument("--settings", default="default", help="comma-separated routing settings to compare on tune")
    p.add_argument("--dense", default="minilm-0shot", help="the dense system (its lists' name) fused with lexical")
    args = parser.parse_args()
    if args.command == "lists":
        lists(args.index, args.name, args.routing)
    elif args.command == "import-before":
        import_before(args.name, args.lists)
    elif args.command == "markdown":
        print(markdown())
    else:
        report([s for s in args.settings.split(",") if s], args.dense)


if __name__ == "__main__":
    main()

"""What a knowledge base holds, and how much of a corpus's gold standard it can answer at all.

A team must see the coverage before it trusts an accuracy figure: a gold code the knowledge base lacks can never be
a candidate (the shared gazetteers hold 98 % of MedProcNER's codes but far fewer of DisTEMIST's and SympTEMIST's).
"""

from __future__ import annotations

import statistics
from collections import Counter, deque
from pathlib import Path

from clinlinker.kb.gazetteer import load_knowledge_base
from clinlinker.links import read_links


def kb_stats(gazetteers, hierarchy=None, links=()) -> dict:
    kb = load_knowledge_base([Path(g) for g in gazetteers], Path(hierarchy) if hierarchy else None)
    per_concept = [len(c.terms) for c in kb.concepts]
    tags = Counter(tag for c in kb.concepts for tag in (c.semantic_tags or ("(none)",)))
    out = {"gazetteers": [str(g) for g in gazetteers], "hierarchy": str(hierarchy) if hierarchy else None,
           "concepts": len(kb), "terms": kb.n_terms,
           "terms_per_concept": {"mean": round(statistics.fmean(per_concept), 2) if per_concept else 0,
                                 "median": statistics.median(per_concept) if per_concept else 0,
                                 "max": max(per_concept, default=0)},
           "semantic_tags": dict(tags.most_common()), "depth": _depth(kb) if kb.has_hierarchy else None,
           "links": [_coverage(kb, path) for path in links]}
    return out


def _depth(kb) -> dict:
    """Shortest is-a distance of each concept to a root (a concept with no parent in the knowledge base)."""
    depth: dict[str, int] = {}
    queue = deque()
    for concept in kb.concepts:
        if not any(p in kb for p in kb.parents(concept.code)):
            depth[concept.code] = 0
            queue.append(concept.code)
    while queue:
        code = queue.popleft()
        for child in kb.children(code):
            if child in kb and child not in depth:
                depth[child] = depth[code] + 1
                queue.append(child)
    values = list(depth.values())
    return {"roots": sum(1 for v in values if v == 0), "max": max(values, default=0),
            "median": statistics.median(values) if values else 0, "unreachable": len(kb) - len(depth)}


def _coverage(kb, path) -> dict:
    per_label: dict[str, dict] = {}
    for link in read_links(path):
        entry = per_label.setdefault(link.label, {"mentions": 0, "no_code": 0, "composite": 0, "codes": set(),
                                                  "in_kb_mentions": 0})
        entry["mentions"] += 1
        if link.is_no_code:
            entry["no_code"] += 1
            continue
        codes = link.code.split("+")
        if len(codes) > 1:
            entry["composite"] += 1
        entry["codes"].update(codes)
        if all(code in kb for code in codes):
            entry["in_kb_mentions"] += 1
    labels = {}
    for label, entry in sorted(per_label.items()):
        coded = entry["mentions"] - entry["no_code"]
        in_kb = sum(1 for code in entry["codes"] if code in kb)
        labels[label] = {"mentions": entry["mentions"], "no_code": entry["no_code"], "composite": entry["composite"],
                         "mentions_all_codes_in_kb": entry["in_kb_mentions"],
                         "mention_coverage": round(entry["in_kb_mentions"] / coded, 4) if coded else None,
                         "distinct_codes": len(entry["codes"]), "distinct_codes_in_kb": in_kb,
                         "code_coverage": round(in_kb / len(entry["codes"]), 4) if entry["codes"] else None}
    return {"file": str(path), "labels": labels}


def render_stats(stats: dict) -> str:
    lines = [f"{stats['concepts']} concepts, {stats['terms']} terms; terms per concept: mean "
             f"{stats['terms_per_concept']['mean']}, median {stats['terms_per_concept']['median']}, max "
             f"{stats['terms_per_concept']['max']}"]
    tags = list(stats["semantic_tags"].items())
    lines.append("semantic tags: " + ", ".join(f"{tag} {n}" for tag, n in tags[:12])
                 + (f", … ({len(tags) - 12} more)" if len(tags) > 12 else ""))
    if stats["depth"]:
        d = stats["depth"]
        lines.append(f"hierarchy: {d['roots']} root(s), depth median {d['median']}, max {d['max']}; "
                     f"{d['unreachable']} concepts not reachable from a root")
    else:
        lines.append("hierarchy: none")
    for cover in stats["links"]:
        lines.append(f"{cover['file']}:")
        lines.append(f"  {'label':<15} {'mentions':>8} {'NO_CODE':>7} {'in KB':>12} {'codes':>7} {'codes in KB':>14}")
        for label, c in cover["labels"].items():
            share = f"{c['mention_coverage']:.1%}" if c["mention_coverage"] is not None else "-"
            code_share = f"{c['code_coverage']:.1%}" if c["code_coverage"] is not None else "-"
            lines.append(f"  {label:<15} {c['mentions']:>8} {c['no_code']:>7} {share:>12} {c['distinct_codes']:>7} "
                         f"{code_share:>14}")
    return "\n".join(lines)

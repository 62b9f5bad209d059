"""Top-k accuracy of candidate lists against gold links.

A mention is a hit at k when its gold code is among its first k distinct candidate codes.
Subsets reported, each with its count:
- cleaned: NO_CODE and composite (A+B) rows removed (the shared tasks' published numbers use it);
- all: every row; NO_CODE and composite rows count as misses (a single code cannot match them);
- in_kb: cleaned rows whose gold code is in the knowledge base (what the linker can possibly find);
- per label (ENFERMEDAD, SINTOMA, PROCEDIMIENTO, ...), on the cleaned rows.
"""

from __future__ import annotations

from typing import Sequence

from clinlinker.links import Link

DEFAULT_KS = (1, 5, 10, 25)


def _rank_of(code: str, candidates: Sequence[str]) -> int | None:
    try:
        return candidates.index(code) + 1
    except ValueError:
        return None


def _accuracy(ranks: list[int | None], ks: Sequence[int]) -> dict:
    n = len(ranks)
    out: dict = {"n": n}
    for k in ks:
        hits = sum(1 for r in ranks if r is not None and r <= k)
        out[f"acc@{k}"] = round(hits / n, 4) if n else None
        out[f"hits@{k}"] = hits
    return out


def evaluate_links(gold: Sequence[Link], predicted_codes: Sequence[Sequence[str]], *, known_codes=None,
                   ks: Sequence[int] = DEFAULT_KS) -> dict:
    """Accuracy report for gold links and, per link, its ranked candidate codes (same order).

    known_codes: codes of the knowledge base (a KnowledgeBase works), for the in_kb subset.
    """
    if len(gold) != len(predicted_codes):
        raise ValueError(f"{len(gold)} gold links but {len(predicted_codes)} candidate lists")
    ks = sorted(set(int(k) for k in ks))
    ranks = [None if not link.is_clean else _rank_of(link.code, list(codes))
             for link, codes in zip(gold, predicted_codes)]
    clean = [r for link, r in zip(gold, ranks) if link.is_clean]
    report = {
        "ks": ks,
        "counts": {"rows": len(gold), "no_code": sum(link.is_no_code for link in gold),
                   "composite": sum(link.is_composite for link in gold)},
        "cleaned": _accuracy(clean, ks),
        "all": _accuracy(ranks, ks),
    }
    if known_codes is not None:
        report["in_kb"] = _accuracy([r for link, r in zip(gold, ranks) if link.is_clean and link.code in known_codes],
                                    ks)
    report["by_label"] = {label: _accuracy([r for link, r in zip(gold, ranks) if link.is_clean and link.label == label],
                                           ks)
                          for label in sorted({link.label for link in gold})}
    return report


def format_report(report: dict) -> str:
    """A plain-text table: one row per subset, one column per k."""
    ks = report["ks"]
    rows = [("cleaned", report["cleaned"]), ("all", report["all"])]
    if "in_kb" in report:
        rows.append(("in_kb", report["in_kb"]))
    rows += [(f"label={label}", acc) for label, acc in report["by_label"].items()]
    width = max(len(name) for name, _ in rows) + 2
    header = "subset".ljust(width) + "n".rjust(7) + "".join(f"top-{k}".rjust(9) for k in ks)
    lines = [header, "-" * len(header)]
    for name, acc in rows:
        cells = "".join((f"{acc[f'acc@{k}']:.4f}" if acc[f"acc@{k}"] is not None else "-").rjust(9) for k in ks)
        lines.append(name.ljust(width) + str(acc["n"]).rjust(7) + cells)
    counts = report["counts"]
    lines.append(f"({counts['rows']} rows; {counts['no_code']} NO_CODE and {counts['composite']} composite rows are "
                 "excluded from cleaned and count as misses in all)")
    return "\n".join(lines)

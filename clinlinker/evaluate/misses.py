"""Where the misses are: each gold link whose code is not among its k candidates, given one cause.

Causes, checked in this order (the first that holds is the mention's cause):

- `not_in_kb`: the gold code is not a concept of the knowledge base (a fuller knowledge base fixes it);
- `outside_label`: it is, but not in the part of the knowledge base that serves the mention's label (routing);
- `abbreviation`: the mention is or holds an abbreviation or acronym (a token of 2-6 capitals, e.g. "TAC",
  "HTA", "RMN", optionally with a plural s), where spelling says little about the concept;
- `relative_listed`: the gold concept's is-a parent or child is in the list instead (the right branch of the
  hierarchy at another depth; needs a hierarchy);
- `no_shared_ngram`: no term of the gold concept shares a character 3-gram with the mention (what the lexical
  engine matches on): the wording is the concept's only by meaning;
- `outranked`: none of the above: the wording is close to a term of the concept, and k others still came first.

    >>> misses = classify_misses(gold, candidate_codes, kb, k=25, allowed=linker.allowed)
    >>> summarize(misses)["by_cause"]["abbreviation"]["n"]
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from clinlinker.linking.abbreviations import acronym_tokens
from clinlinker.links import Link
from clinlinker.search.lexical import CharNgramEncoder

_LEXICAL = CharNgramEncoder()  # its n-grams only (no idf needed)
CAUSES = ("not_in_kb", "outside_label", "abbreviation", "relative_listed", "no_shared_ngram", "outranked")
CAUSE_TEXT = {
    "not_in_kb": "gold concept not in the knowledge base",
    "outside_label": "in the knowledge base, outside the label's part",
    "abbreviation": "abbreviation or acronym",
    "relative_listed": "the gold's parent or child listed instead",
    "no_shared_ngram": "wording shares no character 3-gram with the concept's terms",
    "outranked": "close wording, outranked",
}


@dataclass(frozen=True)
class Miss:
    link: Link
    cause: str
    listed: tuple[str, ...]  # the first candidates (codes), best first
    relative: str = ""  # relative_listed: "parent 123 at 4" (which relative, at which rank)


def acronyms(text: str) -> list[str]:
    """The acronyms of a mention ("TAC", "T.A.C." read as "TAC", "AINEs"), as the abbreviation lever reads them."""
    return [acronym for _, acronym in acronym_tokens(text)]


def char_ngrams(text: str) -> set[str]:
    """The character 3-grams the lexical engine matches a text on."""
    return _LEXICAL.ngrams(text)


def classify_misses(gold: Sequence[Link], candidates: Sequence[Sequence[str]], kb, *, k: int = 25,
                    allowed: Callable[[str | None], object] | None = None) -> list[Miss]:
    """The cleaned gold links whose code is not among the first k of their candidate codes, each with its cause.

    allowed: label -> boolean mask over the knowledge base's concepts (or None: the whole of it), as
    `Linker.allowed`; without it `outside_label` is never given.
    """
    if len(gold) != len(candidates):
        raise ValueError(f"{len(gold)} gold links but {len(candidates)} candidate lists")
    misses = []
    for link, codes in zip(gold, candidates):
        if not link.is_clean:
            continue
        listed = tuple(codes[:k])
        if link.code in listed:
            continue
        relative = ""
        if link.code not in kb:
            cause = "not_in_kb"
        elif allowed is not None and (mask := allowed(link.label)) is not None and not mask[kb.index_of(link.code)]:
            cause = "outside_label"
        elif acronyms(link.span):
            cause = "abbreviation"
        elif (relative := _relative(kb, link.code, listed)):
            cause = "relative_listed"
        elif not any(char_ngrams(link.span) & char_ngrams(term) for term in kb[link.code].terms):
            cause = "no_shared_ngram"
        else:
            cause = "outranked"
        misses.append(Miss(link, cause, listed, relative))
    return misses


def _relative(kb, code: str, listed: Sequence[str]) -> str:
    if not kb.has_hierarchy:
        return ""
    rank = {c: i for i, c in enumerate(listed, start=1)}
    near = [(rank[p], "parent", p) for p in kb.parents(code) if p in rank]
    near += [(rank[c], "child", c) for c in kb.children(code) if c in rank]
    if not near:
        return ""
    at, relation, other = min(near)
    return f"{relation} {other} at {at}"


def summarize(misses: Sequence[Miss], scored: int, *, examples: int = 3) -> dict:
    """Counts, shares (of the misses and of the scored mentions) and a few examples per cause."""
    counts = Counter(m.cause for m in misses)
    out = {"scored": scored, "misses": len(misses), "by_cause": {}}
    for cause in CAUSES:
        chosen = [m for m in misses if m.cause == cause]
        wordings = Counter(m.link.span for m in chosen)
        out["by_cause"][cause] = {
            "n": counts[cause],
            "share_of_misses": round(counts[cause] / len(misses), 4) if misses else 0.0,
            "share_of_scored": round(counts[cause] / scored, 4) if scored else 0.0,
            "examples": [{"mention": text, "label": m.link.label, "gold": m.link.code, "first": m.listed[0] if
                          m.listed else "", **({"relative": m.relative} if m.relative else {})}
                         for text, _ in wordings.most_common(examples)
                         for m in [next(x for x in chosen if x.link.span == text)]],
        }
    return out


def format_summary(summary: dict) -> str:
    lines = [f"{summary['misses']} of {summary['scored']} scored mentions have their gold code outside the list",
             f"{'cause':58s} {'n':>6s} {'of misses':>10s} {'of all':>8s}  examples"]
    for cause, row in summary["by_cause"].items():
        shown = "; ".join(f"{e['mention']!r} ({e['gold']})" for e in row["examples"])
        lines.append(f"{CAUSE_TEXT[cause]:58s} {row['n']:6d} {row['share_of_misses']:10.1%} "
                     f"{row['share_of_scored']:8.1%}  {shown}")
    return "\n".join(lines)


def write_misses(misses: Sequence[Miss], path, kb) -> None:
    """One row per miss: where it is, what the coder wrote, the gold concept, the cause, what came first."""
    import csv

    with open(path, "w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle, delimiter="\t", lineterminator="\n")
        out.writerow(["filename", "label", "start_span", "end_span", "span", "code", "gold_term", "cause",
                      "relative", "first_code", "first_term"])
        for m in misses:
            gold = kb.get(m.link.code)
            first = kb.get(m.listed[0]) if m.listed else None
            out.writerow([m.link.filename, m.link.label, m.link.start, m.link.end, m.link.span, m.link.code,
                          gold.preferred_term if gold else "", m.cause, m.relative,
                          m.listed[0] if m.listed else "", first.preferred_term if first else ""])

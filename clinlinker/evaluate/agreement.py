"""Agreement between coders who coded the same documents: spans, labels and codes.

The input is what each coder gave for each document: `Coded(doc, coder, codings)`, one per (document, coder),
a coder who coded a document and marked no span included (an empty list is a statement: "nothing here").

- **Spans** match when their offsets are equal (strict, as the shared tasks score them). Span agreement between two
  coders is the F1 of one's spans against the other's (symmetric), with and without the label; kappa does not apply
  to span presence (there is no countable set of spans nobody marked).
- **Labels** are compared on spans both marked: observed agreement and Cohen's kappa.
- **Codes** are compared on spans both marked with the same label: exact agreement, agreement within the concept's
  family (the same code, or one the parent or child of the other through the knowledge base's hierarchy; a
  composite `A+B` agrees in family with `C+D` when its parts pair up so), and Cohen's kappa over the codes. Fleiss'
  kappa over codes for spans every coder of a document marked, where three or more coders coded it.

    >>> a = Coded("caso1", "ana", [Coding(10, 18, "SINTOMA", "386661006")])
    >>> b = Coded("caso1", "luis", [Coding(10, 18, "SINTOMA", "386661006")])
    >>> agreement([a, b])["overall"]["code_exact"]
    1.0
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Coding:
    start: int
    end: int
    label: str
    code: str  # a code, a composite A+B, or NO_CODE
    span: str = ""


@dataclass
class Coded:
    doc: str
    coder: str
    codings: list[Coding] = field(default_factory=list)


def cohen_kappa(a: Sequence, b: Sequence) -> float | None:
    """Cohen's kappa of two raters over the same items (None when chance agreement is certain: one category)."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} and {len(b)} ratings: Cohen's kappa compares the same items")
    n = len(a)
    if not n:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[c] * cb[c] for c in ca) / (n * n)
    return None if expected >= 1.0 else round((observed - expected) / (1.0 - expected), 6)


def fleiss_kappa(items: Sequence[Sequence]) -> float | None:
    """Fleiss' kappa: each item is the list of categories its raters gave (the same number of raters, >= 2)."""
    if not items:
        return None
    n = len(items[0])
    if n < 2 or any(len(item) != n for item in items):
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings per item")
    totals: Counter = Counter()
    agree = 0.0
    for item in items:
        counts = Counter(item)
        totals.update(counts)
        agree += (sum(c * c for c in counts.values()) - n) / (n * (n - 1))
    p_bar = agree / len(items)
    p_e = sum((t / (len(items) * n)) ** 2 for t in totals.values())
    return None if p_e >= 1.0 else round((p_bar - p_e) / (1.0 - p_e), 6)


def same_family(a: str, b: str, kb=None) -> bool:
    """The same code, or parent and child through the knowledge base's hierarchy; composites part by part."""
    if a == b:
        return True
    if kb is None:
        return False
    pa, pb = a.split("+"), b.split("+")
    if len(pa) != len(pb):
        return False
    if len(pa) > 1:
        left = list(pb)
        for part in pa:  # greedy pairing is enough for the two or three parts composites have
            match = next((x for x in left if same_family(part, x, kb)), None)
            if match is None:
                return False
            left.remove(match)
        return True
    if a not in kb or b not in kb:
        return False
    return a in kb.parents(b) or b in kb.parents(a)


class _Tally:
    def __init__(self):
        self.spans_a = self.spans_b = self.matched = self.matched_label = 0
        self.label_pairs: list[tuple[str, str]] = []
        self.code_pairs: list[tuple[str, str]] = []
        self.family = 0
        self.docs: set = set()

    def figures(self) -> dict:
        n = len(self.code_pairs)
        sizes = self.spans_a + self.spans_b
        return {
            "documents": len(self.docs), "spans_a": self.spans_a, "spans_b": self.spans_b,
            "span_f1": round(2 * self.matched / sizes, 6) if sizes else None,
            "span_label_f1": round(2 * self.matched_label / sizes, 6) if sizes else None,
            "label_compared": len(self.label_pairs),
            "label_agreement": round(sum(x == y for x, y in self.label_pairs) / len(self.label_pairs), 6)
            if self.label_pairs else None,
            "label_kappa": cohen_kappa(*zip(*self.label_pairs)) if self.label_pairs else None,
            "code_compared": n,
            "code_exact": round(sum(x == y for x, y in self.code_pairs) / n, 6) if n else None,
            "code_family": round(self.family / n, 6) if n else None,
            "code_kappa": cohen_kappa(*zip(*self.code_pairs)) if n else None,
        }


def _by_offsets(codings: Iterable[Coding]) -> dict:
    out = {}
    for c in codings:
        out.setdefault((c.start, c.end), c)  # one coding per span and coder (the first: spans are unique per coder)
    return out


def agreement(coded: Sequence[Coded], kb=None) -> dict:
    """Agreement figures: overall, per coder pair, per label (pairwise, pooled over the documents both coded),
    Fleiss' kappa over codes where 3+ coders coded a document, and every disagreement."""
    by_doc = _by_doc(coded)
    overall, pairs, labels = _Tally(), defaultdict(_Tally), defaultdict(_Tally)
    fleiss_items: dict = defaultdict(list)
    for doc, coders in by_doc.items():
        for a, b in combinations(sorted(coders), 2):
            sa, sb = coders[a], coders[b]
            overall.docs.add(doc)
            pairs[(a, b)].docs.add(doc)
            for offsets in set(sa) | set(sb):
                x, y = sa.get(offsets), sb.get(offsets)
                both = (overall, pairs[(a, b)])
                for tally in both:
                    tally.spans_a += x is not None
                    tally.spans_b += y is not None
                for coding, side in ((x, "a"), (y, "b")):
                    if coding is not None:
                        tally = labels[coding.label]
                        tally.docs.add(doc)
                        setattr(tally, f"spans_{side}", getattr(tally, f"spans_{side}") + 1)
                if x is None or y is None:
                    continue
                for tally in both:
                    tally.matched += 1
                    tally.label_pairs.append((x.label, y.label))
                if x.label != y.label:
                    continue
                family = same_family(x.code, y.code, kb)
                for tally in (*both, labels[x.label]):
                    tally.matched_label += 1
                    tally.code_pairs.append((x.code, y.code))
                    tally.family += family
                labels[x.label].matched += 1
        if len(coders) >= 3:
            everyone = set.intersection(*(set(s) for s in coders.values()))
            for offsets in everyone:
                codings = [coders[c][offsets] for c in sorted(coders)]
                if len({c.label for c in codings}) == 1:
                    fleiss_items[len(coders)].append([c.code for c in codings])
    fleiss = {str(n): {"items": len(items), "kappa": fleiss_kappa(items)} for n, items in sorted(fleiss_items.items())}
    return {
        "documents": len(by_doc),
        "coded_documents": {coder: n for coder, n in sorted(Counter(c.coder for c in coded).items())},
        "overall": overall.figures(),
        "pairs": [{"a": a, "b": b, **t.figures()} for (a, b), t in sorted(pairs.items())],
        "labels": {label: t.figures() for label, t in sorted(labels.items())},
        "fleiss_code_kappa": fleiss,
        "disagreements": _disagreements(by_doc),
    }


def disagreements(coded: Sequence[Coded]) -> list[dict]:
    """Every span (by offsets) of a document coded by 2+ coders where they differ: a coder did not mark it, or gave
    another label or code. One row per span: its document, offsets, text, kind, and each coder's label and code."""
    return _disagreements(_by_doc(coded))


def _by_doc(coded: Sequence[Coded]) -> dict:
    """doc -> coder -> (start, end) -> Coding."""
    by_doc: dict = defaultdict(dict)
    for c in coded:
        by_doc[c.doc][c.coder] = _by_offsets(c.codings)
    return by_doc


def _disagreements(by_doc: dict) -> list[dict]:
    out = []
    for doc in sorted(by_doc):
        coders = by_doc[doc]
        if len(coders) < 2:
            continue
        for offsets in sorted(set().union(*coders.values())):
            given = {coder: spans.get(offsets) for coder, spans in sorted(coders.items())}
            values = {(c.label, c.code) if c else None for c in given.values()}
            if len(values) == 1:
                continue
            present = [c for c in given.values() if c]
            kind = ("span" if None in values else "label" if len({c.label for c in present}) > 1 else "code")
            out.append({"doc": doc, "start": offsets[0], "end": offsets[1],
                        "span": next((c.span for c in present if c.span), ""), "kind": kind,
                        "codings": {coder: ({"label": c.label, "code": c.code} if c else None)
                                    for coder, c in given.items()}})
    return out

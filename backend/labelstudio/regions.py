"""Regions of a Label Studio result list: a span (`labels` item) plus its per-region items, grouped by id.

Also the node names of the candidate Taxonomy, shared by the predictor and the exporter:
a mention node is `"<text> [<start>-<end>]"`, a candidate leaf is `"<code> | <preferred term>"` followed by what a
coder weighs to choose between related concepts: `" · <semantic tag> · ⊂ <parent code> <parent term>"`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from clinlinker.search.candidates import context_parts

from backend.labelstudio.label_config import SEMANTIC_RELATIONS

NO_CODE = "NO_CODE"
UNTOUCHED = "prediction"  # Label Studio's origin of a result item the coder left as pre-annotated
ORIGIN_RANK = {UNTOUCHED: 0, "prediction-changed": 1, "manual": 2}
NO_CODE_LEAF = "NO_CODE | sin código SNOMED CT"
_CODE = re.compile(r"^\s*([0-9A-Za-z_]+(?:\s*\+\s*[0-9A-Za-z_]+)*)\s*(?:\|.*)?$")


def mention_node(text: str, start: int, end: int, label: str | None = None) -> str:
    """'apendicitis aguda [110-127] · ENFERMEDAD': the span's text, offsets and label, as the picker lists it."""
    node = f"{' '.join(text.split())} [{start}-{end}]"
    return f"{node} · {label}" if label else node


_OFFSETS = re.compile(r"\[(\d+)-(\d+)\](?:\s·\s[^\[\]]*)?$")


def node_offsets(node: str) -> tuple[int, int] | None:
    """(start, end) of a mention node, whatever text and label it shows; None for any other node."""
    match = _OFFSETS.search(node or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


MAX_PARENTS_SHOWN = 2


def candidate_leaf(code: str, preferred_term: str, semantic_tag: str = "", parents=(), evidence: str = "") -> str:
    """'6025007 | apendicectomía laparoscópica · procedure · ⊂ 80146002 apendicectomía'.

    parents: (code, term) pairs or {"code", "term"} dicts; at most MAX_PARENTS_SHOWN are shown, then "+N".
    A hierarchy neighbour (no similarity of its own) says so.
    """
    pairs = [(p["code"], p.get("term", "")) if isinstance(p, dict) else tuple(p) for p in parents or ()]
    parts = context_parts(semantic_tag, pairs[:MAX_PARENTS_SHOWN])
    if len(pairs) > MAX_PARENTS_SHOWN:
        parts.append(f"+{len(pairs) - MAX_PARENTS_SHOWN}")
    if evidence == "hierarchy":
        parts.append("(por jerarquía)")
    return " · ".join([f"{code} | {preferred_term}"] + parts)


def leaf_of(candidate: dict) -> str:
    """The picker leaf of a candidate as stored (Candidate.to_dict)."""
    return candidate_leaf(candidate["code"], candidate["preferred_term"], candidate.get("semantic_tag", ""),
                          candidate.get("parents", ()), candidate.get("evidence", ""))


def code_of(value: str) -> str | None:
    """The code in a leaf or a typed value: '6025007 | apendicectomía' -> '6025007'; 'A + B' -> 'A+B'."""
    match = _CODE.match(value or "")
    return re.sub(r"\s+", "", match.group(1)) if match else None


@dataclass
class Region:
    id: str
    start: int | None = None
    end: int | None = None
    text: str | None = None
    label: str | None = None
    origin: str | None = None
    taxonomy: list[list[str]] = field(default_factory=list)
    typed: list[str] = field(default_factory=list)
    picked: list[str] = field(default_factory=list)  # flat candidate choices (one task per mention)
    relation: str | None = None
    has_code_item: bool = False
    code_origin: str | None = None  # the code items' Label Studio origin: prediction, prediction-changed, manual

    def _saw_code(self, origin) -> None:
        # the most reviewed origin wins: a region is untouched only when every code item is
        if isinstance(origin, str) and _rank(origin) >= _rank(self.code_origin):
            self.code_origin = origin

    @property
    def node(self) -> str:
        return mention_node(self.text or "", self.start or 0, self.end or 0, self.label)


def _rank(origin: str | None) -> int:
    return -1 if origin is None else ORIGIN_RANK.get(origin, len(ORIGIN_RANK))  # an unknown origin counts as reviewed


def result_problem(result, where: str) -> str | None:
    """What makes a result list unreadable ('<field path>: what is wrong'), or None: items must be objects, a `value`
    an object, offsets integers, labels/choices/taxonomy lists, texts text, region ids strings or integers."""
    if not isinstance(result, list):
        return f"{where}: expected a list of result items, got {type(result).__name__}"
    for i, item in enumerate(result):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            return f"{here}: expected a result item object, got {type(item).__name__}"
        if "id" in item and (isinstance(item["id"], bool) or not isinstance(item["id"], (str, int))):
            return f"{here}.id: expected a region id"
        value = item.get("value")
        if value is None:
            continue
        if not isinstance(value, dict):
            return f"{here}.value: expected an object, got {type(value).__name__}"
        for key in ("start", "end"):
            offset = value.get(key)
            if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int)):
                return f"{here}.value.{key}: expected an integer offset"
        for key in ("labels", "choices", "taxonomy"):
            if value.get(key) is not None and not isinstance(value[key], list):
                return f"{here}.value.{key}: expected a list"
        if value.get("text") is not None and not isinstance(value["text"], (str, list)):
            return f"{here}.value.text: expected text or a list of texts"
    return None


def group_regions(result: list) -> list[Region]:
    """Group result items by region id, in order of first appearance."""
    regions: dict[str, Region] = {}
    for item in result or []:
        if not isinstance(item, dict) or not item.get("id"):
            continue
        region = regions.setdefault(str(item["id"]), Region(id=str(item["id"])))
        value = item.get("value")
        value = value if isinstance(value, dict) else {}
        kind = item.get("type")
        if isinstance(value.get("start"), int) and isinstance(value.get("end"), int):
            region.start, region.end = value["start"], value["end"]
            if isinstance(value.get("text"), str):
                region.text = value["text"]
        if kind == "labels":
            labels = value.get("labels") or []
            region.label = labels[0] if labels else None
            region.origin = item.get("origin")
        elif kind == "taxonomy":
            region.taxonomy = [list(path) for path in value.get("taxonomy") or [] if isinstance(path, list)]
            region.has_code_item = True
            region._saw_code(item.get("origin"))
        elif kind == "textarea":
            texts = value.get("text") or []
            region.typed = [t for t in (texts if isinstance(texts, list) else [texts]) if isinstance(t, str) and t.strip()]
            region.has_code_item = region.has_code_item or bool(region.typed)
            if region.typed:
                region._saw_code(item.get("origin"))
        elif kind == "choices":
            # Either the semantic relation (EXACT, NARROW, ...) or candidate picks: nested paths
            # [mention node, leaf] like the Taxonomy's, or flat "code | term" choices.
            for choice in value.get("choices") or []:
                if isinstance(choice, list):
                    region.taxonomy.append(list(choice))
                    region.has_code_item = True
                    region._saw_code(item.get("origin"))
                elif choice in SEMANTIC_RELATIONS:
                    region.relation = choice
                elif isinstance(choice, str) and code_of(choice):
                    region.picked.append(choice)
                    region.has_code_item = True
                    region._saw_code(item.get("origin"))
    return list(regions.values())


def span_regions(result: list) -> list[Region]:
    return [r for r in group_regions(result) if r.label is not None and r.start is not None]

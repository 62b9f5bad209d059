"""The knowledge base: SNOMED CT concepts with their terms, semantic tags and is-a parents.

A concept is a code, a preferred term, its synonyms and a semantic tag. Terms are kept
in one flat table (term id -> concept id) because that is what the indexes search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Concept:
    code: str
    preferred_term: str
    semantic_tags: tuple[str, ...]  # the union of what its sources say, first seen first; () means unknown
    terms: tuple[str, ...]  # preferred term first, then synonyms, in file order

    def __post_init__(self):
        tags = self.semantic_tags
        if isinstance(tags, str):  # one tag given as text ("" = unknown)
            tags = (tags,)
        object.__setattr__(self, "semantic_tags", tuple(dict.fromkeys(t.strip() for t in tags if t and t.strip())))

    @property
    def semantic_tag(self) -> str:
        """The tags as one display string ('procedure', 'disorder, trastorno'); '' when unknown."""
        return ", ".join(self.semantic_tags)

    @property
    def synonyms(self) -> tuple[str, ...]:
        return self.terms[1:]


@dataclass
class LoadReport:
    """What loading the gazetteers found, so nothing is dropped silently."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    duplicate_rows: int = 0
    extra_mainterms: int = 0  # codes with more than one mainterm=1 row: the first wins
    multi_tag_concepts: int = 0  # concepts whose sources give several tags: all are kept
    untagged_concepts: int = 0  # concepts no source gives a tag (unknown, not wrong)
    hierarchy_edges: int = 0
    duplicate_edges: int = 0

    def summary(self) -> str:
        return (f"{self.rows} rows from {len(self.files)} file(s); {self.duplicate_rows} duplicate rows merged; "
                f"{self.extra_mainterms} extra mainterm rows; {self.multi_tag_concepts} concepts with several semantic "
                f"tags (all kept); {self.untagged_concepts} concepts without a tag; "
                f"{self.hierarchy_edges} hierarchy edges")


class KnowledgeBase:
    """Concepts plus the flat term table searched by the indexes.

    Build it with `clinlinker.kb.gazetteer.load_knowledge_base` or `KnowledgeBase.from_rows`.
    """

    def __init__(self, concepts: Sequence[Concept], parents: dict[str, tuple[str, ...]] | None = None,
                 report: LoadReport | None = None):
        self.concepts: list[Concept] = list(concepts)
        self.report = report or LoadReport()
        self._by_code = {concept.code: i for i, concept in enumerate(self.concepts)}
        self.term_texts: list[str] = []
        self.term_concept: list[int] = []
        for i, concept in enumerate(self.concepts):
            for term in concept.terms:
                self.term_texts.append(term)
                self.term_concept.append(i)
        self._parents: dict[str, tuple[str, ...]] = dict(parents or {})
        self._children: dict[str, tuple[str, ...]] | None = None

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, str, bool]], parents=None,
                  report: LoadReport | None = None) -> "KnowledgeBase":
        """Merge (code, term, semantic_tag, is_mainterm) rows into concepts.

        Duplicate (code, term) rows are merged and counted in the report. A concept's semantic tags are the
        union of its rows' non-empty tags: a source without a tag says nothing against one that has it.
        """
        report = report or LoadReport()
        order: list[str] = []
        terms: dict[str, list[str]] = {}
        seen: dict[str, set[str]] = {}
        main: dict[str, str] = {}
        tags: dict[str, dict[str, None]] = {}
        for code, term, tag, is_main in rows:
            report.rows += 1
            if code not in terms:
                order.append(code)
                terms[code] = []
                seen[code] = set()
                tags[code] = {}
            if tag:
                tags[code][tag] = None
            if term in seen[code]:
                report.duplicate_rows += 1
            else:
                seen[code].add(term)
                terms[code].append(term)
            if is_main:
                if code not in main:
                    main[code] = term
                elif main[code] != term:
                    report.extra_mainterms += 1
        concepts = []
        for code in order:
            preferred = main.get(code, terms[code][0])
            ordered = (preferred,) + tuple(t for t in terms[code] if t != preferred)
            report.multi_tag_concepts += len(tags[code]) > 1
            report.untagged_concepts += not tags[code]
            concepts.append(Concept(code=code, preferred_term=preferred, semantic_tags=tuple(tags[code]),
                                    terms=ordered))
        return cls(concepts, parents=parents, report=report)

    def __len__(self) -> int:
        return len(self.concepts)

    def __contains__(self, code: str) -> bool:
        return code in self._by_code

    def __getitem__(self, code: str) -> Concept:
        return self.concepts[self._by_code[code]]

    def get(self, code: str) -> Concept | None:
        i = self._by_code.get(code)
        return None if i is None else self.concepts[i]

    def index_of(self, code: str) -> int:
        return self._by_code[code]

    @property
    def n_terms(self) -> int:
        return len(self.term_texts)

    @property
    def has_hierarchy(self) -> bool:
        return bool(self._parents)

    def parents(self, code: str) -> tuple[str, ...]:
        return self._parents.get(code, ())

    def grandparents(self, code: str) -> tuple[str, ...]:
        out: list[str] = []
        for parent in self.parents(code):
            for grandparent in self.parents(parent):
                if grandparent not in out and grandparent != code:
                    out.append(grandparent)
        return tuple(out)

    def parent_terms(self, code: str) -> tuple[tuple[str, str], ...]:
        """(code, preferred term) of each parent; the term is '' for a parent outside the knowledge base."""
        out = []
        for parent in self.parents(code):
            concept = self.get(parent)
            out.append((parent, concept.preferred_term if concept is not None else ""))
        return tuple(out)

    def children(self, code: str) -> tuple[str, ...]:
        if self._children is None:
            children: dict[str, list[str]] = {}
            for child, parents in self._parents.items():
                for parent in parents:
                    children.setdefault(parent, []).append(child)
            self._children = {parent: tuple(kids) for parent, kids in children.items()}
        return self._children.get(code, ())

    def ancestors(self, code: str) -> set[str]:
        """Every concept above `code` through the is-a hierarchy (cycles in a bad file are tolerated)."""
        out: set[str] = set()
        stack = list(self.parents(code))
        while stack:
            parent = stack.pop()
            if parent not in out and parent != code:
                out.add(parent)
                stack.extend(self.parents(parent))
        return out

    def inherited_tags(self, code: str) -> tuple[str, ...]:
        """The tags of the nearest tagged ancestors in the knowledge base (breadth first, one level at a time)."""
        seen = {code}
        level = list(self.parents(code))
        while level:
            tags: dict[str, None] = {}
            for parent in level:
                concept = self.get(parent)
                if concept is not None:
                    tags.update(dict.fromkeys(concept.semantic_tags))
            if tags:
                return tuple(tags)
            seen.update(level)
            level = [g for p in level for g in self.parents(p) if g not in seen]
        return ()

    def parent_map(self) -> dict[str, tuple[str, ...]]:
        return dict(self._parents)

    def hierarchy_edges(self) -> list[tuple[str, str]]:
        return [(code, parent) for code, parents in self._parents.items() for parent in parents]

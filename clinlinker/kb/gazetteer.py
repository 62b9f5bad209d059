"""Reading gazetteers (`code language term semantic_tag mainterm`) and is-a hierarchies (`code parent`)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from clinlinker.errors import InputFileError
from clinlinker.kb.knowledge_base import KnowledgeBase, LoadReport
from clinlinker.tsv import read_tsv

log = logging.getLogger(__name__)

GAZETTEER_COLUMNS = ("code", "language", "term", "semantic_tag", "mainterm")
HIERARCHY_COLUMNS = ("code", "parent")
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no", ""}


def read_gazetteer_rows(path) -> Iterator[tuple[str, str, str, bool]]:
    """Yield (code, term, semantic_tag, is_mainterm) for each row, validating as it goes."""
    _, rows = read_tsv(path, GAZETTEER_COLUMNS)
    for lineno, row in rows:
        code = row["code"].strip()
        term = " ".join(row["term"].split())
        if not code:
            raise InputFileError(path, lineno, "empty code")
        if not term:
            raise InputFileError(path, lineno, f"empty term for code {code}")
        mainterm = row["mainterm"].strip().lower()
        if mainterm not in _TRUE and mainterm not in _FALSE:
            raise InputFileError(path, lineno, f"mainterm must be 1 or 0, got {row['mainterm']!r}")
        yield code, term, row["semantic_tag"].strip(), mainterm in _TRUE


def read_hierarchy(path, report: LoadReport | None = None) -> dict[str, tuple[str, ...]]:
    """Read `code parent` rows into code -> parents (file order, duplicates merged and counted)."""
    parents: dict[str, list[str]] = {}
    _, rows = read_tsv(path, HIERARCHY_COLUMNS)
    for lineno, row in rows:
        code, parent = row["code"].strip(), row["parent"].strip()
        if not code or not parent:
            raise InputFileError(path, lineno, "empty code or parent")
        if code == parent:
            raise InputFileError(path, lineno, f"concept {code} is its own parent")
        bucket = parents.setdefault(code, [])
        if parent in bucket:
            if report:
                report.duplicate_edges += 1
            continue
        bucket.append(parent)
        if report:
            report.hierarchy_edges += 1
    return {code: tuple(ps) for code, ps in parents.items()}


def load_knowledge_base(gazetteers: Sequence[str | Path], hierarchy: str | Path | None = None) -> KnowledgeBase:
    """Merge one or more gazetteer files (and an optional hierarchy) into one KnowledgeBase."""
    if not gazetteers:
        raise InputFileError("<none>", None, "no gazetteer given")
    report = LoadReport(files=[str(p) for p in gazetteers])

    def all_rows() -> Iterable[tuple[str, str, str, bool]]:
        for path in gazetteers:
            yield from read_gazetteer_rows(path)

    parents = read_hierarchy(hierarchy, report) if hierarchy else None
    kb = KnowledgeBase.from_rows(all_rows(), parents=parents, report=report)
    if not len(kb):
        raise InputFileError(gazetteers[0], None, "no concepts: the gazetteer has a header but no rows")
    log.info("knowledge base: %d concepts, %d terms (%s)", len(kb), kb.n_terms, report.summary())
    return kb


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

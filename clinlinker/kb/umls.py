"""UMLS as a second source of SNOMED CT: MRCONSO.RRF (strings) and MRREL.RRF (is-a) -> the same gazetteer and
hierarchy as an RF2 import (clinlinker/kb/rf2.py), for teams with a UMLS licence but no national release.

Strings: the rows of the chosen sources (default SCTSPA, the Spanish edition in UMLS) in the chosen language, not
suppressed (SUPPRESS N), keyed by CODE (the SCTID). The preferred term is the source's PT, the semantic tag comes
from its FN (fully specified name). Hierarchy: MRREL rows with RELA `isa` ("the second is a child of the first"),
from SNOMED CT sources, both ends mapped to codes through MRCONSO's atoms. Gazetteers from RF2 and UMLS can be
given together to `clinlinker index`: their synonyms are merged per code.
"""

from __future__ import annotations

import re
from pathlib import Path

from clinlinker.errors import ClinlinkerError, InputFileError
from clinlinker.kb.rf2 import Release
from clinlinker.tsv import decoded_lines

MRCONSO = ("CUI", "LAT", "TS", "LUI", "STT", "SUI", "ISPREF", "AUI", "SAUI", "SCUI", "SDUI", "SAB", "TTY", "CODE",
           "STR", "SRL", "SUPPRESS", "CVF")
MRREL = ("CUI1", "AUI1", "STYPE1", "REL", "CUI2", "AUI2", "STYPE2", "RELA", "RUI", "SRUI", "SAB", "SL", "RG", "DIR",
         "SUPPRESS", "CVF")
LANGUAGES = {"es": "SPA", "en": "ENG", "fr": "FRE", "pt": "POR", "de": "GER", "it": "ITA", "nl": "DUT"}
SNOMED_SOURCES = ("SCTSPA", "SNOMEDCT_US", "SNOMEDCT_VET")
_TAG = re.compile(r"\s\(([^()]+)\)\s*$")


def _rrf(path: Path, columns: tuple[str, ...]):
    width = len(columns)
    with path.open("rb") as handle:
        for number, line in decoded_lines(path, handle):
            if not line:
                continue
            fields = line.split("|")
            if fields and fields[-1] == "":
                fields = fields[:-1]  # every RRF line ends with a bar
            if len(fields) != width:
                raise InputFileError(path, number, f"expected {width} bar-separated fields "
                                                   f"({'|'.join(columns[:4])}|...), found {len(fields)}")
            yield number, fields


def read_umls(meta, *, language: str = "es", sources: tuple[str, ...] = ("SCTSPA",)) -> Release:
    meta = Path(meta)
    conso = meta / "MRCONSO.RRF"
    if not conso.is_file():
        raise ClinlinkerError(f"{meta}: no MRCONSO.RRF (give the META folder of a UMLS release)")
    lat = LANGUAGES.get(language.lower(), language.upper())
    code_of_atom: dict[str, str] = {}
    rows: dict[str, list[tuple[str, str]]] = {}  # code -> [(TTY, STR)] in file order
    for _, f in _rrf(conso, MRCONSO):
        sab, code = f[11], f[13]
        if sab in SNOMED_SOURCES:
            code_of_atom[f[7]] = code
        if sab in sources and f[1] == lat and f[16] in ("N", "") and code and code != "NOCODE":
            rows.setdefault(code, []).append((f[12], " ".join(f[14].split())))
    release = Release(info={"source": str(meta.resolve()), "release_type": "UMLS", "language": language,
                            "sources": list(sources)})
    for code in sorted(rows, key=lambda c: (len(c), c)):
        entries = rows[code]
        fsn = next((s for tty, s in entries if tty == "FN"), "")
        preferred = next((s for tty, s in entries if tty == "PT"), None) or \
            next((s for tty, s in entries if tty != "FN"), None) or _TAG.sub("", fsn)
        tag = _TAG.search(fsn)
        terms = [preferred] + [s for tty, s in entries if tty != "FN" and s != preferred] + \
            [s for tty, s in entries if tty == "FN"]
        release.concepts[code] = (preferred, tag.group(1) if tag else "", list(dict.fromkeys(terms)))
    rel = meta / "MRREL.RRF"
    if rel.is_file():
        for _, f in _rrf(rel, MRREL):
            if f[7] != "isa" or f[10] not in SNOMED_SOURCES or f[14] not in ("N", ""):
                continue
            parent, child = code_of_atom.get(f[1]), code_of_atom.get(f[5])
            if parent and child and parent != child and parent in release.concepts and child in release.concepts:
                bucket = release.parents.setdefault(child, [])
                if parent not in bucket:
                    bucket.append(parent)
    release.info["counts"] = {"concepts": len(release.concepts),
                              "terms": sum(len(c[2]) for c in release.concepts.values()),
                              "is_a_edges": sum(len(p) for p in release.parents.values())}
    return release

"""From a SNOMED CT release in RF2 format to clinlinker's gazetteer and hierarchy.

A user's licensed release (the Spanish Edition, or the International release plus a national extension), unzipped:
its Snapshot files (or its Full files, of which each component's latest row is taken) are read as streams:

- `sct2_Concept_*`: active concepts only;
- `sct2_Description_*-<lang>*`: active descriptions in the chosen language; the FSN gives the semantic tag;
- `der2_cRefset_Language*`: the acceptability of each description in the chosen language refset(s): the preferred
  synonym becomes the preferred term, acceptable ones are synonyms; a description the refsets do not list is left
  out (unless the release has no language refset for the language at all: then every active description counts);
- `sct2_Relationship_*`: active is-a relationships (116680003) between active concepts: the hierarchy;
- `der2_cRefset_Association*` (optional): inactive concepts mapped to their replacements (reported, never served).

Several files of a kind (International + extension) are merged: per component id, the row with the latest
effectiveTime wins. The release's dates and modules are recorded in `release.json` beside the output so an index
can say what it was built from. Malformed rows stop with `file:line: what is wrong`.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from clinlinker.errors import ClinlinkerError, InputFileError
from clinlinker.tsv import decoded_lines

IS_A = "116680003"
FSN = "900000000000003001"
SYNONYM = "900000000000013009"
PREFERRED = "900000000000548007"
ACCEPTABLE = "900000000000549004"
ASSOCIATIONS = {"900000000000526001": "REPLACED BY", "900000000000527005": "SAME AS",
                "900000000000523009": "POSSIBLY EQUIVALENT TO", "900000000000528000": "WAS A",
                "900000000000530003": "ALTERNATIVE", "900000000000525003": "MOVED FROM",
                "900000000000524004": "MOVED TO", "900000000000531004": "REFERS TO"}

COLUMNS = {
    "concept": ("id", "effectiveTime", "active", "moduleId", "definitionStatusId"),
    "description": ("id", "effectiveTime", "active", "moduleId", "conceptId", "languageCode", "typeId", "term",
                    "caseSignificanceId"),
    "relationship": ("id", "effectiveTime", "active", "moduleId", "sourceId", "destinationId", "relationshipGroup",
                     "typeId", "characteristicTypeId", "modifierId"),
    "language": ("id", "effectiveTime", "active", "moduleId", "refsetId", "referencedComponentId",
                 "acceptabilityId"),
    "association": ("id", "effectiveTime", "active", "moduleId", "refsetId", "referencedComponentId",
                    "targetComponentId"),
}
PATTERNS = {
    "concept": r"^sct2_Concept_{kind}[-_]",
    "description": r"^sct2_Description_{kind}-(?P<lang>[A-Za-z]+)[-_]",
    "relationship": r"^sct2_Relationship_{kind}[-_]",
    "language": r"^der2_cRefset_Language{kind}-(?P<lang>[A-Za-z]+)[-_]",
    "association": r"^der2_cRefset_Association(?:Reference)?{kind}[-_]",
}
_TAG = re.compile(r"\s\(([^()]+)\)\s*$")


@dataclass
class Release:
    """What an RF2 import produced: concepts (code -> preferred term, tag, terms), parents, and what it read."""

    concepts: dict[str, tuple[str, str, list[str]]] = field(default_factory=dict)
    parents: dict[str, list[str]] = field(default_factory=dict)
    inactive: list[tuple[str, str, str]] = field(default_factory=list)  # (inactive code, association, target)
    info: dict = field(default_factory=dict)


def find_files(folder, kind: str | None = None) -> tuple[str, dict[str, list[Path]]]:
    """The release's files by role, Snapshot unless `kind` says Full (or the folder has no Snapshot files)."""
    root = Path(folder)
    if not root.is_dir():
        raise ClinlinkerError(f"{folder}: not a folder (unzip the RF2 release first)")
    names = [p for p in root.rglob("*.txt") if p.is_file()]
    chosen = None
    for candidate in ([kind.capitalize()] if kind else ["Snapshot", "Full"]):
        found = {role: sorted(p for p in names if re.match(pattern.format(kind=candidate), p.name))
                 for role, pattern in PATTERNS.items()}
        if found["concept"] and found["description"]:
            chosen = (candidate, found)
            break
    if chosen is None:
        raise ClinlinkerError(f"{folder}: not an RF2 release: no sct2_Concept_{kind.capitalize() if kind else '*'} "
                              "and sct2_Description_ files found (expected e.g. Snapshot/Terminology/"
                              "sct2_Concept_Snapshot_INT_20240301.txt)")
    return chosen


def _rows(path: Path, role: str, progress=None):
    """(line, fields) of one RF2 file after checking its header; a malformed row stops with file:line."""
    expected = COLUMNS[role]
    with path.open("rb") as handle:
        lines = decoded_lines(path, handle)
        _, first = next(lines, (1, ""))
        header = first.lstrip("\ufeff").split("\t")
        if tuple(header) != expected:
            raise InputFileError(path, 1, f"not an RF2 {role} file: header {header!r}, expected "
                                          f"{', '.join(expected)}")
        width = len(expected)
        for number, line in lines:
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != width:
                raise InputFileError(path, number, f"expected {width} tab-separated fields, found {len(fields)}")
            if fields[2] not in ("0", "1") or len(fields[1]) != 8 or not fields[1].isdigit():
                raise InputFileError(path, number, f"active must be 0 or 1 and effectiveTime YYYYMMDD, got "
                                                   f"{fields[2]!r} and {fields[1]!r}")
            if progress is not None:
                progress.update(1)
            yield number, fields


KEEP = {  # the columns each role needs, in this order (id, effectiveTime and active always first)
    "concept": (0, 1, 2),
    "description": (0, 1, 2, 4, 5, 6, 7),  # id, time, active, conceptId, languageCode, typeId, term
    "language": (0, 1, 2, 4, 5, 6),  # id, time, active, refsetId, referencedComponentId, acceptabilityId
    "relationship": (0, 1, 2, 4, 5, 7),  # id, time, active, sourceId, destinationId, typeId
    "association": (0, 1, 2, 4, 5, 6),  # id, time, active, refsetId, referencedComponentId, targetComponentId
}
INTERN = {  # columns whose few values repeat endlessly: one string object each
    "concept": {1, 2}, "description": {1, 2, 5, 6}, "language": {1, 2, 4, 6}, "relationship": {1, 2, 7},
    "association": {1, 2, 4},
}


def _latest(files: list[Path], role: str, info: dict, progress=None, keep=None) -> dict[str, tuple]:
    """Per component id, the row with the latest effectiveTime over every file of the role (Full or several
    editions), as a tuple of the role's KEEP columns; `keep(fields)` drops rows early (a dropped row still takes
    part as its effectiveTime alone: a later dropped row hides an earlier kept one)."""
    latest: dict = {}
    columns = KEEP[role]
    shared = INTERN[role]
    intern = sys.intern
    modules = info["modules"]
    for path in files:
        newest = ""
        for _, fields in _rows(path, role, progress):
            time = fields[1]
            if time > newest:
                newest = time
            modules.add(fields[3])
            current = latest.get(fields[0])
            if current is None or time >= (current if isinstance(current, str) else current[1]):
                if keep is None or keep(fields):
                    latest[fields[0]] = tuple(intern(fields[i]) if i in shared else fields[i] for i in columns)
                else:
                    latest[fields[0]] = intern(time)
        info["files"].append({"file": path.name, "role": role, "latest_effective_time": newest})
    if keep is not None:  # the placeholders of dropped rows have done their job
        latest = {cid: row for cid, row in latest.items() if not isinstance(row, str)}
    return latest


def read_release(folder, *, language: str = "es", kind: str | None = None,
                 language_refsets: tuple[str, ...] = (), progress: bool | None = None) -> Release:
    """Read an unzipped RF2 release into a Release (see the module's docstring)."""
    kind_found, files = find_files(folder, kind)
    language = language.lower()
    info = {"source": str(Path(folder).resolve()), "release_type": kind_found, "language": language,
            "files": [], "modules": set()}
    descriptions_files = [p for p in files["description"]
                          if re.match(PATTERNS["description"].format(kind=kind_found), p.name).group("lang").lower()
                          .startswith(language)]
    if not descriptions_files:
        raise ClinlinkerError(f"{folder}: no sct2_Description_{kind_found}-{language}* file: the release has no "
                              f"descriptions in {language!r} (files: {', '.join(p.name for p in files['description'])})")
    bar = _progress(progress)
    concepts = _latest(files["concept"], "concept", info, bar)
    active = {cid for cid, row in concepts.items() if row[2] == "1"}
    descriptions = _latest(descriptions_files + [p for p in files["description"] if p not in descriptions_files],
                           "description", info, bar,
                           # other languages give only their FSN (the tag, where the language has no FSN)
                           keep=lambda f: f[4] in active and (f[6] == FSN or f[5].lower().startswith(language)))
    refsets = _latest(files["language"], "language", info, bar)
    relationships = _latest(files["relationship"], "relationship", info, bar, keep=lambda f: f[7] == IS_A)
    associations = _latest(files["association"], "association", info, bar) if files["association"] else {}
    if bar is not None:
        bar.close()

    acceptability: dict[str, str] = {}  # description id -> preferred/acceptable in the chosen refsets
    refsets_seen: set[str] = set()
    for _, _, on, refset, description, accepted in refsets.values():
        if on != "1":
            continue
        refsets_seen.add(refset)
        if language_refsets and refset not in language_refsets:
            continue
        if acceptability.get(description) != PREFERRED:  # preferred in any chosen refset wins
            acceptability[description] = accepted
    by_concept: dict[str, list[tuple]] = defaultdict(list)
    fsn_any: dict[str, str] = {}
    for row in descriptions.values():
        did, _, on, cid, lang, kind_id, term = row
        if on != "1" or cid not in active:
            continue
        if kind_id == FSN and cid not in fsn_any:
            fsn_any[cid] = term
        if lang.lower().startswith(language):
            by_concept[cid].append(row)
    use_refsets = any(row[0] in acceptability for rows in by_concept.values() for row in rows)

    release = Release()
    skipped = {"no_terms_in_language": 0}
    for cid in sorted(active, key=int):
        rows = sorted(by_concept.get(cid, ()), key=lambda r: int(r[0]))
        if use_refsets:
            rows = [r for r in rows if r[0] in acceptability]
        if not rows:
            skipped["no_terms_in_language"] += 1
            continue
        own_fsn = next((r[6] for r in rows if r[5] == FSN), None)
        fsn = own_fsn or fsn_any.get(cid)
        synonyms = [r for r in rows if r[5] == SYNONYM]
        preferred = next((r[6] for r in synonyms if acceptability.get(r[0]) == PREFERRED), None)
        if preferred is None:
            preferred = _TAG.sub("", own_fsn) if own_fsn else (synonyms or rows)[0][6]
        tag_match = _TAG.search(fsn or "")
        terms = [preferred] + [r[6] for r in synonyms if r[6] != preferred] + \
            [r[6] for r in rows if r[5] == FSN and r[6] != preferred]
        release.concepts[cid] = (preferred, tag_match.group(1) if tag_match else "", list(dict.fromkeys(terms)))
    for _, _, on, source, destination, type_id in sorted(relationships.values(),
                                                          key=lambda r: (int(r[3]), int(r[4]))):
        if on == "1" and type_id == IS_A and source in release.concepts and destination in release.concepts:
            bucket = release.parents.setdefault(source, [])
            if destination not in bucket:
                bucket.append(destination)
    for _, _, on, refset, referenced, target in sorted(associations.values(), key=lambda r: (int(r[4]), r[3])):
        if on == "1" and referenced in concepts and referenced not in active:
            release.inactive.append((referenced, ASSOCIATIONS.get(refset, refset), target))
    info["modules"] = sorted(info["modules"])
    info["release_date"] = max((f["latest_effective_time"] for f in info["files"]), default="")
    info["language_refsets"] = sorted(language_refsets) if language_refsets else sorted(refsets_seen)
    info["counts"] = {"concepts_read": len(concepts), "active_concepts": len(active),
                      "concepts": len(release.concepts), "terms": sum(len(c[2]) for c in release.concepts.values()),
                      "is_a_edges": sum(len(p) for p in release.parents.values()),
                      "inactive_with_association": len(release.inactive), **skipped}
    release.info = info
    return release


def subset(release: Release, *, descendants_of: tuple[str, ...] = (), tags: tuple[str, ...] = ()) -> Release:
    """The concepts that descend from (or are) any of `descendants_of`, or carry one of `tags`; the hierarchy
    edges between them."""
    children: dict[str, list[str]] = defaultdict(list)
    for child, parents in release.parents.items():
        for parent in parents:
            children[parent].append(child)
    keep: set[str] = set()
    stack = [code for code in descendants_of if code in release.concepts]
    missing = [code for code in descendants_of if code not in release.concepts]
    if missing:
        raise ClinlinkerError(f"--descendants-of {', '.join(missing)}: not an active concept of the release")
    while stack:
        code = stack.pop()
        if code not in keep:
            keep.add(code)
            stack.extend(children.get(code, ()))
    wanted_tags = {t.lower() for t in tags}
    keep |= {code for code, (_, tag, _) in release.concepts.items() if tag.lower() in wanted_tags}
    out = Release(info={**release.info, "subset": {"descendants_of": list(descendants_of), "tags": list(tags)}})
    out.concepts = {code: value for code, value in release.concepts.items() if code in keep}
    out.parents = {code: [p for p in parents if p in keep] for code, parents in release.parents.items()
                   if code in keep and any(p in keep for p in parents)}
    out.inactive = [row for row in release.inactive if row[2] in keep]
    out.info["counts"] = {**release.info.get("counts", {}), "concepts": len(out.concepts),
                          "terms": sum(len(c[2]) for c in out.concepts.values()),
                          "is_a_edges": sum(len(p) for p in out.parents.values())}
    return out


def write_release(release: Release, out, language: str = "es") -> dict[str, Path]:
    """OUT/gazetteer.tsv, OUT/hierarchy.tsv, OUT/inactive.tsv and OUT/release.json: what `clinlinker index` reads."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"gazetteer": out / "gazetteer.tsv", "hierarchy": out / "hierarchy.tsv", "inactive": out / "inactive.tsv",
             "release": out / "release.json"}
    with paths["gazetteer"].open("w", encoding="utf-8") as handle:
        handle.write("code\tlanguage\tterm\tsemantic_tag\tmainterm\n")
        for code, (preferred, tag, terms) in release.concepts.items():
            for term in terms:
                clean = " ".join(term.split())
                handle.write(f"{code}\t{language}\t{clean}\t{tag}\t{1 if term == preferred else 0}\n")
    with paths["hierarchy"].open("w", encoding="utf-8") as handle:
        handle.write("code\tparent\n")
        for code, parents in release.parents.items():
            for parent in parents:
                handle.write(f"{code}\t{parent}\n")
    with paths["inactive"].open("w", encoding="utf-8") as handle:
        handle.write("code\tassociation\ttarget\n")
        for code, association, target in release.inactive:
            handle.write(f"{code}\t{association}\t{target}\n")
    paths["release"].write_text(json.dumps(release.info, indent=2, ensure_ascii=False), encoding="utf-8")
    return paths


def _progress(enabled: bool | None):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(unit=" rows", desc="reading RF2", unit_scale=True, file=sys.stderr)

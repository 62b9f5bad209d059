"""A small RF2 release written by the project (identifiers of the demo concepts, terms of our own): two modules
(International, a Spanish extension), inactive rows, several effective times, a Spanish language refset, an
association refset. Written as a Full release (every row) and as a Snapshot (each component's latest row)."""

from pathlib import Path

INT, ES = "900000000000207008", "450829007"
ES_REFSET = "450828004"
FSN, SYN = "900000000000003001", "900000000000013009"
PREF, ACC = "900000000000548007", "900000000000549004"
IS_A, FINDING_SITE = "116680003", "363698007"

# (id, effectiveTime, active, module, definitionStatus)
CONCEPTS = [
    ("138875005", "20020131", "1", INT), ("404684003", "20020131", "1", INT), ("64572001", "20020131", "1", INT),
    ("71388002", "20020131", "1", INT), ("386661006", "20020131", "1", INT), ("74400008", "20020131", "1", INT),
    ("80146002", "20020131", "1", INT), ("6025007", "20020131", "1", INT), ("66754008", "20020131", "1", INT),
    ("12345009", "20020131", "1", INT), ("12345009", "20200131", "0", INT),  # inactivated, replaced by 74400008
    ("99999003", "20210731", "1", ES),  # a concept of the extension, in Spanish only
]
# (id, effectiveTime, active, module, concept, language, type, term)
DESCRIPTIONS = [
    ("1001", "20020131", "1", INT, "138875005", "en", FSN, "SNOMED CT Concept (SNOMED RT+CTV3)"),
    ("1002", "20020131", "1", INT, "404684003", "en", FSN, "Clinical finding (finding)"),
    ("1003", "20020131", "1", INT, "64572001", "en", FSN, "Disease (disorder)"),
    ("1004", "20020131", "1", INT, "71388002", "en", FSN, "Procedure (procedure)"),
    ("1005", "20020131", "1", INT, "386661006", "en", FSN, "Fever (finding)"),
    ("1006", "20020131", "1", INT, "74400008", "en", FSN, "Appendicitis (disorder)"),
    ("1007", "20020131", "1", INT, "80146002", "en", FSN, "Appendectomy (procedure)"),
    ("1008", "20020131", "1", INT, "6025007", "en", FSN, "Laparoscopic appendectomy (procedure)"),
    ("1009", "20020131", "1", INT, "12345009", "en", FSN, "Old appendix disorder (disorder)"),
    ("1010", "20020131", "1", INT, "66754008", "en", FSN, "Appendix structure (body structure)"),
    ("2001", "20200430", "1", ES, "404684003", "es", FSN, "hallazgo clínico (hallazgo)"),
    ("2002", "20200430", "1", ES, "404684003", "es", SYN, "hallazgo clínico"),
    ("2003", "20200430", "1", ES, "64572001", "es", FSN, "enfermedad (trastorno)"),
    ("2004", "20200430", "1", ES, "64572001", "es", SYN, "enfermedad"),
    ("2005", "20200430", "1", ES, "71388002", "es", SYN, "procedimiento"),  # no Spanish FSN: the English tag
    ("2006", "20200430", "1", ES, "386661006", "es", FSN, "fiebre (hallazgo)"),
    ("2007", "20200430", "1", ES, "386661006", "es", SYN, "fiebre"),
    ("2008", "20200430", "1", ES, "386661006", "es", SYN, "pirexia"),
    ("2009", "20200430", "1", ES, "386661006", "es", SYN, "calentura"),  # not in the language refset: left out
    ("2010", "20200430", "1", ES, "74400008", "es", FSN, "apendicitis (trastorno)"),
    ("2011", "20200430", "1", ES, "74400008", "es", SYN, "apendicitis"),
    ("2012", "20200430", "1", ES, "74400008", "es", SYN, "apendicitis sin especificar"),
    ("2012", "20221031", "0", ES, "74400008", "es", SYN, "apendicitis sin especificar"),  # retired
    ("2013", "20200430", "1", ES, "80146002", "es", SYN, "apendicectomia"),
    ("2013", "20221031", "1", ES, "80146002", "es", SYN, "apendicectomía"),  # spelling corrected later
    ("2014", "20200430", "1", ES, "6025007", "es", SYN, "apendicectomía laparoscópica"),
    ("2015", "20200430", "1", ES, "12345009", "es", SYN, "trastorno apendicular antiguo"),  # concept inactive
    ("2016", "20210731", "1", ES, "99999003", "es", FSN, "cefalea en racimos de prueba (trastorno)"),
    ("2017", "20210731", "1", ES, "99999003", "es", SYN, "cefalea en racimos de prueba"),
    ("2018", "20200430", "1", ES, "74400008", "es", SYN, "inflamación del apéndice"),
]
# (id, effectiveTime, active, module, refset, description, acceptability)
LANGUAGE = [
    (f"L{d}", "20200430", "1", ES, ES_REFSET, d, a) for d, a in [
        ("2001", PREF), ("2002", PREF), ("2003", PREF), ("2004", PREF), ("2005", PREF), ("2006", PREF),
        ("2007", PREF), ("2008", ACC), ("2010", PREF), ("2011", PREF), ("2012", ACC), ("2013", PREF),
        ("2014", PREF), ("2015", PREF), ("2018", ACC)]
] + [("L2016", "20210731", "1", ES, ES_REFSET, "2016", PREF), ("L2017", "20210731", "1", ES, ES_REFSET, "2017", PREF),
     ("L2018", "20221031", "1", ES, ES_REFSET, "2018", PREF),  # later made the preferred term...
     ("L2011", "20221031", "1", ES, ES_REFSET, "2011", ACC)]  # ...and the old one acceptable
# (id, effectiveTime, active, module, source, destination, group, type)
RELATIONSHIPS = [
    ("R1", "20020131", "1", INT, "404684003", "138875005", "0", IS_A),
    ("R2", "20020131", "1", INT, "64572001", "404684003", "0", IS_A),
    ("R3", "20020131", "1", INT, "71388002", "138875005", "0", IS_A),
    ("R4", "20020131", "1", INT, "386661006", "404684003", "0", IS_A),
    ("R5", "20020131", "1", INT, "74400008", "64572001", "0", IS_A),
    ("R6", "20020131", "1", INT, "80146002", "71388002", "0", IS_A),
    ("R7", "20020131", "1", INT, "6025007", "80146002", "0", IS_A),
    ("R8", "20020131", "1", INT, "74400008", "66754008", "1", FINDING_SITE),  # not is-a
    ("R9", "20020131", "1", INT, "6025007", "71388002", "0", IS_A),
    ("R9", "20190131", "0", INT, "6025007", "71388002", "0", IS_A),  # retired edge
    ("R10", "20020131", "1", INT, "12345009", "64572001", "0", IS_A),
    ("R11", "20210731", "1", ES, "99999003", "64572001", "0", IS_A),
    ("R12", "20020131", "1", INT, "66754008", "138875005", "0", IS_A),
]
# (id, effectiveTime, active, module, refset, referenced, target)
ASSOCIATION = [("A1", "20200131", "1", INT, "900000000000526001", "12345009", "74400008")]

HEADERS = {
    "concept": "id\teffectiveTime\tactive\tmoduleId\tdefinitionStatusId",
    "description": "id\teffectiveTime\tactive\tmoduleId\tconceptId\tlanguageCode\ttypeId\tterm\tcaseSignificanceId",
    "relationship": "id\teffectiveTime\tactive\tmoduleId\tsourceId\tdestinationId\trelationshipGroup\ttypeId\t"
                    "characteristicTypeId\tmodifierId",
    "language": "id\teffectiveTime\tactive\tmoduleId\trefsetId\treferencedComponentId\tacceptabilityId",
    "association": "id\teffectiveTime\tactive\tmoduleId\trefsetId\treferencedComponentId\ttargetComponentId",
}


def _latest(rows):
    out = {}
    for row in rows:
        if row[0] not in out or row[1] >= out[row[0]][1]:
            out[row[0]] = row
    return list(out.values())


def write_release(root: Path, kind: str = "Snapshot") -> Path:
    """Write the release under root/<kind>/ (Terminology and Refset folders, one file per module and role)."""
    base = Path(root) / kind
    take = (lambda rows: rows) if kind == "Full" else _latest
    files = {
        "concept": ("Terminology", "sct2_Concept_{kind}_{mod}_20221031.txt",
                    [r + ("900000000000074008",) for r in CONCEPTS]),
        "description": ("Terminology", "sct2_Description_{kind}-{lang}_{mod}_20221031.txt",
                        [r + ("900000000000448009",) for r in DESCRIPTIONS]),
        "relationship": ("Terminology", "sct2_Relationship_{kind}_{mod}_20221031.txt",
                         [r + ("900000000000011006", "900000000000451002") for r in RELATIONSHIPS]),
        "language": ("Refset/Language", "der2_cRefset_Language{kind}-{lang}_{mod}_20221031.txt", LANGUAGE),
        "association": ("Refset/Content", "der2_cRefset_Association{kind}_{mod}_20221031.txt", ASSOCIATION),
    }
    for role, (folder, pattern, rows) in files.items():
        for module, mod in ((INT, "INT"), (ES, "SpanishExtension")):
            mine = [r for r in rows if r[3] == module]
            if role == "description" or role == "language":
                groups = {}
                for r in mine:
                    groups.setdefault(r[5] if role == "description" else "es", []).append(r)
            else:
                groups = {None: mine}
            for lang, group in groups.items():
                if not group:
                    continue
                path = base / folder / pattern.format(kind=kind, lang=lang or "", mod=mod)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(HEADERS[role] + "\n" + "".join("\t".join(r) + "\n" for r in take(group)),
                                encoding="utf-8")
    return base

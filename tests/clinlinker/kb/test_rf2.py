"""RF2 import: the exact gazetteer and hierarchy produced from the project's small release, Snapshot and Full."""

import json

import pytest

from clinlinker.cli import main
from clinlinker.errors import ClinlinkerError, InputFileError
from clinlinker.kb.gazetteer import load_knowledge_base
from clinlinker.kb.rf2 import read_release, subset
from tests.rf2_release import write_release as write_fixture

GAZETTEER = """code	language	term	semantic_tag	mainterm
6025007	es	apendicectomía laparoscópica	procedure	1
64572001	es	enfermedad	trastorno	1
64572001	es	enfermedad (trastorno)	trastorno	0
71388002	es	procedimiento	procedure	1
74400008	es	inflamación del apéndice	trastorno	1
74400008	es	apendicitis	trastorno	0
74400008	es	apendicitis (trastorno)	trastorno	0
80146002	es	apendicectomía	procedure	1
99999003	es	cefalea en racimos de prueba	trastorno	1
99999003	es	cefalea en racimos de prueba (trastorno)	trastorno	0
386661006	es	fiebre	hallazgo	1
386661006	es	pirexia	hallazgo	0
386661006	es	fiebre (hallazgo)	hallazgo	0
404684003	es	hallazgo clínico	hallazgo	1
404684003	es	hallazgo clínico (hallazgo)	hallazgo	0
"""
HIERARCHY = """code	parent
6025007	80146002
64572001	404684003
74400008	64572001
80146002	71388002
99999003	64572001
386661006	404684003
"""


@pytest.mark.parametrize("kind", ["Snapshot", "Full"])
def test_the_exact_gazetteer_and_hierarchy(tmp_path, kind):
    folder = write_fixture(tmp_path / "release", kind)
    assert main(["kb", "rf2", "--release", str(folder), "--out", str(tmp_path / "kb")]) == 0
    assert (tmp_path / "kb" / "gazetteer.tsv").read_text(encoding="utf-8") == GAZETTEER
    assert (tmp_path / "kb" / "hierarchy.tsv").read_text(encoding="utf-8") == HIERARCHY
    assert (tmp_path / "kb" / "inactive.tsv").read_text() == "code\tassociation\ttarget\n12345009\tREPLACED BY\t74400008\n"
    info = json.loads((tmp_path / "kb" / "release.json").read_text())
    assert info["release_type"] == kind and info["release_date"] == "20221031"
    assert info["modules"] == ["450829007", "900000000000207008"] and info["language_refsets"] == ["450828004"]
    assert info["counts"]["no_terms_in_language"] == 2  # the root and the body structure have no Spanish term
    kb = load_knowledge_base([tmp_path / "kb" / "gazetteer.tsv"], tmp_path / "kb" / "hierarchy.tsv")
    assert kb["74400008"].preferred_term == "inflamación del apéndice" and kb.parents("6025007") == ("80146002",)


def test_a_subset_per_label(tmp_path):
    release = read_release(write_fixture(tmp_path / "release"), progress=False)
    disorders = subset(release, descendants_of=("64572001",))
    assert sorted(disorders.concepts, key=int) == ["64572001", "74400008", "99999003"]
    assert disorders.parents == {"74400008": ["64572001"], "99999003": ["64572001"]}
    procedures = subset(release, tags=("procedure",))
    assert sorted(procedures.concepts, key=int) == ["6025007", "71388002", "80146002"]
    assert main(["kb", "rf2", "--release", str(tmp_path / "release" / "Snapshot"), "--out", str(tmp_path / "findings"),
                 "--descendants-of", "404684003"]) == 0
    codes = {line.split("\t")[0] for line in (tmp_path / "findings" / "gazetteer.tsv").read_text().splitlines()[1:]}
    assert codes == {"404684003", "386661006", "64572001", "74400008", "99999003"}


def test_not_a_release_and_malformed_rows(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClinlinkerError, match="not an RF2 release"):
        read_release(tmp_path / "empty")
    folder = write_fixture(tmp_path / "release")
    concepts = next(folder.rglob("sct2_Concept_Snapshot_INT_*.txt"))
    lines = concepts.read_text().splitlines()
    concepts.write_text("\n".join(lines[:3] + ["64572001\t2002013\t1\tx\ty"] + lines[3:]) + "\n")
    with pytest.raises(InputFileError, match=r"sct2_Concept_Snapshot_INT_20221031.txt:4: active must be 0 or 1"):
        read_release(folder)
    concepts.write_text("id\teffectiveTime\tactive\n")
    with pytest.raises(InputFileError, match=r":1: not an RF2 concept file"):
        read_release(folder)
    assert main(["kb", "rf2", "--release", str(tmp_path / "empty"), "--out", str(tmp_path / "x")]) == 2


MRCONSO = """C0001|SPA|P|L1|PF|S1|Y|A001||||SCTSPA|PT|386661006|fiebre|0|N||
C0001|SPA|S|L2|PF|S2|N|A002||||SCTSPA|SY|386661006|pirexia|0|N||
C0001|SPA|S|L3|PF|S3|N|A003||||SCTSPA|FN|386661006|fiebre (hallazgo)|0|N||
C0001|SPA|S|L4|PF|S4|N|A004||||SCTSPA|SY|386661006|calentura antigua|0|O||
C0001|ENG|P|L5|PF|S5|Y|A005||||SNOMEDCT_US|PT|386661006|Fever|9|N||
C0002|SPA|P|L6|PF|S6|Y|A006||||SCTSPA|PT|404684003|hallazgo clínico|0|N||
C0002|SPA|S|L7|PF|S7|N|A007||||SCTSPA|FN|404684003|hallazgo clínico (hallazgo)|0|N||
C0003|SPA|P|L8|PF|S8|Y|A008||||MSHSPA|MH|D005334|Fiebre|3|N||
"""
MRREL = """C0002|A006|SCUI|CHD|C0001|A001|SCUI|isa|R1||SCTSPA|SCTSPA|||N||
C0001|A001|SCUI|PAR|C0002|A006|SCUI|inverse_isa|R2||SCTSPA|SCTSPA|||N||
C0002|A006|SCUI|RO|C0001|A001|SCUI|finding_site_of|R3||SCTSPA|SCTSPA|||N||
"""


def test_umls_mrconso_and_mrrel(tmp_path):
    meta = tmp_path / "META"
    meta.mkdir()
    (meta / "MRCONSO.RRF").write_text(MRCONSO, encoding="utf-8")
    (meta / "MRREL.RRF").write_text(MRREL, encoding="utf-8")
    assert main(["kb", "umls", "--meta", str(meta), "--out", str(tmp_path / "kb")]) == 0
    assert (tmp_path / "kb" / "gazetteer.tsv").read_text(encoding="utf-8") == (
        "code\tlanguage\tterm\tsemantic_tag\tmainterm\n"
        "386661006\tes\tfiebre\thallazgo\t1\n386661006\tes\tpirexia\thallazgo\t0\n"
        "386661006\tes\tfiebre (hallazgo)\thallazgo\t0\n"
        "404684003\tes\thallazgo clínico\thallazgo\t1\n404684003\tes\thallazgo clínico (hallazgo)\thallazgo\t0\n")
    assert (tmp_path / "kb" / "hierarchy.tsv").read_text() == "code\tparent\n386661006\t404684003\n"
    (meta / "MRCONSO.RRF").write_text(MRCONSO + "C9|SPA|P\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"MRCONSO.RRF:9: expected 18 bar-separated fields"):
        from clinlinker.kb.umls import read_umls

        read_umls(meta)


def test_kb_stats_and_coverage(tmp_path, capsys):
    folder = write_fixture(tmp_path / "release")
    assert main(["kb", "rf2", "--release", str(folder), "--out", str(tmp_path / "kb")]) == 0
    links = tmp_path / "gold.tsv"
    links.write_text("filename\tmark\tlabel\toff0\toff1\tspan\tcode\tsemantic_rel\n"
                     "d1\tT1\tSINTOMA\t0\t6\tfiebre\t386661006\tEXACT\n"
                     "d1\tT2\tSINTOMA\t7\t10\ttos\t49727002\tEXACT\n"
                     "d1\tT3\tENFERMEDAD\t11\t22\tapendicitis\t74400008\tEXACT\n"
                     "d1\tT4\tENFERMEDAD\t23\t30\tnada\tNO_CODE\tNO_CODE\n"
                     "d1\tT5\tENFERMEDAD\t31\t40\tdos cosas\t74400008+99999003\tEXACT\n", encoding="utf-8")
    out = tmp_path / "stats.json"
    assert main(["kb", "stats", "--gazetteer", str(tmp_path / "kb" / "gazetteer.tsv"), "--hierarchy",
                 str(tmp_path / "kb" / "hierarchy.tsv"), "--links", str(links), "--json", str(out)]) == 0
    stats = json.loads(out.read_text())
    assert stats["concepts"] == 8 and stats["terms"] == 15
    assert stats["semantic_tags"] == {"trastorno": 3, "hallazgo": 2, "procedure": 3}
    assert stats["depth"] == {"roots": 2, "max": 2, "median": 1.0, "unreachable": 0}
    labels = stats["links"][0]["labels"]
    assert labels["SINTOMA"] == {"mentions": 2, "no_code": 0, "composite": 0, "mentions_all_codes_in_kb": 1,
                                 "mention_coverage": 0.5, "distinct_codes": 2, "distinct_codes_in_kb": 1,
                                 "code_coverage": 0.5}
    assert labels["ENFERMEDAD"]["mention_coverage"] == 1.0 and labels["ENFERMEDAD"]["no_code"] == 1
    assert "SINTOMA" in capsys.readouterr().out


def test_from_release_to_index_in_three_commands(tmp_path):
    """The README's path: kb rf2, index, serve (the index records what release it was built from)."""
    folder = write_fixture(tmp_path / "release")
    assert main(["kb", "rf2", "--release", str(folder), "--out", str(tmp_path / "kb")]) == 0
    assert main(["index", "--gazetteer", str(tmp_path / "kb" / "gazetteer.tsv"), "--hierarchy",
                 str(tmp_path / "kb" / "hierarchy.tsv"), "--model", "char-ngrams", "--out", str(tmp_path / "ix")]) == 0
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    [source] = manifest["sources"]["gazetteers"]
    assert source["release"]["release_date"] == "20221031" and "450829007" in source["release"]["modules"]
    from clinlinker.linking.linker import Linker

    assert Linker.from_directory(tmp_path / "ix").link(["pirexia"])[0][0].code == "386661006"


def test_another_language_without_its_refset(tmp_path):
    """English descriptions, no English language refset in the release: every active description counts, the
    FSN without its tag is the preferred term."""
    release = read_release(write_fixture(tmp_path / "release"), language="en", progress=False)
    assert release.concepts["74400008"] == ("Appendicitis", "disorder", ["Appendicitis", "Appendicitis (disorder)"])
    assert "12345009" not in release.concepts and release.info["counts"]["no_terms_in_language"] == 1

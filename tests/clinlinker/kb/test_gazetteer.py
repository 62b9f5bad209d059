import pytest

from clinlinker.errors import InputFileError
from clinlinker.kb.gazetteer import load_knowledge_base, read_hierarchy

HEADER = "code\tlanguage\tterm\tsemantic_tag\tmainterm\n"


def write(tmp_path, name, text, mode="w"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_concept_has_preferred_term_synonyms_and_tag(demo_kb):
    concept = demo_kb["6025007"]
    assert concept.preferred_term == "apendicectomía laparoscópica"
    assert "apendicectomía por laparoscopia" in concept.synonyms
    assert concept.semantic_tag == "procedimiento"
    assert demo_kb.term_texts[demo_kb.term_concept.index(demo_kb.index_of("6025007"))] == concept.preferred_term


def test_preferred_term_is_the_mainterm_even_when_not_first(tmp_path):
    path = write(tmp_path, "g.tsv", HEADER + "1\tes\tsinónimo\tt\t0\n1\tes\tpreferido\tt\t1\n")
    concept = load_knowledge_base([path])["1"]
    assert concept.preferred_term == "preferido"
    assert concept.synonyms == ("sinónimo",)


def test_without_mainterm_the_first_term_is_preferred(tmp_path):
    path = write(tmp_path, "g.tsv", HEADER + "1\tes\tprimero\tt\t0\n1\tes\tsegundo\tt\t0\n")
    assert load_knowledge_base([path])["1"].preferred_term == "primero"


def test_files_merge_and_duplicates_are_counted(tmp_path):
    a = write(tmp_path, "a.tsv", HEADER + "1\tes\tuno\tt\t1\n2\tes\tdos\tt\t1\n")
    b = write(tmp_path, "b.tsv", HEADER + "1\tes\tuno\tt\t1\n1\tes\tuno bis\tt\t0\n3\tes\ttres\tt\t1\n")
    kb = load_knowledge_base([a, b])
    assert [c.code for c in kb.concepts] == ["1", "2", "3"]
    assert kb["1"].terms == ("uno", "uno bis")
    assert kb.report.rows == 5
    assert kb.report.duplicate_rows == 1
    assert kb.n_terms == 4


def test_columns_may_come_in_any_order(tmp_path):
    path = write(tmp_path, "g.tsv", "term\tcode\tmainterm\tsemantic_tag\tlanguage\nfiebre\t386661006\t1\thallazgo\tes\n")
    assert load_knowledge_base([path])["386661006"].preferred_term == "fiebre"


@pytest.mark.parametrize("text, line, words", [
    ("code\tlanguage\tterm\tmainterm\n1\tes\tx\t1\n", 1, "missing column(s) semantic_tag"),
    (HEADER + "1\tes\tuno\tt\t1\n\tes\tdos\tt\t1\n", 3, "empty code"),
    (HEADER + "1\tes\t  \tt\t1\n", 2, "empty term"),
    (HEADER + "1\tes\tuno\tt\t1\n2\tes\tdos\tt\n", 3, "expected 5 tab-separated fields"),
    (HEADER + "1\tes\tuno\tt\tsi\n", 2, "mainterm must be 1 or 0"),
])
def test_bad_rows_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, "bad.tsv", text)
    with pytest.raises(InputFileError) as info:
        load_knowledge_base([path])
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert words in str(info.value)


def test_bad_utf8_names_file_and_line(tmp_path):
    path = write(tmp_path, "latin1.tsv", (HEADER + "1\tes\tuno\tt\t1\n2\tes\tcirugía\tt\t1\n").encode("latin-1"))
    with pytest.raises(InputFileError) as info:
        load_knowledge_base([path])
    assert info.value.line == 3
    assert "UTF-8" in str(info.value)


def test_missing_or_empty_file_is_an_input_error(tmp_path):
    with pytest.raises(InputFileError, match="cannot open"):
        load_knowledge_base([tmp_path / "nope.tsv"])
    with pytest.raises(InputFileError, match="empty"):
        load_knowledge_base([write(tmp_path, "empty.tsv", "")])
    with pytest.raises(InputFileError, match="no concepts"):
        load_knowledge_base([write(tmp_path, "header.tsv", HEADER)])


def test_hierarchy_gives_parents_and_grandparents(demo_kb):
    assert demo_kb.parents("6025007") == ("80146002",)
    assert demo_kb.grandparents("6025007") == ("387713003",)
    assert demo_kb.parents("387713003") == ()


def test_hierarchy_duplicates_counted_and_self_loops_refused(tmp_path):
    from clinlinker.kb.knowledge_base import LoadReport

    path = write(tmp_path, "h.tsv", "code\tparent\n1\t2\n1\t2\n1\t3\n")
    report = LoadReport()
    assert read_hierarchy(path, report) == {"1": ("2", "3")}
    assert (report.hierarchy_edges, report.duplicate_edges) == (2, 1)
    with pytest.raises(InputFileError, match=r"h2.tsv:2: concept 5 is its own parent"):
        read_hierarchy(write(tmp_path, "h2.tsv", "code\tparent\n5\t5\n"))

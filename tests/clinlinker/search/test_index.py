import json

import numpy as np
import pytest

from clinlinker.encode.encoders import DenseEncoder
from clinlinker.errors import ClinlinkerError, IndexLoadError, IndexMismatchError
from clinlinker.search.index import build_index, load_index, save_index


@pytest.fixture(params=["dense", "lexical"])
def any_index(request, dense_index, lexical_index):
    return dense_index if request.param == "dense" else lexical_index


def test_search_returns_k_distinct_concepts_with_full_candidates(any_index, demo_kb):
    [candidates] = any_index.search(["dolor abdominal"], k=25)
    n = len(candidates)
    # dense: every concept has a similarity; lexical: only those sharing n-grams with the mention (no filler)
    assert n == 25 if any_index.engine == "dense" else 5 <= n <= 25
    assert len({c.code for c in candidates}) == n
    assert [c.rank for c in candidates] == list(range(1, n + 1))
    assert all(a.score >= b.score for a, b in zip(candidates, candidates[1:]))
    for c in candidates:
        concept = demo_kb[c.code]
        assert c.preferred_term == concept.preferred_term
        assert c.semantic_tag == concept.semantic_tag
        assert c.matched_term in concept.terms
        assert c.evidence == any_index.engine
        assert c.parents == demo_kb.parent_terms(c.code)


def test_exact_synonym_ranks_its_concept_first(any_index):
    [candidates] = any_index.search(["extirpación laparoscópica del apéndice"], k=5)
    assert candidates[0].code == "6025007"
    assert candidates[0].matched_term == "extirpación laparoscópica del apéndice"
    assert candidates[0].score == pytest.approx(1.0, abs=1e-5)


def test_dense_fewer_candidates_only_when_the_kb_is_smaller(dense_index, demo_kb):
    [candidates] = dense_index.search(["fiebre"], k=1000)
    assert len(candidates) == len(demo_kb)
    assert len({c.code for c in candidates}) == len(demo_kb)


def test_lexical_lists_every_concept_sharing_ngrams_and_nothing_else(lexical_index, demo_kb):
    [candidates] = lexical_index.search(["fiebre"], k=1000)
    query = lexical_index.encoder.encode(["fiebre"])
    sharing = {demo_kb.concepts[lexical_index.term_concept[t]].code
               for t in (query @ lexical_index.matrix.T).tocsr().indices}
    assert {c.code for c in candidates} == sharing
    assert 0 < len(candidates) < len(demo_kb)
    assert all(c.score > 0 for c in candidates)


def test_batch_search_matches_single_searches(any_index):
    mentions = ["cefalea intensa", "TAC abdominal", "diabetes tipo 2", "tos seca"]
    batch = any_index.search(mentions, k=10)
    for mention, result in zip(mentions, batch):
        single = any_index.search([mention], k=10)[0]
        # a batched matrix product may round differently in the last bit: near-ties can swap, nothing else
        assert [c.score for c in result] == pytest.approx([c.score for c in single], abs=1e-5)
        assert {c.code for c in result if c.score > result[-1].score + 1e-5} == \
            {c.code for c in single if c.score > single[-1].score + 1e-5}


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_a_mentions_dense_list_does_not_depend_on_what_shares_its_search(demo_kb, tiny_encoder, index_type):
    """/predict searches one case's mentions, `annotate` a shard's: the lists must be the same, near-ties included
    (this tiny model's similarities all lie within 1e-4 of each other, so last-bit differences reorder them)."""
    index = build_index(demo_kb, tiny_encoder, index_type=index_type)
    mentions = [*demo_kb.term_texts[:40], "cefalea intensa", "TAC abdominal", "diabetes tipo 2", "tos seca"]
    vectors = tiny_encoder.encode(mentions)
    together = index.search_vectors(vectors, k=25)
    for i in range(len(mentions)):
        alone = index.search_vectors(vectors[i:i + 1], k=25)[0]
        assert [(c.code, c.score) for c in together[i]] == [(c.code, c.score) for c in alone], mentions[i]


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf"])
def test_a_small_search_runs_on_one_thread_with_the_lists_of_a_threaded_one(demo_kb, tiny_encoder, index_type,
                                                                           monkeypatch):
    import faiss

    from clinlinker.search import index as index_module

    index = build_index(demo_kb, tiny_encoder, index_type=index_type)
    vectors = tiny_encoder.encode([*demo_kb.term_texts[:30], "cefalea intensa", "TAC abdominal"])
    threads = faiss.omp_get_max_threads()
    seen = []
    search = type(index)._faiss_search_threads
    monkeypatch.setattr(type(index), "_faiss_search_threads",
                        lambda self, v, d: seen.append(faiss.omp_get_max_threads()) or search(self, v, d))
    monkeypatch.setattr(index_module, "SMALL_SEARCH", 0)  # every search threaded
    threaded = index.search_vectors(vectors, k=25)
    monkeypatch.setattr(index_module, "SMALL_SEARCH", 2e7)  # this one is small
    single = index.search_vectors(vectors, k=25)
    assert seen[0] == threads and seen[-1] == 1
    assert faiss.omp_get_max_threads() == threads  # the caller's setting is given back
    assert [[(c.code, c.score) for c in row] for row in single] == [[(c.code, c.score) for c in row]
                                                                    for row in threaded]


def test_lexical_engine_folds_accents_and_case(lexical_index):
    [candidates] = lexical_index.search(["APENDICECTOMIA LAPAROSCOPICA"], k=3)
    assert candidates[0].code == "6025007"
    assert candidates[0].score == pytest.approx(1.0, abs=1e-5)


def test_lexical_lists_nothing_without_evidence(lexical_index):
    # was: 25 score-0 concepts in gazetteer file order
    assert lexical_index.search(["zzzz"], k=25) == [[]]
    [few] = lexical_index.search(["HTA"], k=3)
    assert all(c.score > 0 for c in few)


@pytest.mark.parametrize("index_type", ["hnsw", "sq8", "ivf"])
def test_approximate_index_types_return_k_distinct(demo_kb, tiny_encoder, index_type, tmp_path):
    index = build_index(demo_kb, tiny_encoder, index_type=index_type)
    save_index(index, tmp_path / "ix")
    loaded = load_index(tmp_path / "ix", encoder=tiny_encoder)
    assert loaded.index_type == index_type
    [candidates] = loaded.search(["insuficiencia cardíaca"], k=25)
    assert len({c.code for c in candidates}) == 25
    assert candidates[0].code == "84114007"


@pytest.mark.parametrize("engine", ["dense", "lexical"])
def test_saved_index_reloads_with_identical_results(engine, dense_index, lexical_index, tiny_model_dir, tmp_path):
    index = dense_index if engine == "dense" else lexical_index
    save_index(index, tmp_path / "ix")
    loaded = load_index(tmp_path / "ix")  # dense: the encoder is loaded from the manifest's model path
    mentions = ["dolor torácico opresivo", "resonancia", "neumonía bilateral"]
    assert [[(c.code, c.score) for c in r] for r in loaded.search(mentions, 25)] == \
        [[(c.code, c.score) for c in r] for r in index.search(mentions, 25)]
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["engine"] == engine
    assert manifest["concepts"] == len(index.kb) and manifest["terms"] == index.kb.n_terms
    assert loaded.kb.parents("6025007") == ("80146002",)


def test_dense_manifest_records_the_encoder(dense_index, tiny_encoder, tmp_path):
    save_index(dense_index, tmp_path / "ix", sources={"gazetteers": [{"path": "g.tsv", "sha256": "abc"}]})
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["fingerprint"] == tiny_encoder.fingerprint
    assert (manifest["pooling"], manifest["max_length"], manifest["dim"]) == ("cls", 64, tiny_encoder.dim)
    assert manifest["index_type"] == "flat"
    assert manifest["sources"]["gazetteers"][0]["sha256"] == "abc"
    assert "faiss-cpu" in manifest["versions"] and "torch" in manifest["versions"]


def test_loading_with_another_encoder_is_refused(dense_index, tiny_model_dir, tmp_path):
    save_index(dense_index, tmp_path / "ix")
    mean = DenseEncoder(str(tiny_model_dir), pooling="mean")
    with pytest.raises(IndexMismatchError, match="not comparable"):
        load_index(tmp_path / "ix", encoder=mean)
    with pytest.raises(IndexMismatchError, match="char-ngrams"):
        load_index(tmp_path / "ix", model="char-ngrams")


def test_lexical_index_refuses_a_dense_model(lexical_index, tiny_model_dir, tmp_path):
    save_index(lexical_index, tmp_path / "ix")
    with pytest.raises(IndexMismatchError, match="lexical"):
        load_index(tmp_path / "ix", model=str(tiny_model_dir))


@pytest.mark.parametrize("damage, message", [
    ("truncate", "truncated"),
    ("garbage", "corrupt"),
    ("delete", "missing"),
    ("manifest", "corrupt manifest"),
    ("no-manifest", "not a clinlinker index"),
    ("concepts", "corrupt concept table"),
])
def test_damaged_dense_index_gives_a_clear_error(dense_index, tiny_encoder, tmp_path, damage, message):
    directory = save_index(dense_index, tmp_path / "ix")
    faiss_file = directory / "terms.faiss"
    if damage == "truncate":
        faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    elif damage == "garbage":
        size = faiss_file.stat().st_size
        faiss_file.write_bytes(b"\0" * size)
    elif damage == "delete":
        faiss_file.unlink()
    elif damage == "manifest":
        (directory / "manifest.json").write_text("{not json")
    elif damage == "no-manifest":
        (directory / "manifest.json").unlink()
    elif damage == "concepts":
        concepts = directory / "concepts.json"
        concepts.write_text("x" * concepts.stat().st_size)
    with pytest.raises(IndexLoadError, match=message):
        load_index(directory, encoder=tiny_encoder)


def test_damaged_lexical_index_gives_a_clear_error(lexical_index, tmp_path):
    directory = save_index(lexical_index, tmp_path / "ix")
    matrix = directory / "terms_ngrams.npz"
    matrix.write_bytes(b"\1" * matrix.stat().st_size)
    with pytest.raises(IndexLoadError, match="corrupt lexical index"):
        load_index(directory)


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(IndexLoadError, match="no such index directory"):
        load_index(tmp_path / "nothing")


def test_save_replaces_an_index_but_never_a_foreign_directory(lexical_index, tmp_path):
    save_index(lexical_index, tmp_path / "ix")
    save_index(lexical_index, tmp_path / "ix")  # rebuilding over an index is fine
    assert load_index(tmp_path / "ix").kb.n_terms == lexical_index.kb.n_terms
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ClinlinkerError, match="not a clinlinker index"):
        save_index(lexical_index, foreign)
    assert (foreign / "holiday.jpg").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
def test_search_deepens_until_k_distinct_codes(demo_kb, tiny_encoder, index_type):
    # Many synonyms of one concept crowd the nearest terms: the search must look further.
    from clinlinker.kb.knowledge_base import KnowledgeBase

    rows = [("1", f"dolor variante {i}", "hallazgo", i == 0) for i in range(300)]
    rows += [(str(100 + i), f"otro concepto {i}", "hallazgo", True) for i in range(30)]
    kb = KnowledgeBase.from_rows(rows)
    index = build_index(kb, tiny_encoder, index_type=index_type)
    [candidates] = index.search(["dolor variante 7"], k=25)
    assert len({c.code for c in candidates}) == 25
    assert candidates[0].code == "1"
    assert np.all(np.diff([c.score for c in candidates]) <= 1e-6)


@pytest.mark.parametrize("part_copy", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("mask", ["all", "97%", "80%", "50%", "5%", "best excluded"])
def test_a_labels_part_is_searched_exactly_whichever_way_it_is_cut(lexical_index, part_copy, mask, monkeypatch):
    """A routing mask over concepts is searched through a restricted copy of the matrix (a small part), a filter of
    each mention's best hits (a large part) or nothing (every concept): always what ranking every hit of the
    allowed concepts gives. k is kept low, so that the cut of the best hits matters; "best excluded" leaves out the
    concepts of each mention's best hits, so that the cut holds none of the part."""
    from clinlinker.search.candidates import rank_concepts

    index = lexical_index
    monkeypatch.setattr(index, "PART_COPY", part_copy)
    mentions = ["dolor abdominal", "apendicectomía laparoscópica", "fiebre alta", "tos seca", "cefalea",
                "diabetes", "colecistectomía", "xyz"]
    scores = (index.encoder.encode(mentions) @ index.matrix.T).tocsr()
    if mask == "best excluded":
        allowed = np.ones(len(index.kb), dtype=bool)
        for row in range(len(mentions)):
            lo, hi = scores.indptr[row], scores.indptr[row + 1]
            best = scores.indices[lo:hi][np.argsort(-scores.data[lo:hi])[:8]]
            allowed[index.term_concept[best]] = False
    else:
        allowed = np.random.default_rng(len(mask)).random(len(index.kb)) < (1.0 if mask == "all" else
                                                                             int(mask[:-1]) / 100)
    for k in (1, 3, 8):
        found = index.search(mentions, k, allowed=allowed)
        for row, candidates in enumerate(found):
            lo, hi = scores.indptr[row], scores.indptr[row + 1]
            concepts, _, best = rank_concepts(scores.indices[lo:hi], scores.data[lo:hi], index.term_concept, k,
                                              preferred=index.term_preferred, allowed=allowed,
                                              code_rank=index.code_rank)
            assert [c.code for c in candidates] == [index.kb.concepts[c].code for c in concepts], (k, row)
            assert np.allclose([c.score for c in candidates], best)


def test_the_one_pass_product_is_scipys_to_the_last_bit(lexical_index):
    """sparse_product calls scipy's kernel without its counting pass: the same entries, in the same order, as `@`."""
    from clinlinker.search.lexical import sparse_product

    mentions = ["dolor abdominal", "apendicectomía laparoscópica", "xyz", "", "fiebre alta y tos seca"] * 3
    queries = lexical_index.encoder.encode(mentions)
    for by_feature in (lexical_index._by_feature, lexical_index._by_feature[:, ::3].tocsr()):
        expected, got = (queries @ by_feature).tocsr(), sparse_product(queries, by_feature)
        assert got.shape == expected.shape
        for a, b in ((got.indptr, expected.indptr), (got.indices, expected.indices), (got.data, expected.data)):
            assert np.array_equal(a, b)

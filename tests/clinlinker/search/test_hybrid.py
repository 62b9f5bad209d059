import pytest

from clinlinker.search.hybrid import HybridIndex
from clinlinker.search.index import load_index, save_index


@pytest.mark.parametrize("method", ["interpolate", "rrf"])
def test_hybrid_returns_k_distinct_concepts_exact_match_first(dense_index, lexical_index, method):
    hybrid = HybridIndex(dense_index, lexical_index, method=method, weight=0.5)
    [candidates] = hybrid.search(["colecistectomía por laparoscopia"], k=25)
    assert len({c.code for c in candidates}) == 25
    assert candidates[0].code == "45595009"
    assert [c.rank for c in candidates] == list(range(1, 26))
    assert all(a.score >= b.score for a, b in zip(candidates, candidates[1:]))


@pytest.mark.parametrize("weight, part", [(1.0, "dense"), (0.0, "lexical")])
def test_extreme_weights_reproduce_one_part(dense_index, lexical_index, weight, part):
    hybrid = HybridIndex(dense_index, lexical_index, method="interpolate", weight=weight, depth=62)
    source = dense_index if part == "dense" else lexical_index
    mention = "dolor en el pecho"
    fused = hybrid.search([mention], k=10)[0]
    alone = source.search([mention], k=10)[0]
    # the same scores in the same order (concepts tied on a score may come in another order)
    assert [c.score for c in fused] == pytest.approx([c.score for c in alone], abs=1e-6)
    assert fused[0].code == alone[0].code


def fused_by_definition(dense: list, lexical: list, method: str, weight: float, k: int) -> list[tuple]:
    """The fusion as the module's docstring defines it, computed from the parts' own candidate lists."""
    d, l = {c.code: c for c in dense}, {c.code: c for c in lexical}
    rows = []
    for code in d.keys() | l.keys():
        if method == "rrf":
            score = (weight / (60 + (d[code].rank if code in d else len(dense) + 1))
                     + (1 - weight) / (60 + (l[code].rank if code in l else len(lexical) + 1)))
        else:
            floor_d, floor_l = (dense[-1].score if dense else 0.0), (lexical[-1].score if lexical else 0.0)
            score = (weight * (d[code].score if code in d else floor_d)
                     + (1 - weight) * (l[code].score if code in l else floor_l))
        best = min(d[code].rank if code in d else len(dense) + 1, l[code].rank if code in l else len(lexical) + 1)
        source = d.get(code) or l[code]
        rows.append((round(score, 6), best, code, source.matched_term, source.parents))
    rows.sort(key=lambda r: (-r[0], r[1], r[2]))
    return [(code, score, rank, matched, parents)
            for rank, (score, _, code, matched, parents) in enumerate(rows[:k], start=1)]


@pytest.mark.parametrize("method, weight", [("interpolate", 0.7), ("interpolate", 0.9), ("rrf", 0.6)])
def test_the_fused_list_is_the_fusion_of_the_parts_lists(dense_index, lexical_index, demo_kb, method, weight):
    import numpy as np

    hybrid = HybridIndex(dense_index, lexical_index, method=method, weight=weight, depth=30)
    mentions = ["colecistectomía por laparoscopia", "dolor en el pecho", "fiebre", "TAC de abdomen", "zzz"]
    allowed = np.array([c.semantic_tag == "procedure" for c in demo_kb.concepts])
    for mask in (None, allowed):
        got = hybrid.search(mentions, k=12, allowed=mask)
        dense, lexical = dense_index.search(mentions, 30, allowed=mask), lexical_index.search(mentions, 30, allowed=mask)
        for row, d, l in zip(got, dense, lexical):
            assert [(c.code, c.score, c.rank, c.matched_term, c.parents) for c in row] == \
                fused_by_definition(d, l, method, weight, 12)
            assert all(c.evidence == "hybrid" for c in row)
            assert [(c.code, c.score, c.rank, c.matched_term, c.parents) for c in hybrid.fuse_candidates(d, l, 12)] \
                == fused_by_definition(d, l, method, weight, 12)  # the same fusion of cached candidate lists


def test_hybrid_saves_and_reloads(dense_index, lexical_index, tmp_path):
    hybrid = HybridIndex(dense_index, lexical_index, method="rrf", weight=0.7)
    save_index(hybrid, tmp_path / "ix")
    loaded = load_index(tmp_path / "ix")
    assert (loaded.engine, loaded.method, loaded.weight) == ("hybrid", "rrf", 0.7)
    mentions = ["fiebre alta", "TAC de abdomen"]
    assert [[c.code for c in r] for r in loaded.search(mentions, 25)] == \
        [[c.code for c in r] for r in hybrid.search(mentions, 25)]
    assert loaded.describe()["engine"] == "hybrid"


def test_hybrid_cli_needs_a_dense_model(demo_gazetteer, tmp_path, capsys):
    from clinlinker.cli import main

    assert main(["index", "--gazetteer", str(demo_gazetteer), "--model", "char-ngrams", "--hybrid", "rrf",
                 "--out", str(tmp_path / "ix")]) == 2
    assert "needs a dense --model" in capsys.readouterr().err


def test_backend_serves_a_hybrid_index(dense_index, lexical_index, tmp_path):
    from backend.serving.app import create_app
    from backend.serving.loading import load_model
    from backend.serving.config import BackendConfig

    save_index(HybridIndex(dense_index, lexical_index), tmp_path / "ix")
    config = BackendConfig(index_dir=str(tmp_path / "ix"), data_dir=str(tmp_path / "var"), worker=False)
    model, info = load_model(config)
    client = create_app(config, model, info).test_client()
    health = client.get("/health").get_json()
    assert health["engine"] == "hybrid" and health["cache"]["backend"] == "memory"
    # a project's learned terms are scored on the hybrid's scale (both encoders at its weight), as /health says
    assert health["serving"]["hybrid"] == {"method": "interpolate", "weight": 0.5, "learned_similarity": "interpolated"}
    from backend.records.learning import LearnedLayers

    layer = LearnedLayers._new(model.linker)
    assert [weight for _, weight in layer.encoder.parts] == [0.5, 0.5]
    text = "Paciente con fiebre."
    reply = client.post("/predict", json={"tasks": [{"id": 1, "data": {"text": text, "mentions": [
        {"start": 13, "end": 19, "label": "SINTOMA"}]}}]}).get_json()
    taxonomy = [i for i in reply["results"][0]["result"] if i["type"] == "taxonomy"]
    assert taxonomy[0]["value"]["taxonomy"][0][1] == "386661006 | fiebre · hallazgo"

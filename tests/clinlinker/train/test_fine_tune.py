import json

import numpy as np
import pytest

from clinlinker.encode.encoders import DenseEncoder
from clinlinker.search.index import DenseIndex
from clinlinker.kb.knowledge_base import Concept, KnowledgeBase
from clinlinker.links import Link
from clinlinker.train.fine_tune import MANIFEST, TrainingConfig, build_pairs, train


def preferred_only(kb):
    return KnowledgeBase([Concept(c.code, c.preferred_term, c.semantic_tag, (c.preferred_term,)) for c in kb.concepts])


def synonym_top1(model_dir, kb, pooling="cls"):
    """Top-1 accuracy of each synonym against an index of preferred terms only."""
    encoder = DenseEncoder(str(model_dir), pooling=pooling, max_length=25)
    index = DenseIndex.build(preferred_only(kb), encoder)
    queries = [(syn, c.code) for c in kb.concepts for syn in c.synonyms]
    found = index.search([q for q, _ in queries], k=1)
    return np.mean([cands[0].code == code for cands, (_, code) in zip(found, queries)])


def test_pairs_from_synonyms_hierarchy_and_links(demo_kb):
    links = [Link("d", "T1", "SINTOMA", 0, 6, "pirexia alta", "386661006"),
             Link("d", "T2", "SINTOMA", 0, 6, "algo", "NO_CODE"),
             Link("d", "T3", "SINTOMA", 0, 6, "dos cosas", "1+2"),
             Link("d", "T4", "SINTOMA", 0, 6, "otra", "999999999")]
    config = TrainingConfig(max_synonym_pairs=2, max_hierarchy_pairs=1)
    pairs = build_pairs(demo_kb, links=links, config=config)
    counts = pairs.counts
    assert counts["link"] == 1 and counts["skipped_no_code"] == 1 and counts["skipped_composite"] == 1
    assert counts["skipped_unknown_code"] == 1
    assert counts["hierarchy"] == sum(1 for c in demo_kb.concepts if demo_kb.parents(c.code))  # capped at 1 each
    label = demo_kb.index_of("6025007")
    hierarchy = [(a, b) for a, b, l in zip(pairs.anchors, pairs.positives, pairs.labels) if l == label
                 and a == "apendicectomía laparoscópica" and b in demo_kb["80146002"].terms + demo_kb["387713003"].terms]
    assert len(hierarchy) == 1
    assert ("pirexia alta", "fiebre") in zip(pairs.anchors, pairs.positives)
    without = build_pairs(demo_kb, use_hierarchy=False, config=config)
    assert without.counts["hierarchy"] == 0


@pytest.fixture(scope="module")
def trainable_model_dir(tmp_path_factory, demo_kb):
    """The tiny RoBERTa with transformers' default initialisation (0.02): small random weights learn in a few
    epochs, where the shared tiny model's larger ones (drawn so that texts differ) do not."""
    from tests.tiny_model import build_tiny_roberta

    return build_tiny_roberta(tmp_path_factory.mktemp("trainable"), demo_kb.term_texts, initializer_range=0.02)


def test_training_lowers_the_loss_and_improves_top1(demo_kb, trainable_model_dir, tmp_path):
    # mean pooling: the CLS vector of a 2-layer random model barely depends on the text (pretrained models differ)
    tiny_model_dir = trainable_model_dir
    before = synonym_top1(tiny_model_dir, demo_kb, pooling="mean")
    config = TrainingConfig(epochs=12, batch_size=32, lr=1e-3, max_length=25, seed=0, pooling="mean")
    manifest = train(str(tiny_model_dir), build_pairs(demo_kb, config=config), tmp_path / "trained", config,
                     show_progress=False)
    losses = manifest["losses"]
    assert manifest["loss_after"] < manifest["loss_before"]
    after = synonym_top1(tmp_path / "trained", demo_kb, pooling="mean")
    assert after > before + 0.1, (before, after)
    saved = json.loads((tmp_path / "trained" / MANIFEST).read_text())
    assert saved["base_model"] == str(tiny_model_dir) and saved["steps"] == len(losses)
    assert saved["hyperparameters"]["ms_beta"] == 60.0


def test_train_cli_then_index_then_link(demo_gazetteer, demo_hierarchy, tiny_model_dir, tmp_path, capsys):
    from clinlinker.cli import main

    model = tmp_path / "model"
    assert main(["train", "--gazetteer", str(demo_gazetteer), "--hierarchy", str(demo_hierarchy), "--model",
                 str(tiny_model_dir), "--out", str(model), "--max-steps", "3", "--batch-size", "16"]) == 0
    assert "3 steps" in capsys.readouterr().out
    assert main(["index", "--gazetteer", str(demo_gazetteer), "--model", str(model), "--out",
                 str(tmp_path / "ix")]) == 0
    capsys.readouterr()
    assert main(["link", "--index", str(tmp_path / "ix"), "--top-k", "3", "cefalea"]) == 0
    assert capsys.readouterr().out.split("\n")[1].split("\t")[2] == "25064002"


def test_no_pairs_is_a_clear_error(tmp_path, tiny_model_dir):
    from clinlinker.errors import ClinlinkerError
    from clinlinker.train.fine_tune import Pairs

    with pytest.raises(ClinlinkerError, match="no training pairs"):
        train(str(tiny_model_dir), Pairs(), tmp_path / "m")


def test_link_repeats_weigh_accepted_links(demo_kb):
    links = [Link("d", "T1", "SINTOMA", 0, 6, "pirexia alta", "386661006")]
    pairs = build_pairs(demo_kb, links=links, config=TrainingConfig(link_repeats=3))
    assert pairs.counts["link"] == 3


def test_time_bound_saves_and_stop_hook_writes_nothing(demo_kb, tiny_model_dir, tmp_path):
    from clinlinker.train.fine_tune import TrainingInterrupted

    config = TrainingConfig(epochs=50, batch_size=16, max_seconds=0.5, pooling="mean")
    manifest = train(str(tiny_model_dir), build_pairs(demo_kb, config=config), tmp_path / "bounded", config,
                     show_progress=False)
    assert manifest["stopped_by"] == "time" and 0 < manifest["steps"] < 50 * 9
    assert (tmp_path / "bounded" / MANIFEST).exists()
    calls = []
    with pytest.raises(TrainingInterrupted):
        train(str(tiny_model_dir), build_pairs(demo_kb, config=config), tmp_path / "stopped",
              TrainingConfig(max_steps=20, pooling="mean"), show_progress=False,
              should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert not (tmp_path / "stopped").exists()


def test_retrain_cli_fine_tunes_an_index_and_refuses_a_lexical_one(demo_gazetteer, demo_hierarchy, tiny_model_dir,
                                                                   tmp_path, capsys):
    from clinlinker.cli import main
    from clinlinker.search.index import load_index, read_manifest
    from clinlinker.links import write_links

    assert main(["index", "--gazetteer", str(demo_gazetteer), "--hierarchy", str(demo_hierarchy),
                 "--model", str(tiny_model_dir), "--out", str(tmp_path / "ix")]) == 0
    write_links([Link("caso", "T1", "SINTOMA", 0, 12, "pirexia alta", "386661006")], tmp_path / "links.tsv")
    assert main(["retrain", "--index", str(tmp_path / "ix"), "--links", str(tmp_path / "links.tsv"),
                 "--out", str(tmp_path / "new"), "--max-steps", "3", "--threads", "1"]) == 0
    assert "3 steps" in capsys.readouterr().out
    new = read_manifest(tmp_path / "new" / "index")
    old = read_manifest(tmp_path / "ix")
    assert new["fingerprint"] != old["fingerprint"] and new["terms"] == old["terms"]
    assert new["hierarchy_edges"] == old["hierarchy_edges"] > 0
    trained = json.loads((tmp_path / "new" / "model" / MANIFEST).read_text())
    assert trained["pair_counts"]["link"] == 4 and trained["pair_counts"]["hierarchy"] > 0
    assert len(load_index(tmp_path / "new" / "index").search(["fiebre"], 5)[0]) == 5
    assert main(["index", "--gazetteer", str(demo_gazetteer), "--model", "char-ngrams",
                 "--out", str(tmp_path / "lex")]) == 0
    assert main(["retrain", "--index", str(tmp_path / "lex"), "--out", str(tmp_path / "no")]) == 2
    assert "no model to fine-tune" in capsys.readouterr().err


def test_hard_negatives_are_other_concepts_the_index_confuses(demo_kb, lexical_index, tiny_model_dir, tmp_path):
    from clinlinker.train.fine_tune import mine_hard_negatives

    config = TrainingConfig(max_steps=3, batch_size=8, max_length=16, max_synonym_pairs=2, max_hierarchy_pairs=1)
    pairs = mine_hard_negatives(build_pairs(demo_kb, config=config), lexical_index, 2)
    assert pairs.hard and pairs.counts["hard_negatives"] == sum(len(v) for v in pairs.hard.values())
    concepts = demo_kb.concepts
    for anchor, negatives in pairs.hard.items():
        own = {label for a, label in zip(pairs.anchors, pairs.labels) if a == anchor}
        related = {demo_kb.index_of(c) for label in own for c in demo_kb.parents(concepts[label].code)
                   + demo_kb.children(concepts[label].code)}
        assert len(negatives) <= 2 and all(label not in own | related for _, label in negatives)
        assert all(text in concepts[label].terms for text, label in negatives)
    manifest = train(str(tiny_model_dir), pairs, tmp_path / "m", config, show_progress=False)
    assert manifest["steps"] == 3 and manifest["pair_counts"]["hard_negatives"] > 0


def test_bf16_autocast_trains_in_bfloat16_and_keeps_fp32_weights(demo_kb, tiny_model_dir, tmp_path):
    from safetensors.numpy import load_file

    config = dict(max_steps=4, batch_size=16, max_length=16, pooling="mean", lr=1e-3)
    pairs = build_pairs(demo_kb, config=TrainingConfig(**config))
    plain = train(str(tiny_model_dir), pairs, tmp_path / "fp32", TrainingConfig(**config), show_progress=False)
    fast = train(str(tiny_model_dir), pairs, tmp_path / "bf16", TrainingConfig(**config, bf16=True),
                 show_progress=False)
    assert fast["hyperparameters"]["bf16"] is True and np.isfinite(fast["losses"]).all()
    np.testing.assert_allclose(fast["losses"], plain["losses"], rtol=0.05)  # the same batches, close losses
    weights = load_file(str(next((tmp_path / "bf16").glob("*.safetensors"))))
    reference = load_file(str(next((tmp_path / "fp32").glob("*.safetensors"))))
    assert {str(w.dtype) for w in weights.values()} == {"float32"}  # saved as fp32, loadable anywhere
    gaps = [float(np.abs(weights[name] - reference[name]).max()) for name in reference]
    assert max(gaps) > 0  # gradients computed in bfloat16 moved the weights otherwise ...
    assert max(gaps) < 0.05  # ... by little

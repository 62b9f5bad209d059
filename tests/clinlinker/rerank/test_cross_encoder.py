"""The cross-encoder re-ranker: the order it gives, what it must not touch, its training, and the commands that
build, record and use it (a tiny RoBERTa with a one-logit head, built locally)."""

import json

import numpy as np
import pytest

from clinlinker.cli import main
from clinlinker.linking.linker import Linker
from clinlinker.rerank.cross_encoder import CrossEncoderReranker, reranker_examples, train_cross_encoder

MENTIONS = ["dolor abdominal agudo", "apendicectomía por laparoscopia", "fiebre alta", "tos seca persistente"]


def test_rerank_orders_the_first_stage_candidates_by_the_cross_encoder(tiny_cross_encoder, lexical_index):
    reranker = CrossEncoderReranker(str(tiny_cross_encoder), depth=8)
    found = lexical_index.search(MENTIONS, 12)
    out = reranker.rerank(MENTIONS, found, 5)
    for mention, first, reranked in zip(MENTIONS, found, out):
        pool = first[:8]  # the depth: candidates below it are never read
        scores = reranker.score([(mention, c.matched_term) for c in pool])
        order = sorted(range(len(pool)), key=lambda j: (-round(float(scores[j]), 6), j))[:5]
        assert [c.code for c in reranked] == [pool[j].code for j in order]
        # the same pairs scored in another batch: equal up to float rounding (the scores themselves spread over
        # ~0.3, so 1e-5 tells a pair's score from another's)
        assert [c.score for c in reranked] == pytest.approx([float(scores[j]) for j in order], abs=1e-5)
        assert [c.rank for c in reranked] == list(range(1, len(reranked) + 1))
        assert all(0.0 <= c.score <= 1.0 for c in reranked)
    preferred = CrossEncoderReranker(str(tiny_cross_encoder), depth=8, term="preferred")
    [again] = preferred.rerank(MENTIONS[:1], found[:1], 8)
    scores = preferred.score([(MENTIONS[0], c.preferred_term) for c in found[0][:8]])
    assert sorted(c.score for c in again) == pytest.approx(sorted(float(s) for s in scores), abs=1e-5)


def test_a_wording_coders_accepted_stays_first(tiny_cross_encoder, lexical_index):
    reranker = CrossEncoderReranker(str(tiny_cross_encoder), depth=10)
    linker = Linker(lexical_index, reranker=reranker)
    mention = "molestias al tragar"
    target = linker.link([mention], 10)[0][-1].code
    linker.learn([(mention, target)])
    top = linker.link([mention], 10)[0]
    assert top[0].code == target and top[0].evidence == "learned" and top[0].score == 1.0
    assert len(top) == 10 and len({c.code for c in top}) == 10
    assert linker.describe()["reranker"]["depth"] == 10


def test_examples_take_hard_negatives_from_the_first_stage(demo_kb, lexical_index):
    from clinlinker.links import Link

    link = Link("d", "T1", "SINTOMA", 0, 6, "dolor agudo", "22253000", "EXACT")
    [cands] = lexical_index.search([link.span], 25)
    examples = reranker_examples([link], [cands], demo_kb, negatives=3)
    positives = {t for _, t, y in examples if y == 1.0}
    negatives = [t for _, t, y in examples if y == 0.0]
    assert demo_kb["22253000"].preferred_term in positives
    assert sorted(negatives) == sorted([c.matched_term for c in cands if c.code != "22253000"][:3])  # shuffled
    outside = Link("d", "T2", "SINTOMA", 0, 3, "xyz", "999999999", "EXACT")
    assert reranker_examples([outside], [cands], demo_kb) == []  # a code outside the knowledge base teaches nothing


def test_training_lowers_the_loss_and_writes_a_loadable_model(tiny_cross_encoder, demo_kb, tmp_path):
    import random

    rng = random.Random(0)
    concepts = [c for c in demo_kb.concepts if c.synonyms]
    examples = []
    for c in concepts:
        examples.append((c.preferred_term, c.synonyms[0], 1.0))
        examples.append((c.preferred_term, rng.choice([o for o in concepts if o is not c]).preferred_term, 0.0))
    record = train_cross_encoder(examples, str(tiny_cross_encoder), tmp_path / "ce", epochs=40, batch_size=16, lr=1e-3)
    assert record["steps"] > 100 and record["loss_last_50"] < record["loss_first_50"]
    assert json.loads((tmp_path / "ce" / "clinlinker_reranker.json").read_text())["examples"] == len(examples)
    trained = CrossEncoderReranker(str(tmp_path / "ce"))
    scores = trained.score([(m, t) for m, t, _ in examples])
    labels = np.array([y for _, _, y in examples])
    assert scores[labels == 1].mean() > scores[labels == 0].mean()  # it learned something of the task


def test_layers_keeps_the_bases_first_layers_and_refuses_more_than_it_has(tiny_cross_encoder, demo_gazetteer,
                                                                          demo_hierarchy, tmp_path, capsys):
    import torch
    from transformers import AutoModelForSequenceClassification

    from clinlinker.errors import ClinlinkerError
    from tests.conftest import FIXTURES

    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_cross_encoder))
    assert base.config.num_hidden_layers == 2
    examples = [("fiebre alta", "fiebre", 1.0), ("fiebre alta", "tos", 0.0)] * 4
    record = train_cross_encoder(examples, str(tiny_cross_encoder), tmp_path / "one", max_steps=1, batch_size=4,
                                 lr=0.0, layers=1)  # lr 0: the weights stay the base's
    assert record["layers"] == 1
    shallow = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "one"))
    assert shallow.config.num_hidden_layers == 1 and len(shallow.roberta.encoder.layer) == 1
    kept, first = shallow.roberta.encoder.layer[0].state_dict(), base.roberta.encoder.layer[0].state_dict()
    assert all(torch.equal(kept[name], first[name]) for name in first)  # the base's first layer, not a new one
    pairs = [("fiebre alta", "fiebre"), ("dolor abdominal", "tos")]
    assert CrossEncoderReranker(str(tmp_path / "one")).score(pairs).shape == (2,)
    assert not np.allclose(CrossEncoderReranker(str(tmp_path / "one")).score(pairs),
                           CrossEncoderReranker(str(tiny_cross_encoder)).score(pairs))  # one layer fewer read
    with pytest.raises(ClinlinkerError, match="between 1 and the 2 layers"):
        train_cross_encoder(examples, str(tiny_cross_encoder), tmp_path / "three", max_steps=1, layers=3)
    assert not (tmp_path / "three").exists()
    args = ["train-reranker", "--index", str(_lexical_dir(demo_gazetteer, demo_hierarchy, tmp_path)), "--links",
            str(FIXTURES / "corpus" / "links.tsv"), "--model", str(tiny_cross_encoder), "--max-steps", "2"]
    assert main([*args, "--layers", "3", "--out", str(tmp_path / "cli3")]) == 2
    err = capsys.readouterr().err
    assert "between 1 and the 2 layers" in err and "Traceback" not in err and not (tmp_path / "cli3").exists()
    assert main([*args, "--layers", "1", "--out", str(tmp_path / "cli1")]) == 0
    assert AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "cli1")).config.num_hidden_layers == 1


def test_train_reranker_then_index_records_it_and_link_uses_it(tiny_cross_encoder, demo_gazetteer, demo_hierarchy,
                                                                 tmp_path, capsys):
    from tests.conftest import FIXTURES

    model = tmp_path / "reranker"
    assert main(["train-reranker", "--index", str(_lexical_dir(demo_gazetteer, demo_hierarchy, tmp_path)),
                 "--links", str(FIXTURES / "corpus" / "links.tsv"), "--model", str(tiny_cross_encoder),
                 "--out", str(model), "--max-steps", "5"]) == 0
    assert "re-ranker written to" in capsys.readouterr().out
    from clinlinker.kb.gazetteer import load_knowledge_base
    from clinlinker.links import read_links

    kb = load_knowledge_base([demo_gazetteer])
    taught = {link.code for link in read_links(FIXTURES / "corpus" / "links.tsv") if link.is_clean and link.code in kb}
    assert taught and CrossEncoderReranker(str(model)).trained_codes == taught  # what the links taught it
    ix = tmp_path / "ix-reranked"
    assert main(["index", "--gazetteer", str(demo_gazetteer), "--hierarchy", str(demo_hierarchy), "--model",
                 "char-ngrams", "--reranker", str(model), "--rerank-depth", "12", "--out", str(ix)]) == 0
    manifest = json.loads((ix / "manifest.json").read_text())
    assert manifest["reranker"]["model"] == str(model) and manifest["reranker"]["depth"] == 12
    capsys.readouterr()
    assert main(["link", "--index", str(ix), "--format", "json", "--top-k", "5", "fiebre alta"]) == 0
    reranked = json.loads(capsys.readouterr().out)
    assert main(["link", "--index", str(ix), "--format", "json", "--top-k", "5", "--reranker", "none",
                 "fiebre alta"]) == 0
    plain = json.loads(capsys.readouterr().out)
    expected = CrossEncoderReranker(str(model), depth=12).rerank(
        ["fiebre alta"], Linker.from_directory(ix, reranker=None).link(["fiebre alta"], 12), 5)[0]
    assert [c["code"] for c in reranked[0]["candidates"]] == [c.code for c in expected]
    assert [c["score"] for c in plain[0]["candidates"]] != [c["score"] for c in reranked[0]["candidates"]]

    from backend.serving.model import model_version_of

    with_it, without = Linker.from_directory(ix), Linker.from_directory(ix, reranker="none")
    assert with_it.reranker is not None and without.reranker is None
    assert "-reranked-" in model_version_of(with_it, 25) and model_version_of(without, 25) != model_version_of(
        with_it, 25)


def test_a_model_that_is_not_a_classifier_of_one_or_two_outputs_is_refused(tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from clinlinker.errors import ModelLoadError

    AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=5).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="5"):
        CrossEncoderReranker(str(tmp_path))
    with pytest.raises(ModelLoadError):
        CrossEncoderReranker(str(tmp_path / "missing"))


def _lexical_dir(gazetteer, hierarchy, tmp_path):
    out = tmp_path / "ix"
    assert main(["index", "--gazetteer", str(gazetteer), "--hierarchy", str(hierarchy), "--model", "char-ngrams",
                 "--out", str(out)]) == 0
    return out


def test_bf16_scores_stay_close_to_fp32(tiny_cross_encoder):
    pairs = [(m, t) for m in MENTIONS for t in ("dolor", "fiebre", "apendicectomía laparoscópica")]
    fp32 = CrossEncoderReranker(str(tiny_cross_encoder)).score(pairs)
    bf16 = CrossEncoderReranker(str(tiny_cross_encoder), precision="bf16")
    assert bf16.describe()["precision"] == "bf16"
    assert np.abs(bf16.score(pairs) - fp32).max() < 0.02
    with pytest.raises(ValueError):
        CrossEncoderReranker(str(tiny_cross_encoder), precision="int4")


def test_int8_quantizes_the_linear_layers_and_scores_stay_close_to_fp32(tiny_cross_encoder):
    import torch

    pairs = [(m, t) for m in MENTIONS for t in ("dolor", "fiebre", "apendicectomía laparoscópica")]
    fp32 = CrossEncoderReranker(str(tiny_cross_encoder))
    int8 = CrossEncoderReranker(str(tiny_cross_encoder), precision="int8")
    assert int8.describe()["precision"] == "int8"
    assert int8.fingerprint == fp32.fingerprint  # the same model, run another way
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())  # every Linear was swapped
    exact, quantized = fp32.score(pairs), int8.score(pairs)
    # int8 moves a score by a few hundredths; the pairs' own scores lie much further apart, so a score computed for
    # the wrong pair (or a head left unquantized on random input) would not pass
    assert np.abs(quantized - exact).max() < 0.08
    assert exact.max() - exact.min() > 0.3
    assert np.corrcoef(quantized, exact)[0, 1] > 0.9


def test_an_index_records_the_rerankers_int8_and_links_with_it(tiny_cross_encoder, demo_gazetteer, tmp_path, capsys):
    ix = tmp_path / "ix"
    assert main(["index", "--gazetteer", str(demo_gazetteer), "--model", "char-ngrams", "--reranker",
                 str(tiny_cross_encoder), "--rerank-depth", "12", "--rerank-precision", "int8", "--out", str(ix)]) == 0
    assert json.loads((ix / "manifest.json").read_text())["reranker"]["precision"] == "int8"
    linker = Linker.from_directory(ix)
    assert linker.reranker.precision == "int8" and linker.describe()["reranker"]["precision"] == "int8"
    capsys.readouterr()
    assert main(["link", "--index", str(ix), "--format", "json", "--top-k", "5", "fiebre alta"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["candidates"]) == 5


def test_weight_fuses_the_cross_encoder_with_the_first_stage(tiny_cross_encoder, lexical_index):
    found = lexical_index.search(MENTIONS, 10)
    fused = CrossEncoderReranker(str(tiny_cross_encoder), depth=10, weight=0.25)
    probabilities = fused.probabilities(MENTIONS, found)
    for cands, probs, out in zip(found, probabilities, fused.rerank(MENTIONS, found, 10, probabilities=probabilities)):
        expected = {cands[j].code: round(0.25 * p + 0.75 * cands[j].score, 6) for j, p in probs.items()}
        assert {c.code: c.score for c in out} == expected
        assert [c.score for c in out] == sorted(expected.values(), reverse=True)
    first_only = CrossEncoderReranker(str(tiny_cross_encoder), depth=10, weight=0.0)
    assert [[c.code for c in l] for l in first_only.rerank(MENTIONS, found, 10)] == [[c.code for c in l] for l in found]
    with pytest.raises(ValueError):
        CrossEncoderReranker(str(tiny_cross_encoder), weight=1.5)


def _weights(directory):
    from safetensors.numpy import load_file

    return load_file(str(next(directory.glob("*.safetensors"))))


def test_retrain_trains_the_recorded_reranker_further_and_records_the_new_one(tiny_cross_encoder, demo_gazetteer,
                                                                              demo_hierarchy, tiny_model_dir,
                                                                              tmp_path, capsys):
    from clinlinker.search.index import read_manifest
    from tests.conftest import FIXTURES

    links = str(FIXTURES / "corpus" / "links.tsv")
    for engine in ("char-ngrams", str(tiny_model_dir)):
        ix = tmp_path / f"ix-{len(engine)}"
        assert main(["index", "--gazetteer", str(demo_gazetteer), "--hierarchy", str(demo_hierarchy), "--model",
                     engine, "--reranker", str(tiny_cross_encoder), "--rerank-depth", "12", "--rerank-weight", "0.5",
                     "--rerank-novel-weight", "0.1", "--out", str(ix)]) == 0
        out = tmp_path / f"new-{len(engine)}"
        assert main(["retrain", "--index", str(ix), "--links", links, "--out", str(out), "--max-steps", "4",
                     "--lr", "1e-3", "--threads", "1"]) == 0
        assert "re-ranker trained further: 4 steps" in capsys.readouterr().out
        old, new = read_manifest(ix), read_manifest(out / "index")
        record = new["reranker"]
        assert record["model"] == str((out / "reranker").resolve())
        assert record["fingerprint"] != old["reranker"]["fingerprint"]
        assert (record["depth"], record["weight"], record["novel_weight"], record["term"]) == (12, 0.5, 0.1, "matched")
        assert Linker.from_directory(ix).reranker.novel_weight == 0.1  # the settings carry over
        assert CrossEncoderReranker(record["model"]).trained_codes  # the links' codes, recorded now
        before, after = _weights(tiny_cross_encoder), _weights(out / "reranker")
        assert any(not np.array_equal(before[name], after[name]) for name in before)  # from its weights, changed
        assert (new["fingerprint"] == old["fingerprint"]) == (engine == "char-ngrams")  # lexical: first stage kept
        linker = Linker.from_directory(out / "index")
        assert linker.reranker is not None and linker.reranker.name == record["model"]
        assert len(linker.link(["fiebre alta"], 5)[0]) == 5
    # --no-reranker on a lexical index leaves nothing to train: refused, as before
    assert main(["retrain", "--index", str(tmp_path / "ix-11"), "--links", links, "--out", str(tmp_path / "no"),
                 "--no-reranker"]) == 2
    assert "no model to fine-tune" in capsys.readouterr().err


def _with_codes(model_dir, tmp_path, codes):
    import shutil

    out = tmp_path / "with-codes"
    shutil.copytree(model_dir, out)
    (out / "clinlinker_reranker_codes.txt").write_text("".join(f"{c}\n" for c in codes))
    return out


def test_novel_weight_gives_the_first_stage_more_say_for_codes_the_reranker_never_saw(tiny_cross_encoder,
                                                                                       lexical_index, tmp_path):
    found = lexical_index.search(MENTIONS, 10)
    seen = {cands[j].code for cands in found for j in (1, 3)}  # some of each list's candidates were trained on
    model = _with_codes(tiny_cross_encoder, tmp_path, seen)
    gated = CrossEncoderReranker(str(model), depth=10, weight=0.5, novel_weight=0.0)
    assert gated.trained_codes == frozenset(seen) and gated.describe()["novel_weight"] == 0.0
    probabilities = gated.probabilities(MENTIONS, found)
    out = gated.rerank(MENTIONS, found, 10, probabilities=probabilities)
    for cands, probs, reranked in zip(found, probabilities, out):
        expected = {cands[j].code: round(0.5 * p + 0.5 * cands[j].score if cands[j].code in seen else cands[j].score,
                                         6) for j, p in probs.items()}
        assert {c.code: c.score for c in reranked} == expected
        assert [c.score for c in reranked] == sorted(expected.values(), reverse=True)
    # without a novel weight every candidate is fused alike, and so is a re-ranker that does not know its codes
    alike = CrossEncoderReranker(str(model), depth=10, weight=0.5).rerank(MENTIONS, found, 10)
    unknown = CrossEncoderReranker(str(tiny_cross_encoder), depth=10, weight=0.5, novel_weight=0.0)
    assert unknown.trained_codes is None
    assert [[(c.code, c.score) for c in l] for l in unknown.rerank(MENTIONS, found, 10)] == \
        [[(c.code, c.score) for c in l] for l in alike]
    assert [[(c.code, c.score) for c in l] for l in alike] != [[(c.code, c.score) for c in l] for l in out]
    # the codes are part of what the re-ranker is: a model_version changes with them
    assert gated.fingerprint != unknown.fingerprint
    with pytest.raises(ValueError, match="novel_weight"):
        CrossEncoderReranker(str(model), novel_weight=-0.1)


def test_training_records_the_codes_it_was_taught_and_training_further_keeps_them(tiny_cross_encoder, tmp_path):
    examples = [("fiebre alta", "fiebre", 1.0), ("fiebre alta", "tos", 0.0)] * 4
    train_cross_encoder(examples, str(tiny_cross_encoder), tmp_path / "a", max_steps=2, batch_size=4,
                        codes={"386661006", "49727002"})
    assert CrossEncoderReranker(str(tmp_path / "a")).trained_codes == {"386661006", "49727002"}
    train_cross_encoder(examples, str(tmp_path / "a"), tmp_path / "b", max_steps=2, batch_size=4, codes={"22253000"})
    assert CrossEncoderReranker(str(tmp_path / "b")).trained_codes == {"386661006", "49727002", "22253000"}
    train_cross_encoder(examples, str(tiny_cross_encoder), tmp_path / "c", max_steps=2, batch_size=4)
    assert CrossEncoderReranker(str(tmp_path / "c")).trained_codes is None  # not told: not known


def test_bad_reranker_settings_are_one_line_errors_not_tracebacks(tiny_cross_encoder, demo_gazetteer, tmp_path,
                                                                    capsys):
    from clinlinker.errors import ClinlinkerError

    ix = tmp_path / "ix"
    for flags, said in ((["--rerank-weight", "1.5"], "weight must be in [0, 1]"),
                        (["--rerank-novel-weight", "-0.1"], "novel_weight must be in [0, 1]")):
        assert main(["index", "--gazetteer", str(demo_gazetteer), "--model", "char-ngrams", "--reranker",
                     str(tiny_cross_encoder), *flags, "--out", str(ix)]) == 2
        err = capsys.readouterr().err
        assert "clinlinker index: error: --reranker" in err and said in err and "Traceback" not in err
        assert not ix.exists()  # refused before anything was built or written
    assert main(["index", "--gazetteer", str(demo_gazetteer), "--model", "char-ngrams", "--reranker",
                 str(tiny_cross_encoder), "--out", str(ix)]) == 0
    manifest = json.loads((ix / "manifest.json").read_text())
    manifest["reranker"]["weight"] = 7  # edited by hand
    (ix / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ClinlinkerError, match=r"the re-ranker .*weight must be in \[0, 1\], got 7"):
        Linker.from_directory(ix)
    capsys.readouterr()
    assert main(["link", "--index", str(ix), "fiebre alta"]) == 2
    assert "weight must be in [0, 1]" in capsys.readouterr().err


def test_scores_are_read_once_then_come_from_the_cache(tiny_cross_encoder):
    from clinlinker.encode.cache import LRUCache

    pairs = [(m, t) for m in MENTIONS for t in ("dolor", "fiebre", "apendicectomía laparoscópica")]
    fresh = CrossEncoderReranker(str(tiny_cross_encoder)).score(pairs)  # no cache: every pair read
    cache = LRUCache()
    reranker = CrossEncoderReranker(str(tiny_cross_encoder), cache=cache)
    first = reranker.score(pairs + pairs[:2])  # a pair twice in one call is read once
    np.testing.assert_allclose(first[:len(pairs)], fresh, atol=1e-5)
    assert first[len(pairs):].tolist() == first[:2].tolist()
    assert (cache.stats.hits, cache.stats.misses, cache.state()["items"]) == (0, len(pairs), len(pairs))
    reranker.model = None  # from here on, reading a pair with the model would fail
    again = reranker.score(list(reversed(pairs)))
    assert again.tolist() == list(reversed(first[:len(pairs)].tolist()))  # the very scores read before
    assert cache.stats.hits == len(pairs)
    found = [[_candidate("1", "dolor", 0.5), _candidate("2", "fiebre", 0.5)]]  # pairs 0 and 1: read before
    reranked = reranker.rerank(MENTIONS[:1], found, 2)[0]  # from the cache alone
    assert {c.code: c.score for c in reranked} == {"1": round(float(first[0]), 6), "2": round(float(first[1]), 6)}


def _candidate(code, term, score):
    from clinlinker.search.candidates import Candidate

    return Candidate(code=code, preferred_term=term, matched_term=term, semantic_tag="procedimiento", score=score,
                     rank=1)


def test_a_shared_cache_never_gives_one_rerankers_scores_to_another(tiny_cross_encoder, tmp_path):
    """The key holds the model's fingerprint and the precision: int8 and fp32 scores differ, and a retrained
    re-ranker must not serve its predecessor's scores."""
    import torch

    from clinlinker.encode.cache import LRUCache

    cache = LRUCache()
    pairs = [(m, t) for m in MENTIONS for t in ("dolor", "fiebre")]
    fp32 = CrossEncoderReranker(str(tiny_cross_encoder), cache=cache).score(pairs)
    int8 = CrossEncoderReranker(str(tiny_cross_encoder), precision="int8", cache=cache)
    np.testing.assert_allclose(int8.score(pairs), CrossEncoderReranker(str(tiny_cross_encoder),
                                                                        precision="int8").score(pairs), atol=1e-6)
    assert cache.stats.hits == 0 and cache.stats.misses == 2 * len(pairs)
    other = tmp_path / "other"
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_cross_encoder))
    with torch.no_grad():
        model.classifier.out_proj.bias += 3.0  # another model: every logit moves
    model.save_pretrained(other)
    AutoTokenizer.from_pretrained(str(tiny_cross_encoder)).save_pretrained(other)
    moved = CrossEncoderReranker(str(other), cache=cache).score(pairs)
    assert cache.stats.hits == 0
    assert (moved > fp32).all()


def test_a_pair_is_read_mention_first_and_scored_as_a_probability(tiny_cross_encoder):
    """The oracle: the checkpoint run by transformers directly on (mention, term), its logit through a sigmoid. The
    reversed pair scores differently, so reading (term, mention) would not pass."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_cross_encoder))
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_cross_encoder)).eval()
    pairs = [("dolor abdominal agudo", "apendicitis aguda"), ("tos seca", "fiebre"), ("cefalea", "dolor de cabeza")]

    def direct(first, second):
        batch = tokenizer(first, second, padding=True, return_tensors="pt")
        with torch.no_grad():
            return torch.sigmoid(model(**batch).logits[:, 0]).numpy()

    expected = direct([m for m, _ in pairs], [t for _, t in pairs])
    reversed_order = direct([t for _, t in pairs], [m for m, _ in pairs])
    got = CrossEncoderReranker(str(tiny_cross_encoder)).score(pairs)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(expected - reversed_order).max() > 1e-3

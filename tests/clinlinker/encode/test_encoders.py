import os

import numpy as np
import pytest

from clinlinker.encode.encoders import DenseEncoder, _batches
from clinlinker.encode.packed import packing_works, packs
from clinlinker.errors import ModelLoadError
from tests.conftest import DEMO_GAZETTEER as DEMO
from tests.conftest import ROOT


def test_vectors_are_float32_and_unit_length(tiny_encoder):
    vectors = tiny_encoder.encode(["apendicitis aguda", "dolor", "x"])
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, tiny_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def _padded(encoder):
    """The encoder on padded batches (as on a GPU) instead of packed texts."""
    encoder.pack_tokens = None
    encoder.call_cost = None
    return encoder


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_embedding_does_not_depend_on_its_batch(tiny_model_dir, pooling, packed):
    encoder = DenseEncoder(str(tiny_model_dir), pooling=pooling, batch_size=4)
    assert encoder.pack_tokens  # a CPU and a RoBERTa: packed by default
    if not packed:
        _padded(encoder)  # one full batch: the short texts padded to the long one
    alone = encoder.encode(["dolor"])[0]
    long_text = "dolor abdominal intenso en fosa ilíaca derecha con fiebre y vómitos de repetición " * 3
    batched = encoder.encode([long_text, "dolor", "colecistectomía laparoscópica", long_text[:40]])
    np.testing.assert_allclose(batched[1], alone, atol=1e-5)


@pytest.mark.parametrize("packed", [True, False])
def test_mean_pooling_averages_only_real_tokens(tiny_model_dir, packed):
    import torch

    encoder = DenseEncoder(str(tiny_model_dir), pooling="mean")
    if not packed:
        _padded(encoder)  # both texts in one padded batch
    text = "insuficiencia cardíaca"
    ids = encoder.tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder.model(**ids).last_hidden_state[0]
    expected = hidden.mean(dim=0).numpy()
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(encoder.encode([text, "a much longer neighbour text to force padding"])[0],
                               expected, atol=1e-5)


def test_cls_pooling_takes_the_first_token(tiny_model_dir):
    import torch

    encoder = DenseEncoder(str(tiny_model_dir), pooling="cls")
    ids = encoder.tokenizer("cefalea", return_tensors="pt")
    with torch.inference_mode():
        first = encoder.model(**ids).last_hidden_state[0, 0].numpy()
    np.testing.assert_allclose(encoder.encode(["cefalea"])[0], first / np.linalg.norm(first), atol=1e-5)


def test_output_order_follows_input_despite_length_sorting(tiny_encoder):
    texts = ["enfermedad pulmonar obstructiva crónica", "tos", "dolor torácico", "fiebre"]
    together = tiny_encoder.encode(texts)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(together[i], tiny_encoder.encode([text])[0], atol=1e-5)


def _cost(lengths, cuts, call_cost):
    return sum(call_cost + (end - start) * lengths[end - 1] for start, end in cuts)


def _all_cuts(n, batch_size):
    if n == 0:
        yield []
        return
    for first in range(1, min(batch_size, n) + 1):
        for rest in _all_cuts(n - first, batch_size):
            yield [(0, first)] + [(a + first, b + first) for a, b in rest]


def test_batches_cover_the_sorted_texts_in_order_and_minimise_padding_plus_calls():
    rng = np.random.default_rng(0)
    for _ in range(60):
        n, batch_size, call_cost = int(rng.integers(1, 10)), int(rng.integers(1, 6)), int(rng.integers(0, 40))
        lengths = sorted(int(x) for x in rng.integers(2, 30, size=n))
        cuts = _batches(lengths, batch_size, call_cost)
        assert [i for a, b in cuts for i in range(a, b)] == list(range(n))
        assert all(0 < b - a <= batch_size for a, b in cuts)
        best = min(_cost(lengths, c, call_cost) for c in _all_cuts(n, batch_size))
        assert _cost(lengths, cuts, call_cost) == best


def test_a_case_of_short_and_long_mentions_is_cut_where_padding_costs_more_than_a_call():
    case = [3, 3, 4, 4, 4, 4, 5, 5, 6, 8, 8, 8, 9, 11, 13]  # a real 15-span case's token lengths
    assert _batches(case, 32, None) == [(0, 15)]  # a GPU: one full batch
    cut = _batches(case, 32, 16)
    assert len(cut) > 1 and _cost(case, cut, 16) < _cost(case, [(0, 15)], 16)
    assert len(_batches([7] * 100, 32, 16)) == 4  # equal lengths: as few calls as full batches make


def test_cut_batches_give_the_vectors_of_full_ones(tiny_model_dir):
    texts = ["tos", "fiebre alta", "dolor abdominal intenso en fosa ilíaca derecha con vómitos", "disnea",
             "colecistectomía laparoscópica programada", "x", "insuficiencia cardíaca congestiva descompensada"]
    encoder = _padded(DenseEncoder(str(tiny_model_dir), batch_size=32))
    encoder.call_cost = 0  # every length its own batch
    cut = encoder.encode(texts)
    encoder.call_cost = None
    np.testing.assert_allclose(cut, encoder.encode(texts), atol=1e-5)


def test_packs_cover_the_sorted_texts_in_order_within_the_token_budget():
    rng = np.random.default_rng(1)
    for _ in range(300):
        lengths = sorted(int(x) for x in rng.integers(1, 40, size=int(rng.integers(0, 30))))
        batch_size, budget = int(rng.integers(1, 12)), int(rng.integers(1, 100))
        cut = packs(lengths, batch_size, budget)
        assert [i for s, e in cut for i in range(s, e)] == list(range(len(lengths)))  # each once, in order
        for s, e in cut:
            assert 0 < e - s <= batch_size
            assert sum(lengths[s:e]) <= budget or e - s == 1  # a text over the budget is a pack of its own
        for (s, e), (s2, e2) in zip(cut, cut[1:]):  # greedy: the next text did not fit
            assert sum(lengths[s:e + 1]) > budget or e - s == batch_size
    case = [3, 4, 4, 5, 5, 6, 6, 7, 8, 9, 10, 11, 12, 13, 13]  # a 15-span case: 116 tokens, one call
    assert packs(case, 32, 128) == [(0, 15)]


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_packed_texts_get_the_vectors_of_padded_batches(tiny_model_dir, pooling):
    texts = ["tos", "fiebre alta", "dolor abdominal intenso en fosa ilíaca derecha con vómitos", "disnea",
             "colecistectomía laparoscópica programada", "x", "insuficiencia cardíaca congestiva descompensada"] * 3
    encoder = DenseEncoder(str(tiny_model_dir), pooling=pooling, batch_size=32)
    packed = encoder.encode(texts)
    encoder.pack_tokens, encoder.pack_rows = 16, 4  # several packs, several rows per call
    small = encoder.encode(texts)
    padded = _padded(encoder).encode(texts)
    np.testing.assert_allclose(packed, padded, atol=1e-5)
    np.testing.assert_allclose(small, padded, atol=1e-5)


def test_the_probe_check_refuses_a_model_that_ignores_the_position_ids(tiny_model_dir):
    """A model that numbers positions itself (as some architectures do) would see the second text of a pack at
    positions 5, 6, ...: the probe check finds the vectors changed, and such a model keeps padded batches."""
    import torch

    encoder = DenseEncoder(str(tiny_model_dir), pooling="cls")
    assert packing_works(encoder.model, encoder.tokenizer, "cls")

    class NumbersItsOwnPositions(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, position_ids=None):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    assert not packing_works(NumbersItsOwnPositions(encoder.model), encoder.tokenizer, "cls")


def test_bf16_packed_texts_stay_with_their_padded_vectors(tiny_model_dir):
    """The mask of a bf16 model is bf16 (its own smallest value): packing must not let texts see each other."""
    texts = ["tos", "dolor abdominal intenso en fosa ilíaca derecha con vómitos", "fiebre alta", "x"] * 4
    encoder = DenseEncoder(str(tiny_model_dir), precision="bf16")
    assert encoder.pack_tokens
    packed = encoder.encode(texts)
    padded = _padded(encoder).encode(texts)
    assert np.all(np.sum(packed * padded, axis=1) > 0.999)
    # the tolerance tells texts apart: another text's vector is far outside it (texts of a pack that saw each other
    # came out at ~0.1 with this model)
    assert np.sum(packed[0] * padded[2]) < 0.99 and np.sum(packed[1] * padded[2]) < 0.99


def test_a_bert_style_model_is_packed_with_positions_from_zero(tmp_path, tiny_model_dir):
    """DistilBERT counts positions from 0 (RoBERTa from padding_idx + 1): packed, its vectors are those of padded
    batches."""
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    tokenizer.save_pretrained(tmp_path)
    torch.manual_seed(0)
    DistilBertModel(DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                                     pad_token_id=1)).save_pretrained(tmp_path)
    encoder = DenseEncoder(str(tmp_path), pooling="mean")
    assert encoder.pack_tokens and encoder._position_offset == 0
    texts = ["tos", "dolor abdominal intenso", "fiebre", "colecistectomía laparoscópica programada"]
    packed = encoder.encode(texts)
    np.testing.assert_allclose(packed, _padded(encoder).encode(texts), atol=1e-5)


def test_texts_are_truncated_at_max_length(tiny_model_dir):
    short = DenseEncoder(str(tiny_model_dir), max_length=4)
    full = DenseEncoder(str(tiny_model_dir), max_length=64)
    texts = ["dolor abdominal intenso y difuso", "dolor abdominal intenso"]
    a, b = short.encode(texts)
    c, d = full.encode(texts)
    np.testing.assert_allclose(a, b, atol=1e-6)  # same first two tokens
    assert np.abs(c - d).max() > 1e-3


def test_fingerprint_depends_on_pooling_and_max_length_not_on_loading(tiny_model_dir):
    base = DenseEncoder(str(tiny_model_dir))
    assert DenseEncoder(str(tiny_model_dir)).fingerprint == base.fingerprint
    assert DenseEncoder(str(tiny_model_dir), pooling="mean").fingerprint != base.fingerprint
    assert DenseEncoder(str(tiny_model_dir), max_length=32).fingerprint != base.fingerprint


def test_fingerprint_changes_with_weights(tiny_model_dir, demo_kb, tmp_path):
    from tests.tiny_model import build_tiny_roberta

    other = build_tiny_roberta(tmp_path / "other", demo_kb.term_texts, seed=1)
    assert DenseEncoder(str(other)).fingerprint != DenseEncoder(str(tiny_model_dir)).fingerprint


def test_missing_model_directory_says_how_to_use_a_local_copy(tmp_path):
    with pytest.raises(ModelLoadError) as info:
        DenseEncoder(str(tmp_path / "no-such-model"))
    message = str(info.value)
    assert "does not exist" in message
    assert "--model" in message and "char-ngrams" in message


def test_unreachable_hub_model_gives_one_clear_error():
    with pytest.raises(ModelLoadError) as info:
        DenseEncoder("ICB-UMA/this-model-is-not-cached")
    assert "local Hugging Face cache" in str(info.value)
    assert "hf download ICB-UMA/this-model-is-not-cached" in str(info.value)  # huggingface_hub 1.x+ ships `hf`


def test_without_network_a_hub_id_fails_at_once_with_what_to_do(tmp_path):
    import subprocess
    import sys
    import time

    # no HF_HUB_OFFLINE, and a hub address that cannot answer (this machine has no internet either)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="https://hub.invalid", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "clinlinker.cli", "index", "--gazetteer", str(DEMO),
                             "--model", "ICB-UMA/ClinLinker-KB-GP", "--out", str(tmp_path / "ix")],
                            capture_output=True, text=True, env=env, timeout=120)
    took = time.monotonic() - started
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "hub.invalid cannot be reached from this machine" in result.stderr
    assert "hf download ICB-UMA/ClinLinker-KB-GP" in result.stderr and "--model char-ngrams" in result.stderr
    # at once: not the hub client's retries, which took ~54 s (the command itself takes ~4 s; a loose bound, since
    # what is checked is that no retrying happens, not a speed)
    assert took < 30, f"failed after {took:.1f} s: the hub was retried"


def test_empty_input_gives_empty_array(tiny_encoder):
    assert tiny_encoder.encode([]).shape == (0, tiny_encoder.dim)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_lower_precisions_stay_close_and_have_their_own_fingerprint(tiny_model_dir, tiny_encoder, precision):
    fast = DenseEncoder(str(tiny_model_dir), precision=precision)
    texts = ["apendicitis aguda", "dolor torácico opresivo", "tos"]
    near, exact = fast.encode(texts), tiny_encoder.encode(texts)
    cosine = np.sum(near * exact, axis=1)
    # measured with this model: bf16 >= 0.9998 and int8 >= 0.997 of fp32; two different texts ~0.6
    assert np.all(cosine > {"bf16": 0.999, "int8": 0.99}[precision])
    assert float(near[0] @ exact[1]) < 0.99 and float(near[1] @ exact[2]) < 0.99
    assert fast.fingerprint != tiny_encoder.fingerprint  # their embeddings must never share cache entries


def test_int8_is_quiet(tiny_model_dir):
    """torch 2.13's deprecation notices of torch.ao.quantization are handled at the one call that uses it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DenseEncoder(str(tiny_model_dir), precision="int8").encode(["tos"])


def test_a_text_of_no_tokens_gets_a_zero_vector_and_leaves_the_others_alone(tiny_model_dir):
    """A tokenizer without special tokens makes "" into no tokens at all: packed, it is left out of the rows."""
    encoder = DenseEncoder(str(tiny_model_dir), pooling="cls")
    encoder.tokenizer.backend_tokenizer.post_processor = None  # no <s> ... </s>
    assert encoder.tokenizer([""])["input_ids"] == [[]]
    texts = ["", "tos", "dolor abdominal intenso"]
    vectors = encoder.encode(texts)
    assert not vectors[0].any()
    np.testing.assert_allclose(vectors[1:], encoder.encode(texts[1:]), atol=1e-6)

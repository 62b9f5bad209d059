"""The dense bi-encoder: a Hugging Face transformer, a pooling step, L2 normalisation.

An embedding depends only on its own text (pooling is masked by the attention mask and
batches are padded on the right), which is what makes caching embeddings correct.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Sequence

import numpy as np

from clinlinker.encode.packed import (PACKED_INPUTS, packed_forward, packed_inputs, packing_works, pool,
                                      position_offset)
from clinlinker.encode.packed import packs as _packs
from clinlinker.encode.settings import encoding_of
from clinlinker.errors import ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "ICB-UMA/ClinLinker-KB-GP"
POOLINGS = ("cls", "mean")
# fp32 is the reference. bf16 and int8 (dynamic, CPU) are faster but move rankings a little:
# bench/encoding.py measures by how much; see docs/benchmarks.md before switching.
PRECISIONS = ("fp32", "bf16", "int8")
# torch (default) or onnx: the same fp32 model exported once to ONNX and run by ONNX Runtime (clinlinker/onnx.py),
# faster on CPUs (docs/benchmarks.md); rankings equal to torch's within float tolerance
RUNTIMES = ("torch", "onnx")
PROGRESS_MIN_TEXTS = 2048  # show a progress bar only for long runs (indexing a gazetteer)
# Padded batches (a GPU; on a CPU a model that cannot be packed, below): what one more forward call costs, in padded
# tokens: batches are cut where the padding a cut saves is worth more than a call (`_batches`). Chosen on a grid of
# 0-64 on 2 cores of an Intel Xeon (AVX-512), RoBERTa-base shape, real 15-mention cases and bulk (docs/benchmarks.md):
# a case in one padded batch took 279 ms on ONNX Runtime and 291 ms on PyTorch, cut this way 158 ms and 228 ms, bulk
# throughput unchanged. PyTorch pays more per call than ONNX Runtime. On a GPU a call costs more than padding does:
# batches are filled (None).
CALL_COST_TOKENS = {"torch": 32, "onnx": 16}
# On a CPU, texts are packed instead: the length-sorted texts laid end to end in rows of at most this many tokens (and
# batch_size texts), each attending only to itself (a block-diagonal mask, its own position ids), so that no token of
# a row is padding. Same vectors within float tolerance (checked on probe texts when the model loads; a model whose
# architecture does not take position ids and a 4-d mask keeps padded batches). A 15-span case: one or two calls of
# its real tokens. Longer packs waste more on the masked attention between texts; the budgets were chosen on 2 cores
# of an AMD EPYC (AVX2), RoBERTa-base shape, real mentions (docs/benchmarks.md, bench/annotate.py runtimes): /predict
# cold p50 for a 15-span case 279 -> 196 ms on ONNX Runtime and 408 -> 279 ms on PyTorch against padded batches cut by
# length; sorted bulk PyTorch 82 against 80 mentions/s, ONNX Runtime 86 against 88 (packs of 256 tokens: 84).
PACK_TOKENS = {"torch": 256, "onnx": 128}
# Packs per call at most, as the rows of a batch (a call's rows cut by length as padded batches are). Measured in one
# run (bench/annotate.py runtimes, the same AMD EPYC): PyTorch bulk 82.0 mentions/s with 4 rows against 74.8 with one
# (cut padded batches 80.3), a 15-span case 272 against 278 ms, but 81.7 against 88.2 in a second run: within the
# spread; ONNX Runtime did better with one row in both: /predict cold p50 196 / 192 against 218 / 206 ms.
PACK_ROWS = {"torch": 4, "onnx": 1}


class DenseEncoder:
    """Encode texts into L2-normalised float32 vectors with a transformer.

    >>> encoder = DenseEncoder("ICB-UMA/ClinLinker-KB-GP", pooling="cls", max_length=64)
    >>> vectors = encoder.encode(["apendicectomía laparoscópica"])  # shape (1, 768)
    """

    kind = "dense"

    def __init__(self, model: str = DEFAULT_MODEL, *, pooling: str | None = None, max_length: int = 64,
                 batch_size: int = 32, device: str | None = None, show_progress: bool | None = None,
                 precision: str = "fp32", runtime: str = "torch", packing: bool = True, prefix: str | None = None):
        # pooling and prefix None: what the model directory records (clinlinker_encoder.json, written by
        # `clinlinker model unpack` and `clinlinker train`), else CLS pooling and no prefix, as the default model's card
        pooling, prefix, source = encoding_of(str(model), pooling, prefix)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if max_length < 2:
            raise ValueError("max_length must be at least 2")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
        if runtime == "onnx" and precision != "fp32":
            raise ValueError(f"the onnx runtime runs fp32 models only, not {precision} (use --runtime torch)")
        import torch
        from transformers import AutoModel

        self.name = str(model)
        self.pooling = pooling
        self.prefix = prefix  # put before every text (mentions and terms alike), e.g. e5's "query: "
        self.source = source  # where the weights came from (a package, dequantized ...), if recorded
        self.precision = precision
        self.max_length = max_length
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer, self.model = load_pretrained(
            self.name, lambda name, local: _load_model(AutoModel, name, local_files_only=local))
        self.tokenizer.padding_side = "right"  # masked pooling and RoBERTa position ids assume it
        self.model.eval().to(self.device)
        self.dim = int(self.model.config.hidden_size)
        self.fingerprint = self._fingerprint()  # of the fp32 weights, plus the precision
        # tokens per packed call (`_packs`), None: padded batches (a GPU, or a model that cannot be packed); checked
        # on the fp32 model (whether the architecture honours the mask and position ids does not depend on precision)
        self.pack_tokens = None
        if packing and self.device.type == "cpu" and packing_works(self.model, self.tokenizer, pooling, max_length):
            self.pack_tokens = PACK_TOKENS[runtime]
        self.pack_rows = PACK_ROWS[runtime]
        self._position_offset = position_offset(self.model)
        if precision == "bf16":
            self.model.to(torch.bfloat16)
        elif precision == "int8":
            if self.device.type != "cpu":
                raise ValueError("int8 (dynamic quantization) runs on the CPU only; use bf16 on a GPU")
            self.model = _quantize_int8(self.model)
        self.runtime = runtime
        # padded tokens one more forward call is worth (`_batches`); None fills every batch
        self.call_cost = None if self.device.type == "cuda" else CALL_COST_TOKENS[runtime]
        self._session = None
        if runtime == "onnx":
            from clinlinker.encode.onnx_runtime import onnx_session

            self._session = onnx_session(self)  # a packed graph where pack_tokens is set, else a padded one
            self.model = None  # the ONNX Runtime session answers from now on; the torch weights are freed
        log.info("dense encoder %s (%s pooling, prefix %r, max_length %d, %s, %s) on %s, fingerprint %s",
                 self.name, pooling, prefix, max_length, precision, runtime, self.device, self.fingerprint[:12])

    def describe(self) -> dict:
        return {"engine": "dense", "model": self.name, "pooling": self.pooling, "precision": self.precision,
                "max_length": self.max_length, "dim": self.dim, "fingerprint": self.fingerprint,
                "runtime": self.runtime, "prefix": self.prefix, **({"source": self.source} if self.source else {})}

    def _fingerprint(self) -> str:
        """Hash of what determines an embedding: config, weights, tokenizer vocabulary, pooling, max_length."""
        import torch

        digest = hashlib.sha256()
        config = self.model.config.to_dict()
        config.pop("_name_or_path", None)
        config.pop("transformers_version", None)
        digest.update(json.dumps(config, sort_keys=True, default=str).encode())
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            data = tensor.detach().cpu().contiguous()
            if data.dtype.is_floating_point and data.element_size() == 2:
                data = data.view(dtype=torch.int16)  # bf16/fp16 have no numpy dtype
            digest.update(memoryview(data.numpy()).cast("B"))  # no copy of the weights
        digest.update(json.dumps(sorted(self.tokenizer.get_vocab().items())).encode())
        digest.update(f"{self.pooling}|{self.max_length}".encode())
        if self.precision != "fp32":  # fp32 keeps the fingerprints of indexes built before precisions existed
            digest.update(f"|{self.precision}".encode())
        if self.prefix:  # no prefix keeps the fingerprints of indexes built before prefixes existed
            digest.update(f"|prefix:{self.prefix}".encode())
        return digest.hexdigest()

    def encode(self, texts: Sequence[str], *, show_progress: bool | None = None) -> np.ndarray:
        """Embed `texts`; returns float32 array (len(texts), dim), rows L2-normalised."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not len(texts):
            return out
        # Tokenise once without padding to sort by length, so each batch pads little.
        texts = [self.prefix + text for text in texts] if self.prefix else list(texts)
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length,
                                 add_special_tokens=True)["input_ids"]
        order = np.argsort([len(ids) for ids in encoded], kind="stable")
        progress = self.show_progress if show_progress is None else show_progress
        if progress is None:
            progress = len(texts) >= PROGRESS_MIN_TEXTS
        lengths = [len(encoded[i]) for i in order]
        if self.pack_tokens:  # rows of packed texts, then calls of rows of like lengths (cut as padded batches are)
            empty = sum(1 for length in lengths if length == 0)  # no tokens at all (a tokenizer without special
            # tokens given ""): nothing to attend to, left a zero vector; they sort first
            packs = [(start + empty, end + empty) for start, end in _packs(lengths[empty:], self.batch_size,
                                                                           self.pack_tokens)]
            pack_lengths = [sum(lengths[start:end]) for start, end in packs]
            by_length = np.argsort(pack_lengths, kind="stable")
            batches = [[packs[j] for j in by_length[start:end]] for start, end in
                       _batches([pack_lengths[j] for j in by_length], self.pack_rows, self.call_cost)]
        else:
            batches = _batches(lengths, self.batch_size, self.call_cost)
        if progress:
            from tqdm.auto import tqdm
            batches = tqdm(batches, desc="encoding", unit="batch", total=len(batches))
        if self.pack_tokens:
            pad = self.tokenizer.pad_token_id or 0
            for call in batches:
                rows = np.concatenate([order[start:end] for start, end in call])
                inputs = packed_inputs([[encoded[i] for i in order[start:end]] for start, end in call], self.pooling,
                                       self._position_offset, pad)
                if self._session is not None:
                    pooled = self._session.run(None, inputs)[0]
                else:
                    with torch.inference_mode():
                        pooled = packed_forward(self.model, *(torch.from_numpy(inputs[k]).to(self.device)
                                                              for k in PACKED_INPUTS)).float().cpu().numpy()
                out[rows] = _normalised(pooled)
            return out
        if self._session is not None:
            for start, end in batches:
                rows = order[start:end]
                batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, padding=True,
                                           return_tensors="np")
                pooled = self._session.run(None, {"input_ids": batch["input_ids"].astype(np.int64),
                                                  "attention_mask": batch["attention_mask"].astype(np.int64)})[0]
                out[rows] = _normalised(pooled)
            return out
        with torch.inference_mode():
            for start, end in batches:
                rows = order[start:end]
                batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, padding=True,
                                           return_tensors="pt")
                input_ids = batch["input_ids"].to(self.device)
                mask = batch["attention_mask"].to(self.device)
                hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
                pooled = pool(hidden, mask, self.pooling)
                pooled = torch.nn.functional.normalize(pooled.float(), p=2, dim=1)
                out[rows] = pooled.cpu().numpy()
        return out


def _batches(lengths: Sequence[int], batch_size: int, call_cost: int | None) -> list[tuple[int, int]]:
    """Cut texts sorted by token length into batches of at most `batch_size`: [(start, end)].

    A batch costs its padded size (texts x longest) plus `call_cost` tokens for the call itself; the cuts minimise
    the sum (dynamic programming over the sorted lengths, O(n x batch_size)). Sorted mentions of a large corpus have
    runs of equal lengths and keep full batches; a case's 15 mentions of 3 to 13 tokens are cut where the longest
    would otherwise pad them all. `call_cost` None: full batches (a GPU)."""
    n = len(lengths)
    if call_cost is None or n <= 1:
        return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    best, cut = [0] + [0] * n, [0] * (n + 1)
    for end in range(1, n + 1):
        longest, best_cost = lengths[end - 1], None
        for start in range(max(0, end - batch_size), end):
            cost = best[start] + call_cost + (end - start) * longest
            if best_cost is None or cost < best_cost:
                best_cost, cut[end] = cost, start
        best[end] = best_cost
    out, end = [], n
    while end:
        out.append((cut[end], end))
        end = cut[end]
    return out[::-1]


def _normalised(pooled: np.ndarray) -> np.ndarray:
    """Rows L2-normalised as torch's normalize does it (eps 1e-12): the ONNX Runtime and packed paths."""
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def load_pretrained(name: str, load_model):
    """(tokenizer, model) of a hub id or local directory; `load_model(name, local_files_only)` loads the model.
    A hub id on a machine that cannot reach the hub is read from the local cache only, at once (the hub client
    would otherwise retry for about a minute before failing); a failure is a ModelLoadError saying what to do."""
    from transformers import AutoTokenizer

    unreachable = not _looks_local(name) and not _offline() and not _hub_reachable()
    try:
        return (AutoTokenizer.from_pretrained(name, local_files_only=unreachable),
                load_model(name, unreachable))
    except (OSError, ValueError, EnvironmentError) as exc:
        raise ModelLoadError(_load_hint(name, exc, unreachable=unreachable)) from None


def _load_model(auto_model, name: str, local_files_only: bool = False):
    # Pooling is ours: skip the model's own pooler head where the architecture allows it, so that
    # an untrained pooler is neither randomly initialised (it would change the fingerprint) nor run.
    try:
        return auto_model.from_pretrained(name, add_pooling_layer=False, local_files_only=local_files_only)
    except TypeError:
        return auto_model.from_pretrained(name, local_files_only=local_files_only)


def _offline() -> bool:
    return bool(os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE"))


def _hub_host() -> str:
    from urllib.parse import urlparse

    return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connection to the hub, no retries: enough to know whether downloading can work at all."""
    import socket

    try:
        with socket.create_connection((_hub_host(), 443), timeout=timeout):
            return True
    except OSError:
        return False


def _looks_local(name: str) -> bool:
    return (os.path.exists(name) or name.startswith((os.path.sep, ".", "~")) or name.count("/") > 1
            or (os.path.altsep is not None and os.path.altsep in name))


def _download_command(name: str) -> str:
    """The download command of the installed huggingface_hub: `hf` since 1.0, `huggingface-cli` before."""
    try:
        from importlib.metadata import version

        major = int(version("huggingface_hub").split(".")[0])
    except Exception:  # noqa: BLE001 - any doubt: the current command
        major = 1
    tool = "hf" if major >= 1 else "huggingface-cli"
    return f"{tool} download {name} --local-dir /models/clinlinker"


def _load_hint(name: str, exc: Exception, unreachable: bool = False) -> str:
    offline = _offline()
    if _looks_local(name):
        where = (f"the directory {name!r} does not exist" if not os.path.exists(name)
                 else f"{name!r} is not a model directory (it needs config.json, the weights and the tokenizer files)")
    else:
        where = (f"{name!r} is not in the local Hugging Face cache and could not be downloaded"
                 + (" (HF_HUB_OFFLINE is set)" if offline else "")
                 + (f" ({_hub_host()} cannot be reached from this machine)" if unreachable else ""))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (f"cannot load model {name!r}: {where}. Details: {first}. "
            "To work offline, copy the model to a directory on this machine (e.g. on a connected machine: "
            f"`{_download_command(name)}`) and pass that directory "
            "(--model /models/clinlinker or CLINLINKER_MODEL=/models/clinlinker); "
            "or use the lexical engine, which needs no weights: --model char-ngrams.")


def _quantize_int8(model):
    """Dynamic int8 quantization of the linear layers with torch.ao.quantization.

    torch 2.13 deprecates that API in favour of torchao's `quantize_`, which on this project's CPUs ran a
    RoBERTa-base batch 29x slower (23.3 s against 0.81 s, torchao 0.18, AMD EPYC, 2 cores; docs/benchmarks.md):
    not a replacement for a speed option. The deprecation notices of this one call are caught and said once in
    the log instead; when torch removes the API, int8 goes with it (fp32 stays the default).
    """
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor.*deprecated", category=UserWarning)
        quantized = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    log.info("int8: torch.ao.quantization's dynamic quantization (deprecated by torch 2.13; kept: torchao's was 29x "
             "slower on CPU)")
    return quantized

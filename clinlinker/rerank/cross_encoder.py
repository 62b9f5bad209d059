"""A second stage: a cross-encoder reads the mention and each retrieved candidate's term together and re-orders the
first stage's list (the seed's authors and xMEN pair their bi-encoder with one).

The first stage (lexical, dense or hybrid, per label) retrieves N candidates (`depth`, N >= k); the cross-encoder
scores every (mention, term) pair and the best k are kept. Any Hugging Face sequence-classification checkpoint loads
(by hub id or local path): one output (a relevance logit, as sentence-transformers' cross-encoders have) or two (the
second class is "relevant"). A candidate's score becomes the cross-encoder's probability that it is the concept
meant (a sigmoid of the logit), or with `weight` < 1 that probability fused with the first stage's similarity
(weight x probability + (1 - weight) x similarity, the weight chosen on a tune split), so that the certainty of a list
keeps its meaning; what a coder already accepted for this exact wording (learned, score 1.0) stays first: the
coders' decision is not re-ranked.

A re-ranker trained here records the codes its accepted links taught it (`clinlinker_reranker_codes.txt`). Its
probability is learned mostly from those concepts: for a candidate of a code it never saw as a positive it is less
to be trusted, and `novel_weight` (the cross-encoder's share for such candidates; default: `weight`) lets the first
stage keep more say there (docs/quality.md measures it).

Which term of a candidate is read (`term`): the one the first stage matched, its preferred term, or both (the better
of the two scores).

Scores are kept in a cache (`cache`: clinlinker/encode/cache.py's in-process LRU or Redis, as the mention embeddings), keyed
by the re-ranker's fingerprint, precision, max_length and device kind and the exact (mention, term) pair: a mention
seen before (a task opened again, a wording that recurs across documents, the same candidates after a new
model_version of the first stage) is not read again. The cross-encoder is the costly part of a /predict
(docs/quality.md measures what the cache saves).

    >>> reranker = CrossEncoderReranker("models/reranker")
    >>> reranker.rerank(["apendicectomía lap."], linker.link(["apendicectomía lap."], 50), 25)[0][0].code
    '6025007'

`train_cross_encoder` fine-tunes one from (mention, term, 0/1) examples; `reranker_examples` makes them from accepted
links with hard negatives: the candidates the first stage itself ranks above or near the right one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from clinlinker.search.candidates import Candidate
from clinlinker.errors import ClinlinkerError, ModelLoadError

log = logging.getLogger(__name__)

TERMS = ("matched", "preferred", "both")
TRAINING_FILE = "clinlinker_reranker.json"
CODES_FILE = "clinlinker_reranker_codes.txt"  # the concepts the training examples' positives named, one per line


class CrossEncoderReranker:
    def __init__(self, model: str, *, depth: int = 50, term: str = "matched", max_length: int = 64,
                 batch_size: int = 64, device: str | None = None, precision: str = "fp32", weight: float = 1.0,
                 novel_weight: float | None = None, cache=None):
        if precision not in ("fp32", "bf16", "int8"):
            raise ValueError(f"precision must be fp32, bf16 or int8, got {precision!r}")
        for name, value in (("weight", weight), ("novel_weight", novel_weight)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.weight = weight  # the cross-encoder's share of a candidate's score; the rest is the first stage's
        self.novel_weight = novel_weight  # its share for a candidate whose code it was not trained on (None: weight)
        if term not in TERMS:
            raise ValueError(f"term must be one of {TERMS}, got {term!r}")
        if depth < 1:
            raise ValueError("depth must be at least 1")
        import torch
        from transformers import AutoModelForSequenceClassification

        from clinlinker.encode.encoders import load_pretrained

        self.name = str(model)
        self.depth = depth
        self.term = term
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if precision == "int8" and self.device.type != "cpu":  # refused before the model is loaded
            raise ValueError("int8 (dynamic quantization) runs on the CPU only; use bf16 on a GPU")
        self.tokenizer, self.model = load_pretrained(
            self.name, lambda name, local: AutoModelForSequenceClassification.from_pretrained(
                name, local_files_only=local))
        self.model.eval().to(self.device)
        self.num_labels = int(self.model.config.num_labels)
        if self.num_labels not in (1, 2):
            raise ModelLoadError(f"{self.name}: a re-ranker needs 1 output (a relevance logit) or 2 (irrelevant, "
                                 f"relevant); this model has {self.num_labels}")
        digest = hashlib.sha256(json.dumps(self.model.config.to_dict(), sort_keys=True, default=str).encode())
        for key, tensor in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(memoryview(tensor.detach().cpu().contiguous().float().numpy()).cast("B"))
        self.trained_codes = read_trained_codes(self.name)  # None: not known (a re-ranker trained elsewhere)
        if self.trained_codes is not None:
            digest.update("\n".join(sorted(self.trained_codes)).encode())
        self.fingerprint = digest.hexdigest()
        self.precision = precision
        self.cache = cache  # None: every pair is read each time
        self._cache_id = hashlib.sha256(f"reranker\x00{self.fingerprint}\x00{precision}\x00{max_length}\x00"
                                        f"{self.device.type}".encode()).hexdigest()  # int8 scores are not fp32's
        if precision == "bf16":  # fast where the CPU has AVX-512 BF16 or AMX, or on a GPU (bench/rerank.py)
            self.model.to(torch.bfloat16)
        elif precision == "int8":  # dynamic quantization of the linear layers: the fastest measured on a CPU
            from clinlinker.encode.encoders import _quantize_int8

            self.model = _quantize_int8(self.model)
        log.info("cross-encoder re-ranker %s (depth %d, %s term) on %s", self.name, depth, term, self.device)

    def describe(self) -> dict:
        out = {"model": self.name, "depth": self.depth, "term": self.term, "max_length": self.max_length,
               "precision": self.precision, "weight": self.weight, "fingerprint": self.fingerprint}
        if self.novel_weight is not None:
            out["novel_weight"] = self.novel_weight
        return out

    def share(self, code: str) -> float:
        """The cross-encoder's share of this candidate's score: `novel_weight` for a code it was not trained on
        (when it is known what it was trained on and a novel weight is set), else `weight`."""
        if self.novel_weight is None or self.trained_codes is None or code in self.trained_codes:
            return self.weight
        return self.novel_weight

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """The probability that each (mention, term) pair names the same concept (through the cache, if any: only
        the pairs it does not hold are read, and they are stored)."""
        if not pairs or self.cache is None:
            return self._score(pairs)
        from clinlinker.encode.cache import through_cache

        return through_cache(self.cache, self._cache_id, [tuple(pair) for pair in pairs], self._score, 1,
                             text=lambda pair: f"{pair[0]}\x00{pair[1]}")[:, 0]

    def _score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        import torch

        if not pairs:
            return np.zeros(0, dtype=np.float32)
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))  # less padding
        out = np.zeros(len(pairs), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                batch = self.tokenizer([pairs[i][0] for i in chunk], [pairs[i][1] for i in chunk], padding=True,
                                       truncation=True, max_length=self.max_length, return_tensors="pt")
                logits = self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits.float()
                logit = logits[:, 0] if self.num_labels == 1 else logits[:, 1] - logits[:, 0]
                out[chunk] = torch.sigmoid(logit).cpu().numpy()
        return out

    def probabilities(self, mentions: Sequence[str], found: Sequence[list[Candidate]], k: int = 0) -> list[dict]:
        """Per mention, {position in its list: the cross-encoder's probability} for the first max(depth, k)
        candidates (coders' accepted wordings left out: they are not re-ranked)."""
        depth = max(self.depth, k)
        pairs, owners = [], []
        for i, (mention, cands) in enumerate(zip(mentions, found)):
            for j, c in enumerate(cands[:depth]):
                if _accepted(c):
                    continue
                terms = {"matched": [c.matched_term], "preferred": [c.preferred_term],
                         "both": list(dict.fromkeys([c.matched_term, c.preferred_term]))}[self.term]
                for term in terms:
                    pairs.append((mention, term))
                    owners.append((i, j))
        out: list[dict] = [{} for _ in found]
        for (i, j), p in zip(owners, self.score(pairs)):
            out[i][j] = max(out[i].get(j, 0.0), float(p))
        return out

    def rerank(self, mentions: Sequence[str], found: Sequence[list[Candidate]], k: int,
               probabilities: list[dict] | None = None) -> list[list[Candidate]]:
        """Each mention's first-stage candidates re-ordered by the cross-encoder (fused with the first stage's
        similarity when weight < 1); the best k kept. probabilities: what `probabilities` gave, to reuse."""
        depth = max(self.depth, k)  # never fewer candidates than asked for
        probabilities = probabilities if probabilities is not None else self.probabilities(mentions, found, k)
        out = []
        for cands, probs in zip(found, probabilities):
            scores = {}
            for j, p in probs.items():
                share = self.share(cands[j].code)
                scores[j] = share * p + (1.0 - share) * max(0.0, min(1.0, cands[j].score))
            head = [c for c in cands[:depth] if _accepted(c)]
            rest = sorted(scores, key=lambda j: (-round(scores[j], 6), j))
            ranked = head + [replace(cands[j], score=round(scores[j], 6)) for j in rest]
            out.append([c.at_rank(rank) for rank, c in enumerate(ranked[:k], start=1)])
        return out


def read_trained_codes(model: str) -> frozenset | None:
    """The codes a re-ranker directory records it was trained on; None for a hub id or a directory without them."""
    path = Path(model) / CODES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: cannot read the re-ranker's trained codes ({exc})") from None
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def _accepted(c: Candidate) -> bool:
    """A wording coders accepted before for this very concept: their decision, kept first."""
    return c.evidence == "learned" and c.score >= 1.0


# --- training -------------------------------------------------------------------------------------------------------

def reranker_examples(links: Sequence, lists: Sequence[list[Candidate]], kb, *, negatives: int = 7,
                      term: str = "matched", seed: int = 0) -> list[tuple[str, str, float]]:
    """(mention, term, label) examples from accepted links and the first stage's candidate lists for them (same
    order): the right concept's terms are positives (the matched term when the first stage found it, its preferred
    term, a synonym); the first `negatives` wrong candidates of the list are hard negatives."""
    rng = random.Random(seed)
    out = []
    for link, cands in zip(links, lists):
        code = link.code
        if code not in kb:
            continue
        concept = kb[code]
        found = next((c for c in cands if c.code == code), None)
        positives = {concept.preferred_term}
        if found is not None:
            positives.add(found.matched_term)
        synonyms = [t for t in concept.synonyms if t not in positives]
        if synonyms:
            positives.add(rng.choice(synonyms))
        if term == "preferred":
            positives = {concept.preferred_term}
        out += [(link.span, t, 1.0) for t in sorted(positives)]
        wrong = [c for c in cands if c.code != code][:negatives]
        for c in wrong:
            out.append((link.span, c.preferred_term if term == "preferred" else c.matched_term, 0.0))
    rng.shuffle(out)
    return out


def synonym_examples(kb, index, n: int, *, negatives: int = 3, seed: int = 0) -> list[tuple[str, str, float]]:
    """(term, term, label) examples from the gazetteer itself, for concepts with synonyms: a synonym is a positive of
    a term, the first wrong concepts an index lists for the term are hard negatives (n concepts, sampled). They
    teach the vocabulary of the knowledge base beyond the few accepted links."""
    rng = random.Random(seed)
    concepts = [c for c in kb.concepts if len(c.terms) > 1]
    concepts = rng.sample(concepts, min(n, len(concepts)))
    anchors = [rng.choice(c.terms) for c in concepts]
    out = []
    for start in range(0, len(anchors), 256):
        chunk = anchors[start:start + 256]
        for concept, anchor, cands in zip(concepts[start:start + 256], chunk, index.search(chunk, negatives + 8)):
            out.append((anchor, rng.choice([t for t in concept.terms if t != anchor]), 1.0))
            out += [(anchor, c.matched_term, 0.0) for c in cands if c.code != concept.code][:negatives]
    rng.shuffle(out)
    return out


def first_layers(base: str, layers: int | None) -> dict:
    """from_pretrained's config override that keeps the base's first `layers` layers (its weights for the others
    are left unread), or nothing when all are kept. Refuses more layers than the base has: those would be new,
    untrained layers, not a smaller copy of the base."""
    if layers is None:
        return {}
    from transformers import AutoConfig

    try:
        has = getattr(AutoConfig.from_pretrained(base), "num_hidden_layers", None)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{base}: cannot read its config ({exc})") from None
    if not isinstance(has, int):
        raise ClinlinkerError(f"layers={layers}: {base}'s config does not say how many layers it has "
                              "(num_hidden_layers), so it cannot be made shallower")
    if not 1 <= layers <= has:
        raise ClinlinkerError(f"layers={layers}: must be between 1 and the {has} layers {base} has")
    return {"num_hidden_layers": layers}


def train_cross_encoder(examples: Sequence[tuple[str, str, float]], base: str, out_dir, *, epochs: float = 1.0,
                        max_steps: int | None = None, max_seconds: float | None = None, batch_size: int = 32,
                        lr: float = 3e-5, warmup_ratio: float = 0.1, max_length: int = 64, seed: int = 0,
                        device: str | None = None, threads: int | None = None, bf16: bool = False,
                        codes=None, layers: int | None = None) -> dict:
    """Fine-tune a sequence-classification model (one logit, binary cross-entropy) on the examples and write it,
    with its tokenizer and a record of the run, to out_dir. bf16: compute in bfloat16 autocast (fp32 weights), far
    faster where the CPU has AVX-512 BF16 or AMX. codes: the concepts the examples' positives name (the accepted
    links' codes), written beside the model with those of the base, when the base is a re-ranker that has them.
    layers: keep only the base's first `layers` transformer layers (the others are dropped before training), a
    shallower re-ranker that reads a pair in about layers/N of the time."""
    import contextlib

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not examples:
        raise ClinlinkerError("no training examples (no accepted link has its code in the knowledge base)")
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, **first_layers(base, layers))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{base}: cannot load as a sequence-classification model ({exc})") from None
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(dev).train()
    per_epoch = math.ceil(len(examples) / batch_size)
    steps = max(1, int(per_epoch * epochs))
    if max_steps:
        steps = min(steps, max_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = int(steps * warmup_ratio)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    rng = random.Random(seed)
    order = list(range(len(examples)))
    started, losses, step = time.monotonic(), [], 0
    while step < steps:
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            if step >= steps or (max_seconds and time.monotonic() - started > max_seconds):
                break
            chunk = [examples[i] for i in order[start:start + batch_size]]
            batch = tokenizer([m for m, _, _ in chunk], [t for _, t, _ in chunk], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(dev)
            labels = torch.tensor([y for _, _, y in chunk], dtype=torch.float32, device=dev)
            autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with autocast:
                logits = model(**batch).logits[:, 0]
            loss = loss_fn(logits.float(), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(float(loss.detach()))
            step += 1
            if step % 50 == 0:
                log.info("re-ranker step %d/%d, loss %.4f (last 50), %.0f s", step, steps,
                         sum(losses[-50:]) / len(losses[-50:]), time.monotonic() - started)
        else:
            continue
        break
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if codes is not None:
        known = set(codes) | set(read_trained_codes(str(base)) or ())
        (out_dir / CODES_FILE).write_text("".join(f"{code}\n" for code in sorted(known)), encoding="utf-8")
    record = {"base": str(base), "examples": len(examples), "positives": int(sum(y for _, _, y in examples)),
              "steps": step, "epochs": round(step * batch_size / len(examples), 3),
              "loss_first_50": round(sum(losses[:50]) / max(1, len(losses[:50])), 4),
              "loss_last_50": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
              "seconds": round(time.monotonic() - started, 1),
              "hyperparameters": {"batch_size": batch_size, "lr": lr, "warmup_ratio": warmup_ratio,
                                  "max_length": max_length, "seed": seed, "bf16": bf16},
              "layers": int(getattr(model.config, "num_hidden_layers", 0)) or None}
    (out_dir / TRAINING_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record


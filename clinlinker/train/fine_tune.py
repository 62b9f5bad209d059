"""SapBERT-style metric learning for the bi-encoder, with knowledge-graph positives.

What goes in: a knowledge base (synonyms are positives of each other), optionally its is-a hierarchy (the
terms of a concept's parents and grandparents are its positives too, capped per concept so large concepts do
not dominate), and optionally accepted links (a mention span is a positive of its code's terms).
What comes out: a model directory loadable everywhere with `--model DIR` (save_pretrained + tokenizer +
`clinlinker_training.json`: base model, data checksums, hyperparameters, steps, losses).

The loss is SapBERT's: multi-similarity loss (alpha 1, beta 60, base 0.5) on online hard triplets from a
triplet-margin miner (margin 0.2), both from pytorch-metric-learning, over batches of (term, positive) pairs
whose label is the concept. Use it to adapt a model to your gazetteer and to what your coders accept.

    >>> from clinlinker.train.fine_tune import TrainingConfig, build_pairs, train
    >>> pairs = build_pairs(kb, links=accepted_links)
    >>> history = train("ICB-UMA/ClinLinker-KB-GP", pairs, "models/adapted", TrainingConfig(epochs=1))
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from clinlinker.errors import ClinlinkerError
from clinlinker.kb.knowledge_base import KnowledgeBase

log = logging.getLogger(__name__)
MANIFEST = "clinlinker_training.json"


class TrainingInterrupted(ClinlinkerError):
    """Training was asked to stop before it finished; the output directory was not written."""


@dataclass
class TrainingConfig:
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 64  # pairs per batch (2 x texts)
    lr: float = 2e-5
    warmup_ratio: float = 0.1  # linear warm-up over this share of the steps, then linear decay to 0
    weight_decay: float = 0.01
    pooling: str | None = None  # None: the base model directory's recorded pooling, else cls
    prefix: str | None = None  # None: the base model directory's recorded prefix, else none
    freeze_word_embeddings: bool = False  # a large vocabulary (e5's 250k pieces) trains faster and forgets less
    max_length: int = 25  # SapBERT trains on names: 25 tokens
    ms_alpha: float = 1.0
    ms_beta: float = 60.0
    ms_base: float = 0.5
    miner_margin: float = 0.2
    max_synonym_pairs: int = 8  # per concept
    max_hierarchy_pairs: int = 4  # per concept: parents' and grandparents' terms
    link_repeats: int = 1  # each accepted-link pair is seen this many times per epoch (links are few, and the point)
    max_seconds: float | None = None  # stop (and save) after this much training time
    bf16: bool = False  # bfloat16 autocast for the encoder (fp32 weights and loss): ~3x faster with AVX-512 BF16
    seed: int = 0
    device: str | None = None


@dataclass
class Pairs:
    """(text, positive text, concept label) triples and what was skipped, with counts."""

    anchors: list[str] = field(default_factory=list)
    positives: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"synonym": 0, "hierarchy": 0, "link": 0,
                                                  "skipped_no_code": 0, "skipped_composite": 0,
                                                  "skipped_unknown_code": 0})
    # anchor text -> [(text, concept label)] of concepts an index confuses with the anchor's: put in the anchor's
    # batch, the miner sees them as negatives (mine_hard_negatives)
    hard: dict = field(default_factory=dict)

    def add(self, anchor: str, positive: str, label: int, kind: str) -> None:
        self.anchors.append(anchor)
        self.positives.append(positive)
        self.labels.append(label)
        self.counts[kind] += 1

    def __len__(self) -> int:
        return len(self.labels)


def build_pairs(kb: KnowledgeBase, *, links: Sequence = (), use_hierarchy: bool = True,
                config: TrainingConfig | None = None) -> Pairs:
    """Positive pairs: synonyms, hierarchy (capped), accepted links (NO_CODE and composite rows skipped, counted)."""
    config = config or TrainingConfig()
    rng = random.Random(config.seed)
    pairs = Pairs()
    for label, concept in enumerate(kb.concepts):
        terms = list(concept.terms)
        candidates = [(a, b) for i, a in enumerate(terms) for b in terms[i + 1:]]
        if len(terms) == 1:
            candidates = [(terms[0], terms[0])]  # still anchors the concept in the batch
        rng.shuffle(candidates)
        for a, b in candidates[: config.max_synonym_pairs]:
            pairs.add(a, b, label, "synonym")
        if use_hierarchy:
            related = [kb[code] for code in kb.parents(concept.code) + kb.grandparents(concept.code) if code in kb]
            related_terms = [t for c in related for t in c.terms]
            rng.shuffle(related_terms)
            for term in related_terms[: config.max_hierarchy_pairs]:
                pairs.add(concept.preferred_term, term, label, "hierarchy")
    for link in links:
        if link.is_no_code:
            pairs.counts["skipped_no_code"] += 1
        elif link.is_composite:
            pairs.counts["skipped_composite"] += 1
        elif link.code not in kb:
            pairs.counts["skipped_unknown_code"] += 1
        else:
            concept = kb[link.code]
            for _ in range(max(1, config.link_repeats)):
                pairs.add(" ".join(link.span.split()), concept.preferred_term, kb.index_of(link.code), "link")
    return pairs


def mine_hard_negatives(pairs: Pairs, index, n: int, *, batch: int = 256) -> Pairs:
    """For each distinct anchor, the terms of the first n wrong concepts an index (its own search) lists for it:
    the concepts the model confuses, or a lexical index's look-alikes. Put in the anchor's batch, they become the
    negatives the miner finds (the seed's recipe: hard negatives from the retrieval itself)."""
    kb = index.kb
    label_of = {concept.code: i for i, concept in enumerate(kb.concepts)}
    anchors = {}
    for anchor, label in zip(pairs.anchors, pairs.labels):
        anchors.setdefault(anchor, set()).add(label)
    texts = list(anchors)
    concepts = kb.concepts
    for start in range(0, len(texts), batch):
        chunk = texts[start:start + batch]
        for anchor, cands in zip(chunk, index.search(chunk, n + 8)):
            own = set(anchors[anchor])
            for label in list(own):  # its parents and grandparents are positives (hierarchy pairs), never negatives
                code = concepts[label].code
                own |= {label_of[c] for c in kb.parents(code) + kb.grandparents(code) + kb.children(code)
                        if c in label_of}
            picked = [(c.matched_term, label_of[c.code]) for c in cands if label_of.get(c.code) not in own][:n]
            if picked:
                pairs.hard[anchor] = picked
    pairs.counts["hard_negatives"] = sum(len(v) for v in pairs.hard.values())
    return pairs


def train(base_model: str, pairs: Pairs, out_dir, config: TrainingConfig | None = None, *,
          sources: dict | None = None, show_progress: bool = True, should_stop=None) -> dict:
    """Fine-tune `base_model` on `pairs`; write the model to `out_dir`; return the manifest (losses per step).

    Training stops early (and still saves) after `config.max_seconds`; `should_stop()` returning True
    aborts it without writing anything (raises TrainingInterrupted).
    """
    import torch
    from pytorch_metric_learning import losses, miners
    from transformers import AutoModel, AutoTokenizer

    from clinlinker.encode.encoders import _load_hint, _load_model
    from clinlinker.encode.settings import encoding_of, write_settings
    from clinlinker.encode.packed import pool
    from clinlinker.errors import ModelLoadError

    config = config or TrainingConfig()
    if not len(pairs):
        raise ClinlinkerError("no training pairs: the gazetteer and links gave nothing to learn from")
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model)
        model = _load_model(AutoModel, str(base_model))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(_load_hint(str(base_model), exc)) from None
    tokenizer.padding_side = "right"
    config.pooling, config.prefix, base_source = encoding_of(str(base_model), config.pooling, config.prefix)
    if config.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    model.to(device).train()
    loss_fn = losses.MultiSimilarityLoss(alpha=config.ms_alpha, beta=config.ms_beta, base=config.ms_base)
    miner = miners.TripletMarginMiner(margin=config.miner_margin, type_of_triplets="all")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)

    order = np.arange(len(pairs))
    steps_per_epoch = int(np.ceil(len(pairs) / config.batch_size))
    total = steps_per_epoch * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    warmup = int(total * config.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    history: list[float] = []
    progress = None
    if show_progress:
        from tqdm.auto import tqdm
        progress = tqdm(total=total, desc="training", unit="step")
    started = time.perf_counter()
    step = 0
    labels_all = np.asarray(pairs.labels)

    def embed(texts):
        if config.prefix:
            texts = [config.prefix + text for text in texts]
        batch = tokenizer(texts, padding=True, truncation=True, max_length=config.max_length,
                          return_tensors="pt").to(device)
        autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16
                    else contextlib.nullcontext())
        with autocast:
            hidden = model(**batch).last_hidden_state
        return pool(hidden.float(), batch["attention_mask"], config.pooling)

    probe = order[: min(len(order), 1024)].copy()  # a fixed sample: its loss before and after is comparable

    def probe_loss() -> float:
        """Multi-similarity loss over the fixed sample, without mining: the figure that must go down."""
        model.eval()
        with torch.no_grad():
            vectors, labels = [], []
            for start in range(0, len(probe), config.batch_size):
                rows = probe[start:start + config.batch_size]
                vectors.append(embed([pairs.anchors[i] for i in rows] + [pairs.positives[i] for i in rows]))
                labels.append(torch.as_tensor(np.concatenate([labels_all[rows], labels_all[rows]])))
            value = float(loss_fn(torch.cat(vectors), torch.cat(labels).to(device)))
        model.train()
        return value

    loss_before = probe_loss()
    stopped = "steps"
    training_started = time.perf_counter()
    while step < total:
        np.random.shuffle(order)
        for start in range(0, len(order), config.batch_size):
            if step >= total:
                break
            if should_stop is not None and should_stop():
                if progress:
                    progress.close()
                raise TrainingInterrupted(f"training interrupted after {step} steps; nothing written")
            if config.max_seconds and time.perf_counter() - training_started > config.max_seconds:
                stopped = "time"
                total = step
                break
            rows = order[start:start + config.batch_size]
            texts = [pairs.anchors[i] for i in rows] + [pairs.positives[i] for i in rows]
            batch_labels = [labels_all[rows], labels_all[rows]]
            if pairs.hard:
                negatives = [h for i in rows for h in pairs.hard.get(pairs.anchors[i], ())]
                texts += [text for text, _ in negatives]
                batch_labels.append(np.asarray([label for _, label in negatives], dtype=labels_all.dtype))
            labels = torch.as_tensor(np.concatenate(batch_labels), device=device)
            embeddings = embed(texts)
            hard = miner(embeddings, labels)
            loss = loss_fn(embeddings, labels, hard)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            history.append(float(loss.detach()))
            step += 1
            if progress:
                progress.update(1)
                progress.set_postfix(loss=f"{history[-1]:.4f}")
    if progress:
        progress.close()
    loss_after = probe_loss()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_settings(out, pooling=config.pooling, prefix=config.prefix,
                   source={"fine_tuned_from": str(base_model), **({"base": base_source} if base_source else {})})
    base_notice = Path(base_model) / "NOTICE"
    if base_notice.is_file():
        (out / "NOTICE").write_text(base_notice.read_text(encoding="utf-8"), encoding="utf-8")
    manifest = {"base_model": str(base_model), "steps": step, "stopped_by": stopped, "pairs": len(pairs), "pair_counts": pairs.counts,
                "hyperparameters": asdict(config), "sources": sources or {},
                "loss_before": round(loss_before, 5), "loss_after": round(loss_after, 5),
                "loss_first": history[0] if history else None, "loss_last": history[-1] if history else None,
                "losses": [round(x, 5) for x in history], "seconds": round(time.perf_counter() - started, 1),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log.info("trained %d steps on %d pairs in %.0f s; loss on a fixed sample %.4f -> %.4f; model written to %s",
             step, len(pairs), manifest["seconds"], loss_before, loss_after, out)
    return manifest


def retrain_index(index_dir, links: Sequence, out_dir, config: TrainingConfig | None = None, *,
                  show_progress: bool = False, should_stop=None, reranker: bool = True,
                  reranker_steps: int | None = None, routing=None) -> dict:
    """Fine-tune the model of a dense (or hybrid) index on its own concepts, hierarchy and `links`, then
    re-encode the index with the new model. Writes `out_dir/model` and `out_dir/index` (same index type,
    pooling, max_length and, for a hybrid, the same fusion). The index directory appears only when complete.

    When the index records a re-ranker and `reranker` is true, the re-ranker is trained further too, from its own
    weights, on `links` with hard negatives from the new first stage's lists (routed by `routing`, a LabelRouting):
    `out_dir/reranker`, recorded in the new index. A lexical index with a re-ranker keeps its first stage and gets a
    retrained re-ranker only. Returns the first stage's training record, with the re-ranker's under "reranker".
    """
    from clinlinker.search.index import load_index, read_manifest, save_index

    index_dir, out = Path(index_dir), Path(out_dir)
    manifest = read_manifest(index_dir)
    record = manifest.get("reranker") if reranker else None
    config = config or TrainingConfig()
    if manifest.get("engine") == "lexical":
        if not record:
            raise ClinlinkerError(f"{index_dir} is a lexical index without a re-ranker: the lexical engine has no "
                                  "model to fine-tune (build a dense index with `clinlinker index --model ...`, or "
                                  "add a re-ranker with --reranker)")
        index, sources = load_index(index_dir), dict(manifest.get("sources") or {})
        history = {"steps": 0, "stopped_by": "lexical first stage kept", "pairs": 0, "pair_counts": {"link": 0},
                   "loss_before": 0.0, "loss_after": 0.0}
    else:
        index, history, sources = _retrain_first_stage(index_dir, manifest, links, out, config, show_progress,
                                                       should_stop)
    new_record = None
    if record:
        if should_stop is not None and should_stop():
            raise TrainingInterrupted("training interrupted before the re-ranker; nothing written")
        history["reranker"] = _retrain_reranker(index, record, links, out / "reranker", config, reranker_steps,
                                                routing)
        new_record = {**record, "model": str((out / "reranker").resolve())}
        new_record.pop("fingerprint", None)  # describe() of the new model below
        from clinlinker.rerank.cross_encoder import CrossEncoderReranker

        new_record = CrossEncoderReranker(new_record["model"], depth=int(record.get("depth", 50)),
                                          term=record.get("term", "matched"),
                                          max_length=int(record.get("max_length", 64)),
                                          precision=record.get("precision", "fp32"),
                                          weight=float(record.get("weight", 1.0)),
                                          novel_weight=record.get("novel_weight"), device=config.device).describe()
    save_index(index, out / "index", sources={"retrained_from": str(index_dir.resolve()), "links": len(links),
                                              **sources}, reranker=new_record or manifest.get("reranker"))
    return history


def _retrain_first_stage(index_dir: Path, manifest: dict, links, out: Path, config, show_progress, should_stop):
    from clinlinker.encode.encoders import DenseEncoder
    from clinlinker.search.index import _read_kb, build_index, model_source, read_manifest

    hybrid = None
    dense_dir = index_dir
    if manifest.get("engine") == "hybrid":
        hybrid = {"method": manifest.get("method", "interpolate"), "weight": float(manifest.get("weight", 0.5)),
                  "depth": int(manifest.get("depth", 100))}
        dense_dir = index_dir / "dense"
        manifest = read_manifest(dense_dir)
    if manifest.get("engine") != "dense":
        raise ClinlinkerError(f"{index_dir} is a {manifest.get('engine')} index: the lexical engine has no model "
                              "to fine-tune (build a dense index with `clinlinker index --model ...`)")
    kb = _read_kb(dense_dir, manifest)
    base = model_source(manifest)
    config.pooling = manifest.get("pooling") or config.pooling
    config.prefix = manifest.get("prefix", "")
    pairs = build_pairs(kb, links=links, use_hierarchy=bool(kb.hierarchy_edges()), config=config)
    history = train(base, pairs, out / "model", config, show_progress=show_progress, should_stop=should_stop,
                    sources={"index": str(index_dir.resolve()), "links": len(links)})
    encoder = DenseEncoder(str(out / "model"), pooling=manifest["pooling"], prefix=manifest.get("prefix", ""),
                           max_length=manifest["max_length"], device=config.device)
    index = build_index(kb, encoder, index_type=manifest.get("index_type", "flat"), hybrid=hybrid)
    return index, history, dict(manifest.get("sources") or {})


def _retrain_reranker(index, record: dict, links, out: Path, config, max_steps, routing) -> dict:
    """Train the re-ranker of `record` further, from its weights, on the links: positives their concepts' terms,
    hard negatives the first wrong candidates of `index`'s own lists for them."""
    from clinlinker.linking.linker import Linker
    from clinlinker.rerank.cross_encoder import reranker_examples, train_cross_encoder

    clean = [link for link in links if getattr(link, "is_clean", True) and link.code in index.kb]
    linker = Linker(index, routing=routing)
    depth = int(record.get("depth", 50))
    lists = linker.link([link.span for link in clean], depth, labels=[link.label or None for link in clean])
    examples = reranker_examples(clean, lists, index.kb, term=record.get("term", "matched"), seed=config.seed)
    return train_cross_encoder(examples, record["model"], out, max_steps=max_steps or config.max_steps,
                               max_seconds=config.max_seconds, lr=config.lr, seed=config.seed, device=config.device,
                               max_length=int(record.get("max_length", 64)), bf16=config.bf16,
                               codes={link.code for link in clean})

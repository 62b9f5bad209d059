"""Training: `clinlinker train` (bi-encoder), `train-reranker` (cross-encoder), `retrain` (an index's model on accepted links)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from clinlinker.cli.common import positive_int
from clinlinker.errors import ClinlinkerError

log = logging.getLogger("clinlinker")



def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a bi-encoder (SapBERT-style) on gazetteer synonyms, hierarchy "
                                     "and accepted links")
    p.add_argument("--gazetteer", action="append", required=True, metavar="TSV")
    p.add_argument("--hierarchy", metavar="TSV", help="is-a hierarchy: parents' and grandparents' terms as positives")
    p.add_argument("--links", action="append", default=[], metavar="TSV",
                   help="accepted links (linking TSV): mention -> code positives; repeatable")
    p.add_argument("--model", required=True, help="base model: hub id or local directory")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("--max-steps", type=positive_int)
    p.add_argument("--batch-size", type=positive_int, default=64, help="pairs per batch (default 64)")
    p.add_argument("--lr", type=float, default=2e-5, help="peak learning rate (default 2e-5, SapBERT's)")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="linear warm-up share of the steps (default 0.1)")
    p.add_argument("--link-repeats", type=positive_int, default=1,
                   help="repeat each accepted-link pair this many times per epoch (default 1)")
    p.add_argument("--max-seconds", type=float, help="stop (and save) after this many seconds of training")
    p.add_argument("--pooling", choices=["cls", "mean"],
                   help="default: what the base model directory records (clinlinker_encoder.json), else cls")
    p.add_argument("--freeze-embeddings", action="store_true",
                   help="keep the word embeddings as they are (faster with a large vocabulary such as e5's)")
    p.add_argument("--max-length", type=positive_int, default=25)
    p.add_argument("--max-synonym-pairs", type=positive_int, default=8, help="per concept")
    p.add_argument("--max-hierarchy-pairs", type=int, default=4, help="per concept (0: no hierarchy positives)")
    p.add_argument("--hard-negatives", type=int, default=0, metavar="N",
                   help="put with each anchor the terms of the first N wrong concepts an index lists for it, as "
                        "negatives in its batch (default 0: in-batch negatives only)")
    p.add_argument("--hard-negatives-index", metavar="DIR", help="the index that mines them (default: a lexical "
                   "index of the same gazetteers, built on the fly; give a dense index of the base model to mine "
                   "the model's own confusions)")
    p.add_argument("--bf16", action="store_true", help="train in bfloat16 autocast (fp32 weights): ~3x faster on "
                   "CPUs with AVX-512 BF16 or on a GPU, slower elsewhere")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser("train-reranker", help="train a cross-encoder re-ranker from accepted links, with hard "
                                              "negatives from an index's own candidate lists")
    p.add_argument("--index", required=True, metavar="DIR", help="the first stage whose lists it will re-order")
    p.add_argument("--links", action="append", required=True, metavar="TSV", help="accepted links (linking TSV); "
                   "repeatable")
    p.add_argument("--model", required=True, help="base model: a sequence-classification or cross-encoder "
                   "checkpoint, or any encoder (a fresh one-logit head is added), by hub id or path")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--negatives", type=positive_int, default=7, help="hard negatives per link: the first wrong "
                   "candidates of its list (default 7)")
    p.add_argument("--depth", type=positive_int, default=25, help="list depth the negatives are taken from (default 25)")
    p.add_argument("--term", default="matched", choices=["matched", "preferred", "both"])
    p.add_argument("--synonyms", type=int, default=0, metavar="N", help="also N gazetteer concepts' synonyms as "
                   "positives, with the index's look-alikes as negatives (default 0)")
    p.add_argument("--bf16", action="store_true", help="train in bfloat16 autocast (CPUs with AVX-512 BF16)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=positive_int)
    p.add_argument("--max-seconds", type=float)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=positive_int, default=48)
    p.add_argument("--layers", type=positive_int, metavar="N", help="keep only the base's first N transformer layers: "
                   "a shallower re-ranker, about N/all of the reading time (default: all)")
    p.add_argument("--routing", default=os.environ.get("CLINLINKER_ROUTING"), metavar="TOML")
    p.add_argument("--device")
    p.set_defaults(handler=cmd_train_reranker)

    p = sub.add_parser("retrain", help="fine-tune a dense index's model on its concepts, hierarchy and accepted "
                                       "links, and re-encode the index (what the backend runs in the background)")
    p.add_argument("--index", required=True, metavar="DIR", help="the dense or hybrid index now serving")
    p.add_argument("--links", action="append", default=[], metavar="TSV", help="accepted links (linking TSV)")
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/model and DIR/index")
    p.add_argument("--max-steps", type=positive_int, default=200)
    p.add_argument("--max-seconds", type=float, help="stop training (and save) after this many seconds")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--link-repeats", type=positive_int, default=4)
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: all)")
    p.add_argument("--no-reranker", action="store_true", help="keep the index's re-ranker as it is (default: train "
                   "it further on the links too, with hard negatives from the new first stage)")
    p.add_argument("--reranker-steps", type=positive_int, help="the re-ranker's training steps (default: --max-steps)")
    p.add_argument("--routing", default=os.environ.get("CLINLINKER_ROUTING"), metavar="TOML",
                   help="label routing of the lists the re-ranker's negatives come from (default: built-in)")
    p.add_argument("--bf16", action="store_true", help="train in bfloat16 autocast (CPUs with AVX-512 BF16, GPUs)")
    p.add_argument("--device")
    p.set_defaults(handler=cmd_retrain)


def cmd_train(args) -> int:
    from clinlinker.kb.gazetteer import file_sha256, load_knowledge_base
    from clinlinker.links import read_links
    from clinlinker.train.fine_tune import TrainingConfig, build_pairs, train

    kb = load_knowledge_base(args.gazetteer, args.hierarchy)
    links = [link for path in args.links for link in read_links(path)]
    config = TrainingConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                            pooling=args.pooling, max_length=args.max_length,
                            max_synonym_pairs=args.max_synonym_pairs,
                            max_hierarchy_pairs=args.max_hierarchy_pairs, seed=args.seed, device=args.device,
                            warmup_ratio=args.warmup_ratio, link_repeats=args.link_repeats,
                            max_seconds=args.max_seconds, bf16=args.bf16,
                            freeze_word_embeddings=args.freeze_embeddings)
    pairs = build_pairs(kb, links=links, use_hierarchy=args.max_hierarchy_pairs > 0, config=config)
    if args.hard_negatives > 0:
        from clinlinker.search.index import build_index, load_index
        from clinlinker.train.fine_tune import mine_hard_negatives

        miner = load_index(args.hard_negatives_index) if args.hard_negatives_index else build_index(kb)
        if [c.code for c in miner.kb.concepts] != [c.code for c in kb.concepts]:
            raise ClinlinkerError(f"--hard-negatives-index {args.hard_negatives_index}: built from other gazetteers "
                                  "than --gazetteer (its concepts differ)")
        mine_hard_negatives(pairs, miner, args.hard_negatives)
    sources = {"gazetteers": [{"path": str(Path(p).resolve()), "sha256": file_sha256(p)} for p in args.gazetteer],
               "links": [{"path": str(Path(p).resolve()), "sha256": file_sha256(p)} for p in args.links]}
    if args.hierarchy:
        sources["hierarchy"] = {"path": str(Path(args.hierarchy).resolve()), "sha256": file_sha256(args.hierarchy)}
    manifest = train(args.model, pairs, args.out, config, sources=sources)
    print(f"model written to {args.out}: {manifest['steps']} steps on {manifest['pairs']} pairs "
          f"({manifest['pair_counts']}); loss on a fixed sample {manifest['loss_before']:.4f} -> "
          f"{manifest['loss_after']:.4f}. "
          f"Index with: clinlinker index --model {args.out} ... (its pooling and prefix are recorded there)")
    return 0


def cmd_train_reranker(args) -> int:
    from clinlinker.kb.routing import routing_from_setting
    from clinlinker.linking.linker import Linker
    from clinlinker.links import read_links
    from clinlinker.rerank.cross_encoder import (
        first_layers,
        reranker_examples,
        train_cross_encoder,
    )

    first_layers(args.model, args.layers)  # a --layers the base cannot have is refused before the lists are built
    linker = Linker.from_directory(args.index, routing=routing_from_setting(args.routing), reranker=None,
                                   device=args.device)
    links = [link for path in args.links for link in read_links(path) if link.is_clean]
    lists = linker.link([link.span for link in links], args.depth, labels=[link.label for link in links])
    examples = reranker_examples(links, lists, linker.kb, negatives=args.negatives, term=args.term)
    if args.synonyms:
        import random

        from clinlinker.rerank.cross_encoder import synonym_examples

        examples += synonym_examples(linker.kb, linker.index, args.synonyms)
        random.Random(0).shuffle(examples)
    print(f"{len(examples)} examples ({sum(y for _, _, y in examples):.0f} positive) from {len(links)} links",
          file=sys.stderr)
    record = train_cross_encoder(examples, args.model, args.out, epochs=args.epochs, max_steps=args.max_steps,
                                 max_seconds=args.max_seconds, batch_size=args.batch_size, lr=args.lr,
                                 max_length=args.max_length, device=args.device, bf16=args.bf16,
                                 codes={link.code for link in links if link.code in linker.kb}, layers=args.layers)
    print(f"re-ranker written to {args.out}: {record['steps']} steps ({record['epochs']} epochs) in "
          f"{record['seconds']} s, loss {record['loss_first_50']} -> {record['loss_last_50']}; use it with "
          f"`clinlinker index --reranker {args.out}` or --reranker / CLINLINKER_RERANKER")
    return 0


def cmd_retrain(args) -> int:
    from clinlinker.links import read_links
    from clinlinker.train.fine_tune import TrainingConfig, retrain_index

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    links = [link for path in args.links for link in read_links(path)]
    config = TrainingConfig(max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                            link_repeats=args.link_repeats, max_seconds=args.max_seconds, device=args.device,
                            bf16=args.bf16)
    from clinlinker.kb.routing import routing_from_setting

    manifest = retrain_index(args.index, links, args.out, config, show_progress=sys.stderr.isatty(),
                             reranker=not args.no_reranker, reranker_steps=args.reranker_steps,
                             routing=routing_from_setting(args.routing))
    if manifest["steps"]:
        print(f"fine-tuned {manifest['steps']} steps ({manifest['stopped_by']}) on {manifest['pairs']} pairs "
              f"({manifest['pair_counts']['link']} from accepted links); loss on a fixed sample "
              f"{manifest['loss_before']:.4f} -> {manifest['loss_after']:.4f}")
    else:
        print(f"first stage kept ({manifest['stopped_by']})")
    if "reranker" in manifest:
        rr = manifest["reranker"]
        print(f"re-ranker trained further: {rr['steps']} steps on {rr['examples']} examples, loss "
              f"{rr['loss_first_50']} -> {rr['loss_last_50']}; written to {Path(args.out) / 'reranker'}")
    print(f"index written to {Path(args.out) / 'index'}")
    return 0

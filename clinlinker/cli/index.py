"""`clinlinker index`: gazetteers -> an index directory (any engine, optional re-ranker)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from clinlinker.cli.common import positive_int, source_record
from clinlinker.errors import ClinlinkerError
from clinlinker.search.hybrid import DEFAULT_WEIGHT
from clinlinker.search.lexical import LEXICAL_MODEL

log = logging.getLogger("clinlinker")



def register(sub) -> None:
    p = sub.add_parser("index", help="build an index directory from gazetteers")
    p.add_argument("--gazetteer", action="append", required=True, metavar="TSV",
                   help="gazetteer TSV (code language term semantic_tag mainterm); repeat to merge several")
    p.add_argument("--hierarchy", metavar="TSV", help="is-a hierarchy TSV (code parent)")
    p.add_argument("--model", default=os.environ.get("CLINLINKER_MODEL", "ICB-UMA/ClinLinker-KB-GP"),
                   help=f"hub id, local model directory, or {LEXICAL_MODEL} (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="DIR", help="index directory to write")
    p.add_argument("--index-type", default="flat", choices=["flat", "hnsw", "sq8", "ivf"],
                   help="Faiss index: exact flat (default), ivf (approximate, fast, recall@25 ~0.99), "
                        "hnsw (approximate), sq8 (8-bit, 4x smaller)")
    p.add_argument("--pooling", choices=["cls", "mean"], help="default: what the model directory records "
                   "(clinlinker_encoder.json, from `clinlinker model unpack` or `train`), else cls, as the model card")
    p.add_argument("--hybrid", choices=["interpolate", "rrf", "none"],
                   help="with a dense --model, also build the lexical engine and fuse both lists: score "
                        "interpolation (the default: the best measured as served, docs/quality.md) or reciprocal "
                        "rank fusion; none: the dense engine alone")
    p.add_argument("--hybrid-weight", type=float, default=DEFAULT_WEIGHT,
                   help="weight of the dense side (default %(default)s, chosen as served on the quality split)")
    p.add_argument("--no-abbreviations", action="store_true",
                   help="do not search a mention's acronyms also as their long forms (on by default; recorded in "
                        "the manifest, which the backend follows)")
    p.add_argument("--max-length", type=positive_int, default=64, help="tokens per text (default 64)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per batch (default 32: fastest on 2-core CPUs, bench/encoding.py)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "int8"],
                   help="auto (default): the fastest precision this hardware runs fast that `clinlinker precision` "
                        "found within 0.2 points of fp32's accuracy for this model, else fp32 (the reference); "
                        "bf16/int8 force one (docs/benchmarks.md)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--runtime", choices=["torch", "onnx"], default=os.environ.get("CLINLINKER_RUNTIME") or "torch",
                   help="encode the gazetteer with torch (default) or ONNX Runtime (fp32; exported once, kept beside "
                        "the model; the index is the same either way)")
    p.add_argument("--ray", action="store_true", help="encode the gazetteer in shards on a Ray cluster (a local one "
                   "unless --ray-address or $RAY_ADDRESS names one); the same index directory as a local build")
    p.add_argument("--ray-address", metavar="HOST:PORT")
    p.add_argument("--workers", type=positive_int, help="Ray actors, each loading the model once (default: as many as "
                   "the cluster's CPUs hold, or its GPUs with --gpus-per-worker)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--ray-shard-size", type=positive_int, default=8192, help="terms per Ray task (default 8192)")
    p.add_argument("--reranker", metavar="MODEL", help="a cross-encoder (hub id or path, e.g. from "
                   "`clinlinker train-reranker`) that re-orders the first stage's candidates; recorded in the manifest "
                   "and loaded with the index")
    p.add_argument("--rerank-depth", type=positive_int, default=50, help="first-stage candidates the re-ranker reads "
                   "(default 50)")
    p.add_argument("--rerank-term", default="matched", choices=["matched", "preferred", "both"],
                   help="which term of a candidate the re-ranker reads (default: the one the first stage matched)")
    p.add_argument("--rerank-weight", type=float, default=1.0, help="the cross-encoder's share of a candidate's "
                   "score, the rest the first stage's similarity (default 1.0: the cross-encoder alone)")
    p.add_argument("--rerank-novel-weight", type=float, help="its share for a candidate whose code the re-ranker "
                   "was not trained on (its clinlinker_reranker_codes.txt; default: --rerank-weight)")
    p.add_argument("--rerank-precision", default="fp32", choices=["fp32", "bf16", "int8"],
                   help="the re-ranker's precision (bf16: faster where the CPU has AVX-512 BF16; int8: dynamic "
                        "quantization, the fastest measured here, 1.8 points of top-1 lower; docs/quality.md)")
    p.set_defaults(handler=cmd_index)


def cmd_index(args) -> int:
    from clinlinker.kb.gazetteer import file_sha256, load_knowledge_base
    from clinlinker.search.index import build_index, save_index

    reranker = None
    if args.reranker:  # loaded first: a model that cannot load, or a bad setting, is refused before any encoding
        from clinlinker.rerank.cross_encoder import CrossEncoderReranker

        name = str(Path(args.reranker).resolve()) if Path(args.reranker).is_dir() else args.reranker  # a local
        # directory is recorded by its absolute path: the index loads from anywhere
        try:
            reranker = CrossEncoderReranker(name, depth=args.rerank_depth, term=args.rerank_term,
                                            device=args.device, precision=args.rerank_precision,
                                            weight=args.rerank_weight,
                                            novel_weight=args.rerank_novel_weight).describe()
        except ValueError as exc:  # weight or novel weight out of [0, 1], int8 on a GPU
            raise ClinlinkerError(f"--reranker {args.reranker}: {exc}") from None
    kb = load_knowledge_base(args.gazetteer, args.hierarchy)
    if args.model == LEXICAL_MODEL:
        encoder = None
    else:
        from clinlinker.encode.encoders import DenseEncoder

        precision, why, encoder = args.precision, None, None
        if precision == "auto":
            from clinlinker.evaluate.precision import choose, detect

            hardware = detect()
            encoder = DenseEncoder(args.model, pooling=args.pooling, max_length=args.max_length,
                                   batch_size=args.batch_size, device=args.device, show_progress=None,
                                   runtime=args.runtime)  # fp32: its fingerprint finds the model's verdict
            precision, why = choose(args.model, encoder.fingerprint, hardware)
            if precision != "fp32" and args.runtime == "onnx":
                precision, why = "fp32", f"fp32: the onnx runtime runs fp32 only (auto would have chosen {precision})"
            log.warning("precision %s", why)
            if precision != "fp32":
                encoder = None  # loaded again below in the chosen precision (only then)
        if encoder is None:
            encoder = DenseEncoder(args.model, pooling=args.pooling, max_length=args.max_length,
                                   batch_size=args.batch_size, device=args.device, show_progress=None,
                                   precision=precision, runtime=args.runtime)
        if why:
            encoder.precision_choice = {"chosen": precision, "why": why, "hardware": hardware}
        if args.ray or args.ray_address or os.environ.get("RAY_ADDRESS"):
            from clinlinker.encode.ray import RayEncoder

            encoder = RayEncoder(encoder, address=args.ray_address, workers=args.workers,
                                 cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                                 shard_size=args.ray_shard_size)
    if args.hybrid not in (None, "none") and encoder is None:
        raise ClinlinkerError("--hybrid needs a dense --model (the lexical side is built beside it)")
    method = args.hybrid or ("interpolate" if encoder is not None else "none")
    hybrid = {"method": method, "weight": args.hybrid_weight} if method != "none" else None
    index = build_index(kb, encoder, index_type=args.index_type, hybrid=hybrid)
    sources = {"gazetteers": [source_record(p, file_sha256) for p in args.gazetteer]}
    if args.hierarchy:
        sources["hierarchy"] = {"path": str(Path(args.hierarchy).resolve()), "sha256": file_sha256(args.hierarchy)}
    serving = {"abbreviations": not args.no_abbreviations, "code_prior": False}  # docs/quality.md, "As served"
    out = save_index(index, args.out, sources=sources, reranker=reranker, serving=serving)
    print(f"index written to {out}: {index.engine} engine ({index.encoder.name}), {index.index_type}, "
          f"{len(kb)} concepts, {kb.n_terms} terms; {kb.report.summary()}"
          + (f"; re-ranked by {args.reranker} (depth {args.rerank_depth})" if reranker else ""))
    return 0

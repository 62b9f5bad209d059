"""What several command groups share: argument types and the options of a served index."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

log = logging.getLogger("clinlinker")


def parse_ks(value: str) -> list[int]:
    try:
        ks = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k takes comma-separated integers, got {value!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError("--k values must be positive integers")
    return ks


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--routing", default=os.environ.get("CLINLINKER_ROUTING"), metavar="TOML",
                   help="label routing: which part of the knowledge base serves each span label (a TOML file; "
                        "default: the built-in clinlinker/data/label_routing.toml; 'none': the whole knowledge base "
                        "for every label; env CLINLINKER_ROUTING)")
    p.add_argument("--learn", action="append", default=[], metavar="TSV",
                   help="accepted links (linking TSV) used as learned terms, as the backend does with coders' "
                        "accepted links: their wordings come first; repeatable")
    p.add_argument("--model", help="check the index against / load this model instead of the manifest's")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"),
                   help="cache mention embeddings in Redis (default: $REDIS_URL; unset: in-process cache)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="texts per batch (default 32: fastest on 2-core CPUs, bench/encoding.py)")
    p.add_argument("--device")
    p.add_argument("--runtime", choices=["torch", "onnx"], default=os.environ.get("CLINLINKER_RUNTIME") or None,
                   help="the dense encoder's runtime: torch (default) or onnx (ONNX Runtime, the model exported once "
                        "and kept beside it; faster on CPUs; env CLINLINKER_RUNTIME)")
    p.add_argument("--reranker", default=os.environ.get("CLINLINKER_RERANKER"), metavar="MODEL",
                   help="a cross-encoder that re-orders the first stage's candidates; 'none': off (default: "
                        "$CLINLINKER_RERANKER, else the one the index records)")
    p.add_argument("--rerank-depth", type=positive_int, help="first-stage candidates the re-ranker reads (default: "
                   "the index's, else 50)")
    p.add_argument("--no-abbreviations", action="store_true", help="do not search acronyms also as their long forms "
                   "(default: what the index manifest records, else on)")


def source_record(path, file_sha256) -> dict:
    """A gazetteer as the index manifest records it; one written by `clinlinker kb` brings its release's
    description (release.json beside it: edition dates, modules, language refsets)."""
    entry = {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}
    release = Path(path).parent / "release.json"
    if release.is_file():
        try:
            info = json.loads(release.read_text(encoding="utf-8"))
            entry["release"] = {k: info.get(k) for k in ("release_type", "release_date", "modules", "language",
                                                         "language_refsets", "sources", "subset") if k in info}
        except ValueError:
            log.warning("%s: unreadable, not recorded in the index manifest", release)
    return entry


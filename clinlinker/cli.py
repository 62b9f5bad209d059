"""The `clinlinker` command: index, link, evaluate."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from clinlinker import __version__
from clinlinker.errors import ClinlinkerError
from clinlinker.lexical import LEXICAL_MODEL

log = logging.getLogger("clinlinker")


def _ks(value: str) -> list[int]:
    try:
        ks = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k takes comma-separated integers, got {value!r}") from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError("--k values must be positive integers")
    return ks


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinlinker", description=(
        "SNOMED CT candidate generation for Spanish clinical mentions "
        "(bi-encoder + Faiss, or the offline char-ngrams engine)."))
    parser.add_argument("--version", action="version", version=f"clinlinker {__version__}")
    parser.add_argument("--log-level", default=os.environ.get("CLINLINKER_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("kb", help="knowledge bases: import a SNOMED CT RF2 release; statistics and coverage")
    kb = p.add_subparsers(dest="kb_command", required=True, metavar="KB_COMMAND")
    k = kb.add_parser("rf2", help="an unzipped RF2 release (Snapshot, or Full) -> gazetteer.tsv, hierarchy.tsv, "
                                  "inactive.tsv, release.json")
    k.add_argument("--release", required=True, metavar="DIR", help="the unzipped release (one or several editions: "
                   "International + extension, merged)")
    k.add_argument("--out", required=True, metavar="DIR")
    k.add_argument("--language", default="es", help="description language (default: %(default)s)")
    k.add_argument("--full", action="store_true", help="read the Full files (each component's latest row) even "
                   "where Snapshot files exist")
    k.add_argument("--language-refset", action="append", default=[], metavar="ID",
                   help="language refset(s) deciding preferred and acceptable terms (default: every one found)")
    k.add_argument("--descendants-of", action="append", default=[], metavar="SCTID",
                   help="keep only these concepts and their descendants (repeatable; with --tag: either)")
    k.add_argument("--tag", action="append", default=[], help="keep only concepts with this semantic tag "
                   "(repeatable)")
    k = kb.add_parser("umls", help="a UMLS release's META folder (MRCONSO.RRF, MRREL.RRF) -> the same files, for "
                                   "SNOMED CT sources")
    k.add_argument("--meta", required=True, metavar="DIR")
    k.add_argument("--out", required=True, metavar="DIR")
    k.add_argument("--language", default="es", help="string language (default: %(default)s)")
    k.add_argument("--sab", action="append", default=[], help="UMLS source(s) of the strings (default: SCTSPA)")
    k.add_argument("--descendants-of", action="append", default=[], metavar="SCTID")
    k.add_argument("--tag", action="append", default=[])
    k = kb.add_parser("stats", help="concepts, terms per concept, tags, hierarchy depth; with --links, how many "
                                    "gold codes the knowledge base holds, per label")
    k.add_argument("--gazetteer", action="append", required=True, metavar="TSV")
    k.add_argument("--hierarchy", metavar="TSV")
    k.add_argument("--links", action="append", default=[], metavar="TSV", help="linking TSV(s) whose codes to look "
                   "up (repeatable)")
    k.add_argument("--json", metavar="OUT", help="also write the figures as JSON")

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
    p.add_argument("--pooling", default="cls", choices=["cls", "mean"], help="default cls, as the model card")
    p.add_argument("--hybrid", choices=["interpolate", "rrf"],
                   help="also build the lexical engine and fuse both lists (score interpolation or reciprocal "
                        "rank fusion)")
    p.add_argument("--hybrid-weight", type=float, default=0.5, help="weight of the dense side (default 0.5)")
    p.add_argument("--max-length", type=_positive, default=64, help="tokens per text (default 64)")
    p.add_argument("--batch-size", type=_positive, default=32, help="texts per batch (default 32: fastest on 2-core CPUs, bench/encoding.py)")
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
    p.add_argument("--workers", type=_positive, help="Ray actors, each loading the model once (default: as many as "
                   "the cluster's CPUs hold, or its GPUs with --gpus-per-worker)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--ray-shard-size", type=_positive, default=8192, help="terms per Ray task (default 8192)")
    p.add_argument("--reranker", metavar="MODEL", help="a cross-encoder (hub id or path, e.g. from "
                   "`clinlinker train-reranker`) that re-orders the first stage's candidates; recorded in the manifest "
                   "and loaded with the index")
    p.add_argument("--rerank-depth", type=_positive, default=50, help="first-stage candidates the re-ranker reads "
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

    p = sub.add_parser("train", help="fine-tune a bi-encoder (SapBERT-style) on gazetteer synonyms, hierarchy "
                                     "and accepted links")
    p.add_argument("--gazetteer", action="append", required=True, metavar="TSV")
    p.add_argument("--hierarchy", metavar="TSV", help="is-a hierarchy: parents' and grandparents' terms as positives")
    p.add_argument("--links", action="append", default=[], metavar="TSV",
                   help="accepted links (linking TSV): mention -> code positives; repeatable")
    p.add_argument("--model", required=True, help="base model: hub id or local directory")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--epochs", type=_positive, default=1)
    p.add_argument("--max-steps", type=_positive)
    p.add_argument("--batch-size", type=_positive, default=64, help="pairs per batch (default 64)")
    p.add_argument("--lr", type=float, default=2e-5, help="peak learning rate (default 2e-5, SapBERT's)")
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="linear warm-up share of the steps (default 0.1)")
    p.add_argument("--link-repeats", type=_positive, default=1,
                   help="repeat each accepted-link pair this many times per epoch (default 1)")
    p.add_argument("--max-seconds", type=float, help="stop (and save) after this many seconds of training")
    p.add_argument("--pooling", default="cls", choices=["cls", "mean"])
    p.add_argument("--max-length", type=_positive, default=25)
    p.add_argument("--max-synonym-pairs", type=_positive, default=8, help="per concept")
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

    p = sub.add_parser("train-reranker", help="train a cross-encoder re-ranker from accepted links, with hard "
                                              "negatives from an index's own candidate lists")
    p.add_argument("--index", required=True, metavar="DIR", help="the first stage whose lists it will re-order")
    p.add_argument("--links", action="append", required=True, metavar="TSV", help="accepted links (linking TSV); "
                   "repeatable")
    p.add_argument("--model", required=True, help="base model: a sequence-classification or cross-encoder "
                   "checkpoint, or any encoder (a fresh one-logit head is added), by hub id or path")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--negatives", type=_positive, default=7, help="hard negatives per link: the first wrong "
                   "candidates of its list (default 7)")
    p.add_argument("--depth", type=_positive, default=25, help="list depth the negatives are taken from (default 25)")
    p.add_argument("--term", default="matched", choices=["matched", "preferred", "both"])
    p.add_argument("--synonyms", type=int, default=0, metavar="N", help="also N gazetteer concepts' synonyms as "
                   "positives, with the index's look-alikes as negatives (default 0)")
    p.add_argument("--bf16", action="store_true", help="train in bfloat16 autocast (CPUs with AVX-512 BF16)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=_positive)
    p.add_argument("--max-seconds", type=float)
    p.add_argument("--batch-size", type=_positive, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-length", type=_positive, default=48)
    p.add_argument("--layers", type=_positive, metavar="N", help="keep only the base's first N transformer layers: "
                   "a shallower re-ranker, about N/all of the reading time (default: all)")
    p.add_argument("--routing", default=os.environ.get("CLINLINKER_ROUTING"), metavar="TOML")
    p.add_argument("--device")

    p = sub.add_parser("retrain", help="fine-tune a dense index's model on its concepts, hierarchy and accepted "
                                       "links, and re-encode the index (what the backend runs in the background)")
    p.add_argument("--index", required=True, metavar="DIR", help="the dense or hybrid index now serving")
    p.add_argument("--links", action="append", default=[], metavar="TSV", help="accepted links (linking TSV)")
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/model and DIR/index")
    p.add_argument("--max-steps", type=_positive, default=200)
    p.add_argument("--max-seconds", type=float, help="stop training (and save) after this many seconds")
    p.add_argument("--batch-size", type=_positive, default=64)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--link-repeats", type=_positive, default=4)
    p.add_argument("--threads", type=_positive, help="CPU threads for torch (default: all)")
    p.add_argument("--no-reranker", action="store_true", help="keep the index's re-ranker as it is (default: train "
                   "it further on the links too, with hard negatives from the new first stage)")
    p.add_argument("--reranker-steps", type=_positive, help="the re-ranker's training steps (default: --max-steps)")
    p.add_argument("--routing", default=os.environ.get("CLINLINKER_ROUTING"), metavar="TOML",
                   help="label routing of the lists the re-ranker's negatives come from (default: built-in)")
    p.add_argument("--bf16", action="store_true", help="train in bfloat16 autocast (CPUs with AVX-512 BF16, GPUs)")
    p.add_argument("--device")

    p = sub.add_parser("link", help="top-k candidate concepts for mentions")
    p.add_argument("mentions", nargs="*", metavar="MENTION")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("--input", metavar="FILE", help="one mention per line, or a linking TSV (filename mark label "
                   "off0 off1 span ...)")
    p.add_argument("--top-k", type=_positive, default=25)
    p.add_argument("--label", help="the span label of the mentions given as arguments or lines (e.g. SINTOMA): "
                   "they are served from that label's part of the knowledge base (a linking TSV has its own labels)")
    p.add_argument("--format", choices=["tsv", "json"], default="tsv")
    _add_runtime_options(p)

    p = sub.add_parser("evaluate", help="top-k accuracy against gold links")
    p.add_argument("--index", required=True, metavar="DIR")
    p.add_argument("--gold", action="append", required=True, metavar="TSV",
                   help="gold linking TSV (filename mark label off0 off1 span code semantic_rel); repeatable")
    p.add_argument("--k", type=_ks, default=[1, 5, 10, 25], help="comma-separated k values (default 1,5,10,25)")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT ('-' for stdout)")
    _add_runtime_options(p)

    p = sub.add_parser("precision", help="judge the faster precisions by accuracy: encode the knowledge base and gold "
                                         "mentions at fp32 and at bf16, keep bf16 for this model only if top-1 and "
                                         "top-25 stay within 0.2 points on every gold file (used by index "
                                         "--precision auto)")
    p.add_argument("--index", required=True, metavar="DIR", help="an fp32 dense or hybrid index")
    p.add_argument("--gold", action="append", required=True, metavar="TSV", help="gold linking TSV, one per corpus; "
                   "repeatable")
    p.add_argument("--precisions", default="bf16", help="comma-separated (default bf16)")
    p.add_argument("--batch-size", type=_positive, default=32)
    p.add_argument("--device")
    p.add_argument("--detect", action="store_true", help="only say what this hardware runs fast, and stop")

    p = sub.add_parser("annotate", help="bulk pre-annotation: Label Studio tasks with predictions (what /predict "
                                        "answers), a linking TSV of the top-1s and a JSONL of the top-k, for a corpus; "
                                        "resumable, locally or on a Ray cluster")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="Label Studio tasks (.json array or .jsonl), or a "
                   "linking/spans TSV (filename label off0 off1 [mark span ...]) with --texts")
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/tasks.json (import into Label Studio), "
                   "DIR/links.tsv, DIR/candidates.jsonl, DIR/summary.json")
    p.add_argument("--texts", metavar="DIR", help="the documents of a TSV input (DIR/<filename>.txt)")
    p.add_argument("--index", default=os.environ.get("CLINLINKER_INDEX"), metavar="DIR",
                   help="index directory (default: $CLINLINKER_INDEX; unset: the demo gazetteer)")
    p.add_argument("--label-config", metavar="XML", help="the project's labeling config (default: the backend's "
                   "default, label_studio_config/coding_all.xml's control names)")
    p.add_argument("--work", metavar="DIR", help="work directory, what a resumed run continues from (default: "
                   "OUT/work)")
    p.add_argument("--restart", action="store_true", help="start the work directory over")
    p.add_argument("--shard-size", type=_positive, default=200, help="tasks per shard (default 200)")
    p.add_argument("--chunk-size", type=_positive, default=20000, help="distinct mentions per encoding chunk")
    p.add_argument("--top-k", type=_positive, default=int(os.environ.get("CLINLINKER_TOP_K", "25")))
    p.add_argument("--ray", action="store_true", help="run on Ray (a local one-machine cluster unless --ray-address "
                   "or $RAY_ADDRESS names one; setting RAY_ADDRESS implies --ray)")
    p.add_argument("--ray-address", metavar="HOST:PORT", help="the Ray cluster to join (e.g. 10.0.0.5:6379)")
    p.add_argument("--workers", type=_positive, help="Ray actors, each loading the model once (default: as many as "
                   "the cluster's CPUs hold at --cpus-per-worker each, or its GPUs with --gpus-per-worker)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="e.g. 1 for GPU actors")
    p.add_argument("--threads", type=_positive, help="torch threads per process (default: torch's)")
    _add_runtime_options(p)

    p = sub.add_parser("serve", help="run the Label Studio ML backend (gunicorn)")
    p.add_argument("--index", default=os.environ.get("CLINLINKER_INDEX"),
                   help="index directory (default: $CLINLINKER_INDEX; unset: the demo gazetteer, lexical engine)")
    p.add_argument("--host", default=os.environ.get("CLINLINKER_HOST", "127.0.0.1"),
                   help="address to listen on (default: %(default)s, this machine only); any other address needs "
                        "credentials (CLINLINKER_BASIC_AUTH_USER/_PASSWORD and CLINLINKER_PICKER_TOKEN) or "
                        "CLINLINKER_ALLOW_OPEN=1")
    p.add_argument("--port", type=_positive, default=int(os.environ.get("CLINLINKER_PORT", "9090")))
    p.add_argument("--workers", type=_positive, default=int(os.environ.get("CLINLINKER_WORKERS", "1")),
                   help="gunicorn worker processes (each loads the model; default 1)")
    p.add_argument("--threads", type=_positive, default=int(os.environ.get("CLINLINKER_THREADS", "4")))
    p.add_argument("--timeout", type=_positive, default=120, help="gunicorn worker timeout in seconds")

    p = sub.add_parser("export", help="Label Studio JSON export -> linking TSV (accepted links)")
    _add_export_source(p, "the export")
    p.add_argument("--out", metavar="TSV", help="output file (default: stdout)")
    p.add_argument("--doc-field", default=os.environ.get("CLINLINKER_DOC_FIELD", "doc_id"),
                   help="task-data field used as filename (default: doc_id)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a region is reported (no code, wrong mention)")

    p = sub.add_parser("curate", help="gold-standard curation of a Label Studio project: agreement between "
                                      "coders, the adjudicated gold standard, disagreements, the assistant's effect, "
                                      "an HTML report")
    _add_export_source(p, "the project")
    p.add_argument("--index", metavar="DIR", help="the index coders were served: its knowledge base checks the codes "
                   "and gives the hierarchy (agreement within a concept's family), its candidate lists the ranks of "
                   "accepted codes beyond top-1")
    p.add_argument("--policy", default="majority", help="adjudication where no annotation is marked ground truth: "
                   "majority (default), newest, or coder:EMAIL")
    p.add_argument("--report", metavar="HTML", help="write the report a curation lead opens")
    p.add_argument("--gold", metavar="TSV", help="write the adjudicated gold standard (linking TSV)")
    p.add_argument("--disagreements", metavar="TSV", help="write every disagreement (task, span, each coder's code)")
    p.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    p.add_argument("--review-tab", action="store_true", help="with --url: add a Data Manager tab to the project "
                   "that shows only the tasks in disagreement, for the adjudicator")
    p.add_argument("--doc-field", default=os.environ.get("CLINLINKER_DOC_FIELD", "doc_id"))
    p.add_argument("--text-field", default="text", help="task-data field of the text (default: text)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a problem is reported")

    p = sub.add_parser("sync", help="rebuild the backend's accepted links of a Label Studio project from its "
                                    "annotations (Label Studio holds the coders' work) and report what differed")
    p.add_argument("--url", required=True, help="Label Studio URL, e.g. http://localhost:8080")
    p.add_argument("--token", default=os.environ.get("LABEL_STUDIO_API_KEY"),
                   help="Label Studio token (default: $LABEL_STUDIO_API_KEY)")
    p.add_argument("--project", type=_positive, required=True)
    p.add_argument("--data-dir", default=os.environ.get("CLINLINKER_DATA_DIR", "var"),
                   help="the backend's data directory (its SQLite store; default: $CLINLINKER_DATA_DIR or ./var)")
    p.add_argument("--database-url", default=os.environ.get("CLINLINKER_DATABASE_URL"),
                   help="the backend's PostgreSQL store (default: $CLINLINKER_DATABASE_URL)")

    p = sub.add_parser("doctor", help="check an installation (packages, index and model, Redis, the store, Label "
                                      "Studio, memory) and list what to fix; exit 1 if anything must be fixed")
    p.add_argument("--index", default=os.environ.get("CLINLINKER_INDEX"), help="default: $CLINLINKER_INDEX")
    p.add_argument("--model", default=os.environ.get("CLINLINKER_MODEL"), help="default: $CLINLINKER_MODEL")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="default: $REDIS_URL")
    p.add_argument("--database-url", default=os.environ.get("CLINLINKER_DATABASE_URL"),
                   help="default: $CLINLINKER_DATABASE_URL (unset: SQLite in the data directory)")
    p.add_argument("--data-dir", default=os.environ.get("CLINLINKER_DATA_DIR", "var"))
    p.add_argument("--workers", type=_positive, default=int(os.environ.get("CLINLINKER_WORKERS", "1")),
                   help="backend processes planned (memory check)")
    p.add_argument("--ls-url", default=os.environ.get("LABEL_STUDIO_URL"), help="Label Studio URL "
                   "(default: $LABEL_STUDIO_URL)")
    p.add_argument("--ls-token", default=os.environ.get("LABEL_STUDIO_API_KEY"),
                   help="default: $LABEL_STUDIO_API_KEY")
    p.add_argument("--project", type=_positive, help="the Label Studio project to check")
    p.add_argument("--backend-url", help="the backend as Label Studio reaches it (checks the webhook points there)")

    p = sub.add_parser("ls-project", help="create a Label Studio project from a corpus, with predictions, "
                                          "connected to the backend")
    p.add_argument("--url", required=True, help="Label Studio URL, e.g. http://localhost:8080")
    p.add_argument("--token", default=os.environ.get("LABEL_STUDIO_API_KEY"),
                   help="Label Studio token (default: $LABEL_STUDIO_API_KEY)")
    p.add_argument("--backend", default="http://localhost:9090", help="the running clinlinker backend, as Label "
                   "Studio reaches it (default: %(default)s)")
    p.add_argument("--backend-public-url", help="the backend as coders' browsers reach it (default: --backend)")
    p.add_argument("--links", required=True, metavar="TSV",
                   help="linking TSV, or spans TSV (filename mark label off0 off1 span)")
    p.add_argument("--texts", required=True, metavar="DIR", help="folder of <filename>.txt texts")
    p.add_argument("--title", default="clinlinker: codificación SNOMED CT")
    p.add_argument("--config", default="all", help="all, diseases, symptoms, procedures, or an XML file")
    p.add_argument("--limit", type=_positive, help="import only the first N documents")
    return parser


def _add_export_source(p: argparse.ArgumentParser, what: str) -> None:
    """A Label Studio full JSON export: a file, or pulled from the server (read by _export_tasks)."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", metavar="JSON", help="a full JSON export file (export type JSON)")
    source.add_argument("--url", help=f"Label Studio URL to pull {what} from (with --token and --project)")
    p.add_argument("--token", default=os.environ.get("LABEL_STUDIO_API_KEY"),
                   help="Label Studio token (default: $LABEL_STUDIO_API_KEY)")
    p.add_argument("--project", type=_positive)


def _export_tasks(args) -> list:
    from backend.export import fetch_export, read_export

    if args.url:
        if not args.token or not args.project:
            raise ClinlinkerError("--url needs --token (or $LABEL_STUDIO_API_KEY) and --project")
        return fetch_export(args.url, args.token, args.project)
    return read_export(args.input)


def _add_runtime_options(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--batch-size", type=_positive, default=32, help="texts per batch (default 32: fastest on 2-core CPUs, bench/encoding.py)")
    p.add_argument("--device")
    p.add_argument("--runtime", choices=["torch", "onnx"], default=os.environ.get("CLINLINKER_RUNTIME") or None,
                   help="the dense encoder's runtime: torch (default) or onnx (ONNX Runtime, the model exported once "
                        "and kept beside it; faster on CPUs; env CLINLINKER_RUNTIME)")
    p.add_argument("--reranker", default=os.environ.get("CLINLINKER_RERANKER"), metavar="MODEL",
                   help="a cross-encoder that re-orders the first stage's candidates; 'none': off (default: "
                        "$CLINLINKER_RERANKER, else the one the index records)")
    p.add_argument("--rerank-depth", type=_positive, help="first-stage candidates the re-ranker reads (default: "
                   "the index's, else 50)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except ClinlinkerError as exc:
        print(f"clinlinker {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def cmd_index(args) -> int:
    from clinlinker.gazetteer import file_sha256, load_knowledge_base
    from clinlinker.index import build_index, save_index

    reranker = None
    if args.reranker:  # loaded first: a model that cannot load, or a bad setting, is refused before any encoding
        from clinlinker.reranker import CrossEncoderReranker

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
        from clinlinker.encoders import DenseEncoder

        precision, why, encoder = args.precision, None, None
        if precision == "auto":
            from clinlinker.precision import choose, detect

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
            from clinlinker.ray_encoding import RayEncoder

            encoder = RayEncoder(encoder, address=args.ray_address, workers=args.workers,
                                 cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                                 shard_size=args.ray_shard_size)
    if args.hybrid and encoder is None:
        raise ClinlinkerError("--hybrid needs a dense --model (the lexical side is built beside it)")
    hybrid = {"method": args.hybrid, "weight": args.hybrid_weight} if args.hybrid else None
    index = build_index(kb, encoder, index_type=args.index_type, hybrid=hybrid)
    sources = {"gazetteers": [_source(p, file_sha256) for p in args.gazetteer]}
    if args.hierarchy:
        sources["hierarchy"] = {"path": str(Path(args.hierarchy).resolve()), "sha256": file_sha256(args.hierarchy)}
    out = save_index(index, args.out, sources=sources, reranker=reranker)
    print(f"index written to {out}: {index.engine} engine ({index.encoder.name}), {index.index_type}, "
          f"{len(kb)} concepts, {kb.n_terms} terms; {kb.report.summary()}"
          + (f"; re-ranked by {args.reranker} (depth {args.rerank_depth})" if reranker else ""))
    return 0


def cmd_train(args) -> int:
    from clinlinker.gazetteer import file_sha256, load_knowledge_base
    from clinlinker.links import read_links
    from clinlinker.training import TrainingConfig, build_pairs, train

    kb = load_knowledge_base(args.gazetteer, args.hierarchy)
    links = [link for path in args.links for link in read_links(path)]
    config = TrainingConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                            pooling=args.pooling, max_length=args.max_length,
                            max_synonym_pairs=args.max_synonym_pairs,
                            max_hierarchy_pairs=args.max_hierarchy_pairs, seed=args.seed, device=args.device,
                            warmup_ratio=args.warmup_ratio, link_repeats=args.link_repeats,
                            max_seconds=args.max_seconds, bf16=args.bf16)
    pairs = build_pairs(kb, links=links, use_hierarchy=args.max_hierarchy_pairs > 0, config=config)
    if args.hard_negatives > 0:
        from clinlinker.index import build_index, load_index
        from clinlinker.training import mine_hard_negatives

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
          f"Index with: clinlinker index --model {args.out} --pooling {args.pooling} ...")
    return 0


def cmd_train_reranker(args) -> int:
    from clinlinker.linker import Linker
    from clinlinker.links import read_links
    from clinlinker.reranker import first_layers, reranker_examples, train_cross_encoder
    from clinlinker.routing import routing_from_setting

    first_layers(args.model, args.layers)  # a --layers the base cannot have is refused before the lists are built
    linker = Linker.from_directory(args.index, routing=routing_from_setting(args.routing), reranker=None,
                                   device=args.device)
    links = [link for path in args.links for link in read_links(path) if link.is_clean]
    lists = linker.link([link.span for link in links], args.depth, labels=[link.label for link in links])
    examples = reranker_examples(links, lists, linker.kb, negatives=args.negatives, term=args.term)
    if args.synonyms:
        import random

        from clinlinker.reranker import synonym_examples

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
    from clinlinker.training import TrainingConfig, retrain_index

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    links = [link for path in args.links for link in read_links(path)]
    config = TrainingConfig(max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
                            link_repeats=args.link_repeats, max_seconds=args.max_seconds, device=args.device,
                            bf16=args.bf16)
    from clinlinker.routing import routing_from_setting

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


def _linker(args):
    from clinlinker.cache import make_cache
    from clinlinker.linker import Linker
    from clinlinker.links import read_links
    from clinlinker.routing import routing_from_setting

    routing = routing_from_setting(args.routing)
    cache = make_cache(args.redis_url)
    linker = Linker.from_directory(args.index, model=args.model, cache=cache, batch_size=args.batch_size,
                                   device=args.device, routing=routing, runtime=args.runtime, reranker=args.reranker or ...,
                                   rerank_depth=args.rerank_depth,
                                   rerank_cache=make_cache(args.redis_url, prefix="clinlinker:rr:"))
    if args.learn:
        linker.learn([(link.span, link.code) for path in args.learn for link in read_links(path)])
    for label, count in linker.describe()["routing"]["concepts_per_label"].items():
        log.info("label %s: served from %d of %d concepts (%s)", label, count, len(linker.kb), routing.source)
    return linker, cache


def cmd_link(args) -> int:
    from clinlinker.links import is_link_file, read_links

    links = None
    mentions = list(args.mentions)
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise ClinlinkerError(f"--input {path}: no such file")
        if is_link_file(path):
            links = read_links(path, require_code=False)
            mentions = [link.span for link in links]
        else:
            mentions += _read_mention_lines(path)
    if not mentions:
        raise ClinlinkerError("no mentions: give them as arguments or with --input FILE")
    linker, _ = _linker(args)
    labels = [link.label for link in links] if links is not None else [args.label] * len(mentions)
    results = linker.link(mentions, args.top_k, labels=labels)
    out = sys.stdout
    if args.format == "json":
        items = []
        for i, (mention, candidates) in enumerate(zip(mentions, results)):
            item = {"mention": mention}
            if links is not None:
                link = links[i]
                item.update(filename=link.filename, mark=link.mark, label=link.label, off0=link.start,
                            off1=link.end, gold_code=link.code or None)
            elif args.label:
                item["label"] = args.label
            item["candidates"] = [c.to_dict() for c in candidates]
            if len(candidates) < args.top_k:
                item["short"] = shortfall(linker, labels[i], len(candidates), args.top_k)
            items.append(item)
        json.dump(items, out, ensure_ascii=False, indent=2)
        out.write("\n")
    else:
        prefix = ["filename", "mark", "label", "off0", "off1"] if links is not None else []
        out.write("\t".join(prefix + ["mention", "rank", "code", "preferred_term", "semantic_tag", "score",
                                      "matched_term", "evidence", "parents"]) + "\n")
        for i, (mention, candidates) in enumerate(zip(mentions, results)):
            lead = [] if links is None else [links[i].filename, links[i].mark, links[i].label, str(links[i].start),
                                             str(links[i].end)]
            for c in candidates:
                evidence = f"{c.evidence} ({c.via})" if c.via else c.evidence
                parents = "; ".join(f"{code} {term}".rstrip() for code, term in c.parents)
                out.write("\t".join(lead + [mention, str(c.rank), c.code, c.preferred_term, c.semantic_tag,
                                            f"{c.score:.4f}", c.matched_term, evidence, parents]) + "\n")
            if len(candidates) < args.top_k:
                log.info("%r: %s", mention, shortfall(linker, labels[i], len(candidates), args.top_k))
    return 0


def shortfall(linker, label, found: int, k: int) -> str:
    """Why a list holds fewer than k candidates, in words."""
    allowed = linker.allowed(label)
    part = f"the {label} part ({int(allowed.sum())} concepts)" if allowed is not None else "the knowledge base"
    return (f"{found} of {k}: only {found} concepts of {part} have evidence for this mention (similar terms or "
            "their hierarchy neighbours); nothing is listed without evidence")


def _read_mention_lines(path: Path) -> list[str]:
    from clinlinker.errors import InputFileError

    mentions = []
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise InputFileError(path, lineno, "not valid UTF-8; re-save the file as UTF-8") from None
            if text:
                mentions.append(text)
    return mentions


def cmd_evaluate(args) -> int:
    from clinlinker.evaluation import evaluate_links, format_report
    from clinlinker.links import read_links

    gold = [link for path in args.gold for link in read_links(path)]
    if not gold:
        raise ClinlinkerError(f"no gold links in {', '.join(args.gold)}")
    linker, cache = _linker(args)
    depth = max(args.k)
    candidates = linker.link([link.span for link in gold], depth, labels=[link.label for link in gold])
    report = evaluate_links(gold, [[c.code for c in cands] for cands in candidates], known_codes=linker.kb, ks=args.k)
    short = sum(len(cands) < depth for cands in candidates)
    report["short_lists"] = {"k": depth, "n": short, "share": round(short / len(candidates), 4)}
    report["routing"] = linker.describe()["routing"]
    report["index"] = {k: v for k, v in linker.describe().items() if k != "fingerprint"}
    report["gold"] = [str(p) for p in args.gold]
    print(f"index {args.index}: {report['index']['engine']} engine, model {report['index']['model']}, "
          f"{report['index']['concepts']} concepts")
    print(format_report(report))
    if short:
        print(f"{short} of {len(candidates)} lists hold fewer than {depth} candidates (too few concepts with "
              "evidence in their label's part)")
    if args.json:
        text = json.dumps(report, indent=2, ensure_ascii=False)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


def cmd_serve(args) -> int:
    """Exec gunicorn on the backend's app factory; configuration travels in the environment."""
    import shutil

    if args.index:
        os.environ["CLINLINKER_INDEX"] = args.index
    _check_exposure(args.host, os.environ)
    gunicorn = shutil.which("gunicorn") or os.path.join(os.path.dirname(sys.executable), "gunicorn")
    if not os.path.exists(gunicorn):
        raise ClinlinkerError("gunicorn is not installed: pip install -r requirements.txt")
    argv = [gunicorn, "--bind", f"{args.host}:{args.port}", "--workers", str(args.workers), "--threads",
            str(args.threads), "--worker-class", "gthread", "--timeout", str(args.timeout), "--access-logfile", "-",
            "backend.app:serve_app()"]
    from gunicorn import config as gunicorn_config

    if hasattr(gunicorn_config, "ControlSocketDisable"):  # gunicorn 24+: one control socket per user otherwise,
        argv.insert(-1, "--no-control-socket")  # which a second server on the host would take over
    # /metrics sums every worker's counts: prometheus_client's multiprocess mode, in a fresh directory per server
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="clinlinker-metrics-")
    sys.stdout.flush()
    os.execv(gunicorn, argv)
    return 0  # not reached


def _check_exposure(host: str, env) -> None:
    """The backend receives clinical text: beyond this machine it is served only behind credentials, unless an
    open service is asked for explicitly (and said so loudly)."""
    import ipaddress

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return
    missing = [name for name in ("CLINLINKER_BASIC_AUTH_USER", "CLINLINKER_BASIC_AUTH_PASSWORD",
                                 "CLINLINKER_PICKER_TOKEN") if not env.get(name, "").strip()]
    if not missing:
        return
    if env.get("CLINLINKER_ALLOW_OPEN", "").strip().lower() in ("1", "true", "yes"):
        log.warning("!! CLINLINKER_ALLOW_OPEN: serving clinical text on %s WITHOUT %s: anyone who reaches this port "
                    "can read the documents' mentions and candidates", host, ", ".join(missing))
        return
    raise ClinlinkerError(f"refusing to listen on {host} without credentials ({', '.join(missing)} unset): the "
                          "backend receives clinical text. Set them (Label Studio sends the Basic-auth pair, the "
                          "labeling config's picker URL carries &token=), listen on 127.0.0.1, or set "
                          "CLINLINKER_ALLOW_OPEN=1 to serve an open service on purpose")


def cmd_export(args) -> int:
    # The only commands that know Label Studio's JSON: they live in the backend package.
    from backend.export import export_tasks
    from clinlinker.links import write_links

    tasks = _export_tasks(args)
    links, problems, agreement = export_tasks(tasks, doc_field=args.doc_field)
    write_links(links, args.out)
    for problem in problems:
        print(f"clinlinker export: {problem}", file=sys.stderr)
    summary = f"clinlinker export: {len(links)} links from {len(tasks)} tasks; {len(problems)} region(s) reported"
    if agreement.compared:
        summary += (f"; the coder kept the pre-selected top-1 in {agreement.kept_top1} of {agreement.compared} "
                    f"predicted spans ({agreement.kept_top1 / agreement.compared:.1%})")
    if any(agreement.origins):
        words = {"prediction": "pre-annotations left untouched", "prediction-changed": "changed by the coder",
                 "manual": "coded by hand", "": "origin not recorded"}
        summary += "; codes: " + ", ".join(f"{n} {words.get(origin, origin)}"
                                            for origin, n in sorted(agreement.origins.items(), key=lambda i: -i[1]))
    print(summary, file=sys.stderr)
    return 1 if problems and args.strict else 0


def _source(path, file_sha256) -> dict:
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


def cmd_kb(args) -> int:
    if args.kb_command in ("rf2", "umls"):
        from clinlinker.rf2 import read_release, subset, write_release

        if args.kb_command == "umls":
            from clinlinker.umls import read_umls

            release = read_umls(args.meta, language=args.language, sources=tuple(args.sab) or ("SCTSPA",))
        else:
            release = read_release(args.release, language=args.language, kind="full" if args.full else None,
                                   language_refsets=tuple(args.language_refset))
        if args.descendants_of or args.tag:
            release = subset(release, descendants_of=tuple(args.descendants_of), tags=tuple(args.tag))
        paths = write_release(release, args.out, language=args.language)
        counts = release.info["counts"]
        print(f"clinlinker kb {args.kb_command}: {release.info['release_type']} release of "
              f"{release.info.get('release_date', '?')} ({len(release.info.get('modules', ()))} module(s)): "
              f"{counts['concepts']} concepts, {counts['terms']} terms, "
              f"{counts['is_a_edges']} is-a edges, {len(release.inactive)} inactive concepts with a replacement; "
              f"{counts.get('no_terms_in_language', 0)} active concepts without a {args.language!r} term left out "
              f"-> {paths['gazetteer']}, {paths['hierarchy']}", file=sys.stderr)
        return 0
    from clinlinker.kbstats import kb_stats, render_stats

    stats = kb_stats(args.gazetteer, args.hierarchy, args.links)
    print(render_stats(stats))
    if args.json:
        Path(args.json).write_text(json.dumps(stats, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


def cmd_doctor(args) -> int:
    from backend.config import BackendConfig
    from backend.doctor import run_doctor

    labels = BackendConfig.from_env().labels
    report = run_doctor(index_dir=args.index, model=args.model, redis_url=args.redis_url,
                        database_url=args.database_url, data_dir=args.data_dir, ls_url=args.ls_url,
                        ls_token=args.ls_token, project=args.project, backend_url=args.backend_url,
                        workers=args.workers, labels=labels)
    print(report.render())
    return 1 if report.failed else 0


def cmd_sync(args) -> int:
    from backend.config import BackendConfig
    from backend.resync import resync_project
    from backend.store import Store

    if not args.token:
        raise ClinlinkerError("--token (or $LABEL_STUDIO_API_KEY) is required")
    config = BackendConfig.from_env()
    store = Store(args.database_url, args.data_dir)
    print(f"clinlinker sync: store {store.kind} at {store.location}", file=sys.stderr)
    report = resync_project(store, config, args.url, args.token, str(args.project))
    for refused in report["refused"]:
        print(f"clinlinker sync: refused {refused}", file=sys.stderr)
    print(json.dumps({k: v for k, v in report.items() if k != "refused"} | {"refused": len(report["refused"])}))
    return 0


def cmd_curate(args) -> int:
    from backend.curation import (adjudicate, assistant_effect, create_review_tab, fetch_users, read_curation,
                                  report_html, write_disagreements)
    from clinlinker.agreement import agreement
    from clinlinker.links import write_links

    if args.review_tab and not args.url:
        raise ClinlinkerError("--review-tab needs --url (the tab is made in the live project)")
    tasks = _export_tasks(args)
    users = fetch_users(args.url, args.token) if args.url else {}
    linker = None
    if args.index:
        from clinlinker.linker import Linker

        linker = Linker.from_directory(args.index)
    kb = linker.kb if linker is not None else None
    curation = read_curation(tasks, doc_field=args.doc_field, text_field=args.text_field, users=users, kb=kb)
    agree = agreement(curation.coded(), kb=kb)
    gold = adjudicate(curation, args.policy)
    effect = assistant_effect(curation, linker=linker, gold=gold["links"])
    for problem in curation.problems:
        print(f"clinlinker curate: {problem}", file=sys.stderr)
    task_of_doc = {a.doc: a.task for a in curation.annotations}
    if args.gold:
        write_links(gold["links"], args.gold)
    if args.disagreements:
        write_disagreements(agree["disagreements"], task_of_doc, args.disagreements)
    title = f"Curation report: project {args.project}" if args.url else f"Curation report: {Path(args.input).name}"
    if args.report:
        Path(args.report).write_text(report_html(title, curation, agree, effect, gold), encoding="utf-8")
    if args.json:
        figures = {"counts": curation.counts, "problems": [str(p) for p in curation.problems], "agreement": agree,
                   "assistant": effect, "adjudication": {k: v for k, v in gold.items() if k != "links"}}
        Path(args.json).write_text(json.dumps(figures, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    tab = None
    if args.review_tab:
        tasks_in_disagreement = {task_of_doc[d["doc"]] for d in agree["disagreements"]} | \
            {u["task"] for u in gold["unresolved"]}
        tab = create_review_tab(args.url, args.token, args.project, tasks_in_disagreement)
    o = agree["overall"]
    summary = (f"clinlinker curate: {curation.counts.get('annotations', 0)} annotations of "
               f"{curation.counts.get('tasks', 0)} tasks by {len(agree['coded_documents'])} coder(s); "
               f"{len(curation.problems)} problem(s)")
    if o["code_compared"]:
        summary += (f"; span F1 {o['span_f1']:.3f}, exact code agreement {o['code_exact']:.3f} "
                    f"(family {o['code_family']:.3f}, kappa {o['code_kappa']}) on {o['code_compared']} shared spans")
    summary += (f"; {len(agree['disagreements'])} disagreement(s); gold standard {len(gold['links'])} links "
                f"({len(gold['unresolved'])} unresolved)")
    if tab:
        summary += f"; review tab with {tab['tasks']} task(s): {tab['url']}"
    print(summary, file=sys.stderr)
    return 1 if curation.problems and args.strict else 0


def cmd_ls_project(args) -> int:
    from backend.ls_project import create_project

    if not args.token:
        raise ClinlinkerError("--token (or $LABEL_STUDIO_API_KEY) is required")
    user, password = os.environ.get("CLINLINKER_BASIC_AUTH_USER"), os.environ.get("CLINLINKER_BASIC_AUTH_PASSWORD")
    made = create_project(url=args.url, token=args.token, backend_url=args.backend, links_path=args.links,
                          texts_dir=args.texts, title=args.title, config=args.config,
                          backend_public_url=args.backend_public_url, limit=args.limit,
                          basic_auth=(user, password) if user and password else None,
                          picker_token=os.environ.get("CLINLINKER_PICKER_TOKEN") or None)
    for problem in made["problems"]:
        print(f"clinlinker ls-project: {problem}", file=sys.stderr)
    print(f"project {made['project']} ready at {made['url']}: {made['tasks']} tasks, {made['spans']} spans with "
          f"predictions ({made['model_version']}); backend {args.backend} connected (interactive)")
    return 0


def cmd_precision(args) -> int:
    from clinlinker.precision import check, detect

    hardware = detect()
    print(f"hardware: {hardware['cpu']} ({', '.join(hardware['cpu_flags']) or 'no AVX2/AVX-512'}), torch CPU "
          f"capability {hardware['torch_cpu_capability']}, GPU {hardware['gpu']['name'] if hardware['gpu'] else 'none'}"
          f"; fast here: {', '.join(hardware['fast_precisions']) or 'fp32 only'}")
    if args.detect:
        return 0
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    bad = [p for p in precisions if p not in ("bf16", "int8")]
    if bad:
        raise ClinlinkerError(f"--precisions: {', '.join(bad)} unknown (bf16, int8)")
    record = check(args.index, args.gold, precisions=precisions, batch_size=args.batch_size, device=args.device)
    for name, rows in record["accuracy"].items():
        for path, acc in rows.items():
            print(f"{name:5s} {Path(path).name:30s} n={acc['n']:6d} top-1 {acc['top1']:.4f} top-25 {acc['top25']:.4f}")
    for precision, verdict in record["precisions"].items():
        print(f"{precision}: {'PASSED' if verdict['passed'] else 'FAILED'} (worst {verdict['worst']}; tolerance "
              f"{record['tolerance'] * 100:.1f} points)")
    print(f"verdict written to {record['written']}: `clinlinker index --precision auto` uses it on hardware that runs "
          "it fast")
    return 0


def cmd_annotate(args) -> int:
    from backend.annotate import AnnotateSettings, annotate

    if args.learn:
        raise ClinlinkerError("--learn is not supported by annotate (bulk output must equal /predict without a "
                              "project's learned terms)")
    label_config = None
    if args.label_config:
        try:
            label_config = Path(args.label_config).read_text(encoding="utf-8")
        except OSError as exc:
            raise ClinlinkerError(f"--label-config {args.label_config}: {exc.strerror or exc}") from None
    labels = tuple(x.strip() for x in os.environ.get("CLINLINKER_LABELS", "").split(",") if x.strip())
    settings = AnnotateSettings(index=args.index, model=args.model, label_config=label_config, top_k=args.top_k,
                                routing=args.routing, reranker=args.reranker, redis_url=args.redis_url,
                                runtime=getattr(args, "runtime", None), batch_size=args.batch_size,
                                device=args.device, threads=args.threads,
                                **({"labels": labels} if labels else {}))
    summary = annotate(args.inputs, args.out, settings, work_dir=args.work, texts=args.texts,
                       shard_size=args.shard_size, chunk_size=args.chunk_size, restart=args.restart,
                       ray_address=args.ray_address, use_ray=args.ray, workers=args.workers,
                       gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                       show_progress=sys.stderr.isatty())
    print(f"{summary['tasks']} tasks, {summary['spans']} spans ({summary['distinct_mentions']} distinct mentions) "
          f"pre-annotated by {summary['model_version']} in {summary['seconds']} s"
          f"{' on Ray' if summary['ray'] else ''}: {args.out}/tasks.json (import into Label Studio), "
          f"{args.out}/links.tsv (top-1), {args.out}/candidates.jsonl (top-{args.top_k})")
    return 0


COMMANDS = {"precision": cmd_precision, "annotate": cmd_annotate, "ls-project": cmd_ls_project, "sync": cmd_sync, "doctor": cmd_doctor, "kb": cmd_kb, "train": cmd_train, "retrain": cmd_retrain, "index": cmd_index, "link": cmd_link, "evaluate": cmd_evaluate, "serve": cmd_serve,
            "export": cmd_export, "curate": cmd_curate, "train-reranker": cmd_train_reranker}

if __name__ == "__main__":
    sys.exit(main())

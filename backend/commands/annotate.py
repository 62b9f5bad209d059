"""`clinlinker annotate`: bulk pre-annotation of Label Studio tasks."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from clinlinker.cli.common import add_runtime_options, positive_int
from clinlinker.errors import ClinlinkerError

log = logging.getLogger("clinlinker")



def register(sub) -> None:
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
    p.add_argument("--shard-size", type=positive_int, default=200, help="tasks per shard (default 200)")
    p.add_argument("--chunk-size", type=positive_int, default=20000, help="distinct mentions per encoding chunk")
    p.add_argument("--top-k", type=positive_int, default=int(os.environ.get("CLINLINKER_TOP_K", "25")))
    p.add_argument("--ray", action="store_true", help="run on Ray (a local one-machine cluster unless --ray-address "
                   "or $RAY_ADDRESS names one; setting RAY_ADDRESS implies --ray)")
    p.add_argument("--ray-address", metavar="HOST:PORT", help="the Ray cluster to join (e.g. 10.0.0.5:6379)")
    p.add_argument("--workers", type=positive_int, help="Ray actors, each loading the model once (default: as many as "
                   "the cluster's CPUs hold at --cpus-per-worker each, or its GPUs with --gpus-per-worker)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="e.g. 1 for GPU actors")
    p.add_argument("--threads", type=positive_int, help="torch threads per process (default: torch's)")
    add_runtime_options(p)
    p.set_defaults(handler=cmd_annotate)


def cmd_annotate(args) -> int:
    from backend.jobs.annotate import AnnotateSettings, annotate

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
                                abbreviations=False if args.no_abbreviations else None,
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

"""`clinlinker doctor`: check an installation end to end."""

from __future__ import annotations

import logging
import os

from clinlinker.cli.common import positive_int

log = logging.getLogger("clinlinker")



def register(sub) -> None:
    p = sub.add_parser("doctor", help="check an installation (packages, index and model, Redis, the store, Label "
                                      "Studio, memory) and list what to fix; exit 1 if anything must be fixed")
    p.add_argument("--index", default=os.environ.get("CLINLINKER_INDEX"), help="default: $CLINLINKER_INDEX")
    p.add_argument("--model", default=os.environ.get("CLINLINKER_MODEL"), help="default: $CLINLINKER_MODEL")
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"), help="default: $REDIS_URL")
    p.add_argument("--database-url", default=os.environ.get("CLINLINKER_DATABASE_URL"),
                   help="default: $CLINLINKER_DATABASE_URL (unset: SQLite in the data directory)")
    p.add_argument("--data-dir", default=os.environ.get("CLINLINKER_DATA_DIR", "var"))
    p.add_argument("--workers", type=positive_int, default=int(os.environ.get("CLINLINKER_WORKERS", "1")),
                   help="backend processes planned (memory check)")
    p.add_argument("--ls-url", default=os.environ.get("LABEL_STUDIO_URL"), help="Label Studio URL "
                   "(default: $LABEL_STUDIO_URL)")
    p.add_argument("--ls-token", default=os.environ.get("LABEL_STUDIO_API_KEY"),
                   help="default: $LABEL_STUDIO_API_KEY")
    p.add_argument("--project", type=positive_int, help="the Label Studio project to check")
    p.add_argument("--backend-url", help="the backend as Label Studio reaches it (checks the webhook points there)")
    p.set_defaults(handler=cmd_doctor)


def cmd_doctor(args) -> int:
    from backend.serving.config import BackendConfig
    from backend.jobs.doctor import run_doctor

    labels = BackendConfig.from_env().labels
    report = run_doctor(index_dir=args.index, model=args.model, redis_url=args.redis_url,
                        database_url=args.database_url, data_dir=args.data_dir, ls_url=args.ls_url,
                        ls_token=args.ls_token, project=args.project, backend_url=args.backend_url,
                        workers=args.workers, labels=labels)
    print(report.render())
    return 1 if report.failed else 0

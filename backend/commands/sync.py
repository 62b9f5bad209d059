"""`clinlinker sync`: the backend's accepted links of a Label Studio project rebuilt from its annotations."""

from __future__ import annotations

import json
import os
import sys

from backend.commands.options import add_label_studio_server
from clinlinker.cli.common import positive_int
from clinlinker.errors import ClinlinkerError


def register(sub) -> None:
    p = sub.add_parser("sync", help="rebuild the backend's accepted links of a Label Studio project from its "
                                    "annotations (Label Studio holds the coders' work) and report what differed")
    add_label_studio_server(p)
    p.add_argument("--project", type=positive_int, required=True)
    p.add_argument("--data-dir", default=os.environ.get("CLINLINKER_DATA_DIR", "var"),
                   help="the backend's data directory (its SQLite store; default: $CLINLINKER_DATA_DIR or ./var)")
    p.add_argument("--database-url", default=os.environ.get("CLINLINKER_DATABASE_URL"),
                   help="the backend's PostgreSQL store (default: $CLINLINKER_DATABASE_URL)")
    p.set_defaults(handler=cmd_sync)


def cmd_sync(args) -> int:
    from backend.serving.config import BackendConfig
    from backend.records.resync import resync_project
    from backend.records.store import Store

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

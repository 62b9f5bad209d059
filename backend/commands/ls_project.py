"""`clinlinker ls-project`: a corpus -> a ready Label Studio project."""

from __future__ import annotations

import logging
import os
import sys

from backend.commands.options import add_label_studio_server
from clinlinker.cli.common import positive_int
from clinlinker.errors import ClinlinkerError

log = logging.getLogger("clinlinker")



def register(sub) -> None:
    p = sub.add_parser("ls-project", help="create a Label Studio project from a corpus, with predictions, "
                                          "connected to the backend")
    add_label_studio_server(p)
    p.add_argument("--backend", default="http://localhost:9090", help="the running clinlinker backend, as Label "
                   "Studio reaches it (default: %(default)s)")
    p.add_argument("--backend-public-url", help="the backend as coders' browsers reach it (default: --backend)")
    p.add_argument("--links", required=True, metavar="TSV",
                   help="linking TSV, or spans TSV (filename mark label off0 off1 span)")
    p.add_argument("--texts", required=True, metavar="DIR", help="folder of <filename>.txt texts")
    p.add_argument("--title", default="clinlinker: codificación SNOMED CT")
    p.add_argument("--config", default="all", help="all, diseases, symptoms, procedures, or an XML file")
    p.add_argument("--limit", type=positive_int, help="import only the first N documents")
    p.set_defaults(handler=cmd_ls_project)


def cmd_ls_project(args) -> int:
    from backend.labelstudio.project import create_project

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

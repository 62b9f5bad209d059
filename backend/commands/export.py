"""`clinlinker export`: the accepted links of a Label Studio export (a file, or pulled from the server) -> a
linking TSV."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from clinlinker.cli.common import positive_int
from clinlinker.errors import ClinlinkerError

log = logging.getLogger("clinlinker")


def register(sub) -> None:
    p = sub.add_parser("export", help="Label Studio JSON export -> linking TSV (accepted links)")
    add_export_source(p, "the export")
    p.add_argument("--out", metavar="TSV", help="output file (default: stdout)")
    p.add_argument("--doc-field", default=os.environ.get("CLINLINKER_DOC_FIELD", "doc_id"),
                   help="task-data field used as filename (default: doc_id)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a region is reported (no code, wrong mention)")
    p.set_defaults(handler=cmd_export)


def cmd_export(args) -> int:
    # The only commands that know Label Studio's JSON: they live in the backend package.
    from backend.labelstudio.export import export_tasks
    from clinlinker.links import write_links

    tasks = tasks_from_source(args)
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


def add_export_source(p: argparse.ArgumentParser, what: str) -> None:
    """A Label Studio full JSON export: a file, or pulled from the server (read by tasks_from_source)."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", metavar="JSON", help="a full JSON export file (export type JSON)")
    source.add_argument("--url", help=f"Label Studio URL to pull {what} from (with --token and --project)")
    p.add_argument("--token", default=os.environ.get("LABEL_STUDIO_API_KEY"),
                   help="Label Studio token (default: $LABEL_STUDIO_API_KEY)")
    p.add_argument("--project", type=positive_int)


def tasks_from_source(args) -> list:
    from backend.labelstudio.export import fetch_export, read_export

    if args.url:
        if not args.token or not args.project:
            raise ClinlinkerError("--url needs --token (or $LABEL_STUDIO_API_KEY) and --project")
        return fetch_export(args.url, args.token, args.project)
    return read_export(args.input)
